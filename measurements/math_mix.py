"""A MATH-like mix of 500 reference answers, each with equivalent and wrong model answers.

The shares follow the MATH test set's answer kinds: mostly integers, then fractions, radicals,
multiples of pi, tuples, intervals, polynomials, text and multiple-choice answers, degrees,
vectors and matrices, money, percentages, numbers in other bases, lists and sets, equations and
complex numbers. Each item is ``{"kind", "gold", "right": [...], "wrong": [...]}``; ``right[0]``
is the gold as written (what a model most often says), the others are equivalent forms the
checker must accept. Deterministic for a seed.

    python measurements/math_mix.py > mix.jsonl   # to look at it
"""

from __future__ import annotations

import json
import math
import random

__all__ = ["KINDS", "math_mix"]


def _int(r: random.Random):
    n = r.choice([r.randint(0, 20), r.randint(21, 999), r.randint(1000, 99999), -r.randint(1, 60)])
    right = [str(n)] + ([f"{n:,}"] if abs(n) >= 1000 else [f"{n}.0"] if n % 3 == 0 else [])
    return str(n), right, [str(n + r.choice([1, -1, 2, 10])), str(-n) if n else "1"]


def _frac(r: random.Random):
    a, b = r.randint(1, 30), r.choice([2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 25])
    while math.gcd(a, b) != 1 or b == 1:
        a += 1
    sign = "-" if r.random() < 0.2 else ""
    gold = f"{sign}\\frac{{{a}}}{{{b}}}"
    right = [gold, f"{sign}\\dfrac{{{a}}}{{{b}}}", f"{sign}{a}/{b}", f"{sign}\\frac{{{2 * a}}}{{{2 * b}}}"]
    return gold, right, [f"{sign}\\frac{{{b}}}{{{a}}}", f"{sign}\\frac{{{a + 1}}}{{{b}}}"]


def _decimal(r: random.Random):
    x = r.choice([0.25, 0.5, 1.5, 2.75, 0.125, 3.2, 12.5, 0.04])
    return str(x), [str(x), f"{x:.3f}"], [str(round(x + 0.1, 3)), str(x * 10)]


def _sqrt(r: random.Random):
    a, b, c = r.randint(2, 9), r.choice([2, 3, 5, 6, 7, 10, 11, 13]), r.choice([2, 3, 4, 5])
    form = r.randrange(3)
    if form == 0:
        return f"{a}\\sqrt{{{b}}}", [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}", f"{a} \\sqrt{{{b}}}"], \
            [f"{a + 1}\\sqrt{{{b}}}", f"{a}\\sqrt{{{b + 1}}}"]
    if form == 1:
        return f"\\frac{{\\sqrt{{{b}}}}}{{{c}}}", [f"\\frac{{\\sqrt{{{b}}}}}{{{c}}}", f"\\frac{{1}}{{{c}}}\\sqrt{{{b}}}"], \
            [f"\\frac{{\\sqrt{{{b}}}}}{{{c + 1}}}", f"\\sqrt{{{b}}}"]
    return f"{a} + \\sqrt{{{b}}}", [f"{a}+\\sqrt{{{b}}}", f"\\sqrt{{{b}}} + {a}"], [f"{a} - \\sqrt{{{b}}}", str(a)]


def _pi(r: random.Random):
    a, b = r.randint(2, 40), r.choice([2, 3, 4, 6, 9])
    if r.random() < 0.5:
        return f"{a}\\pi", [f"{a}\\pi", f"{a} \\pi", f"\\pi \\cdot {a}"], [f"{a + 2}\\pi", str(a)]
    return f"\\frac{{{a}\\pi}}{{{b}}}", [f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{a}}}{{{b}}}\\pi"], \
        [f"\\frac{{{a}\\pi}}{{{b + 1}}}", f"\\frac{{{a}}}{{{b}}}"]


def _tuple(r: random.Random):
    xs = [r.randint(-9, 9) for _ in range(r.choice([2, 2, 3]))]
    gold = "(" + ", ".join(map(str, xs)) + ")"
    swapped = "(" + ", ".join(map(str, xs[::-1] if xs[0] != xs[-1] else [x + 1 for x in xs])) + ")"
    return gold, [gold, gold.replace(" ", ""), "\\left" + gold[:-1] + "\\right)"], [swapped, gold[1:-1].split(",")[0]]


def _interval(r: random.Random):
    a, b = sorted(r.sample(range(-9, 10), 2))
    form = r.randrange(3)
    if form == 0:
        return f"[{a}, {b})", [f"[{a}, {b})", f"[{a},{b})", f"\\left[{a}, {b}\\right)"], [f"[{a}, {b}]", f"({a}, {b})"]
    if form == 1:
        return f"(-\\infty, {b}]", [f"(-\\infty, {b}]", f"(-\\infty,{b}]"], [f"(-\\infty, {b})", f"[{b}, \\infty)"]
    return f"(-\\infty, {a}) \\cup ({b}, \\infty)", [f"(-\\infty, {a}) \\cup ({b}, \\infty)",
                                                     f"(-\\infty,{a})\\cup({b},\\infty)"], \
        [f"({a}, {b})", f"(-\\infty, {a}] \\cup [{b}, \\infty)"]


