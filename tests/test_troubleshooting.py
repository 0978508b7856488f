"""docs/troubleshooting.md: every message in its tables is one the code emits, each triggered
here for real (the CLI in-process, or the function that meets the fault)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time

import pytest

from tasks.ops.cli import main
from tests.conftest import CONFIGS, REPO

TINY = str(CONFIGS / "tiny.yaml")
DOC = REPO / "docs" / "troubleshooting.md"


def _messages() -> list[str]:
    """The Message column of every table row (the first backticked text of the cell)."""
    out = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if line.startswith("| ") and len(cells) == 3 and (m := re.match(r"`([^`]+)`", cells[1])):
            out.append(m[1])
    return out


def _pattern(message: str) -> re.Pattern:
    parts = re.split(r"<[^>]+>", message)
    return re.compile(".+?".join(map(re.escape, parts)))


def _cli(capsys, *args: str) -> str:
    main(list(args))
    return capsys.readouterr().err


def _override(capsys, tmp_path, *overrides: str) -> str:
    args = ["validate", TINY, "--set", f"tracking.runs_dir={tmp_path / 'runs'}"]
    for o in overrides:
        args += ["--set", o]
    return _cli(capsys, *args)


def _no_gpu():
    import importlib.util

    import torch

    if torch.cuda.is_available() or importlib.util.find_spec("vllm"):
        pytest.skip("this machine has a GPU or vLLM")


def _bad_type(tmp_path):
    from tasks.data.sources import canonical_row
    from tasks.recipe import Source

    return canonical_row({"question": 5, "answer": "1"}, Source(kind="jsonl", name="x.jsonl"), "r0")["_invalid"]


def _unreadable(tmp_path):
    from tasks.data.sources import read_jsonl

    (tmp_path / "x.jsonl").write_text("{not json\n")
    return next(read_jsonl(tmp_path / "x.jsonl"))["_invalid"]


def _waiting(tmp_path, caplog):
    from tasks.locking import file_lock

    done = threading.Event()

    def other():
        with file_lock(tmp_path / "s.lock", waiting=f"sft: another run is producing {tmp_path}"):
            done.set()

    with caplog.at_level(logging.INFO), file_lock(tmp_path / "s.lock"):
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.3)
    t.join(5)
    assert done.is_set()
    return caplog.text


def _dead_run(tmp_path, caplog):
    import mlflow

    from tasks.tracking import LIVENESS_TAG, end_dead_runs

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    exp = mlflow.create_experiment("dead")
    run = mlflow.MlflowClient().create_run(exp, tags={LIVENESS_TAG: str(tmp_path / "gone.lock")})
    with caplog.at_level(logging.WARNING):
        assert end_dead_runs(exp) == [run.info.run_id]
    assert mlflow.get_run(run.info.run_id).info.status == "KILLED"
    return caplog.text


def _cut_checkpoint(tmp_path, caplog):
    from tasks.train.common import last_checkpoint

    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text('{"global_st')  # cut off
    with caplog.at_level(logging.WARNING):
        assert last_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")
    assert (tmp_path / "incomplete-checkpoint-4").is_dir() and not (tmp_path / "checkpoint-4").exists()
    return caplog.text


def _registry(tmp_path):
    import sqlite3

    import mlflow

    from tasks.eval.promote import RegistryError, current_champion

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'r.db'}")
    mlflow.MlflowClient().create_registered_model("m")
    with sqlite3.connect(tmp_path / "r.db") as con:
        con.execute("ALTER TABLE registered_model_aliases RENAME TO away")
    with pytest.raises(RegistryError) as e:
        current_champion("m")
    return str(e.value)


def _promotion_lock(tmp_path, caplog, stale: bool):
    import mlflow

    from tasks.eval.registry_lock import SINCE_TAG, PromotionLockTimeout, lock_name, registry_lock

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'l.db'}")
    since = time.time() - (3600 if stale else 0)
    mlflow.MlflowClient().create_registered_model(lock_name("m"), tags={SINCE_TAG: str(since), "rlvr.lock.holder": "r1"})
    with caplog.at_level(logging.INFO):
        if stale:
            with registry_lock("m", holder="r2"):
                return caplog.text
        with pytest.raises(PromotionLockTimeout) as e, registry_lock("m", holder="r2", timeout_s=0.3, poll_s=0.1):
            pass
    return caplog.text + str(e.value)


TRIGGERS = {  # message start -> what produces it
    "override <path>: <list> has indices": lambda c, t, log: _override(c, t, "grpo.stages.3.max_steps=1"),
    "override <path>: <list> is a list": lambda c, t, log: _override(c, t, "grpo.stages.a.max_steps=1"),
    "override <path>: <key> is a value": lambda c, t, log: _override(c, t, "name.x=1"),
    "override '<item>'": lambda c, t, log: _override(c, t, "seed"),
    "<path>: unknown key": lambda c, t, log: _override(c, t, "grpo.stages.0.max_step=1"),
    "<path>: not a field": lambda c, t, log: _override(c, t, "sft.trainer.max_stepz=1"),
    "<path>: <value> is out of range": lambda c, t, log: _override(c, t, "grpo.stages.0.trainer.learning_rate=-1"),
    "<path>.use_vllm": lambda c, t, log: _no_gpu() or _override(c, t, "grpo.stages.0.trainer.use_vllm=true"),
    "<path>.bf16": lambda c, t, log: _no_gpu() or _override(c, t, "grpo.stages.0.trainer.bf16=true"),
    "<path>: FSDP": lambda c, t, log: _no_gpu() or _override(c, t, "sft.launcher.config=configs/accelerate/fsdp.yaml"),
    "recipe file not found": lambda c, t, log: _cli(c, "validate", str(t / "none.yaml")),
    "bad type": lambda c, t, log: _bad_type(t),
    "unreadable": lambda c, t, log: _unreadable(t),
    "<stage>: another run": lambda c, t, log: _waiting(t, log),
    "MLflow run <id> was left RUNNING": lambda c, t, log: _dead_run(t, log),
    "<dir>/checkpoint-<n> was cut off": lambda c, t, log: _cut_checkpoint(t, log),
    "model registry error": lambda c, t, log: _registry(t),
    "another pipeline is promoting": lambda c, t, log: _promotion_lock(t, log, stale=False),
    "promotion lock '<lock>' was held": lambda c, t, log: _promotion_lock(t, log, stale=False),
    "promotion lock <lock> held by": lambda c, t, log: _promotion_lock(t, log, stale=True),
}


def test_every_documented_message_has_a_trigger():
    messages = _messages()
    assert len(messages) >= 15
    assert sorted(next(k for k in TRIGGERS if m.startswith(k)) for m in messages) == sorted(TRIGGERS)


@pytest.mark.parametrize("message", _messages())
def test_the_code_emits_the_documented_message(message, capsys, tmp_path, caplog):
    trigger = next(f for k, f in TRIGGERS.items() if message.startswith(k))
    assert _pattern(message).search(trigger(capsys, tmp_path, caplog)), message
