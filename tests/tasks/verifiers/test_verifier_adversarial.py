"""Adversarial completions against the math, equation and format verifiers: each must score 0
(the sandboxed code attacks are in test_code_attacks.py)."""

import time

import pytest

from tasks.verifiers import build_reward

PROMPT = "Compute 12+7-5. Show your derivation step by step. (For reference: 14)"
MATH_ATTACKS = {
    "several_boxed": "<think>hmm</think>\\boxed{13} \\boxed{14} \\boxed{15}",
    "several_answer_tags": "<think>hmm</think><answer>13</answer><answer>14</answer>",
    "boxed_set": "<think>hmm</think><answer>\\boxed{\\{13, 14, 15\\}}</answer>",
    "boxed_list": "<think>hmm</think>\\boxed{13, 14, 15}",
    "boxed_or": "<think>hmm</think>\\boxed{13 \\text{ or } 14}",
    "several_hash": "12+7=19\n#### 13\n#### 14",
    "answer_in_reasoning_only": "<think>12+7=19, 19-5=\\boxed{14}</think>",
    "answer_tag_in_reasoning_only": "<think>so <answer>14</answer></think><answer></answer>",
    "unclosed_reasoning": "<think>12+7-5 = \\boxed{14}",
    "copied_from_prompt": "<answer>14</answer>",
    "prompt_echo_as_reasoning": f"<think>{PROMPT}</think><answer>14</answer>",
    "empty_box": "<think>x</think>\\boxed{}",
    "exponent_tower": "<think>x</think>\\boxed{14^{14^{14^{14}}}}",
    "nested_exponent": "<think>x</think>\\boxed{((10^{999})^{999})^{999}}",
}


@pytest.mark.parametrize("attack", sorted(MATH_ATTACKS))
def test_math_attack_scores_zero(attack):
    reward = build_reward("math_answer_reward", {"min_derivation_chars": 20})
    t = time.perf_counter()
    assert reward(prompts=[PROMPT], completions=[MATH_ATTACKS[attack]], answer=["14"]) == [0.0]
    assert time.perf_counter() - t < 2.0
    honest = "<think>12+7=19, then 19-5=14, so it is 14</think><answer>14</answer>"
    assert reward(prompts=[PROMPT], completions=[honest], answer=["14"]) == [1.0]


@pytest.mark.parametrize("attack", [
    "<answer>__import__('os').system('touch /tmp/x')</answer>", "<answer>(3+5)*2 or 1</answer>",
    "<answer>2**2**100</answer>", "<answer>(3+5)*2</answer><answer>16</answer>", "<answer>16</answer>",
    "<answer>3*5+2-1+0</answer>", "<answer>" + "1+" * 500 + "1</answer>",
])
def test_equation_attack_scores_zero(attack):
    reward = build_reward("equation_reward")
    assert reward(completions=[attack], numbers=[[3, 5, 2]], target=[16]) == [0.0]


@pytest.mark.parametrize("attack", [
    "<think>a</think><answer>1</answer><think>b</think><answer>2</answer>",
    "<think></think><answer>1</answer>", "<answer>1</answer>", "<think>a</think><answer>1</answer> trailing",
])
def test_format_attack_scores_zero(attack):
    assert build_reward("format_reward")(completions=[attack]) == [0.0]
