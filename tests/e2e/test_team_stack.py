"""Team mode for real: `rlvr stack up --team --detach` starts PostgreSQL (a cluster of its own under
the state dir, run as the `postgres` account), the Prefect server and the MLflow tracking server,
both with authentication on; two tiny pipelines run at the same time against them, as two people
in two shells would; their runs, datasets, LoggedModels, registry versions and flow runs are rows
in PostgreSQL; a request without credentials is refused by each server; in a browser signed in
to MLflow, the SFT and GRPO runs show their datasets and logged models and the registered
version links to its LoggedModel; `rlvr stack down` stops everything, the database included.

No mock and no sqlite fallback: without PostgreSQL's server binaries (Debian's `postgresql`,
which `make test` installs) the test fails, saying so. Screenshots:
test-artifacts/browser/team-*.png; the measured start-up time: test-artifacts/team/startup.txt.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tasks.ops.team import DATABASES, PG_BIN
from tests.conftest import CONFIGS, REPO
from tests.e2e.test_browser import SHOTS, _free_port, browser, shot  # noqa: F401  (browser: a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

OUT = REPO / "test-artifacts" / "team"
NAMES = ("tiny-a", "tiny-b")


def _client_env(state: Path) -> dict[str, str]:
    """The exports of secrets/client.env, read as a person's shell would `source` it."""
    lines = [ln for ln in (state / "secrets" / "client.env").read_text().splitlines() if ln.startswith("export ")]
    return dict(shlex.split(ln.removeprefix("export "))[0].split("=", 1) for ln in lines)


@pytest.fixture(scope="module")
def team():
    if not (PG_BIN / "postgres").is_file():
        pytest.fail(f"no PostgreSQL server binaries in {PG_BIN}: `make test` installs Debian's postgresql "
                    "(or `apt-get install postgresql`; RLVR_PG_BIN names another directory)")
    # Under /tmp, searchable by the postgres account (pytest's own tmp dirs are private to root).
    tmp = Path(tempfile.mkdtemp(prefix="rlvr-team-"))
    tmp.chmod(0o711)
    state, ports = tmp / "state", {k: _free_port() for k in ("prefect", "mlflow", "db")}
    cmd = [sys.executable, "-m", "tasks.ops.cli", "stack", "up", "--team", "--detach", "--recipe",
           str(CONFIGS / "tiny.yaml"), "--set", f"tracking.runs_dir={tmp / 'runs'}", "--state-dir", str(state),
           "--prefect-port", str(ports["prefect"]), "--mlflow-port", str(ports["mlflow"]),
           "--db-port", str(ports["db"])]
    t0 = time.monotonic()
    up = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    startup_s = time.monotonic() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "startup.txt").write_text(f"rlvr stack up --team --detach: {startup_s:.1f} s (rc {up.returncode}, "
                                     f"load average {os.getloadavg()[0]:.1f})\n{up.stdout}")
    print(f"team stack up in {startup_s:.1f} s")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        env = _client_env(state)
        yield {"state": state, "tmp": tmp, "ports": ports, "env": env, "out": up.stdout,
               "prefect": env["PREFECT_API_URL"].removesuffix("/api"), "mlflow": env["MLFLOW_TRACKING_URI"],
               "id": json.loads((state / "stack.json").read_text())["id"]}
    finally:
        if (state / "stack.json").is_file():  # not stopped by the last test (a failure on the way)
            subprocess.run([sys.executable, "-m", "tasks.ops.cli", "stack", "down", "--state-dir", str(state)],
                           cwd=REPO, capture_output=True, timeout=120, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def two_pipelines(team):
    """Two tiny pipelines started together, each with its own runs dir, both against the team servers
    (only the final checkpoint evaluated, on one sample per prompt: the test stays a few minutes)."""
    env = {**os.environ, **team["env"]}
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "tasks.ops.cli", "run", str(CONFIGS / "tiny.yaml"), "--set", f"name={name}",
         "--set", f"tracking.runs_dir={team['tmp'] / name}", "--set", f"tracking.tracking_uri={team['mlflow']}",
         "--set", "evaluation.checkpoints=[grpo]", "--set", "evaluation.samples=1"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for name in NAMES}
    outputs = {name: p.communicate(timeout=800)[0] for name, p in procs.items()}
    for name, out in outputs.items():
        (OUT / f"pipeline-{name}.log").write_text(out)
    for name, p in procs.items():
        assert p.returncode == 0, f"{name}:\n{outputs[name][-4000:]}"
    return {name: _summary(out) for name, out in outputs.items()}


