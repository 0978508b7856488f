"""A policy that has read the math and text verifiers' source: one test per class (issue 28), and
the honest answers in odd but correct forms that must keep scoring 1.0."""

import threading
import time

import pytest

from tasks.verifiers import build_reward
from tasks.verifiers.math import answers_match_many
from tasks.verifiers.mv_pool import TIMED_OUT, TIMEOUT_S
from tasks.verifiers.mv_pool import get_pool as math_verify_pool

PROMPT = "Compute 12+7-5. Show your derivation step by step, then give the answer. (For reference: 14)"
HONEST = "<think>12+7=19, then 19-5=14, so the result is 14</think>"


@pytest.fixture(scope="module")
def math():
    math_verify_pool().ask(["gold", "1"])  # the worker processes start once per process
    return build_reward("math_answer_reward")


def _timed(reward, completions, **columns):
    t = time.perf_counter()
    out = reward(completions=completions, **columns)
    return out, time.perf_counter() - t


# -------------------------------------------------------------- class 4: budgets on the math side
@pytest.mark.parametrize("n", [2000, 20000])
def test_thousands_of_unbalanced_boxes_are_linear(math, n):
    out, elapsed = _timed(math, [HONEST + "\\boxed{" * n + "14}"], answer=["14"])
    assert out == [0.0] and elapsed < 0.5


@pytest.mark.parametrize("spam", ["<answer>" * 20000, "\\boxed " * 20000, "#### 1\n" * 20000, "\\fbox{" * 20000])
def test_unclosed_answer_markers_are_linear(math, spam):
    out, elapsed = _timed(math, [HONEST + spam], answer=["14"])  # a lazy regex per opener took 108 s
    assert out == [0.0] and elapsed < 1.0


@pytest.mark.parametrize("spam", ["\\(" * 20000, "\\[a " * 20000, "$" * 40001])
def test_unclosed_math_delimiters_are_linear_for_the_language_check(spam):
    out, elapsed = _timed(build_reward("language_consistency_reward"), [f"<think>{spam}</think>"])
    assert elapsed < 0.5 and out[0] in (None, 1.0)


def test_many_boxed_answers_needing_math_verify_score_zero_without_it(math):
    slow = "".join(f"\\boxed{{({9990 + k}^{{9999}})!}}" for k in range(16))
    before = math.stats["hostile_answers"]
    out, elapsed = _timed(math, [HONEST + slow], answer=["14"])
    assert out == [0.0] and elapsed < 0.5 and math.stats["hostile_answers"] == before + 1
    two = HONEST + "\\boxed{(9991^{9999})!} \\boxed{(9992^{9999})!} \\boxed{13}"
    out, elapsed = _timed(math, [two], answer=["14"])  # a wrong fast answer: no math-verify call at all
    assert out == [0.0] and elapsed < 0.5


@pytest.mark.parametrize("reward", ["math_answer_reward", "exact_match_reward", "numeric_match_reward",
                                    "cosine_length_reward"])
@pytest.mark.parametrize("answer", [("1" + "a" * 1000 + "!") * 100, "\\text{" * 20000 + "a" + "}" * 20000, "1+" * 50000])
def test_long_answers_never_reach_a_check_that_scales_with_them(reward, answer):
    out, elapsed = _timed(build_reward(reward), [f"{HONEST}\\boxed{{{answer}}}"], answer=["14"])
    assert out[0] <= 0.0 and elapsed < 1.0  # 0 (math, match) or a wrong answer's cosine score


def test_a_batch_of_completions_each_with_two_slow_answers_costs_no_math_verify():
    slow = [f"{HONEST}\\boxed{{({9000 + 2 * k}^{{9999}})!}} \\boxed{{({9001 + 2 * k}^{{9999}})!}}" for k in range(8)]
    out, elapsed = _timed(build_reward("cosine_length_reward"), slow, answer=["4"] * 8)
    assert all(s < 0 for s in out) and elapsed < 1.0  # was 16 s: each completion's answers one by one


def test_a_hostile_batch_cannot_starve_a_reward_running_beside_it(math):
    hostile = [(f"({9900 + k}^{{9999}})!", "4") for k in range(16)]  # each runs into the time limit
    done: list = []
    side = threading.Thread(target=lambda: done.append(answers_match_many(hostile)))
    side.start()
    time.sleep(0.2)
    t = time.perf_counter()
    honest = answers_match_many([("\\binom{4}{2}", "6")])  # needs math-verify too
    elapsed = time.perf_counter() - t
    side.join()
    assert honest == [True] and elapsed < 2 * TIMEOUT_S + 1.0  # FIFO: ~8 x TIMEOUT_S behind the hostile batch
    assert done[0] == [False] * 16


def test_the_batch_budget_bounds_math_verify():
    t = time.perf_counter()
    out = math_verify_pool().ask_many([["eq", f"({9800 + k}^{{9999}})!", "4"] for k in range(8)], 0.5)
    assert time.perf_counter() - t < 0.5 + 2 * TIMEOUT_S and out.count(TIMED_OUT) == 8


# -------------------------------------------------------------- class 5: normalisers keep meaning
WRONG = [
    ("123456700.0", "123456789"), ("5x", "5"), ("5e", "5"), ("5 \\text{ million}", "5"), ("5m", "5"),
    ("a+b", "a-b"), ("-5", "5"), ("0.3", "\\frac{1}{4}"), ("0.33", "\\frac{1}{3}"),
    ("x^3 - 6x^2 + 11x - 5", "x"),  # agrees with x wherever (x-1)(x-2)(x-3) = 0
    ("(x-1)(x-2)(x-3)(x-4) + x", "x"), ("x y + 1", "y x"), ("\\sqrt{y^2}", "y"),
]


