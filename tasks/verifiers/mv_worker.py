"""math-verify worker processes: a zygote that imports math-verify once and forks workers.

Started by ``tasks.verifiers.mv_pool`` as ``python mv_worker.py CONTROL_FD`` (this file only
imports math-verify and the standard library). The zygote imports and warms math-verify, then
for every ``fork`` message on its control socket (``SOCK_SEQPACKET``) forks a worker and sends the
pool the worker's pid with one end of a new socket pair (``SCM_RIGHTS``). A worker answers length-prefixed JSON
requests one at a time:

* ``["gold", s]`` -> ``true`` when math-verify parses ``s`` to something other than a string;
* ``["eq", pred, gold]`` -> ``true`` / ``false`` (``null``: the gold does not parse).

Before each request a worker arms ``alarm(ALARM_S)`` with ``SIGALRM`` left at its default
action, so the kernel ends a worker stuck in C code (sympy big-integer arithmetic holds the
GIL, where no Python-level timeout can act) even if the pool is gone; the pool kills it sooner
(``mv_pool.TIMEOUT_S``). Everyone exits when the pool's end of its socket closes.
"""

import functools
import json
import logging
import os
import signal
import socket
import struct
import sys

ALARM_S = 4
_HDR = struct.Struct(">I")


def _recv(sock):
    head = sock.recv(_HDR.size, socket.MSG_WAITALL)
    if len(head) < _HDR.size:
        return None
    return json.loads(sock.recv(_HDR.unpack(head)[0], socket.MSG_WAITALL))


def _send(sock, obj):
    data = json.dumps(obj).encode()
    sock.sendall(_HDR.pack(len(data)) + data)


def _serve(sock):
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns that its own timeouts are off

    @functools.lru_cache(maxsize=16384)
    def parse_gold(s):
        parsed = parse(f"${s}$", parsing_timeout=None)
        return parsed if any(not isinstance(x, str) for x in parsed) else None

    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    while True:
        req = _recv(sock)
        if req is None:
            return
        signal.alarm(ALARM_S)
        try:
            gold = parse_gold(req[-1])
            if req[0] == "gold":
                out = gold is not None
            elif gold is None:
                out = None
            else:
                pred = parse(f"${req[1]}$", parsing_timeout=None)
                out = bool(pred) and bool(verify(gold, pred, timeout_seconds=None))
        except Exception:  # noqa: BLE001 - a crash in sympy is a non-match, never a pass
            out = None if req[0] == "eq" and gold is None else False
        signal.alarm(0)
        _send(sock, out)


def main():
    ctl = socket.socket(fileno=int(sys.argv[1]))  # SOCK_SEQPACKET: one message per command
    from math_verify import parse, verify

    verify(parse("$\\frac{1}{2}$"), parse("$0.5$"))  # warm the parser and sympy once, before forking
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    ctl.send(b"ready")
    while ctl.recv(16) == b"fork":
        mine, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            ctl.close()
            theirs.close()
            _serve(mine)
            os._exit(0)
        mine.close()
        socket.send_fds(ctl, [str(pid).encode()], [theirs.fileno()])
        theirs.close()


if __name__ == "__main__":
    main()
