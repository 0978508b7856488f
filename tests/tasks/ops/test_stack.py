"""`rlvr stack down` leaves no process behind, and `up` refuses clearly before starting anything.
(The whole stack, started for real and stopped with Ctrl-C, is tests/e2e/test_browser.py.)"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from tasks.ops.stack import Stack, StackError, stack_processes
from tasks.recipe import Recipe

# A "worker" that starts a grandchild in a session of its own, as Prefect's process worker
# starts each flow run, and a grandchild that ignores SIGTERM, as a stuck flow run might.
WORKER = """
import signal, subprocess, sys, time
child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
subprocess.Popen([sys.executable, "-c", child], start_new_session=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's exit status waits for whoever reaps orphans here)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_down_stops_every_process_of_the_stack_including_detached_flow_runs(tmp_path, capsys):
    from tasks.ops.cli import main

    stack = Stack(tmp_path / "state")
    stack.logs.mkdir(parents=True)
    stack._spawn("prefect-server", [sys.executable, "-c", "import time; time.sleep(300)"])
    stack._spawn("worker", [sys.executable, "-c", WORKER])
    stack._write_state("http://127.0.0.1:1", "sqlite:///x.db")
    deadline = time.monotonic() + 30
    while len(pids := stack_processes(stack.id)) < 3:
        assert time.monotonic() < deadline, pids
        time.sleep(0.1)

    stopped = Stack(tmp_path / "state").down(grace_s=2)  # a new Stack, as `rlvr stack down` in another shell
    assert sorted(stopped) == sorted(pids)
    assert stack_processes(stack.id) == []
    ours = [p.pid for p in stack.procs.values()]
    assert not any(_alive(p) for p in pids if p not in ours)  # the detached, SIGTERM-deaf grandchild too
    assert not (tmp_path / "state" / "stack.json").exists()
    assert main(["stack", "down", "--state-dir", str(tmp_path / "state")]) == 0
    assert "no stack running" in capsys.readouterr().out
    for proc in stack.procs.values():
        proc.wait(5)


def test_up_refuses_a_busy_port_before_starting_anything(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = Stack(tmp_path / "state", prefect_port=port)
        recipe = Recipe.model_validate({"tracking": {"runs_dir": str(tmp_path / "runs")}})
        with pytest.raises(StackError, match=rf"port\(s\) \[{port}\] .* in use"):
            stack.up(recipe)
    assert stack.procs == {} and not (tmp_path / "state" / "stack.json").exists()
