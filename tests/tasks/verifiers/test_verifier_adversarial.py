"""Adversarial completions: each must score 0 (or the minimum) and leave the machine as it was
(no stray processes, no new files outside the sandbox)."""

import os
import time
import uuid
from pathlib import Path

import pytest

from tasks.verifiers import build_reward
from tasks.verifiers.sandbox.pool import ISOLATION_LEVELS, RunLimits, SandboxPool, _probe

MARK = f"pwned_{uuid.uuid4().hex[:8]}"
SECRET = 987654321
TESTS = [
    {"type": "assert", "code": f"assert f(2) == {SECRET}"},
    {"type": "assert", "code": f"expected = {SECRET}\nassert f(3) == expected"},
    {"type": "io", "input": "2\n", "output": f"SECRET-{SECRET}\n"},
]
WATCHED = [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path.home(), Path.cwd(), Path(__file__).parent]


def _block(code):
    return f"<think>hack</think>\n```python\n{code}\n```"


CODE_ATTACKS = {
    "exit0_before_tests": "import sys\nsys.exit(0)",
    "os_exit0": "import os\nos._exit(0)",
    "eq_override": "class A:\n    def __eq__(self, o): return True\n    __hash__ = object.__hash__\n"
                   "def f(x): return A()\nprint(A())",
    "int_subclass_eq": "class I(int):\n    def __eq__(self, o): return True\ndef f(x): return I(1)",
    "harness_override": "import builtins, json\nbuiltins.AssertionError = Exception\njson.dumps = lambda *a, **k: '\"done\"'\n"
                        "def f(x): return 0",
    "forge_results_fd": "import os\nos.write(3, b'[0, 0, [\"b\", 1]]\\n[1, 0, [\"b\", 1]]\\n\"done\"\\n')\nos._exit(0)",
    "prints_passed": "print('PASSED')\nprint('All tests passed!')\ndef f(x): return 'PASSED'",
    "reads_tests": (
        "import os, sys, gc\nfound = []\n"
        "for root in ['.', '..', '/tmp', os.environ.get('HOME', '.')]:\n"
        "    try:\n        for n in os.listdir(root):\n            try: found.append(open(os.path.join(root, n)).read())\n"
        "            except Exception: pass\n    except Exception: pass\n"
        "try:\n    found += [repr(o) for o in gc.get_objects() if isinstance(o, (str, dict))]\nexcept Exception: pass\n"
        "fr = sys._getframe()\nwhile fr:\n    found.append(repr(fr.f_locals)); fr = fr.f_back\n"
        "for p in ('/proc/%d/cmdline' % os.getppid(), '/proc/1/environ'):\n"
        "    try: found.append(open(p).read())\n    except Exception: pass\n"
        "import re\nnums = [int(m) for t in found for m in re.findall(r'\\d{9}', t)]\n"
        "def f(x): return max(nums) if nums else -1\n"
        "secret = [m for t in found for m in re.findall(r'SECRET-\\d+', t)]\nprint(secret[0] if secret else 'nothing')"),
    "infinite_loop": "while True:\n    pass",
    "sleep_forever": "import time\ntime.sleep(10**6)",
    "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n        pass",
    "subprocess_bomb": "import subprocess\nwhile True:\n    subprocess.Popen(['sleep', '1000'])",
    "allocate": "x = []\nwhile True:\n    x.append(bytearray(10**7))",
    "write_outside": (
        "import os\n"
        f"for p in ['/tmp/{MARK}', '../{MARK}', os.path.expanduser('~/{MARK}'), '/var/tmp/{MARK}', '/dev/shm/{MARK}',"
        f" '{Path.cwd()}/{MARK}', '{Path(__file__).parent}/{MARK}']:\n"
        "    try: open(p, 'w').write('x')\n    except Exception: pass\n"
        "try:\n    os.symlink('/tmp', 'escape'); open('escape/" + MARK + "', 'w').write('x')\nexcept Exception: pass\n"
        "def f(x): return 0"),
    "socket": "import socket\ns = socket.create_connection(('1.1.1.1', 80), timeout=2)\ndef f(x): return 0",
    "fill_output": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
    "fill_disk": "with open('big', 'wb') as fh:\n    while True:\n        fh.write(b'x' * 2**20)",
    "many_files": "fs = [open(f'f{i}', 'w') for i in range(10**6)]",
}


