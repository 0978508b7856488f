"""The local stack: Prefect server + UI, a process worker running deployments/prefect.yaml, and
the MLflow UI on the recipe's tracking store, all bound to 127.0.0.1.

    rlvr stack up --recipe configs/tiny.yaml     # prints the URLs; Ctrl-C stops all of it
    rlvr stack up --detach ...  /  rlvr stack down
    rlvr stack up --team ...                      # both servers on PostgreSQL, auth on (tasks/ops/team.py)

The recipe becomes every deployment's default parameter and decides which MLflow store the UI
shows. Each process starts in its own session with RLVR_STACK_ID in its environment; stopping
ends the recorded process groups, then anything else carrying that id (the worker starts each
flow run in a session of its own).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from tasks.locking import file_lock
from tasks.ops.team import Team, TeamError
from tasks.recipe import Recipe
from tasks.reproducibility import EMBEDDED_ENV
from tasks.tracking import tracking_uri

REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
WORK_POOL = "rlvr-local"
HOST = "127.0.0.1"
STATE_FILE = "stack.json"


class StackError(RuntimeError):
    """The stack could not start; the message says which part and where its log is."""


def _port_free(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _log_tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def _wait_healthy(name: str, url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{name} exited with code {proc.returncode}; {log}:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise StackError(f"{name} not healthy at {url} after {timeout_s:.0f} s; {log}:\n{_log_tail(log)}")


def stack_processes(stack_id: str) -> list[int]:
    """Live (non-zombie) processes that carry RLVR_STACK_ID=<stack_id> in their environment."""
    marker = f"RLVR_STACK_ID={stack_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0") and \
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


class Stack:
    """Starts and stops the stack's processes; its state lives in `state_dir/stack.json`."""

    def __init__(self, state_dir: str | Path, prefect_port: int = 4200, mlflow_port: int = 5000,
                 team: Team | None = None, host: str = HOST):
        self.state_dir = Path(state_dir).resolve()
        self.host, self.team = host, team
        self.prefect_url = f"http://{host}:{prefect_port}"
        self.mlflow_port = mlflow_port
        self.procs: dict[str, subprocess.Popen] = {}
        self.id = uuid.uuid4().hex
        self.env = {
            **os.environ, **EMBEDDED_ENV,
            "RLVR_STACK_ID": self.id,
            "PREFECT_HOME": str(self.state_dir / "prefect"),
            "PREFECT_API_URL": f"{self.prefect_url}/api",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        with (self.logs / f"{name}.log").open("ab") as log:  # the child keeps its own copy of the handle
            proc = subprocess.Popen(cmd, cwd=REPO, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[name] = proc
        return proc

    def _run(self, name: str, cmd: list[str]) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as f:
            rc = subprocess.run(cmd, cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT).returncode
        if rc:
            raise StackError(f"`{' '.join(cmd[2:])}` failed (code {rc}); {log}:\n{_log_tail(log)}")

    def up(self, recipe: Recipe, base: str | None = None, overrides: list[str] | None = None,
           timeout_s: float = 180) -> dict:
        """Start everything, register the deployments with `base` and `overrides` (the recipe file and
        `--set` values `recipe` was loaded from) as their default; returns the URLs."""
        if (self.state_dir / STATE_FILE).is_file() and stack_processes(self.read_state()["id"]):
            raise StackError(f"a stack from {self.state_dir} is running: `rlvr stack down` first")
        recipe = recipe.model_copy(deep=True)
        recipe.tracking.runs_dir = str(Path(recipe.tracking.runs_dir).resolve())
        if self.team:  # the deployments' runs log to the team's tracking server
            recipe.tracking.tracking_uri = f"http://{self.host}:{self.mlflow_port}"
        store = tracking_uri(recipe.tracking)
        serve_mlflow = self.team is not None or not store.startswith(("http://", "https://"))
        ports = [int(self.prefect_url.rsplit(":", 1)[1])] + ([self.mlflow_port] if serve_mlflow else [])
        busy = [p for p in ports if not _port_free(p, self.host)]
        if self.team and not self.team.external and not _port_free(self.team.db_port, self.team.db_host):
            busy.append(self.team.db_port)
        if busy:
            raise StackError(f"port(s) {busy} on {self.host} are in use; pick others with "
                             "--prefect-port/--mlflow-port/--db-port")
        mlflow_url = f"http://{self.host}:{self.mlflow_port}" if serve_mlflow else store
        self.env["RLVR_MLFLOW_UI"] = mlflow_url
        self.logs.mkdir(parents=True, exist_ok=True)
        Path(recipe.tracking.runs_dir).mkdir(parents=True, exist_ok=True)
        py = [sys.executable, "-m"]
        try:
            if self.team:
                self._start_database(mlflow_url, store, timeout_s)
            server = self._spawn("prefect-server", py + ["prefect", "server", "start", "--host", self.host,
                                                         "--port", str(ports[0])],
                                 {**self.env, **self.team.prefect_server_env()} if self.team else None)
            if self.team:
                mlflow = self._spawn("mlflow", self.team.mlflow_command(py, self.host, self.mlflow_port),
                                     {**self.env, **self.team.mlflow_server_env()})
            elif serve_mlflow:
                artifacts = (Path(recipe.tracking.runs_dir) / "mlartifacts").as_uri()
                mlflow = self._spawn("mlflow", py + ["mlflow", "server", "--backend-store-uri", store,
                                                     "--default-artifact-root", artifacts, "--host", self.host,
                                                     "--port", str(self.mlflow_port), "--workers", "1"])
            self._write_state(mlflow_url, store)  # from here on `rlvr stack down` can clean up
            _wait_healthy("prefect server", f"{self.prefect_url}/api/health", server,
                          self.logs / "prefect-server.log", timeout_s)
            self._create_work_pool()
            self._run("deploy", py + ["prefect", "--no-prompt", "deploy", "--all", "--prefect-file",
                                      str(PREFECT_YAML.relative_to(REPO))])
            deployments = self._set_default_recipe(recipe, base, overrides or [])
            self._spawn("worker", py + ["prefect", "worker", "start", "--pool", WORK_POOL, "--type", "process"])
            if serve_mlflow:
                _wait_healthy("mlflow server", f"{mlflow_url}/health", mlflow, self.logs / "mlflow.log", timeout_s)
            self._write_state(mlflow_url, store)
        except BaseException:
            self.down()
            raise
        return {"prefect": self.prefect_url, "mlflow": mlflow_url, "store": store,
                "deployments": deployments, "logs": str(self.logs), **(self.team.describe() if self.team else {})}

    def _start_database(self, mlflow_url: str, store: str, timeout_s: float) -> None:
        """Team mode: credentials, our PostgreSQL (unless given a URL) and the three databases;
        every later process of the stack is a client with the team's credentials."""
        try:
            self.team.prepare()
            proc = None
            if not self.team.external:
                proc = self._spawn("postgres", self.team.postgres_command(), self.team.postgres_env(self.id))
                self._write_state(mlflow_url, store)
            self.team.wait_database(proc, timeout_s)
            self.team.create_databases()
        except TeamError as e:
            raise StackError(f"team database: {e}; {self.logs / 'postgres.log'}:\n"
                             f"{_log_tail(self.logs / 'postgres.log')}") from None
        client = self.team.client_env(self.prefect_url, mlflow_url)
        self.team.write_client_env(client)
        self.env.update(client)

    def _prefect_client(self):
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.env["PREFECT_API_URL"], auth_string=self.env.get("PREFECT_API_AUTH_STRING"))

    def _create_work_pool(self) -> None:
        """The `process` pool of deployments/prefect.yaml (as `prefect work-pool create`, in-process)."""
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.workers.process import ProcessWorker

        with self._prefect_client() as client:
            client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process",
                                                   base_job_template=ProcessWorker.get_default_base_job_template()),
                                    overwrite=True)

    def _set_default_recipe(self, recipe: Recipe, base: str | None, overrides: list[str]) -> list[str]:
        """Make the recipe the default of every deployment that takes one: as the short form's base
        recipe and overrides (with this stack's store made explicit), or, without a base file, as
        the full typed recipe."""
        from prefect.client.schemas.actions import DeploymentUpdate

        if base:
            pinned = {"tracking.runs_dir": recipe.tracking.runs_dir, "tracking.tracking_uri": recipe.tracking.tracking_uri}
            form = {"base": _repo_relative(base), "recipe": None,
                    "overrides": [o for o in overrides if o.split("=", 1)[0].strip() not in pinned]
                    + [f"{k}={v}" for k, v in pinned.items() if v]}
        else:
            form = {"recipe": recipe.model_dump(mode="json")}
        with self._prefect_client() as client:
            names = []
            for d in client.read_deployments():
                flow = client.read_flow(d.flow_id)
                names.append(f"{flow.name}/{d.name}")
                if "recipe" in (d.parameter_openapi_schema or {}).get("properties", {}):
                    client.update_deployment(d.id, DeploymentUpdate(parameters={**d.parameters, **form}))
        return sorted(names)

    def _write_state(self, mlflow_url: str, store: str) -> None:
        self._save({"id": self.id, "pids": {n: p.pid for n, p in self.procs.items()},
                    "prefect": self.prefect_url, "mlflow": mlflow_url, "store": store})

    def _save(self, state: dict) -> None:
        tmp = self.state_dir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.rename(self.state_dir / STATE_FILE)  # atomic: a reader never sees half a file

    def read_state(self) -> dict:
        return json.loads((self.state_dir / STATE_FILE).read_text())

    def stopping(self) -> bool:
        """`rlvr stack down` is stopping this stack (or has stopped it)."""
        path = self.state_dir / STATE_FILE
        return not path.is_file() or self.read_state().get("stopping", False)

    def down(self, grace_s: float = 15) -> list[int]:
        """Stop the worker, then the servers, then any straggler of this stack; returns what was stopped."""
        state_path = self.state_dir / STATE_FILE
        if not state_path.is_file():
            return []
        state = self.read_state()
        self._save({**state, "stopping": True})  # a foreground `up` then exits quietly
        # The worker first (it watches flow runs), the database last (the servers are its clients).
        order = sorted(state["pids"], key=lambda n: (n != "worker") + (n == "postgres"))
        stopped = []
        for name in order:
            stopped += _terminate_group(state["pids"][name], state["id"], grace_s)
        stopped += _terminate(stack_processes(state["id"]), state["id"], grace_s)
        for proc in self.procs.values():  # reap our own children so none is left a zombie
            proc.wait()
        state_path.unlink(missing_ok=True)
        return stopped