@pytest.mark.parametrize("pred, gold", WRONG)
def test_wrong_answers_that_a_normaliser_used_to_accept_score_zero(math, pred, gold):
    out, elapsed = _timed(math, [f"{HONEST}\\boxed{{{pred}}}"], answer=[gold])
    assert out == [0.0] and elapsed < 2 * TIMEOUT_S


@pytest.mark.parametrize("reward, pred, gold", [
    ("exact_match_reward", "-5", "5"), ("exact_match_reward", "x>3", "x<3"), ("exact_match_reward", "(1, 2]", "[1, 2]"),
    ("exact_match_reward", "a+b", "a-b"), ("numeric_match_reward", "123456700.0", "123456789"),
    ("numeric_match_reward", "5x", "5"), ("numeric_match_reward", "5 \\text{ million}", "5"),
])
def test_match_rewards_keep_signs_relations_and_units(reward, pred, gold):
    assert build_reward(reward)(completions=[f"<answer>{pred}</answer>"], answer=[gold]) == [0.0]


def test_derivation_is_measured_on_text_not_copied_from_the_prompt():
    reward = build_reward("math_answer_reward", {"min_derivation_chars": 20})
    echoes = [f"<think>{PROMPT} ok</think><answer>14</answer>",
              f"<think>So: {PROMPT[:40]} and {PROMPT[40:]}</think><answer>14</answer>",
              f"<think>{PROMPT.upper()[:0]}{' '.join(PROMPT.split())}!!</think><answer>14</answer>"]
    assert reward(prompts=[PROMPT] * 3, completions=echoes, answer=["14"] * 3) == [0.0, 0.0, 0.0]
    assert reward(prompts=[PROMPT], completions=[HONEST + "<answer>14</answer>"], answer=["14"]) == [1.0]


def test_reasoning_hidden_in_math_counts_for_the_language_check():
    zh = build_reward("language_consistency_reward", {"language": "zh"})
    hidden = "<think>我们计算 $\\text{then I reason at length in English here}$ 和 $thenmore englishwords$</think>"
    assert zh(completions=[hidden])[0] < 0.5
    wide = "<think>我们计算 ｔｈｅｎ ｉ ｒｅａｓｏｎ ｉｎ ｅｎｇｌｉｓｈ 𝐰𝐢𝐭𝐡 𝐛𝐨𝐥𝐝 𝐥𝐞𝐭𝐭𝐞𝐫𝐬</think>"  # not a script of its own
    assert zh(completions=[wide])[0] < 0.5
    assert zh(completions=["<think>我们计算 $x+y=3$ 所以 $2x$ 等于六</think>"]) == [1.0]


@pytest.mark.parametrize("spam", ["wait," * 300, "wait" * 300, "Wait!" * 300, "wait\u200b" * 300,
                                  "wait ｗａｉｔ 𝐰𝐚𝐢𝐭 " * 100])
def test_repetition_without_spaces_is_penalised(spam):
    out, elapsed = _timed(build_reward("repetition_penalty_reward"), [spam])
    assert out[0] < -0.9 and elapsed < 0.5


# -------------------------------------------------------------- honest answers in odd forms score 1.0
HONEST_FORMS = [
    ("5 = x", "5"), ("x = 5", "5"), ("5.0", "5"), ("\\frac{10}{2}", "5"), ("5 \\text{ cm}", "5"), ("18 dollars", "18"),
    ("\\$18", "18"), ("0.333333", "\\frac{1}{3}"), ("\\frac{1}{3}", "0.333333"), ("0.25", "\\frac{1}{4}"),
    ("(x+1)^2", "x^2+2x+1"), ("x^3 - 6x^2 + 11x - 6", "(x-1)(x-2)(x-3)"), ("2x+3 = y", "y = 2x+3"),
    ("\\dfrac{\\sqrt{8}}{2}", "\\sqrt{2}"), ("b - a", "-a + b"), ("1{,}000", "1000"), ("\\text{(B)}", "B"),
    ("5\\text{ hours}", "5"), ("14.", "14"),
]


@pytest.mark.parametrize("pred, gold", HONEST_FORMS)
def test_honest_answers_in_odd_forms_score_one(math, pred, gold):
    assert math(completions=[f"{HONEST}\\boxed{{{pred}}}"], answer=[gold]) == [1.0]


@pytest.mark.parametrize("reward, pred, gold", [
    ("exact_match_reward", "(C)", "C"), ("exact_match_reward", "Paris.", "paris"), ("exact_match_reward", "x < 3", "x < 3"),
    ("exact_match_reward", "-5", "-5"), ("numeric_match_reward", "18 dollars", "18"), ("numeric_match_reward", "1,000", "1000"),
    ("numeric_match_reward", "0.333333", "1/3"), ("numeric_match_reward", "2.50", "2.5"),
])
def test_match_rewards_accept_honest_forms(reward, pred, gold):
    assert build_reward(reward)(completions=[f"<answer>{pred}</answer>"], answer=[gold]) == [1.0]


def test_natural_text_is_not_a_repetition():
    text = ("First, I add twelve and seven, which gives nineteen. Then, subtracting five from nineteen, "
            "I get fourteen; checking: 14 + 5 = 19 and 19 - 7 = 12. Supercalifragilisticexpialidocious!")
    assert build_reward("repetition_penalty_reward")(completions=[text])[0] > -0.1
