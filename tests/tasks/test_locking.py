"""Two `rlvr run` of one recipe into one fresh runs dir, started together: both finish, each
stage is produced once (the other run waits, then reuses it), and both report the same results."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from tasks.locking import file_lock
from tests.conftest import CONFIGS, REPO


def test_a_second_holder_waits_until_the_first_releases(tmp_path):
    order = []

    def second():
        with file_lock(tmp_path / "x.lock"):
            order.append("second")

    with file_lock(tmp_path / "x.lock"):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first")
    t.join(5)
    assert order == ["first", "second"]


def _start(tmp_path, runs, name):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen([sys.executable, "-m", "tasks.ops.cli", "run", str(CONFIGS / "tiny.yaml"),
                             "--set", f"tracking.runs_dir={runs}", "--set", "evaluation.samples=1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=open(tmp_path / f"{name}.log", "w"),
                            text=True)


@pytest.mark.integration
def test_two_runs_started_together_both_finish_with_the_same_results(tmp_path):
    runs = tmp_path / "runs"
    procs = [_start(tmp_path, runs, name) for name in ("a", "b")]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    for p, name in zip(procs, "ab"):
        assert p.returncode == 0, (tmp_path / f"{name}.log").read_text()[-4000:]
    a, b = (json.loads(out[re.search(r"^\{$", out, re.M).start():]) for out in outs)  # the summary
    scores = [{r["checkpoint"]: r["heldout/pass_at_1"] for r in s["evaluation"]} for s in (a, b)]
    assert scores[0] == scores[1] and a["checkpoints"] == b["checkpoints"]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    every = client.search_runs([exp.experiment_id])
    assert [r for r in every if r.info.status != "FINISHED"] == []
    produced = [r.data.tags["stage"] for r in every if r.data.tags.get("stage") not in (None, "pipeline")]
    assert sorted(produced) == sorted(set(produced)), "a stage was trained twice"
    assert len([r for r in every if r.data.tags.get("stage") == "pipeline"]) == 2
