"""Plain-data wire format between the trusted side and the sandboxed processes. Stdlib only.

Values cross a process boundary as tagged JSON built only from exact builtin types (``None``,
``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``, ``list``, ``tuple``, ``set``,
``frozenset``, ``dict``): no user ``__eq__``/``__repr__``/``__hash__`` ever runs while encoding
(exact-type dispatch, ``int.__repr__`` etc.) and decoding builds fresh builtins, so whatever a
solution returns, the side that compares sees only plain data. Sizes and depth are bounded.

Also imported by file path inside the sandbox (``child.py``), so it must stay stdlib-only.
"""

import json
import os
import struct

HDR = struct.Struct(">I")
MAX_DEPTH = 40
MAX_ITEMS = 20000
MAX_INT_DIGITS = 4300  # CPython's default int <-> str limit
_TAGS = {"l": list, "t": tuple, "S": set, "F": frozenset}
_CONTAINERS = {list: "l", tuple: "t", set: "S", frozenset: "F"}


class Unencodable(TypeError):
    """The value is not plain builtin data (or is too large to send)."""


def encode(v, depth=0, budget=None, other=None):
    """Tagged JSON-ready form of ``v`` (exact builtin types only), else ``Unencodable``.

    ``other(v)`` may give a tagged form for a value of any other type (or raise ``Unencodable``)."""
    if budget is None:
        budget = [MAX_ITEMS]
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        raise Unencodable("value too large")
    t = type(v)
    if v is None:
        return ["n"]
    if t is bool:
        return ["b", int(v)]
    if t is int:
        try:
            if v.bit_length() > MAX_INT_DIGITS * 4:
                raise ValueError
            return ["i", int.__repr__(v)]
        except ValueError:
            raise Unencodable("int too large") from None
    if t is float:
        return ["f", float.__repr__(v)]
    if t is complex:
        return ["c", float.__repr__(v.real), float.__repr__(v.imag)]
    if t is str:
        return ["s", str.__str__(v)]
    if t is bytes:
        return ["y", bytes.hex(v)]
    if t in _CONTAINERS:
        return [_CONTAINERS[t], [encode(x, depth + 1, budget, other) for x in t.__iter__(v)]]
    if t is dict:
        return ["d", [[encode(k, depth + 1, budget, other), encode(x, depth + 1, budget, other)]
                      for k, x in dict.items(v)]]
    if other is not None:
        return other(v)
    raise Unencodable("not a plain builtin value: " + t.__name__)


def decode(v, depth=0, other=None):
    """The value of a tagged form made by ``encode`` (``ValueError`` on anything else).

    ``other(v)`` decodes a tag this module does not know (else ``ValueError``)."""
    if depth > MAX_DEPTH + 1 or not isinstance(v, list) or not v or not isinstance(v[0], str):
        raise ValueError("bad value")
    tag = v[0]
    if tag == "n":
        return None
    if tag == "b":
        return bool(v[1])
    if tag == "i":
        if not isinstance(v[1], str) or len(v[1]) > MAX_INT_DIGITS + 1:
            raise ValueError("bad int")
        return int(v[1])
    if tag == "f":
        return float(v[1])
    if tag == "c":
        return complex(float(v[1]), float(v[2]))
    if tag == "s":
        if not isinstance(v[1], str):
            raise ValueError("bad str")
        return v[1]
    if tag == "y":
        return bytes.fromhex(v[1])
    if tag in _TAGS:
        return _TAGS[tag](decode(x, depth + 1, other) for x in v[1])
    if tag == "d":
        return {decode(k, depth + 1, other): decode(x, depth + 1, other) for k, x in v[1]}
    if other is not None:
        return other(v)
    raise ValueError(f"bad value tag {tag!r}")


def send_frame(fd, obj):
    """Write one length-prefixed JSON frame to ``fd``."""
    data = json.dumps(obj).encode()
    data = HDR.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd, n):
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise EOFError("channel closed")
        out += chunk
    return bytes(out)


def recv_frame(fd, limit):
    """Read one frame from ``fd`` (``EOFError`` when closed, ``ValueError`` when over ``limit`` bytes)."""
    head = os.read(fd, HDR.size)
    if not head:
        raise EOFError("channel closed")
    if len(head) < HDR.size:
        head += _read_exact(fd, HDR.size - len(head))
    n = HDR.unpack(head)[0]
    if n > limit:
        raise ValueError("frame too large")
    return json.loads(_read_exact(fd, n))
