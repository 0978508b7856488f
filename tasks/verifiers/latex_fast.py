"""Fast, exact-first comparison of common LaTeX answers without math-verify's ANTLR parser.

math-verify parses LaTeX with an ANTLR grammar (~10-20 ms per new string on one core), too slow
for thousands of completions per second. This module handles the common subset of answers
itself and says "undecided" (``None``) for everything else, which then goes to math-verify.

Subset: integers and decimals, ``+ - * /``, ``\\cdot \\times \\div``, implicit multiplication,
``^`` with integer or braced exponents, ``\\frac \\dfrac \\tfrac`` (also ``\\frac12``),
``\\sqrt`` and ``\\sqrt[n]``, ``\\pi``, ``\\sin \\cos \\tan \\ln``, single-letter variables
(not ``e``; ``i`` only where it is linear, as the imaginary unit of ``a + bi``), ``\\infty`` as a whole element, bracketed containers: tuples
``(a, b)``, intervals ``[a, b)`` etc. and sets ``\\{a, b\\}``, and bare lists ``a, b``.

Values are exact ``Fraction``s wherever possible; irrational parts become floats. Expressions
with variables are compared at secret random rational points drawn per comparison (``_points``:
more of them than the degree of the identity, independent per variable, the first negative so
``\\sqrt{y^2}`` stays apart from ``y``), so no answer can be tuned to agree with the gold at
known points. Containers: tuples compare
element-wise, sets by mutual coverage (order and duplicates ignored), intervals by endpoints and
closure (closure at an infinite end is ignored), bare lists like sets (as math-verify does); a
number never equals a container of two or more elements; answers over different variables are
different when their values differ at the random points (else left to math-verify); other mixes
are left to math-verify.
Decision rule for two scalars: both exact -> equal iff exactly equal; otherwise equal when the
relative difference is < 1e-12 at every point, different when it is > 1e-6 at some point
(> 1e-5 when only one side is written with a decimal point), else undecided. Exponents and
integer sizes are bounded, so no input can make this slow.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

from tasks.verifiers.latex_parse import Unsupported, parse_latex

__all__ = ["fast_equal", "interval_ends", "parse_latex"]

_RNG = random.SystemRandom()
MAX_DEGREE = 24  # a rational identity of higher degree is left to math-verify
MIN_POINTS = 4
_MAX_BITS = 4096


def _check(x):
    if isinstance(x, Fraction):
        if x.numerator.bit_length() > _MAX_BITS or x.denominator.bit_length() > _MAX_BITS:
            raise Unsupported
        return x
    if isinstance(x, complex) or math.isnan(x) or math.isinf(x):
        raise Unsupported
    return x


def _exact_root(x: Fraction, n: int):
    if x < 0 and n % 2 == 1:
        r = _exact_root(-x, n)
        return -r
    if x < 0:
        raise Unsupported
    num, den = round(x.numerator ** (1 / n)), round(x.denominator ** (1 / n))
    if num**n == x.numerator and den**n == x.denominator:
        return Fraction(num, den)
    return float(x) ** (1 / n)


def _eval(node, env):  # noqa: C901 - a flat dispatch is clearest here
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "var":
        return env[node[1]]
    if kind == "pi":
        return math.pi
    if kind == "neg":
        return -_eval(node[1], env)
    a = _eval(node[1], env) if kind != "fn" else None
    if kind == "add":
        return _check(a + _eval(node[2], env))
    if kind == "mul":
        return _check(a * _eval(node[2], env))
    if kind == "div":
        b = _eval(node[2], env)
        if b == 0:
            raise Unsupported
        return _check(a / b if isinstance(a, Fraction) and isinstance(b, Fraction) else float(a) / float(b))
    if kind == "pow":
        b = _eval(node[2], env)
        if isinstance(a, Fraction) and isinstance(b, Fraction) and b.denominator == 1:
            if abs(b) > 1000 or (a == 0 and b < 0) or abs(a.numerator).bit_length() * abs(b) > _MAX_BITS \
                    or a.denominator.bit_length() * abs(b) > _MAX_BITS:
                raise Unsupported
            return a**int(b)
        if float(a) <= 0 or abs(float(b)) > 1000:
            raise Unsupported
        return _check(float(a) ** float(b))
    if kind == "root":
        n = _eval(node[2], env)
        if not (isinstance(n, Fraction) and n.denominator == 1 and 2 <= n <= 100):
            raise Unsupported
        return _check(_exact_root(a, int(n)) if isinstance(a, Fraction) else _float_root(a, int(n)))
    if kind == "fn":
        x = float(_eval(node[2], env))
        if node[1] == "ln" and x <= 0:
            raise Unsupported
        return _check(getattr(math, {"ln": "log"}.get(node[1], node[1]))(x))
    raise Unsupported


def _float_root(a: float, n: int) -> float:
    if a < 0:
        if n % 2 == 0:
            raise Unsupported
        return -((-a) ** (1 / n))
    return a ** (1 / n)


def _degree(node) -> tuple[int, int] | None:
    """(numerator, denominator) degree bound of ``node`` as a rational function of its variables,
    or None when it is not one (roots, functions, variable exponents)."""
    kind = node[0]
    if kind in ("num", "pi"):
        return 0, 0
    if kind == "var":
        return 1, 0
    if kind == "neg":
        return _degree(node[1])
    if kind not in ("add", "mul", "div", "pow"):
        return None
    a = _degree(node[1])
    if a is None:
        return None
    if kind == "pow":
        e = node[2]
        if e[0] != "num" or e[1].denominator != 1 or abs(e[1]) > MAX_DEGREE:
            return None if a != (0, 0) or _degree(e) != (0, 0) else (0, 0)
        n = int(e[1])
        return (a[0] * n, a[1] * n) if n >= 0 else (a[1] * -n, a[0] * -n)
    b = _degree(node[2])
    if b is None:
        return None
    if kind == "add":
        return max(a[0] + b[1], b[0] + a[1]), a[1] + b[1]
    if kind == "mul":
        return a[0] + b[0], a[1] + b[1]
    return a[0] + b[1], a[1] + b[0]


def _points(a, b, variables) -> list[dict]:
    """Secret random evaluation points (fresh per comparison): more than the degree of the
    identity a = b when both are rational functions (so two different polynomials in one
    variable can never agree at all of them), ``MIN_POINTS`` otherwise; each variable takes
    an independent value, negative at the first point and positive at the second."""
    if not variables:
        return [{}]
    da, db = _degree(a), _degree(b)
    n = MIN_POINTS
    if da is not None and db is not None:
        d = max(da[0] + db[1], db[0] + da[1])
        if d > MAX_DEGREE:
            raise Unsupported
        n = max(n, d + 1)
    out = []
    for k in range(n):
        env = {}
        for v in sorted(variables):
            sign = -1 if k == 0 else 1 if k == 1 else _RNG.choice((-1, 1))
            env[v] = Fraction(sign * _RNG.randrange(257, 4099), _RNG.randrange(17, 257))
        out.append(env)
    return out


def _values(node, points) -> list:
    return [_eval(node, env) for env in points]


def _scalar_equal(a, b, decimals_differ: bool, variables) -> bool | None:
    if a[0] == "inf" or b[0] == "inf":
        return a == b
    if a[0] == "box" or b[0] == "box":
        return None
    points = _points(a, b, variables)
    va, vb = _values(a, points), _values(b, points)
    if all(isinstance(x, Fraction) for x in va + vb):
        if va == vb:
            return True
        if not decimals_differ:
            return False
    far = 1e-5 if decimals_differ else 1e-6
    undecided = False
    for x, y in zip(va, vb):
        x, y = float(x), float(y)
        scale = max(1.0, abs(x), abs(y))
        if scale > 1e15:
            return None
        diff = abs(x - y) / scale
        if diff > far:
            return False
        if diff >= 1e-12:
            undecided = True
    return None if undecided else True


_INTERVALS = {"()", "[]", "[)", "(]"}


def _point(node, variables) -> float | None:
    if node[0] == "inf":
        return math.inf * node[1]
    if variables or node[0] == "box":
        return None
    return float(_eval(node, {}))


def _covers(xs, ys, decimals_differ, variables) -> bool | None:
    for x in xs:
        found = False
        for y in ys:
            r = _equal(x, y, decimals_differ, variables)
            if r is None:
                return None
            if r:
                found = True
                break
        if not found:
            return False
    return True


def _equal(a, b, decimals_differ: bool, variables) -> bool | None:
    if a[0] != "box" and b[0] != "box":
        return _scalar_equal(a, b, decimals_differ, variables)
    if a[0] != "box" or b[0] != "box":  # a number is never a pair, a triple, a list or an interval
        box = a if a[0] == "box" else b
        return False if len(box[2]) >= 2 else None
    (_, ka, xs), (_, kb, ys) = a, b
    if ka == kb and ka in ("set", "bare"):  # duplicates allowed: {1, 2, 2} == {1, 2}; "1, 2" == "2, 1"
        first = _covers(xs, ys, decimals_differ, variables)
        if first is not True:
            return first
        return _covers(ys, xs, decimals_differ, variables)
    if ka != kb:
        if not (ka in _INTERVALS and kb in _INTERVALS and len(xs) == len(ys) == 2):
            # math-verify equates (1, 2, 3) with [1, 2, 3]; but containers whose elements differ
            # even as sets are different whatever the brackets mean
            if _covers(xs, ys, decimals_differ, variables) is False or _covers(ys, xs, decimals_differ, variables) is False:
                return False
            return None
        ends = [_equal(x, y, decimals_differ, variables) for x, y in zip(xs, ys)]
        if False in ends:
            return False
        lo, hi = _point(xs[0], variables), _point(xs[1], variables)
        if None in ends or lo is None or hi is None or not lo < hi:
            return None
        # same non-empty interval endpoints: equal iff the closure differs only at infinite ends
        left_differs, right_differs = ka[0] != kb[0], ka[1] != kb[1]
        return not ((left_differs and math.isfinite(lo)) or (right_differs and math.isfinite(hi)))
    if len(xs) != len(ys):  # a pair is never a triple
        return False if ka in _INTERVALS else None
    results = [_equal(x, y, decimals_differ, variables) for x, y in zip(xs, ys)]
    if False in results:
        return False
    return None if None in results else True


def fast_equal(pred: str, gold: str) -> bool | None:
    """True/False when both answers are in the fast subset and the comparison is clear, else None."""
    g = parse_latex(gold)
    if g is None:
        return None
    p = parse_latex(pred)
    if p is None:
        return None
    (gn, gv, gdec), (pn, pv, pdec) = g, p
    try:
        verdict = _equal(pn, gn, gdec != pdec, gv | pv)
    except (Unsupported, OverflowError, ValueError, ZeroDivisionError, TypeError, RecursionError):
        return None
    # different variables (``x^2+1`` against ``5``): values that differ at some point prove the
    # answers different; agreeing everywhere (``x - x + 5``) is left to math-verify
    return verdict if gv == pv or verdict is False else None


def interval_ends(s: str) -> tuple[float, float] | None:
    """``(lo, hi)`` of a constant interval ``[a, b)`` etc. with ``lo < hi`` (infinite ends allowed), else None."""
    parsed = parse_latex(s)
    if parsed is None or parsed[1]:
        return None
    node = parsed[0]
    if node[0] != "box" or node[1] not in _INTERVALS or len(node[2]) != 2:
        return None
    try:
        lo, hi = _point(node[2][0], frozenset()), _point(node[2][1], frozenset())
    except (Unsupported, OverflowError, ValueError, ZeroDivisionError, TypeError, RecursionError):
        return None
    return (lo, hi) if lo is not None and hi is not None and lo < hi else None
