"""exact_match_reward, numeric_match_reward and equation_reward."""

import time

import pytest

from tasks.verifiers import REWARDS, build_reward
from tasks.verifiers.equation import check_equation


def test_exact_match_normalises():
    em = REWARDS["exact_match_reward"]
    texts = ["<answer>Paris.</answer>", "<answer> PARIS </answer>", "\\boxed{\\text{Paris}}", "<answer>Rome</answer>",
             "<answer>Paris</answer><answer>Rome</answer>", "Paris", "<think>Paris</think>"]
    assert em(completions=texts, answer=["Paris"] * len(texts)) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert em(completions=["<answer>x</answer>"], answer=[None]) == [None]
    strict = build_reward("exact_match_reward", {"case_sensitive": True, "strip_punctuation": False})
    assert strict(completions=["<answer>paris</answer>", "<answer>Paris</answer>"], answer=["Paris"] * 2) == [0.0, 1.0]
    whole = build_reward("exact_match_reward", {"extract": "none"})
    assert whole(completions=["<think>r</think>Paris"], answer=["paris"]) == [1.0]
    assert em(completions=["<answer>NYC</answer>"], answer=[["New York", "NYC"]]) == [1.0]


def test_numeric_match_tolerance():
    nm = REWARDS["numeric_match_reward"]
    texts = ["\\boxed{3.0000001}", "#### 1,000", "\\boxed{x}", "\\boxed{3.1}", "<answer>18 dollars</answer>", "\\boxed{40\\%}"]
    assert nm(completions=texts, answer=["3.0", "1000", "4", "3", "18", "40"]) == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert nm(completions=["\\boxed{3.0000001}", "\\boxed{123456700.0}", "\\boxed{0.333333}"],
              answer=["3", "123456789", "1/3"]) == [0.0, 0.0, 1.0]  # an exact gold is matched exactly
    assert nm(completions=["\\boxed{1}"], answer=["abc"]) == [None]
    loose = build_reward("numeric_match_reward", {"rel_tol": 0.05, "exact_integers": False})
    assert loose(completions=["\\boxed{3.1}"], answer=["3"]) == [1.0]
    frac = build_reward("numeric_match_reward", {"percent_as_fraction": True})
    assert frac(completions=["\\boxed{40\\%}"], answer=["0.4"]) == [1.0]


@pytest.mark.parametrize("expr, ok", [
    ("(3+5)*2", True), ("2*(5+3)", True), ("(3 + 5) × 2", True), ("(3+5)*2 = 16", True), ("(3+5)*2 = 17", False),
    ("3*5+2", False), ("(3+5)*2+0", False), ("16", False), ("(3+5)*2*1", False), ("(3+3)*2", False),
    ("-(-3-5)*2", False), ("(35-3)/2", False), ("3.0*5+1", False), ("__import__('os')", False),
    ("(3+5)**2", False), ("2**3**5", False), ("9**9**9**9", False), ("abs(3)", False), ("3;5", False), ("", False),
])
def test_check_equation(expr, ok):
    assert check_equation(expr, [3, 5, 2], 16) is ok


def test_equation_options_and_bounds():
    assert check_equation("-3+5*2+9", [3, 5, 2, 9], 16, allow_unary_minus=True)
    assert not check_equation("-3+5*2+9", [3, 5, 2, 9], 16)
    assert check_equation("2**3*2", [2, 3, 2], 16, allow_pow=True)
    assert not check_equation("2**(3**2)", [2, 3, 2], 512, allow_pow=True)
    assert check_equation("8*2", [3, 5, 2, 8], 16, use_all=False)
    assert not check_equation("8*2*2", [3, 5, 2, 8], 32, use_all=False)
    assert check_equation("6/4*2", [6, 4, 2], 3)
    t = time.perf_counter()
    assert not check_equation("*".join(["99999999999"] * 60), [99999999999] * 60, 1)
    assert not check_equation("(" * 200 + "1" + ")" * 200, [1], 1)
    assert time.perf_counter() - t < 1.0


def test_equation_reward_rows():
    eq = REWARDS["equation_reward"]
    texts = ["<think>try</think><answer>(3+5)*2</answer>", "<answer>(3+5)*2</answer><answer>3*5+1</answer>",
             "<think><answer>(3+5)*2</answer></think>", "no answer"]
    assert eq(completions=texts, numbers=[[3, 5, 2]] * 4, target=[16] * 4) == [1.0, 0.0, 0.0, 0.0]
    assert eq(completions=["<answer>1</answer>"], numbers=[None], target=[None]) == [None]