def _descendants():
    """PIDs whose ancestry reaches this test process (excluding threads)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parent[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except OSError:
                pass
    me, out = os.getpid(), set()
    for pid in parent:
        p, seen = pid, 0
        while p in parent and p > 1 and seen < 64:
            p, seen = parent[p], seen + 1
            if p == me:
                out.add(pid)
                break
    return out


def _sandbox_uid_processes():
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    uid = int(next(line for line in f if line.startswith("Uid:")).split()[1])
            except (OSError, StopIteration, ValueError):
                continue
            if uid >= 200000:
                out.append(int(entry))
    return out


def _snapshot():
    snap = {}
    for d in WATCHED:
        try:
            snap[d] = {p.name for p in d.iterdir()}
        except OSError:
            snap[d] = set()
    return snap


def _marked_files():
    return [str(d / MARK) for d in WATCHED if (d / MARK).exists()] + [
        str(p) for p in Path("/tmp").glob(f"rlvr-sandbox-*/{MARK}")]


@pytest.fixture(scope="module", params=[lvl for lvl in ISOLATION_LEVELS])
def code_reward(request):
    if not _probe(request.param):
        pytest.skip(f"{request.param} unavailable")
    reward = build_reward("code_reward", {"timeout_s": 2.0, "workers": 2, "isolation": request.param,
                                          "memory_mb": 256, "max_output_bytes": 1 << 16})
    assert reward(completions=[_block(f"def f(x): return {SECRET}\nprint('SECRET-{SECRET}')")], tests=[TESTS]) == [1.0]
    return reward


@pytest.mark.parametrize("attack", sorted(CODE_ATTACKS))
def test_code_attack_scores_zero_and_leaves_no_trace(code_reward, attack):
    before_procs, before_files = _descendants(), _snapshot()
    t = time.perf_counter()
    out = code_reward(completions=[_block(CODE_ATTACKS[attack])], tests=[TESTS])
    elapsed = time.perf_counter() - t
    assert out == [0.0], attack
    assert elapsed < 3 * (2.0 + 2.0), f"{attack} took {elapsed:.1f}s"
    time.sleep(0.05)
    assert _descendants() <= before_procs, f"{attack} left processes behind"
    assert _sandbox_uid_processes() == []
    assert _marked_files() == []
    after = _snapshot()
    for d, names in after.items():
        new = {n for n in names - before_files[d] if MARK in n or n in ("big", "escape")}
        assert not new, f"{attack} created {new} in {d}"


@pytest.mark.parametrize("level", ISOLATION_LEVELS)
def test_limits_hold_without_the_audit_hook(level):
    """The OS/rlimit layer alone stops fork bombs and memory hogs and cleans up after them."""
    if not _probe(level):
        pytest.skip(f"{level} unavailable")
    if os.geteuid() != 0 and level == "rlimits":
        pytest.skip("process-count limit needs the uid drop (root) when there are no namespaces")
    pool = SandboxPool(1, level)
    try:
        pool.warm()
        before = _descendants()
        limits = {**RunLimits(timeout=2.0, memory_mb=256).as_job(), "audit": False}
        for code in (CODE_ATTACKS["fork_bomb"], "import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n"
                     "        os.setsid(); time.sleep(1000)\nprint('spawned')", CODE_ATTACKS["allocate"]):
            reply = pool.run({"mode": "io", "code": code, "stdin": "", **limits})
            assert reply["status"] in ("timeout", "error", "ok", "signal")
            time.sleep(0.05)
            assert _descendants() <= before
            assert _sandbox_uid_processes() == []
    finally:
        pool.close()


PROMPT = "Compute 12+7-5. Show your derivation step by step. (For reference: 14)"
MATH_ATTACKS = {
    "several_boxed": "<think>hmm</think>\\boxed{13} \\boxed{14} \\boxed{15}",
    "several_answer_tags": "<think>hmm</think><answer>13</answer><answer>14</answer>",
    "boxed_set": "<think>hmm</think><answer>\\boxed{\\{13, 14, 15\\}}</answer>",
    "boxed_list": "<think>hmm</think>\\boxed{13, 14, 15}",
    "boxed_or": "<think>hmm</think>\\boxed{13 \\text{ or } 14}",
    "several_hash": "12+7=19\n#### 13\n#### 14",
    "answer_in_reasoning_only": "<think>12+7=19, 19-5=\\boxed{14}</think>",
    "answer_tag_in_reasoning_only": "<think>so <answer>14</answer></think><answer></answer>",
    "unclosed_reasoning": "<think>12+7-5 = \\boxed{14}",
    "copied_from_prompt": "<answer>14</answer>",
    "prompt_echo_as_reasoning": f"<think>{PROMPT}</think><answer>14</answer>",
    "empty_box": "<think>x</think>\\boxed{}",
    "exponent_tower": "<think>x</think>\\boxed{14^{14^{14^{14}}}}",
}


@pytest.mark.parametrize("attack", sorted(MATH_ATTACKS))
def test_math_attack_scores_zero(attack):
    reward = build_reward("math_answer_reward", {"min_derivation_chars": 20})
    t = time.perf_counter()
    assert reward(prompts=[PROMPT], completions=[MATH_ATTACKS[attack]], answer=["14"]) == [0.0]
    assert time.perf_counter() - t < 2.0
    honest = "<think>12+7=19, then 19-5=14, so it is 14</think><answer>14</answer>"
    assert reward(prompts=[PROMPT], completions=[honest], answer=["14"]) == [1.0]


@pytest.mark.parametrize("attack", [
    "<answer>__import__('os').system('touch /tmp/x')</answer>", "<answer>(3+5)*2 or 1</answer>",
    "<answer>2**2**100</answer>", "<answer>(3+5)*2</answer><answer>16</answer>", "<answer>16</answer>",
    "<answer>3*5+2-1+0</answer>", "<answer>" + "1+" * 500 + "1</answer>",
])
def test_equation_attack_scores_zero(attack):
    reward = build_reward("equation_reward")
    assert reward(completions=[attack], numbers=[[3, 5, 2]], target=[16]) == [0.0]


@pytest.mark.parametrize("attack", [
    "<think>a</think><answer>1</answer><think>b</think><answer>2</answer>",
    "<think></think><answer>1</answer>", "<answer>1</answer>", "<think>a</think><answer>1</answer> trailing",
])
def test_format_attack_scores_zero(attack):
    assert build_reward("format_reward")(completions=[attack]) == [0.0]
