"""Secrets never leave the process: redaction rules, and a whole `rlvr run` whose MLflow store,
Prefect database, logs and output are searched for the secrets it was given."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from tasks.recipe_checks import load_recipe
from tasks.redact import REDACTED, is_secret_key, redact, redact_logs, redact_override, redact_text, secret_values
from tests.conftest import CONFIGS, REPO

TOKEN = "hf_Zq9SECRETtokenVALUE"
URL_PASSWORD = "pw-Xy7SECRET"
SECRETS = [f"grpo.stages.0.trainer.hub_token={TOKEN}",
           f"data.cold_start.teacher=https://bob:{URL_PASSWORD}@teacher.invalid/v1"]


@pytest.mark.parametrize("key, secret", [
    ("hub_token", True), ("api_key", True), ("aws_secret_access_key", True), ("password", True), ("token", True),
    ("api_key_env", False), ("pad_token", False), ("eos_token", False), ("max_new_tokens", False), ("name", False),
    ("stage_key", True), ("vocab_size", False),
])
def test_secret_key_names(key, secret):
    assert is_secret_key(key) is secret


def test_redact_values_and_urls():
    raw = {"trainer": {"hub_token": TOKEN, "max_new_tokens": 256, "pad_token": "<pad>"},
           "teacher": f"https://bob:{URL_PASSWORD}@teacher.invalid/v1", "api_key_env": "OPENAI_API_KEY",
           "list": [{"password": "p"}]}
    out = redact(raw)
    assert out["trainer"] == {"hub_token": REDACTED, "max_new_tokens": 256, "pad_token": "<pad>"}
    assert out["teacher"] == f"https://{REDACTED}@teacher.invalid/v1"
    assert out["api_key_env"] == "OPENAI_API_KEY" and out["list"] == [{"password": REDACTED}]
    assert secret_values(raw) == {TOKEN, f"bob:{URL_PASSWORD}", "p"}
    assert redact_text("see http://host/x and user@example.com") == "see http://host/x and user@example.com"


def test_an_override_is_recorded_without_its_secret():
    assert redact_override(f"grpo.stages.0.trainer.hub_token={TOKEN}") == f"grpo.stages.0.trainer.hub_token={REDACTED}"
    assert redact_override(f"data.cold_start.teacher=https://bob:{URL_PASSWORD}@h/v1") == \
        f"data.cold_start.teacher=https://{REDACTED}@h/v1"
    assert redact_override("grpo.stages.0.trainer.pad_token=<pad>") == "grpo.stages.0.trainer.pad_token=<pad>"
    assert redact_override("seed=3") == "seed=3" and redact_override("no-equals") == "no-equals"


def test_recipe_json_has_no_secret_but_the_object_keeps_it():
    recipe = load_recipe(CONFIGS / "tiny.yaml", SECRETS)
    assert recipe.grpo.stages[0].trainer["hub_token"] == TOKEN  # what the trainer gets
    for dumped in (recipe.model_dump_json(), str(recipe.model_dump(mode="json"))):
        assert TOKEN not in dumped and URL_PASSWORD not in dumped
    assert TOKEN in recipe.model_dump_json(context={"secrets": True})  # the training workers' copy


def test_log_records_are_redacted(caplog):
    redact_logs({TOKEN})
    with caplog.at_level(logging.INFO):
        logging.getLogger("tasks.anything").info("token %s, teacher %s", TOKEN, f"http://u:{URL_PASSWORD}@h/")
    assert TOKEN not in caplog.text and URL_PASSWORD not in caplog.text and REDACTED in caplog.text


@pytest.mark.integration
def test_a_run_keeps_its_secrets_out_of_mlflow_prefect_and_logs(tmp_path):
    runs, prefect_home = tmp_path / "runs", tmp_path / "prefect"
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PYTHONPATH": str(REPO)}
    env.pop("PREFECT_API_URL", None)
    args = [sys.executable, "-m", "tasks.ops.cli", "run", str(CONFIGS / "tiny.yaml"),
            "--set", f"tracking.runs_dir={runs}", "--set", "evaluation.samples=1"]
    for s in SECRETS:
        args += ["--set", s]
    res = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert TOKEN not in res.stdout + res.stderr and URL_PASSWORD not in res.stdout + res.stderr
    stores = [p for root in (runs, prefect_home) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in stores) and any(p.suffix == ".db" and p.parent == prefect_home
                                                                for p in stores)
    leaked = [str(p) for p in stores if TOKEN.encode() in p.read_bytes() or URL_PASSWORD.encode() in p.read_bytes()]
    assert leaked == []
    assert b"recipe.grpo.stages.0.trainer.hub_token" in (runs / "mlflow.db").read_bytes()  # logged, as <redacted>
