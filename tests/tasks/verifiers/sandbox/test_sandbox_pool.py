"""The pool: fresh uid and nothing surviving per run, minimal env, retries, fail closed."""

import json
import os
import threading
import time

import pytest

from tasks.verifiers.sandbox import (
    LEVELS,
    IsolationUnavailable,
    RunLimits,
    SandboxError,
    SandboxPool,
    UidRange,
    isolation_problem,
)
from tasks.verifiers.sandbox.isolation import MIN_ENV
from tests.conftest import descendants

JOB = {"mode": "io", "code": "print(7)"}
LIMITS = RunLimits(timeout=3.0, audit=False)


@pytest.fixture(scope="module")
def pool():
    p = SandboxPool(2, "bwrap")
    yield p
    p.close()


POISON = """
import builtins, json, os, threading, time
open('poison.txt', 'w').write('left behind')
for d in ('/tmp', '..', '/dev/shm', '/var/tmp', os.path.dirname(os.getcwd())):
    try:
        open(os.path.join(d, 'poison.txt'), 'w').write('x')
    except OSError:
        pass
os.environ['POISON'] = '1'
json.dumps = lambda *a, **k: 'POISONED'
builtins.len = lambda x: 42
threading.Thread(target=time.sleep, args=(60,)).start()  # a thread that outlives the code
print(os.getuid(), flush=True)
"""
LOOK = """
import json, os
seen = {"cwd": os.listdir('.'), "env": sorted(os.environ), "json": json.dumps([1]), "len": len([1, 2]),
        "tmp": os.listdir('/tmp'), "uid": os.getuid()}
try:
    seen["runs"] = os.listdir(os.path.dirname(os.getcwd()))
except OSError as e:
    seen["runs"] = type(e).__name__
print(json.dumps(seen))
"""


def test_one_run_cannot_poison_the_next(pool):
    """Workers are pre-started, but every run is a fresh fork with a fresh uid and directory."""
    pool.warm()
    poisoned = pool.run({"mode": "io", "code": POISON}, RunLimits(timeout=1.0, audit=False))
    assert poisoned["status"] == "ok"  # the run ends with its code: its threads die with it
    looks = [json.loads(pool.run({"mode": "io", "code": LOOK}, LIMITS)["stdout"]) for _ in range(4)]
    uids = {int(poisoned["stdout"])} | {look["uid"] for look in looks}
    assert len(uids) == 5  # never the same uid twice
    for look in looks:  # both workers, twice each: nothing of the poisoning run is there
        assert look["cwd"] == [] and look["json"] == "[1]" and look["len"] == 2
        assert look["env"] == ["HOME", "LANG", "PATH", "TMPDIR"]
        assert "poison.txt" not in look["tmp"] and look["runs"] == "PermissionError"


@pytest.mark.parametrize("level", LEVELS)
def test_workers_get_a_minimal_environment_whatever_the_callers(level, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_for_the_sandbox")
    p = SandboxPool(2, level)
    try:
        assert p.run(JOB, LIMITS)["stdout"] == "7\n"
        procs = [pid for w in p._all if w.proc for pid in [w.proc.pid, *descendants(w.proc.pid)]]
        envs = []
        for pid in procs:
            with open(f"/proc/{pid}/environ", "rb") as f:
                envs.append(dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv))
        assert envs and all(b"HF_TOKEN" not in env for env in envs)
        assert {k.decode() for k in envs[-1]} <= {*MIN_ENV, "PWD"}  # bwrap adds PWD=/ for --chdir
    finally:
        p.close()


def test_a_dead_worker_is_replaced_and_the_run_retried(pool):
    pool.warm()
    first = {w.proc.pid for w in pool._all}
    out = []
    t = threading.Thread(target=lambda: out.append(pool.run({"mode": "io", "code": "import time\ntime.sleep(1)\nprint(1)"},
                                                            LIMITS)))
    t.start()
    time.sleep(0.4)
    for w in pool._all:  # kill whichever worker runs it, from outside
        os.kill(w.proc.pid, 9)
    t.join(30)
    assert out and out[0]["status"] == "ok" and out[0]["stdout"] == "1\n"
    assert [r["stdout"] for r in pool.run_many([JOB, JOB], LIMITS)] == ["7\n", "7\n"]  # the idle one too
    assert not first & {w.proc.pid for w in pool._all if w.proc}


@pytest.fixture
def broken_bwrap(tmp_path, monkeypatch):
    """A bubblewrap that cannot create namespaces (as in a locked-down container)."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")


def test_a_sandbox_that_cannot_start_raises_instead_of_scoring_zero(broken_bwrap):
    p = SandboxPool(2, "bwrap")
    try:
        with pytest.raises(SandboxError, match="failed 3 times.*No permissions to create new namespace.*not of the code"):
            p.run(JOB, LIMITS)
    finally:
        p.close()
    assert "No permissions" in isolation_problem("bwrap", UidRange(count=1 << 20))  # what validate reports


def test_no_bubblewrap_means_no_sandbox_with_an_install_hint(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    for make in (lambda: SandboxPool(2, "bwrap"), lambda: SandboxPool(2, "unshare")):
        with pytest.raises(IsolationUnavailable, match="not installed"):
            make()
    assert "apt-get install -y bubblewrap" in isolation_problem("bwrap")


def test_workers_survive_the_short_lived_thread_that_started_them(pool):
    """PR_SET_PDEATHSIG fires when the starting *thread* exits; workers must not die with it."""
    for w in pool._all:
        w.stop()
    t = threading.Thread(target=pool.run, args=(JOB, LIMITS))
    t.start()
    t.join()
    pids = {w.proc.pid for w in pool._all if w.proc}
    time.sleep(0.3)
    assert all(w.proc.poll() is None for w in pool._all if w.proc)
    assert pool.run(JOB, LIMITS)["stdout"] == "7\n"
    assert pids <= {w.proc.pid for w in pool._all if w.proc}  # not restarted
