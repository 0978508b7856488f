"""Same recipe + seed -> the same numbers: two fresh processes, two fresh run directories, one at
two threads and one at a single thread on a single core (as on a smaller or busier host), must
log identical metrics; the thread count is chosen from what the machine can give."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from tasks.reproducibility import (
    CPU_MATH_ENV,
    LOCK_FILE,
    THREADS_ENV,
    cgroup_cpu_quota,
    choose_threads,
    provenance,
    usable_cpus,
)
from tests.conftest import CONFIGS, REPO

# Wall-clock measurements are the only numbers allowed to differ between two runs.
TIMING = ("time", "timing", "Time", "throughput", "per_s")


def _run_tiny(runs_dir, one_core: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CPU_MATH_ENV}  # the run pins them itself
    env[THREADS_ENV] = "1" if one_core else "2"
    preexec = (lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})) if one_core else None
    done = subprocess.run([sys.executable, "-m", "tasks.ops.cli", "run", str(CONFIGS / "tiny.yaml"),
                           "--set", f"tracking.runs_dir={runs_dir}"], cwd=REPO, env=env, preexec_fn=preexec,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _logged(runs_dir) -> tuple[dict, dict]:
    """(stage, metric) -> every logged value in step order; stage -> tags. Runs are told apart by
    their `stage` tag (`pipeline` for the parent): a pipeline run's name carries its start time."""
    client = MlflowClient(f"sqlite:///{runs_dir / 'mlflow.db'}")
    values, tags = {}, {}
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            stage = run.data.tags.get("stage", run.info.run_name)
            tags[stage] = run.data.tags
            for key in run.data.metrics:
                if not any(t in key for t in TIMING):
                    history = client.get_metric_history(run.info.run_id, key)
                    values[(stage, key)] = [(m.step, m.value) for m in history]
    return values, tags


@pytest.mark.integration
def test_two_fresh_runs_of_the_tiny_recipe_log_identical_metrics(tmp_path):
    _run_tiny(tmp_path / "a", one_core=False)
    _run_tiny(tmp_path / "b", one_core=True)
    (a, tags), (b, _) = _logged(tmp_path / "a"), _logged(tmp_path / "b")
    assert len(a) > 40 and ("sft", "train_loss") in a and ("eval-grpo-stage-1", "heldout/pass_at_1") in a
    # TRL's logged token-mean entropy is one large reduction that ATen splits by thread count: it
    # may move in the 8th digit between 1 and 2 threads. Nothing trains on it; the rest is exact.
    split = {k for k in a if "entropy" in k[1]}
    assert set(a) == set(b)
    assert {k: v for k, v in a.items() if k not in split} == {k: v for k, v in b.items() if k not in split}, \
        {k: (a.get(k), b.get(k)) for k in set(a) - split if a.get(k) != b.get(k)}
    for k in split:
        assert [s for s, _ in a[k]] == [s for s, _ in b[k]]
        assert all(abs(x - y) <= 1e-6 * max(abs(x), 1.0) for (_, x), (_, y) in zip(a[k], b[k])), (k, a[k], b[k])

    sft = tags["sft"]  # what the numbers depend on, recorded on every stage run
    assert sft["repro.lock_sha256"] == hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:16]
    assert sft["repro.cpu_capability"] == "AVX2" and sft["repro.threads"] == "2"
    assert sft["repro.threads_chosen_by"] == THREADS_ENV
    assert sft["repro.mkl_cbwr"] == "COMPATIBLE" and sft["repro.deterministic_algorithms"] == "True"
    assert sft["repro.cpu_model"] and sft["repro.cpu_vendor"] and sft["repro.packages_sha256"]


def test_provenance_names_the_lock_cpu_and_seed():
    tags = provenance(seed=7)
    assert tags["repro.seed"] == "7" and len(tags["repro.lock_sha256"]) == 16
    assert set(tags) >= {"repro.cpu_model", "repro.cpu_vendor", "repro.cpu_isa", "repro.threads", "repro.torch",
                         "repro.python"}


def test_the_thread_count_comes_from_the_environment_or_from_what_the_machine_can_give(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv(THREADS_ENV, "3")
    assert choose_threads() == (3, THREADS_ENV)
    monkeypatch.setenv(THREADS_ENV, "auto")
    threads, why = choose_threads()
    assert 1 <= threads <= min(2, usable_cpus()) and why.startswith("auto:")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # confined to one CPU: one thread
    assert choose_threads()[0] == 1
    monkeypatch.setenv(THREADS_ENV, "two")
    with pytest.raises(ValueError, match=THREADS_ENV):
        choose_threads()


def test_cgroup_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_quota(tmp_path) == 1.0
