"""Control reward: a seeded coin flip that ignores the completion (spurious-reward studies).

Training GRPO with it instead of the verifier separates what the verifier teaches from what
any reward of the same mean would do (sharpening, format habits); measurements/grpo_gain.py
`--control random` runs the same stage with it.
"""

from __future__ import annotations

import random

from tasks.verifiers._base import Reward


class RandomReward(Reward):
    """Control: 1.0 with probability ``p``, else 0.0, independent of the completion.

    Scoring rule: a seeded coin per completion (``seed`` and the call count fix the stream, so a
    run repeats). Never a training signal about correctness: its gains are the baseline a real
    verifier's must beat. Params: ``p`` (0.5, the mean reward), ``seed`` (0).
    """

    name = "random_reward"
    PARAMS = {"p": 0.5, "seed": 0}

    def _validate(self) -> None:
        if not 0.0 <= self.params["p"] <= 1.0:
            self._fail("p must be in [0, 1]")
        self.calls = 0

    def score_batch(self, texts, prompts, kwargs):
        rng = random.Random(f"{self.params['seed']}:{self.calls}")
        self.calls += 1
        return [1.0 if rng.random() < self.params["p"] else 0.0 for _ in texts]
