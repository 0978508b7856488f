"""Answer forms around the fast LaTeX evaluator: degrees, percentages, bases, equations, matrices, unions.

``forms_equal(pred, gold)`` peels these off both answers and compares the parts with
``latex_fast.fast_equal``; like it, it answers only when the comparison is clear (``None``
otherwise, for math-verify). The rules follow math-verify's (tested against it):

* degrees: ``36^\\circ`` / ``36^{\\circ}`` / ``36`` compare as the number 36;
* percentages: compared as numbers when both carry ``%``; when one does, ``64%`` equals both
  ``64`` and ``0.64`` (as in math-verify);
* numbers in a base ``1011_2`` / ``1011_{2}``: equal iff the same value in the same base;
  never anything else;
* equations ``y = 2x + 3`` (or ``2x + 3 = y``): same one-letter side -> the right sides compare; one side an
  equation and the other not -> its right side against the other;
* ``pmatrix`` / ``bmatrix`` / ``vmatrix``: same shape and every entry equal (a different shape
  is unequal); against a tuple undecided; against anything else unequal;
* unions ``A \\cup B`` of constant intervals, each side sorted into strictly separated parts:
  equal iff the same number of parts, pairwise equal (one interval is such a union too);
  other unions are equal when their parts are equal in order (else undecided).
"""

from __future__ import annotations

import re
from itertools import pairwise

from tasks.verifiers.latex_fast import fast_equal, interval_ends, parse_latex

__all__ = ["forms_equal"]

_DEGREE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree")
_PERCENT = re.compile(r"\\?%")
_BASE = re.compile(r"^([0-9A-Za-z]+)_\{?(\d{1,2})\}?$")
_EQUATION = re.compile(r"^([A-Za-z])\s*=\s*([^=]+)$")
_EQUATION_REVERSED = re.compile(r"^([^=]+?)\s*=\s*([A-Za-z])$")
_MATRIX = re.compile(r"^\\begin\{([pbv]?matrix)\}(.*)\\end\{\1\}$", re.DOTALL)
_MAX_CHARS = 600


def _all_equal(pairs) -> bool | None:
    results = [fast_equal(p, g) for p, g in pairs]
    if False in results:
        return False
    return None if None in results else True


def _base_equal(p: re.Match | None, g: re.Match | None) -> bool | None:
    if not (p and g) or p[2] != g[2]:
        return None
    try:
        return int(p[1], int(g[2])) == int(g[1], int(g[2]))
    except ValueError:  # digits not valid in that base
        return None


def _cells(m: re.Match) -> list[list[str]]:
    return [[c.strip() for c in row.split("&")] for row in re.split(r"\\\\", m[2]) if row.strip()]


def _matrix_equal(p: re.Match | None, g: re.Match | None) -> bool | None:
    if not (p and g):
        return None
    a, b = _cells(p), _cells(g)
    if [len(r) for r in a] != [len(r) for r in b]:
        return False
    return _all_equal((x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def forms_equal(pred: str, gold: str) -> bool | None:
    """True/False when the comparison is clear (see the module docstring), else None."""
    p, g = pred.strip(), gold.strip()
    if len(p) > _MAX_CHARS or len(g) > _MAX_CHARS:
        return None
    if _DEGREE.search(p) or _DEGREE.search(g):
        p, g = _DEGREE.sub("", p).strip(), _DEGREE.sub("", g).strip()
    bp, bg = _BASE.match(p), _BASE.match(g)
    if bp or bg:  # a number in a base is only ever another number in that base
        return _base_equal(bp, bg) if bp and bg else False
    ep, eg = _equation(p), _equation(g)
    if ep and eg:
        return fast_equal(ep[1], eg[1]) if ep[0] == eg[0] else None
    if ep or eg:  # one side an equation: its right side against the other, in every form below
        p, g = ep[1] if ep else p, eg[1] if eg else g
    if "%" in p and "%" in g:
        p, g = _PERCENT.sub("", p).strip(), _PERCENT.sub("", g).strip()
    elif "%" in p or "%" in g:
        return _one_percent(p, g)
    mp, mg = _MATRIX.match(p), _MATRIX.match(g)
    if mp or mg:
        return _matrix_equal(mp, mg) if mp and mg else _matrix_vs(mp or mg, g if mp else p)
    if "\\cup" in p or "\\cup" in g:
        ps, gs = p.split("\\cup"), g.split("\\cup")
        union, single = (gs, ps) if len(ps) == 1 else (ps, gs)
        if len(single) == 1 and _separated(union) and _scalar(single[0]) is not None:
            return False
        return _union_equal(ps, gs)
    return fast_equal(p, g)


def _matrix_vs(m: re.Match, other: str) -> bool | None:
    """A matrix against a non-matrix: math-verify may read a column or row vector as a tuple, so
    against a tuple it is different when the entries differ (in number or value), else undecided;
    against anything else it is different."""
    inner = re.sub(r"^\\left\(|\\right\)$", "", other.strip())
    if not (inner.startswith("(") and inner.endswith(")")):
        return False
    inner = inner[1:-1]
    if any(c in inner for c in "()[]{}"):
        return None
    cells = [c for row in _cells(m) for c in row]
    parts = [x.strip() for x in inner.split(",")]
    if len(cells) != len(parts):
        return False
    return False if _all_equal(zip(cells, parts)) is False else None


def _scalar(s: str):
    parsed = parse_latex(s)
    return parsed if parsed is not None and parsed[0][0] != "box" else None


def _equation(s: str) -> tuple[str, str] | None:
    """(variable, value) of ``x = 5`` or ``5 = x``."""
    if m := _EQUATION.match(s):
        return m[1], m[2]
    if m := _EQUATION_REVERSED.match(s):
        return m[2], m[1]
    return None


def _one_percent(p: str, g: str) -> bool | None:
    with_pct = _PERCENT.sub("", p if "%" in p else g).strip()
    verdicts = [fast_equal(x, g) if "%" in p else fast_equal(p, x) for x in (with_pct, f"\\frac{{{with_pct}}}{{100}}")]
    if True in verdicts:
        return True
    return False if verdicts == [False, False] else None


def _separated(parts: list[str]) -> list[str] | None:
    """The parts sorted by left end when all are constant intervals with gaps between them."""
    ends = [interval_ends(x) for x in parts]
    if None in ends:
        return None
    order = sorted(range(len(parts)), key=lambda k: ends[k][0])
    if any(ends[a][1] >= ends[b][0] for a, b in pairwise(order)):
        return None
    return [parts[k] for k in order]


def _union_equal(ps: list[str], gs: list[str]) -> bool | None:
    sp, sg = _separated(ps), _separated(gs)
    if sp is not None and sg is not None:
        return _all_equal(zip(sp, sg)) if len(sp) == len(sg) else False
    return (_all_equal(zip(ps, gs)) or None) if len(ps) == len(gs) else None
