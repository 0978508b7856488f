"""Tokenizer and recursive-descent parser for the LaTeX subset of ``latex_fast``.

Produces a tiny AST of nested tuples, or ``None`` for anything outside the subset (see
``latex_fast`` for the subset and the comparison rules). Bounded: at most 300 characters.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

__all__ = ["Unsupported", "parse_latex"]


class Unsupported(Exception):
    """The expression is outside the fast subset (or out of bounds)."""


_NORMALISE = [
    (re.compile(r"\\(?:left|right|displaystyle)(?![A-Za-z])\s*|\\[,;:! ]|~|\$"), ""),
    (re.compile(r"\\[dt]frac(?![A-Za-z])"), r"\\frac"),
    (re.compile(r"\\(?:cdot|times)(?![A-Za-z])"), "*"),
    (re.compile(r"\\div(?![A-Za-z])"), "/"),
    (re.compile(r"\\\{"), "⦃"),
    (re.compile(r"\\\}"), "⦄"),
]
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|(\\[A-Za-z]+)|([A-Za-z])|([-+*/^(){}\[\],⦃⦄]))")
_COMMANDS = {"\\frac", "\\sqrt", "\\pi", "\\infty", "\\sin", "\\cos", "\\tan", "\\ln"}
_OPEN_CLOSE = {"(": ")", "[": "]", "⦃": "⦄"}


def _tokenize(s: str) -> list[str]:
    for rx, rep in _NORMALISE:
        s = rx.sub(rep, s)
    s = s.strip()
    if not s or len(s) > 300:
        raise Unsupported
    out, pos = [], 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            if s[pos:].strip() == "":
                break
            raise Unsupported
        tok = m.group(m.lastindex)
        if m.lastindex == 2 and tok not in _COMMANDS:
            raise Unsupported
        if m.lastindex == 3 and tok == "e":
            raise Unsupported
        out.append(tok)
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over the token list into nested tuples (a tiny AST)."""

    def __init__(self, toks: list[str]):
        self.t = toks
        self.i = 0
        self.has_decimal = any("." in x for x in toks)

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise Unsupported
        self.i += 1
        return tok

    def top(self):
        tok = self.peek()
        if tok in _OPEN_CLOSE and self._is_container():
            node = self.container()
        else:
            node = self.element()
            if self.peek() == ",":  # a bare list "1, 2, 3"
                elems = [node]
                while self.peek() == ",":
                    self.take()
                    elems.append(self.element())
                node = ("box", "bare", elems)
        if self.peek() is not None:
            raise Unsupported
        return node

    def _is_container(self) -> bool:
        depth = 0
        for j in range(self.i, len(self.t)):
            tok = self.t[j]
            if tok in "([{⦃":
                depth += 1
            elif tok in ")]}⦄":
                depth -= 1
                if depth == 0:
                    return j == len(self.t) - 1 and (self.t[self.i] == "⦃" or "," in self._top_level(self.i + 1, j))
            if depth == 0 and j > self.i:
                return False
        return False

    def _top_level(self, a: int, b: int) -> list[str]:
        depth, out = 0, []
        for tok in self.t[a:b]:
            if tok in "([{⦃":
                depth += 1
            elif tok in ")]}⦄":
                depth -= 1
            elif depth == 0:
                out.append(tok)
        return out

    def container(self):
        opener = self.take()
        elems = [self.element()]
        while self.peek() == ",":
            self.take()
            elems.append(self.element())
        closer = self.take()
        if closer not in ")]⦄" or (opener == "⦃") != (closer == "⦄"):
            raise Unsupported
        kind = "set" if opener == "⦃" else opener + closer
        if kind in ("[)", "(]") and len(elems) != 2:
            raise Unsupported  # only intervals may mix brackets
        return ("box", kind, elems)

    def element(self):
        sign = 1
        while self.peek() in ("-", "+") and self.i + 1 < len(self.t) and self.t[self.i + 1] == "\\infty":
            sign = -sign if self.take() == "-" else sign
        if self.peek() == "\\infty":
            self.take()
            return ("inf", sign)
        node = self.expr()
        return ("neg", node) if sign < 0 else node

    def expr(self):
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            node = ("add", node, rhs if op == "+" else ("neg", rhs))
        return node

    def term(self):
        if self.peek() in ("+", "-"):
            return ("neg", self.term()) if self.take() == "-" else self.term()
        node = self.power()
        while True:
            tok = self.peek()
            if tok == "*":
                self.take()
                node = ("mul", node, self.power())
            elif tok == "/":
                self.take()
                node = ("div", node, self.power())
                if self._starts_factor(self.peek()):
                    raise Unsupported  # "1/2x" is ambiguous
            elif self._starts_factor(tok):
                node = ("mul", node, self.power())
            else:
                return node

    @staticmethod
    def _starts_factor(tok: str | None) -> bool:
        return tok is not None and (tok[0].isdigit() or tok[0] == "." or tok.isalpha() or tok in ("(", "{") or (tok.startswith("\\") and tok != "\\infty"))

    def power(self):
        base = self.atom()
        if self.peek() == "^":
            self.take()
            exp = self.single_arg()
            if self.peek() == "^":
                raise Unsupported
            return ("pow", base, exp)
        return base

    def single_arg(self):
        """A LaTeX macro argument: ``{expr}``, one digit, one letter or one command atom."""
        tok = self.peek()
        if tok == "{":
            self.take()
            node = self.expr()
            self.take("}")
            return node
        if tok is not None and tok[0].isdigit():
            if len(tok) > 1:  # \frac12, x^23 -> first digit only
                self.t[self.i] = tok[1:]
                return ("num", Fraction(int(tok[0])))
            self.take()
            return ("num", Fraction(int(tok)))
        if tok is not None and (tok.isalpha() or tok == "\\pi"):
            self.take()
            return ("pi",) if tok == "\\pi" else ("var", tok)
        raise Unsupported

    def atom(self):
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return ("num", Fraction(tok))
        if tok.isalpha():
            return ("var", tok)
        if tok in ("(", "{"):
            node = self.expr()
            self.take(")" if tok == "(" else "}")
            return node
        if tok == "\\pi":
            return ("pi",)
        if tok == "\\frac":
            return ("div", self.single_arg(), self.single_arg())
        if tok == "\\sqrt":
            index = ("num", Fraction(2))
            if self.peek() == "[":
                self.take()
                index = self.expr()
                self.take("]")
            return ("root", self.single_arg(), index)
        if tok in ("\\sin", "\\cos", "\\tan", "\\ln"):
            if self.peek() not in ("(", "{"):
                raise Unsupported  # "\\sin 2x" is ambiguous
            return ("fn", tok[1:], self.atom())
        raise Unsupported