def _repo_relative(path: str) -> str:
    """A recipe path as the worker (which runs in the repo root) reads it: relative to the repo when inside it."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved)


def _terminate_group(pgid: int, stack_id: str, grace_s: float) -> list[int]:
    """SIGTERM the process group `pgid` if it still belongs to this stack, SIGKILL after `grace_s`."""
    members = [p for p in stack_processes(stack_id) if _pgid(p) == pgid]
    return _terminate(members, stack_id, grace_s, group=pgid if members else None)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _terminate(pids: list[int], stack_id: str, grace_s: float, group: int | None = None) -> list[int]:
    """SIGTERM (the group, or each pid), then SIGKILL whatever is still alive after `grace_s`."""
    if not pids:
        return []
    _signal(pids, group, signal.SIGTERM)
    if left := _wait_gone(pids, stack_id, grace_s):
        _signal(left, None, signal.SIGKILL)
        _wait_gone(left, stack_id, 5)
    return pids


def _signal(pids: list[int], group: int | None, sig: int) -> None:
    for target, kill in ([(group, os.killpg)] if group else [(p, os.kill) for p in pids]):
        try:
            kill(target, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: list[int], stack_id: str, timeout_s: float) -> list[int]:
    """The pids still alive after waiting up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (alive := sorted(set(pids) & set(stack_processes(stack_id)))) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def run_until_stopped(stack: Stack) -> int:
    """Block until Ctrl-C / SIGTERM or until a service dies, then stop everything."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    code = 0
    while not stop.wait(1):
        if dead := [n for n, p in stack.procs.items() if p.poll() is not None]:
            if stack.stopping():
                print("stopped by `rlvr stack down`.", file=sys.stderr)
                return 0
            print(f"{', '.join(dead)} exited; see {stack.logs}. Stopping the stack.", file=sys.stderr)
            code = 1
            break
    print("stopping the stack ...", file=sys.stderr)
    stack.down()
    print("stopped.", file=sys.stderr)
    return code


def describe(urls: dict) -> str:
    return "\n".join([
        f"  Prefect UI   {urls['prefect']}",
        f"  MLflow UI    {urls['mlflow']}   (store: {urls['store']})",
        f"  deployments  {', '.join(urls['deployments'])}",
        f"  logs         {urls['logs']}",
        f"  CLI          export PREFECT_API_URL={urls['prefect']}/api",
        *[f"  {k:<12} {urls[k]}" for k in ("database", "artifacts", "credentials") if k in urls],
    ])


def migrate_embedded_prefect() -> None:
    """Without a Prefect server (PREFECT_API_URL unset) each `rlvr run` starts a temporary one on
    the database in PREFECT_HOME; runs started together would migrate a fresh database at once
    and one fails ("Online migration expected to match one row"). The first migrates it while
    the others wait for the lock (then find it current in a fraction of a second)."""
    import asyncio

    from prefect.server.database import provide_database_interface
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        return
    with file_lock(Path(settings.home) / "rlvr-migrate.lock", waiting="another run is migrating the Prefect database"):
        asyncio.run(provide_database_interface().create_db())

