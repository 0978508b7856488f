"""Team mode's set-up without servers: where credentials come from, that none reaches a command
line or a config file, and the database URLs. (The real database and servers: tests/e2e/test_team_stack.py.)"""

import os
import shlex
import subprocess

import pytest

from tasks.ops.team import SECRETS, Team, TeamError, read_secret

EXTERNAL = "postgresql://alice@db.example:6543/postgres"


def test_a_secret_comes_from_the_env_else_its_file_else_is_generated_once(tmp_path):
    secret, gen = SECRETS["mlflow"], iter(["generated-1-abcdef", "generated-2-abcdef"]).__next__
    given = tmp_path / "given"
    given.write_text("from-a-file-123\n")
    assert read_secret(secret, tmp_path / "s", {secret.variable: "from-env-12345"}, gen) == "from-env-12345"
    assert read_secret(secret, tmp_path / "s", {f"{secret.variable}_FILE": str(given)}, gen) == "from-a-file-123"
    assert read_secret(secret, tmp_path / "s", {}, gen) == "generated-1-abcdef"
    assert read_secret(secret, tmp_path / "s", {}, gen) == "generated-1-abcdef"  # kept, not generated again
    assert oct((tmp_path / "s" / secret.name).stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "s").stat().st_mode & 0o777) == "0o700"


def test_credentials_reach_the_servers_env_and_client_env_only(tmp_path):
    env = {"PREFECT_SERVER_API_AUTH_STRING": "team:prefect-secret-1", "MLFLOW_AUTH_ADMIN_PASSWORD": "mlflow-secret-12",
           "PGPASSWORD": "db-secret-123"}
    team = Team(tmp_path / "state", database_url=EXTERNAL, env=env)
    team.prepare()  # a given database: no cluster is created
    assert not (tmp_path / "state" / "postgres").exists()
    assert team.url("mlflow") == "postgresql+psycopg://alice@db.example:6543/rlvr_mlflow"
    assert team.url("prefect", "asyncpg") == "postgresql+asyncpg://alice@db.example:6543/rlvr_prefect"
    command = " ".join(team.mlflow_command(["python", "-m"], "127.0.0.1", 5000))
    config = (tmp_path / "state" / "mlflow-auth.ini").read_text()
    for secret in env.values():
        assert secret not in command and secret not in config and secret not in str(team.describe())
    assert "--app-name basic-auth" in command and "--serve-artifacts" in command
    assert team.prefect_server_env()["PREFECT_SERVER_API_AUTH_STRING"] == "team:prefect-secret-1"
    assert team.mlflow_server_env()["MLFLOW_AUTH_ADMIN_PASSWORD"] == "mlflow-secret-12"
    client = team.client_env("http://127.0.0.1:4200", "http://127.0.0.1:5000")
    path = team.write_client_env(client)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    sourced = subprocess.run(["sh", "-c", f". {shlex.quote(str(path))} && env"], capture_output=True, text=True,
                             check=True, env={"PATH": os.environ["PATH"]}).stdout
    assert "PREFECT_API_AUTH_STRING=team:prefect-secret-1" in sourced.splitlines()
    assert "MLFLOW_TRACKING_PASSWORD=mlflow-secret-12" in sourced.splitlines()


def test_bad_settings_fail_before_anything_starts(tmp_path):
    with pytest.raises(TeamError, match="postgresql://"):
        Team(tmp_path, database_url="mysql://u@h/db")
    team = Team(tmp_path, database_url=EXTERNAL, env={"MLFLOW_AUTH_ADMIN_PASSWORD": "short"})
    with pytest.raises(TeamError, match="at least 12 characters"):
        team.prepare()
    team = Team(tmp_path, database_url=EXTERNAL, env={"PREFECT_SERVER_API_AUTH_STRING": "no-colon"})
    with pytest.raises(TeamError, match="user:password"):
        team.prepare()
