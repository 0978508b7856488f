"""Every isolation level works wherever the project and its virtualenv live, /tmp included.

A checkout and a virtualenv in a ``mktemp -d`` directory (CI runners, scratch clones) used to
break the ``unshare`` level: its worker mounts a private /tmp and could then not find the
virtualenv it had to expose. Here the project's ``tasks`` package and a virtualenv (the
project's packages reached through a ``.pth`` file, no install) are put under /tmp, and a fresh
interpreter from there runs an io, a split and a proxied test under each level.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tasks.verifiers.sandbox import LEVELS
from tasks.verifiers.sandbox.isolation import prerequisite_problem

ROOT = Path(__file__).resolve().parents[4]
SCRIPT = """
import sys
from tasks.verifiers.code import run_tests
tests = [{"type": "io", "input": "2\\n", "output": "3\\n"}, {"type": "assert", "code": "assert f(2) == 3"},
         {"type": "assert", "code": "assert all(f(i) == i + 1 for i in range(3))"}]
code = "def f(x):\\n    return x + 1\\nif __name__ == '__main__':\\n    print(f(int(input())))"
out = run_tests(code, tests, isolation=sys.argv[1], workers=2)
print(sys.prefix, [(r["passed"], r["status"]) for r in out])
"""


@pytest.fixture(scope="module")
def scratch():
    where = Path(tempfile.mkdtemp(dir="/tmp", prefix="rlvr-anywhere-"))
    os.chmod(where, 0o700)  # as mktemp -d makes it
    shutil.copytree(ROOT / "tasks", where / "repo" / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(where / "venv")], check=True)
    site = next((where / "venv" / "lib").glob("python*/site-packages"))
    packages = [p for p in sys.path if "site-packages" in p and os.path.isdir(p) and Path(p).resolve() != ROOT]
    (site / "project.pth").write_text("\n".join(packages) + "\n")
    yield where
    shutil.rmtree(where, ignore_errors=True)


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_runs_code_from_a_checkout_and_virtualenv_under_tmp(scratch, level):
    if (why := prerequisite_problem(level)) is not None:
        pytest.skip(why)
    proc = subprocess.run([str(scratch / "venv" / "bin" / "python"), "-c", SCRIPT, level], cwd=scratch / "repo",
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    prefix, results = proc.stdout.strip().split(" ", 1)
    assert prefix.startswith(str(scratch)) and results == str([(True, "ok")] * 3)
