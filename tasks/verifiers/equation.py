"""Countdown-style equation reward: use exactly the given numbers to hit the target.

The expression is parsed with ``ast`` and evaluated by a whitelist interpreter over exact
fractions - never ``eval``. Allowed: integer literals, ``+ - * /`` (``×``/``÷``/``x`` accepted),
parentheses, and unary minus only when ``allow_unary_minus``; optionally ``**`` with a small
exponent (``allow_pow``). Bounds: at most 300 characters and 64 AST nodes, every intermediate
value's numerator/denominator below 10**18, no exponent towers.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction

from tasks.verifiers._base import Reward, column
from tasks.verifiers.math import extract_answers

__all__ = ["EquationReward", "check_equation", "evaluate_expression"]

MAX_CHARS = 300
MAX_NODES = 64
MAX_ABS = 10**18
MAX_EXPONENT = 8


class _Reject(Exception):
    pass


def _bounded(x: Fraction) -> Fraction:
    if abs(x.numerator) >= MAX_ABS or x.denominator >= MAX_ABS:
        raise _Reject("value out of bounds")
    return x


def _eval(node: ast.AST, used: list[int], allow_unary: bool, allow_pow: bool) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return _bounded(Fraction(node.value))
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow):
            if not allow_pow or isinstance(node.right, ast.BinOp) or isinstance(node.left, ast.BinOp) \
                    and isinstance(node.left.op, ast.Pow):
                raise _Reject("power not allowed")
        a = _eval(node.left, used, allow_unary, allow_pow)
        b = _eval(node.right, used, allow_unary, allow_pow)
        if isinstance(node.op, ast.Add):
            return _bounded(a + b)
        if isinstance(node.op, ast.Sub):
            return _bounded(a - b)
        if isinstance(node.op, ast.Mult):
            return _bounded(a * b)
        if isinstance(node.op, ast.Div):
            if b == 0:
                raise _Reject("division by zero")
            return _bounded(a / b)
        if isinstance(node.op, ast.Pow):
            if b.denominator != 1 or abs(b) > MAX_EXPONENT or (a == 0 and b < 0):
                raise _Reject("exponent out of bounds")
            return _bounded(a ** int(b))
        raise _Reject(f"operator {type(node.op).__name__} not allowed")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and allow_unary:
        return -_eval(node.operand, used, allow_unary, allow_pow)
    raise _Reject(f"{type(node).__name__} not allowed")


def evaluate_expression(expr: str, *, allow_unary_minus: bool = False, allow_pow: bool = False) -> tuple[Fraction, list[int]] | None:
    """``(value, integer literals used)`` of an arithmetic expression, or ``None`` if rejected."""
    expr = expr.strip().replace("×", "*").replace("÷", "/").replace("\\times", "*").replace("\\cdot", "*")
    expr = expr.replace("\\div", "/")
    expr = re.sub(r"(?<=[\d)\s])x(?=[\s\d(])", "*", expr)
    if not expr or len(expr) > MAX_CHARS or not re.fullmatch(r"[\d\s+\-*/().]+", expr) or "**" in expr and not allow_pow:
        return None
    try:
        tree = ast.parse(expr, mode="eval")
        if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
            return None
        used: list[int] = []
        value = _eval(tree.body, used, allow_unary_minus, allow_pow)
    except (SyntaxError, ValueError, _Reject, RecursionError, MemoryError):
        return None
    return value, used


def check_equation(expr: str, numbers: list[int], target: int | float, *, use_all: bool = True,
                   allow_unary_minus: bool = False, allow_pow: bool = False) -> bool:
    """Whether ``expr`` uses the given numbers (each at most once; all of them with ``use_all``)
    and evaluates exactly to ``target``. A trailing ``= target`` is allowed."""
    if "=" in expr:
        lhs, _, rhs = expr.partition("=")
        rhs_val = evaluate_expression(rhs)
        if rhs_val is None or rhs_val[0] != Fraction(target).limit_denominator():
            return False
        expr = lhs
    res = evaluate_expression(expr, allow_unary_minus=allow_unary_minus, allow_pow=allow_pow)
    if res is None:
        return False
    value, used = res
    have, need = Counter(used), Counter(int(n) for n in numbers)
    if use_all and have != need:
        return False
    if not use_all and any(have[k] > need[k] for k in have):
        return False
    return value == Fraction(target).limit_denominator()


class EquationReward(Reward):
    """Countdown: 1.0 when the final answer is an expression over exactly the row's ``numbers``
    (each used once) that equals ``target``, else 0.0; ``None`` for rows without them.

    The expression is the last ``<answer>`` block / ``\\boxed{}`` after the reasoning; several
    different answers score 0. Params: ``use_all`` (True: every number exactly once; False:
    each at most once), ``allow_unary_minus`` (False), ``allow_pow`` (False; exponent <= 8,
    no towers), ``prefilled_think``, ``numbers_column``, ``target_column``.
    """

    name = "equation_reward"
    FAMILIES = ("countdown",)
    COLUMNS = ("numbers_column", "target_column")
    PARAMS = {"use_all": True, "allow_unary_minus": False, "allow_pow": False, "prefilled_think": False,
              "numbers_column": "numbers", "target_column": "target"}

    def score_batch(self, texts, prompts, kwargs):
        p = self.params
        nums = column(kwargs, p["numbers_column"], len(texts))
        targets = column(kwargs, p["target_column"], len(texts))
        out: list[float | None] = []
        for text, numbers, target in zip(texts, nums, targets):
            if numbers is None or target is None:
                out.append(None)
                continue
            cands = extract_answers(text, prefilled_think=p["prefilled_think"])
            ok = bool(cands) and all(
                check_equation(c, numbers, target, use_all=p["use_all"],
                               allow_unary_minus=p["allow_unary_minus"], allow_pow=p["allow_pow"])
                for c in dict.fromkeys(cands))
            out.append(1.0 if ok else 0.0)
        return out