def _poly(r: random.Random):
    a, b = r.randint(1, 9), r.randint(1, 9)
    if r.random() < 0.5:
        return f"x^2+{a}x+{b}", [f"x^2+{a}x+{b}", f"x^2 + {a}x + {b}", f"{b}+{a}x+x^{{2}}"], [f"x^2+{a}x-{b}", f"x^2+{b}x+{a}" if a != b else "x^2"]
    return f"{a}x-{b}", [f"{a}x-{b}", f"-{b}+{a}x", f"{a}x - {b}"], [f"{a}x+{b}", f"{b}x-{a}" if a != b else "x"]


_TEXTS = ["\\text{(A)}", "\\text{(B)}", "\\text{(C)}", "\\text{(D)}", "\\text{(E)}", "\\text{Monday}", "\\text{Sunday}",
          "\\text{even}", "\\text{odd}", "\\text{yes}", "\\text{no}", "\\text{Devon}", "\\text{parabola}"]


def _text(r: random.Random):
    gold = r.choice(_TEXTS)
    bare = gold[6:-1]
    other = r.choice([t for t in _TEXTS if t != gold])
    right = [gold, bare, f"\\textbf{{{bare}}}"] + ([bare.strip("()")] if bare.startswith("(") else [bare.lower()])
    return gold, right, [other, other[6:-1]]


def _degree(r: random.Random):
    a = r.choice([15, 30, 36, 45, 60, 72, 75, 90, 105, 120, 135, 150])
    return f"{a}^\\circ", [f"{a}^\\circ", f"{a}^{{\\circ}}", str(a)], [f"{a + 15}^\\circ", str(180 - a)]


def _matrix(r: random.Random):
    xs = [r.randint(-9, 9) for _ in range(r.choice([2, 3, 4]))]
    if len(xs) == 4:
        gold = f"\\begin{{pmatrix}} {xs[0]} & {xs[1]} \\\\ {xs[2]} & {xs[3]} \\end{{pmatrix}}"
        alt = f"\\begin{{pmatrix}}{xs[0]}&{xs[1]}\\\\{xs[2]}&{xs[3]}\\end{{pmatrix}}"
        wrong = f"\\begin{{pmatrix}} {xs[0]} & {xs[2]} \\\\ {xs[1]} & {xs[3] + 1} \\end{{pmatrix}}"
    else:
        gold = "\\begin{pmatrix} " + " \\\\ ".join(map(str, xs)) + " \\end{pmatrix}"
        alt = "\\begin{pmatrix}" + "\\\\".join(map(str, xs)) + "\\end{pmatrix}"
        wrong = "\\begin{pmatrix} " + " \\\\ ".join(str(x + 1) for x in xs) + " \\end{pmatrix}"
    return gold, [gold, alt], [wrong]


def _money(r: random.Random):
    cents = r.randint(100, 99999)
    d = f"{cents // 100}.{cents % 100:02d}"
    return f"\\${d}", [f"\\${d}", d, f"{d} dollars"], [f"\\${cents // 100 + 1}.{cents % 100:02d}", str(cents)]


def _percent(r: random.Random):
    a = r.randint(2, 99)
    return f"{a}\\%", [f"{a}\\%", f"{a}%"], [f"{a + 1}\\%", f"{a + 5}"]


def _base(r: random.Random):
    n, b = r.randint(5, 200), r.choice([2, 3, 5, 8])
    digits, m = "", n
    while m:
        digits, m = str(m % b) + digits, m // b
    wrong = digits[:-1] + ("1" if digits[-1] == "0" else "0")
    return f"{digits}_{b}", [f"{digits}_{b}", f"{digits}_{{{b}}}"], [f"{wrong}_{b}"]


def _list(r: random.Random):
    xs = sorted(r.sample(range(-9, 15), r.choice([2, 3])))
    gold = ", ".join(map(str, xs))
    return gold, [gold, ",".join(map(str, xs)), ", ".join(map(str, xs[::-1]))], [", ".join(map(str, xs[:-1])),
                                                                              ", ".join(str(x + 1) for x in xs)]


def _equation(r: random.Random):
    a, b = r.randint(2, 9), r.randint(1, 9)
    return f"y = {a}x + {b}", [f"y = {a}x + {b}", f"y={a}x+{b}", f"y = {b} + {a}x"], [f"y = {a}x - {b}", f"y = {b}x + {a}"]


def _complex(r: random.Random):
    a, b = r.randint(1, 9), r.randint(2, 9)
    return f"{a} + {b}i", [f"{a} + {b}i", f"{a}+{b}i", f"{b}i + {a}"], [f"{a} - {b}i", f"{b} + {a}i"]


KINDS = {  # kind: (generator, items of 500)
    "integer": (_int, 250), "fraction": (_frac, 70), "decimal": (_decimal, 15), "radical": (_sqrt, 30),
    "pi": (_pi, 15), "tuple": (_tuple, 15), "interval": (_interval, 12), "polynomial": (_poly, 20),
    "text": (_text, 15), "degree": (_degree, 8), "matrix": (_matrix, 10), "money": (_money, 8),
    "percent": (_percent, 6), "base": (_base, 6), "list": (_list, 10), "equation": (_equation, 6),
    "complex": (_complex, 4),
}


def math_mix(seed: int = 0) -> list[dict]:
    """The 500 items, in a seeded shuffled order."""
    r = random.Random(seed)
    items = []
    for kind, (gen, n) in KINDS.items():
        for _ in range(n):
            gold, right, wrong = gen(r)
            items.append({"kind": kind, "gold": gold, "right": list(dict.fromkeys(right)),
                          "wrong": [w for w in dict.fromkeys(wrong) if w not in right]})
    r.shuffle(items)
    return items


if __name__ == "__main__":
    for item in math_mix():
        print(json.dumps(item))
