"""Math answer extraction and checking (shared by the reward and evaluation)."""

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from measurements.math_mix import math_mix
from tasks.verifiers import build_reward
from tasks.verifiers.latex_fast import fast_equal
from tasks.verifiers.latex_forms import forms_equal
from tasks.verifiers.math import (
    answers_match,
    answers_match_many,
    extract_answers,
    extract_final_answer,
    score_math_answer,
)

DEFAULT = "<think>\n12+7=19\n19-5=14\n</think>\n<answer>14</answer>"


@pytest.mark.parametrize("text, expected", [
    (DEFAULT, "14"),
    ("so the answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("first \\boxed{3} then \\boxed{4}", "4"),
    ("Janet sells 9 eggs.\n#### 18", "18"),
    ("<think>a</think>The result is \\boxed{x^{2}}", "x^{2}"),
    ("<answer>$\\boxed{7}$</answer>", "7"),
    ("<think>I get \\boxed{5}</think>", None),
    ("<think>unfinished \\boxed{5}", None),
    ("no final answer here 42", None),
])
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


def test_prefilled_think_requires_closing_tag():
    assert extract_final_answer("reasoning \\boxed{5}", prefilled_think=True) is None
    assert extract_final_answer("reasoning</think>\\boxed{5}", prefilled_think=True) == "5"


@pytest.mark.parametrize("pred, gold", [
    ("14", "14"), ("14.0", "14"), ("1,000", "1000"), ("$18", "18"), ("\\$18.00", "18"), ("18 dollars", "18"),
    ("-3", "-3"), ("0.5", "\\frac{1}{2}"), ("\\dfrac12", "1/2"), ("\\frac{3}{4}", "0.75"),
    ("0.333333", "\\frac{1}{3}"), ("50\\%", "50"), ("2\\sqrt{3}", "\\sqrt{12}"), ("\\frac{\\pi}{2}", "\\pi/2"),
    ("x^2+2x+1", "(x+1)^2"), ("(1, 2)", "(1,2)"), ("[0, 1)", "[0,1)"), ("\\{3, 1, 2\\}", "\\{1,2,3\\}"),
    ("(-\\infty, 3]", "(-\\infty,3]"), ("\\text{Paris}", "Paris"), ("(B)", "B"), ("\\text{(C)}", "C"),
    ("x=3", "3"), ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
])
def test_equivalent_answers_match(pred, gold):
    assert answers_match(pred, gold) is True


@pytest.mark.parametrize("pred, gold", [
    ("15", "14"), ("14.5", "14"), ("\\frac{1}{3}", "0.3"), ("0.33", "\\frac{1}{3}"), ("(2, 1)", "(1,2)"),
    ("[0, 1]", "[0,1)"), ("\\{1, 2\\}", "\\{1,2,3\\}"), ("pairs", "Paris"), ("x^2+1", "(x+1)^2"),
    ("14 \\text{ or } 15", "14"), ("\\{14, 15\\}", "14"), ("14, 15", "14"), ("\\sqrt{2}", "\\frac{99}{70}"),
    ("y", "x"), ("", "14"),
])
def test_different_answers_do_not_match(pred, gold):
    assert not answers_match(pred, gold)


def test_score_rules():
    assert score_math_answer(DEFAULT, "14") == 1.0
    assert score_math_answer(DEFAULT, "15") == 0.0
    assert score_math_answer("no answer", "14") == 0.0
    assert score_math_answer("\\boxed{14}", "\\frac{") is None
    assert score_math_answer("\\boxed{14}", None) is None
    assert score_math_answer("\\boxed{14}", "") is None
    assert score_math_answer("\\boxed{14} and \\boxed{14.0}", "14") == 1.0  # restating is fine
    assert score_math_answer("\\boxed{14} or maybe \\boxed{15}", "14") == 0.0
    assert score_math_answer("work\n#### 14", "Some solution text\n#### 14") == 1.0
    assert score_math_answer("\\boxed{\\frac{1}{2}}", "The answer is $\\boxed{0.5}$") == 1.0


def test_reward_counts_unparseable_gold_instead_of_scoring_zero():
    reward = build_reward("math_answer_reward")
    logged = []
    out = reward(prompts=["p"] * 3, completions=[DEFAULT] * 3, answer=["14", "\\frac{", None],
                 log_metric=lambda name, value: logged.append((name, value)))
    assert out == [1.0, None, None]
    assert reward.stats == {"scored": 1, "unparseable_gold": 2, "hostile_answers": 0}
    assert logged == [("math_answer/unparseable_gold", 2.0)]


def test_min_derivation_chars():
    reward = build_reward("math_answer_reward", {"min_derivation_chars": 10})
    prompt = [{"role": "user", "content": "What is 12+7-5? Show your work."}]
    out = reward(prompts=[prompt] * 3, completions=[
        DEFAULT, "<answer>14</answer>", "<think>What is 12+7-5? Show your work.</think><answer>14</answer>"],
        answer=["14"] * 3)
    assert out == [1.0, 0.0, 0.0]


def test_threads_are_safe_and_consistent():
    golds = [str(i) for i in range(50)] + ["\\frac{%d}{7}" % i for i in range(1, 30)]
    texts = ["<think>w</think><answer>%s</answer>" % g for g in golds]
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda tg: score_math_answer(*tg), zip(texts, golds)))
    assert results == [1.0] * len(golds)
    # math-verify path (percent, equations) from a worker thread must not raise
    errors = []

    def work():
        try:
            assert score_math_answer("\\boxed{25\\%}", "25") == 1.0
            assert score_math_answer("\\boxed{y=3}", "3") == 1.0
        except BaseException as e:  # noqa: BLE001 - any failure in the thread is reported below
            errors.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert not errors


