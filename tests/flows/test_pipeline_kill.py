"""Real faults: SIGKILL of a running `rlvr run` process group mid-SFT, while SFT writes a
checkpoint, and mid-GRPO; each re-run reuses the finished stages, resumes training from the
newest complete checkpoint in the same MLflow run, and the last one finishes with no run left
RUNNING. The kill points are read from the stage directories, never timed with a sleep."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CONFIGS, REPO

pytestmark = pytest.mark.integration

OVERRIDES = ["sft.max_steps=12", "sft.trainer.save_steps=3", "grpo.stages.0.max_steps=8",
             "grpo.stages.0.checkpoint_every=2", "evaluation.samples=1"]


# Widens the moment a checkpoint is half-written (model and optimizer saved, RNG state and
# trainer_state.json not yet) to seconds, so the SIGKILL lands inside it every time.
SLOW_CHECKPOINT = """
import runpy, sys, time
import transformers.trainer as t
save_rng = t.Trainer._save_rng_state
def slow(self, output_dir):
    time.sleep(60)
    save_rng(self, output_dir)
t.Trainer._save_rng_state = slow
sys.argv = ["rlvr", *sys.argv[1:]]
runpy.run_module("tasks.ops.cli", run_name="__main__")
"""


def _start(tmp_path: Path, runs: Path, attempt: int, slow_checkpoint: bool = False) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    entry = ["-c", SLOW_CHECKPOINT] if slow_checkpoint else ["-m", "tasks.ops.cli"]
    args = [sys.executable, *entry, "run", str(CONFIGS / "tiny.yaml"), "--set", f"tracking.runs_dir={runs}"]
    for o in OVERRIDES:
        args += ["--set", o]
    log = tmp_path / f"attempt-{attempt}.log"
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
                            start_new_session=True)  # its own process group, killed whole
    return proc, log


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before the kill point"
        assert time.monotonic() < deadline, "kill point not reached"
        time.sleep(0.001)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _stage(runs: Path, stage: str) -> Path | None:
    found = [p for p in (runs / "stages" / stage).glob("*") if p.is_dir()] if (runs / "stages" / stage).is_dir() else []
    return found[0] if found else None


def _checkpoint(runs: Path, stage: str, step: int) -> Path:
    d = _stage(runs, stage)
    return d / "checkpoints" / f"checkpoint-{step}" if d else Path("/nonexistent")


def _written(checkpoint: Path) -> bool:
    """The checkpoint is complete: its trainer_state.json (written last) is whole. Its mere
    existence is not enough: a kill between the file's creation and its write leaves it empty,
    and the resume rightly sets that checkpoint aside."""
    try:
        return json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == \
            int(checkpoint.name.split("-")[1])
    except (OSError, ValueError, KeyError, IndexError):
        return False


def test_sigkill_mid_sft_mid_checkpoint_and_mid_grpo_then_resume(tmp_path):
    from mlflow import MlflowClient

    runs = tmp_path / "runs"
    # 1. killed mid-SFT, after checkpoint-3 is complete
    proc, _ = _start(tmp_path, runs, 1)
    _kill_when(proc, lambda: _written(_checkpoint(runs, "sft", 3)))
    sft_dir = _stage(runs, "sft")
    sft_run = (sft_dir / "mlflow_run_id").read_text()
    assert not (sft_dir / "result.json").exists()

    # 2. killed while SFT writes checkpoint-6 (model and optimizer written, trainer_state.json not yet)
    proc, log2 = _start(tmp_path, runs, 2, slow_checkpoint=True)
    ck6 = _checkpoint(runs, "sft", 6)
    _kill_when(proc, lambda: (ck6 / "scheduler.pt").is_file())
    assert (ck6 / "model.safetensors").is_file() and not (ck6 / "trainer_state.json").exists()
    log2_text = log2.read_text()
    assert "data: reusing finished outputs" in log2_text and re.search(r"resuming from \S+checkpoint-3\b", log2_text)

    # 3. killed mid-GRPO, after its checkpoint-2 is complete
    proc, log3 = _start(tmp_path, runs, 3)
    _kill_when(proc, lambda: _written(_checkpoint(runs, "grpo-stage-1", 2)))
    log3_text = log3.read_text()
    assert "checkpoint-6 was cut off while being written: set aside as incomplete-checkpoint-6" in log3_text
    assert re.search(r"resuming from \S+/sft/\S+checkpoint-3\b", log3_text), "resumed from a corrupt checkpoint"
    assert (sft_dir / "result.json").is_file() and (sft_dir / "mlflow_run_id").read_text() == sft_run
    grpo_dir = _stage(runs, "grpo-stage-1")
    grpo_run = (grpo_dir / "mlflow_run_id").read_text()

    # 4. the re-run finishes
    proc, log4 = _start(tmp_path, runs, 4)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log4.read_text()[-4000:]
    summary = json.loads(out[re.search(r"^\{$", out, re.M).start():])
    assert {"data", "base", "sft"} <= set(summary["cached"]) and "grpo-stage-1" not in summary["cached"]
    assert re.search(r"resuming from \S+/grpo-stage-1/\S+checkpoint-\d+", log4.read_text())
    assert (grpo_dir / "mlflow_run_id").read_text() == grpo_run

    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    every = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    status = {r.info.run_id: r.info.status for r in every}
    assert status[sft_run] == "FINISHED" and status[grpo_run] == "FINISHED"
    assert [r for r in every if r.info.status == "RUNNING"] == []
    pipelines = sorted(r.info.status for r in every if r.data.tags.get("stage") == "pipeline")
    assert pipelines == ["FINISHED", "KILLED", "KILLED", "KILLED"]
