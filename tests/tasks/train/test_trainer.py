"""ConcurrentReward's per-batch metrics: per-family means and the share of rows it scored."""

import asyncio
from collections import Counter

from tasks.train.trainer import ConcurrentReward
from tasks.verifiers import build_reward


def _call(reward, **columns):
    seen: list[tuple[str, float]] = []
    wrapped = ConcurrentReward(reward, Counter(), lambda name, value: seen.append((name, value)))
    return asyncio.run(wrapped(**columns)), dict(seen)


def test_a_mixture_batch_reports_each_family_and_the_scored_share():
    texts = ["<answer>3</answer>", "<answer>4</answer>", "<answer>1+2</answer>"]
    scores, seen = _call(build_reward("math_answer_reward"), completions=texts, answer=["3", "3", "3"],
                         family=["math", "math", "countdown"])
    assert scores == [1.0, 0.0, None]
    assert seen == {"rewards/math_answer_reward/scored": 1.0, "rewards/math_answer_reward/math/mean": 0.5}


def test_a_reward_with_no_score_for_its_rows_reports_zero_scored():
    _, seen = _call(build_reward("code_reward"), completions=["x", "y"], tests=[None, None], family=["code", "code"])
    assert seen == {"rewards/code_reward/scored": 0.0}
