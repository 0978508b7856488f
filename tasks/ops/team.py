"""Team mode of the stack (`rlvr stack up --team`): the Prefect server and the MLflow tracking
server on one PostgreSQL, with authentication on and artifacts served by MLflow's proxy from one
shared root.

    team = Team(state_dir, db_port=5432)      # or Team(state_dir, database_url="postgresql://u@db:5432/postgres")
    team.prepare()                            # credentials; `initdb` on the first start of our own cluster
    spawn("postgres", team.postgres_command(), team.postgres_env(stack_id))
    team.wait_database(proc, timeout_s); team.create_databases()
    team.prefect_server_env(), team.mlflow_command(python, host, port), team.mlflow_server_env()
    team.client_env(prefect_url, mlflow_url)  # worker, flow runs, and `rlvr run` on other machines

Our own cluster lives in `<state_dir>/postgres/data`, listens on `127.0.0.1:<db_port>` only (no
unix socket), and runs as the `postgres` account when we are root (PostgreSQL refuses root).
The databases are `rlvr_prefect`, `rlvr_mlflow` (runs, datasets, LoggedModels, registry) and
`rlvr_mlflow_auth` (MLflow's users and permissions).

Credentials never appear on a command line or in a log. Each comes from its environment
variable, else from the file named by `<VARIABLE>_FILE`, else from `<state_dir>/secrets/<name>`,
generated (mode 0600) on the first start; passwords are fixed then (rotate them in PostgreSQL,
MLflow and Prefect as docs/operations.md says). `secrets/client.env` holds the exports a client
needs.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PG_BIN = Path(os.environ.get("RLVR_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_ACCOUNT = "postgres"
DATABASES = {"prefect": "rlvr_prefect", "mlflow": "rlvr_mlflow", "auth": "rlvr_mlflow_auth"}
MLFLOW_PERMISSION = "EDIT"  # every signed-in user may log to every experiment (docs/operations.md)


class TeamError(RuntimeError):
    """Team mode cannot start; the message says what to change."""


@dataclass(frozen=True)
class Secret:
    name: str  # file name under <state_dir>/secrets
    variable: str  # environment variable (or <variable>_FILE) that supplies it


SECRETS = {
    "prefect": Secret("prefect_auth_string", "PREFECT_SERVER_API_AUTH_STRING"),  # user:password
    "mlflow": Secret("mlflow_admin_password", "MLFLOW_AUTH_ADMIN_PASSWORD"),
    "flask": Secret("mlflow_flask_secret_key", "MLFLOW_FLASK_SERVER_SECRET_KEY"),
    "db": Secret("db_password", "PGPASSWORD"),
}


def read_secret(secret: Secret, secrets_dir: Path, env: dict[str, str], generate) -> str:
    """The value from `env`, a `<variable>_FILE`, or `secrets_dir/<name>` (written once by `generate`)."""
    if env.get(secret.variable):
        return env[secret.variable]
    if env.get(f"{secret.variable}_FILE"):
        return Path(env[f"{secret.variable}_FILE"]).read_text().strip()
    path = secrets_dir / secret.name
    if not path.is_file():
        secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(generate())
    return path.read_text().strip()


class Team:
    """Database, credentials and server settings of one team stack (pure set-up; the Stack spawns)."""

    def __init__(self, state_dir: str | Path, db_port: int = 5432, database_url: str | None = None,
                 artifacts: str | None = None, db_user: str = "rlvr", mlflow_user: str = "admin",
                 env: dict[str, str] | None = None):
        self.state_dir = Path(state_dir).resolve()
        self.secrets_dir = self.state_dir / "secrets"
        self.env = dict(os.environ if env is None else env)
        self.external = database_url or self.env.get("RLVR_DATABASE_URL")
        url = urlsplit(self.external or f"postgresql://{db_user}@127.0.0.1:{db_port}/postgres")
        if url.scheme.split("+")[0] not in ("postgresql", "postgres"):
            raise TeamError(f"database URL must be postgresql://user@host:port/db, got scheme {url.scheme!r}")
        self.db_host, self.db_port = url.hostname or "127.0.0.1", url.port or 5432
        self.db_user, self.maintenance_db = url.username or db_user, url.path.lstrip("/") or "postgres"
        self._url_password = url.password
        self.artifacts = artifacts or (self.state_dir / "artifacts").as_uri()
        self.mlflow_user = self.env.get("MLFLOW_AUTH_ADMIN_USERNAME", mlflow_user)
        self.cluster = self.state_dir / "postgres"
        self.secret: dict[str, str] = {}

    # ------------------------------------------------------------ credentials
    def prepare(self) -> None:
        """Read or generate every credential; create our cluster on its first start."""
        gen = {"prefect": lambda: f"rlvr:{secrets.token_urlsafe(24)}", "mlflow": lambda: secrets.token_urlsafe(24),
               "flask": lambda: secrets.token_hex(32), "db": lambda: secrets.token_urlsafe(24)}
        env = {**self.env, **({"PGPASSWORD": self._url_password} if self._url_password else {})}
        self.secret = {k: read_secret(s, self.secrets_dir, env, gen[k]) for k, s in SECRETS.items()}
        if ":" not in self.secret["prefect"]:
            raise TeamError("PREFECT_SERVER_API_AUTH_STRING must be user:password")
        if len(self.secret["mlflow"]) < 12:
            raise TeamError("MLFLOW_AUTH_ADMIN_PASSWORD must have at least 12 characters (MLflow's rule)")
        if not self.external:
            self._init_cluster()
        self._write_auth_config()

    # ------------------------------------------------------------ our own PostgreSQL
    def _as_account(self) -> list[str]:
        """Run as the `postgres` account when we are root (PostgreSQL refuses to run as root)."""
        if os.geteuid() != 0:
            return []
        if shutil.which("setpriv") is None:
            raise TeamError("running as root needs `setpriv` (Debian package util-linux) to start PostgreSQL "
                            f"as the {PG_ACCOUNT} account")
        return ["setpriv", f"--reuid={PG_ACCOUNT}", f"--regid={PG_ACCOUNT}", "--init-groups", "--"]

    def _init_cluster(self) -> None:
        if not (PG_BIN / "postgres").is_file():
            raise TeamError(f"no PostgreSQL server binaries in {PG_BIN}: `apt-get install postgresql` "
                            "(or set RLVR_PG_BIN), or give --database-url")
        data = self.cluster / "data"
        if (data / "PG_VERSION").is_file():
            return
        self.cluster.mkdir(mode=0o700, parents=True, exist_ok=True)
        as_account = self._as_account()
        if as_account:
            try:
                account = pwd.getpwnam(PG_ACCOUNT)
            except KeyError:
                raise TeamError(f"no {PG_ACCOUNT} account to run PostgreSQL as (apt-get install postgresql "
                                "creates it)") from None
            os.chown(self.cluster, account.pw_uid, account.pw_gid)
            if subprocess.run([*as_account, "test", "-w", str(self.cluster)], check=False).returncode:
                raise TeamError(f"the {PG_ACCOUNT} account cannot reach {self.cluster}: a parent directory is "
                                "not searchable by others (chmod o+x it, or choose --state-dir elsewhere)")
        pwfile = self.cluster / ".initdb-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.secret["db"])
        if as_account:
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        try:
            out = subprocess.run([*as_account, str(PG_BIN / "initdb"), "-D", str(data), "-U", self.db_user,
                                  "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale"],
                                 capture_output=True, text=True, check=False,
                                 env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"})
        finally:
            pwfile.unlink(missing_ok=True)
        if out.returncode:
            raise TeamError(f"initdb failed (code {out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}")

    def postgres_command(self) -> list[str]:
        return [*self._as_account(), str(PG_BIN / "postgres"), "-D", str(self.cluster / "data"),
                "-p", str(self.db_port), "-c", f"listen_addresses={self.db_host}", "-c", "unix_socket_directories="]

    def postgres_env(self, stack_id: str) -> dict[str, str]:
        """A clean environment (no credentials) that still carries the stack's id, for `stack down`."""
        return {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "RLVR_STACK_ID": stack_id}

    # ------------------------------------------------------------ databases
    def _connect(self, dbname: str):
        import psycopg

        return psycopg.connect(host=self.db_host, port=self.db_port, user=self.db_user, dbname=dbname,
                               password=self.secret["db"], connect_timeout=5, autocommit=True)

    def wait_database(self, proc: subprocess.Popen | None, timeout_s: float) -> None:
        """Until the database answers; fails when `proc` (our postgres) exits or time runs out."""
        import psycopg

        deadline, error = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise TeamError(f"postgres exited with code {proc.returncode}")
            try:
                self._connect(self.maintenance_db).close()
                return
            except psycopg.OperationalError as e:
                error = e
                if "password authentication failed" in str(e):
                    raise TeamError(f"PostgreSQL at {self.db_host}:{self.db_port} refused user {self.db_user}'s "
                                    "password (PGPASSWORD / secrets/db_password)") from None
            time.sleep(0.3)
        raise TeamError(f"PostgreSQL at {self.db_host}:{self.db_port} not answering after {timeout_s:.0f} s: {error}")

    def create_databases(self) -> None:
        from psycopg import sql

        with self._connect(self.maintenance_db) as conn:
            have = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
            for name in DATABASES.values():
                if name not in have:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def url(self, which: str, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of one database, without the password (servers read PGPASSWORD)."""
        return f"postgresql+{driver}://{self.db_user}@{self.db_host}:{self.db_port}/{DATABASES[which]}"

    # ------------------------------------------------------------ servers and clients
    def _write_auth_config(self) -> None:
        """MLflow's basic-auth settings (no secret in it: the admin password comes from the env)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "mlflow-auth.ini").write_text(
            "[mlflow]\n"
            f"default_permission = {MLFLOW_PERMISSION}\n"
            f"database_uri = {self.url('auth')}\n"
            f"admin_username = {self.mlflow_user}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")

    def prefect_server_env(self) -> dict[str, str]:
        return {"PREFECT_API_DATABASE_CONNECTION_URL": self.url("prefect", "asyncpg"),
                "PREFECT_SERVER_API_AUTH_STRING": self.secret["prefect"], "PGPASSWORD": self.secret["db"]}

    def mlflow_command(self, python: list[str], host: str, port: int) -> list[str]:
        return [*python, "mlflow", "server", "--backend-store-uri", self.url("mlflow"), "--serve-artifacts",
                "--artifacts-destination", self.artifacts, "--app-name", "basic-auth",
                "--host", host, "--port", str(port), "--workers", "1"]

    def mlflow_server_env(self) -> dict[str, str]:
        return {"MLFLOW_AUTH_CONFIG_PATH": str(self.state_dir / "mlflow-auth.ini"),
                "MLFLOW_AUTH_ADMIN_PASSWORD": self.secret["mlflow"],
                "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secret["flask"], "PGPASSWORD": self.secret["db"],
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # GenAI job workers: 7 processes nothing here uses

    def client_env(self, prefect_url: str, mlflow_url: str) -> dict[str, str]:
        """What a client of the team servers sets (also written to secrets/client.env)."""
        return {"PREFECT_API_URL": f"{prefect_url}/api", "PREFECT_API_AUTH_STRING": self.secret["prefect"],
                "MLFLOW_TRACKING_URI": mlflow_url, "MLFLOW_TRACKING_USERNAME": self.mlflow_user,
                "MLFLOW_TRACKING_PASSWORD": self.secret["mlflow"]}

    def write_client_env(self, env: dict[str, str]) -> Path:
        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.secrets_dir / "client.env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# source this file to use the team servers (it holds credentials: keep it private)\n")
            f.writelines(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        return path

    def describe(self) -> dict[str, str]:
        where = "given" if self.external else f"own cluster {self.cluster / 'data'}"
        return {"database": f"postgresql://{self.db_user}@{self.db_host}:{self.db_port} ({where}; databases "
                            f"{', '.join(DATABASES.values())})",
                "artifacts": self.artifacts,
                "credentials": f"{self.secrets_dir / 'client.env'} (source it; mode 0600)"}