def _summary(out: str) -> dict:
    """The JSON summary `rlvr run` prints (its lines "{" ... "}"; training prints lines of its own)."""
    lines = out.splitlines()
    start = lines.index("{")
    return json.loads("\n".join(lines[start:lines.index("}", start) + 1]))


def _sql(team, database: str, query: str) -> list[tuple]:
    import psycopg

    password = (team["state"] / "secrets" / "db_password").read_text().strip()
    with psycopg.connect(host="127.0.0.1", port=team["ports"]["db"], user="rlvr", dbname=database,
                         password=password) as conn:
        return conn.execute(query).fetchall()


def test_two_pipelines_at_once_land_in_postgresql(team, two_pipelines):
    parents = {s["parent_run_id"] for s in two_pipelines.values()}
    assert len(parents) == 2
    mlflow_db = DATABASES["mlflow"]
    runs = dict(_sql(team, mlflow_db, "SELECT run_uuid, status FROM runs"))
    assert all(runs.get(p) == "FINISHED" for p in parents)
    children = _sql(team, mlflow_db, "SELECT t.value, count(*) FROM tags t WHERE t.key = 'mlflow.parentRunId' "
                                     "GROUP BY t.value")
    assert {p: n for p, n in children if p in parents} == {p: 5 for p in parents}  # data, base, sft, grpo, eval
    datasets = {name for (name,) in _sql(team, mlflow_db, "SELECT DISTINCT name FROM datasets")}
    assert {"grpo", "sft", "eval", "heldout"} <= datasets
    inputs = dict(_sql(team, mlflow_db, "SELECT source_type, count(*) FROM inputs GROUP BY source_type"))
    # per pipeline: datasets of data (3 splits), base (2), sft, grpo, the evaluation; models read by sft,
    # grpo and the evaluation; models written by base, sft, grpo
    assert (inputs["DATASET"], inputs["RUN_INPUT"], inputs["RUN_OUTPUT"]) == (2 * 8, 2 * 3, 2 * 3)
    models = _sql(team, mlflow_db, "SELECT name, status FROM logged_models")
    for stage in ("base", "sft", "grpo-stage-1"):
        assert sum(1 for n, s in models if n == stage and s == 2) == 2, models  # 2 = READY
    versions = _sql(team, mlflow_db, "SELECT version, source FROM model_versions WHERE name = 'rlvr-tiny'")
    assert sorted(v for v, _ in versions) == [1, 2] and all(s.startswith("models:/m-") for _, s in versions)
    traces = _sql(team, mlflow_db, "SELECT value, count(*) FROM trace_request_metadata "
                                   "WHERE key = 'mlflow.sourceRun' GROUP BY value")
    assert sorted(n for _, n in traces) == [8, 8], traces  # 4 rollouts x 2 logging steps, each GRPO run
    flow_runs = _sql(team, DATABASES["prefect"], "SELECT f.name, r.state_type FROM flow_run r JOIN flow f "
                                                 "ON f.id = r.flow_id WHERE f.name = 'pipeline'")
    assert [s for _, s in flow_runs] == ["COMPLETED", "COMPLETED"]