@functools.lru_cache(maxsize=32768)
def parse_latex(s: str):
    """``(ast, variables, has_decimal)`` for ``s`` in the fast subset, else ``None``."""
    try:
        p = _Parser(_tokenize(s))
        node = p.top()
        variables = frozenset(_variables(node))
        if "i" in variables and _i_degree(node) > 1:
            raise Unsupported  # i^2, i*i, 1/i: i is the imaginary unit, not a variable, there
    except (Unsupported, ValueError, ZeroDivisionError, RecursionError):
        return None
    return node, variables, p.has_decimal


def _i_degree(node) -> int:
    """Degree in ``i`` (99: not a polynomial of degree <= 1). With degree <= 1 on both sides,
    comparing as polynomials in a variable ``i`` is comparing complex numbers ``a + bi``."""
    kind = node[0]
    if kind == "var":
        return int(node[1] == "i")
    if kind == "box":
        return max([_i_degree(x) for x in node[2]] + [0])
    kids = [_i_degree(x) for x in node[1:] if isinstance(x, tuple)]
    if kind in ("neg", "add"):
        return max(kids)
    if kind == "mul":
        return sum(kids)
    if kind == "div":
        return kids[0] if kids[1] == 0 else 99
    return 99 if any(kids) else 0  # num, pi, pow, root, fn


def _variables(node) -> set[str]:
    if node[0] == "var":
        return {node[1]}
    out: set[str] = set()
    for child in node[1:]:
        if isinstance(child, tuple):
            out |= _variables(child)
        elif isinstance(child, list):
            for c in child:
                out |= _variables(c)
    return out
