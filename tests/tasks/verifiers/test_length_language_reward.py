"""soft_overlong_reward, cosine_length_reward, repetition_penalty_reward, language_consistency_reward."""

import math

import pytest

from tasks.verifiers import REWARDS, build_reward


def test_soft_overlong_follows_dapo():
    r = build_reward("soft_overlong_reward", {"max_completion_len": 100, "soft_punish_cache": 20})
    ids = [[0] * n for n in (10, 80, 90, 100, 101, 500)]
    assert r(completions=[""] * 6, completion_ids=ids) == [0.0, 0.0, -0.5, -1.0, -1.0, -1.0]
    chars = build_reward("soft_overlong_reward", {"max_completion_len": 10, "soft_punish_cache": 5, "length_unit": "chars"})
    assert chars(completions=["x" * 5, "x" * 11]) == [0.0, -1.0]
    with pytest.raises(ValueError):
        build_reward("soft_overlong_reward", {"max_completion_len": 10, "soft_punish_cache": 20})


def test_cosine_length_scaling():
    r = build_reward("cosine_length_reward", {"max_len": 100})
    short_ok, long_ok = "\\boxed{1}", "x" * 200 + "\\boxed{1}"
    short_bad, long_bad = "\\boxed{2}", "x" * 200 + "\\boxed{2}"
    out = r(completions=[short_ok, long_ok, short_bad, long_bad], answer=["1"] * 4)
    assert out[0] == pytest.approx(0.5 + 0.5 * 0.5 * (1 + math.cos(math.pi * len(short_ok) / 100)))
    assert out[1] == pytest.approx(0.5)
    assert out[0] > out[1] > out[3] > out[2]
    assert out[3] == pytest.approx(0.0)
    assert r(completions=[short_ok], answer=["\\frac{"]) == [None]


def test_repetition_penalty():
    r = REWARDS["repetition_penalty_reward"]
    out = r(completions=["a b c a b c a b c a b c", "the quick brown fox jumps", "too short"])
    assert out[0] < -0.5 and out[1] == 0.0 and out[2] == 0.0
    zh = build_reward("repetition_penalty_reward", {"unit": "chars", "ngram_size": 2})
    assert zh(completions=["我们我们我们我们"])[0] < -0.5


def test_language_consistency():
    r = REWARDS["language_consistency_reward"]
    texts = ["<think>First we add the numbers</think><answer>3</answer>",
             "<think>首先 we add 数字</think>",
             "<think>12+7=19 $x^2$</think>",
             "<think>我们先计算</think>"]
    out = r(completions=texts, language=["en", "en", "en", "zh"])
    assert out[0] == 1.0
    assert 0.0 < out[1] < 1.0
    assert out[2] is None
    assert out[3] == 1.0
    zh = build_reward("language_consistency_reward", {"language": "zh"})
    assert zh(completions=["<think>Let us compute</think>"]) == [0.0]
    with pytest.raises(ValueError, match="unknown language"):
        build_reward("language_consistency_reward", {"language": "klingon"})