@pytest.mark.parametrize("bomb", [
    "2^{2^{2^{2^{100}}}}", "10^{10^{10}}", "9^{9^{9}}", "(10^{100000})!", "100000000!", "1" * 5000,
    "\\frac{" * 300, "x" * 2000, "2^{99999999}",
])
def test_hostile_answers_are_fast_and_zero(bomb):
    t = time.perf_counter()
    assert score_math_answer("\\boxed{%s}" % bomb, "4") == 0.0
    assert time.perf_counter() - t < 2.0


def _decided_and_agreeing(pairs, fast_check=fast_equal) -> int:
    """How many (gold, pred) pairs the fast path decides; each decision must equal math-verify's."""
    from math_verify import parse, verify

    decided = 0
    for g, p in pairs:
        fast = fast_check(p, g)
        if fast is None:
            continue
        decided += 1
        slow = verify(parse(f"${g}$", parsing_timeout=None), parse(f"${p}$", parsing_timeout=None), timeout_seconds=None)
        assert fast == slow, (g, p)
    return decided


def test_fast_latex_path_agrees_with_math_verify():
    rng = random.Random(7)

    def expr(d=0):
        k = rng.randrange(8 if d < 2 else 3)
        if k == 0:
            return str(rng.randint(0, 12))
        if k == 1:
            return rng.choice(["x", "\\pi", "y"])
        if k == 2:
            return str(rng.randint(1, 9))
        if k == 3:
            return "\\frac{%s}{%s}" % (expr(d + 1), expr(d + 1))
        if k == 4:
            return "\\sqrt{%s}" % expr(d + 1)
        if k == 5:
            return "%s+%s" % (expr(d + 1), expr(d + 1))
        if k == 6:
            return "(%s)^{%d}" % (expr(d + 1), rng.randint(0, 3))
        return "%s\\cdot %s" % (expr(d + 1), expr(d + 1))

    def pairs():
        for _ in range(400):
            g = expr()
            yield g, expr() if rng.random() < 0.5 else g.replace("\\frac", "\\dfrac").replace("\\cdot ", "*")

    assert _decided_and_agreeing(pairs()) > 250


def test_extract_answers_lists_every_candidate():
    assert extract_answers("<answer>3</answer> <answer>4</answer>") == ["3", "4"]
    assert extract_answers("#### 3\n#### 4") == ["3", "4"]


def test_fast_container_path_agrees_with_math_verify():
    """Tuples, intervals (closure, infinities) and sets (order, duplicates) vs math-verify."""
    rng = random.Random(5)
    elements = ["-1", "0", "2", "3", "\\infty", "-\\infty", "\\frac{1}{2}", "\\sqrt{2}", "x", "0.5"]
    brackets = [("(", ")"), ("[", "]"), ("[", ")"), ("(", "]"), ("\\{", "\\}")]

    def pairs():
        for _ in range(300):
            n = rng.randint(1, 3)
            m = n if rng.random() < 0.6 else rng.randint(1, 3)
            o1, c1 = rng.choice(brackets)
            o2, c2 = (o1, c1) if rng.random() < 0.5 else rng.choice(brackets)
            e1 = [rng.choice(elements) for _ in range(n)]
            e2 = e1[:m] + [rng.choice(elements) for _ in range(m - len(e1[:m]))]
            if rng.random() < 0.3:
                rng.shuffle(e2)
            yield o1 + ", ".join(e1) + c1, o2 + ",".join(e2) + c2

    assert _decided_and_agreeing(pairs()) > 80


def test_the_math_mix_is_scored_right_and_mostly_without_math_verify():
    """The benchmark's 500 MATH-like answers: every equivalent form accepted, every wrong one refused."""
    pairs = [(c, it["gold"], ok) for it in math_mix() for ok, cands in ((True, it["right"]), (False, it["wrong"]))
             for c in cands]
    assert answers_match_many([(c, g) for c, g, _ in pairs]) == [ok for _, _, ok in pairs]
    undecided = [1 for c, g, _ in pairs if forms_equal(c, g) is None and c != g]
    assert len(undecided) < 0.1 * len(pairs)


def test_answer_forms_agree_with_math_verify():
    """Degrees, percentages, bases, equations, matrices, unions, lists, complex numbers vs math-verify."""
    rng = random.Random(11)
    items = [it for it in math_mix() if it["kind"] not in ("integer", "fraction", "decimal", "money", "text")]
    pairs = [(it["gold"], c) for it in rng.sample(items, 60) for c in it["right"] + it["wrong"]]
    pairs += [("64\\%", "64"), ("64\\%", "0.64"), ("64\\%", "0.65"), ("1011_2", "1011_{2}"), ("1011_2", "1001_2"),
              ("x = 5", "5"), ("y = 2x+3", "x = 2x+3"), ("3 + 4i", "4i + 3"), ("i^2", "-1"), ("2i", "3i")]
    assert _decided_and_agreeing(pairs, forms_equal) > 0.8 * len(pairs)