def _status(url: str, auth: str | None = None, data: bytes | None = None) -> int:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_each_server_refuses_requests_without_credentials(team):
    env, search = team["env"], f"{team['mlflow']}/api/2.0/mlflow/experiments/search?max_results=5"
    user = f"{env['MLFLOW_TRACKING_USERNAME']}:{env['MLFLOW_TRACKING_PASSWORD']}"
    assert _status(search) == 401
    assert _status(search, f"{env['MLFLOW_TRACKING_USERNAME']}:wrong-password-1234") == 401
    assert _status(search, user) == 200
    flows = f"{team['prefect']}/api/flows/filter"
    assert _status(flows, data=b"{}") == 401
    assert _status(flows, "rlvr:wrong", data=b"{}") == 401
    assert _status(flows, env["PREFECT_API_AUTH_STRING"], data=b"{}") == 200
    assert _status(f"{team['prefect']}/api/health") == 200  # probes stay open
    # the worker signed in too: it polls its pool
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(env["PREFECT_API_URL"], auth_string=env["PREFECT_API_AUTH_STRING"]) as client:
        assert client.read_workers_for_work_pool("rlvr-local")
    # credentials stay out of what the stack prints and logs
    logs = "".join(p.read_text(errors="replace") for p in (team["state"] / "logs").glob("*.log"))
    for secret in (env["MLFLOW_TRACKING_PASSWORD"], env["PREFECT_API_AUTH_STRING"].split(":", 1)[1]):
        assert secret not in team["out"] and secret not in logs


def _close_assistant(page) -> None:
    """Close MLflow's assistant side panel where it is open (it stays closed in this browser context)."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


def test_mlflow_ui_shows_lineage_of_the_stage_runs(team, two_pipelines, browser):  # noqa: F811
    from mlflow import MlflowClient

    env = team["env"]
    os.environ.update({k: v for k, v in env.items() if k.startswith("MLFLOW_TRACKING_")})
    client = MlflowClient(team["mlflow"])
    parent = two_pipelines["tiny-a"]["parent_run_id"]
    exp = client.get_run(parent).info.experiment_id
    runs = {r.data.tags["stage"]: r for r in client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")}
    context = browser.new_context(viewport={"width": 1440, "height": 1200}, http_credentials={
        "username": env["MLFLOW_TRACKING_USERNAME"], "password": env["MLFLOW_TRACKING_PASSWORD"]})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        for n, (stage, dataset, source) in enumerate((("sft", "sft", "base"), ("grpo-stage-1", "grpo", "sft")), 11):
            run = client.get_run(runs[stage].info.run_id)  # search results leave out the model inputs
            page.goto(f"{team['mlflow']}/#/experiments/{exp}/runs/{run.info.run_id}")
            page.get_by_text(f"{dataset} ({run.inputs.dataset_inputs[0].dataset.digest})").wait_for()  # Datasets
            _close_assistant(page)
            made = page.locator(f"a[href*='/models/{run.outputs.model_outputs[0].model_id}']")
            made.first.wait_for()  # Logged models: the output (linked from several panels of the training view) ...
            page.locator(f"a[href*='/models/{run.inputs.model_inputs[0].model_id}']", has_text=source).first.wait_for()
            page.get_by_text("Logged models (2)").scroll_into_view_if_needed()  # ... and the input it started from
            shot(page, f"team-{n}-{stage}-run-datasets-and-logged-models")
        version = client.get_model_version_by_alias("rlvr-tiny", "champion")
        final = version.source.removeprefix("models:/")
        page.goto(f"{team['mlflow']}/#/models/rlvr-tiny/versions/{version.version}")
        page.locator(f"a[href*='/models/{final}']", has_text="grpo-stage-1").first.wait_for()  # "Source Model"
        _close_assistant(page)
        shot(page, "team-13-registered-version-links-its-logged-model")
        page.locator(f"a[href*='/models/{final}']").first.click()
        page.get_by_text("heldout/pass_at_1").first.wait_for()  # the evaluation metrics, against the model
        shot(page, "team-14-logged-model-with-its-evaluation-metrics")
    finally:
        context.close()


def test_stack_down_stops_everything_including_the_database(team, two_pipelines):
    import socket

    from tasks.ops.stack import stack_processes

    assert stack_processes(team["id"])
    down = subprocess.run([sys.executable, "-m", "tasks.ops.cli", "stack", "down", "--state-dir", str(team["state"])],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr
    assert stack_processes(team["id"]) == []
    for port in team["ports"].values():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
