"""format_reward and tag_count_reward."""

import pytest

from tasks.verifiers import REWARDS, build_reward

GOOD = "<think>\n12+7=19\n19-5=14\n</think>\n<answer>14</answer>"


def fmt(texts, **params):
    return build_reward("format_reward", params)(completions=texts)


def test_default_model_shape_scores_one():
    assert REWARDS["format_reward"](completions=[GOOD, [{"role": "assistant", "content": GOOD}]]) == [1.0, 1.0]
    assert fmt([GOOD + "\n  \n", "  " + GOOD, "<think>a</think><answer>b</answer>"]) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("bad", [
    "<answer>14</answer>",
    "<think>a</think>",
    "<think>a</think>\n<answer>14</answer>\nextra text",
    "<think>a</think><answer>14</answer><answer>15</answer>",
    "<think>a</think><think>b</think><answer>14</answer>",
    "<answer>14</answer><think>a</think>",
    "<think>   </think><answer>14</answer>",
    "<think>a</think><answer>  </answer>",
    "<think>a <answer>13</answer></think><answer>14</answer>",
    "preamble <think>a</think><answer>14</answer>",
    "<think>a</think><answer>14",
    "12+7=19\n</think>\n<answer>14</answer>",
    "",
])
def test_other_shapes_score_zero(bad):
    assert fmt([bad]) == [0.0]


def test_prefilled_think_accepts_missing_opening_tag():
    prefilled = "\n12+7=19\n19-5=14\n</think>\n<answer>14</answer>"
    assert fmt([prefilled]) == [0.0]
    assert fmt([prefilled, GOOD], prefilled_think=True) == [1.0, 1.0]
    assert fmt(["<answer>14</answer>", "a</think>b</think><answer>1</answer>"], prefilled_think=True) == [0.0, 0.0]


def test_configurable_tags_and_free_answer():
    text = "<reasoning>r</reasoning><final>1</final>"
    assert fmt([text], think_tag="reasoning", answer_tag="final") == [1.0]
    assert fmt(["<think>r</think> The answer is \\boxed{1}."], answer_tag="") == [1.0]
    with pytest.raises(ValueError, match="think_tag"):
        build_reward("format_reward", {"think_tag": "<think>"})


def test_tag_count_partial_credit():
    tc = REWARDS["tag_count_reward"]
    assert tc(completions=[GOOD, "<think>a</think>", "nothing", "<think><think>a</think><answer>1</answer>"]) == [1.0, 0.5, 0.0, 0.75]
    pre = build_reward("tag_count_reward", {"prefilled_think": True})
    assert pre(completions=["a</think><answer>1</answer>"]) == [1.0]
    custom = build_reward("tag_count_reward", {"tags": ["reasoning"]})
    assert custom(completions=["<reasoning>x</reasoning>"]) == [1.0]
