"""Verifier (reward) library: one registry of TRL reward functions by name.

Every entry of ``REWARDS`` is a ready-to-use reward with default parameters: a picklable
callable ``(prompts, completions, **dataset_columns) -> list[float | None]`` whose ``__name__``
is its registry name. ``build_reward(name, params)`` makes a configured copy; an unknown name
or parameter is a ``ValueError`` naming the valid choices. See ``docs/verifiers.md``.
"""

from __future__ import annotations

from typing import Any

from tasks.recipe.base import did_you_mean
from tasks.verifiers._base import Reward, column, completion_text, pick_entries
from tasks.verifiers.code import CodeReward
from tasks.verifiers.code_tests import tests_problem
from tasks.verifiers.control import RandomReward
from tasks.verifiers.equation import EquationReward
from tasks.verifiers.format import FormatReward, TagCountReward
from tasks.verifiers.language import LanguageConsistencyReward
from tasks.verifiers.length import (
    CosineLengthReward,
    RepetitionPenaltyReward,
    SoftOverlongReward,
)
from tasks.verifiers.match import ExactMatchReward, NumericMatchReward
from tasks.verifiers.math import (
    MathAnswerReward,
    extract_final_answer,
    score_math_answer,
)
from tasks.verifiers.sql import SqlExecutionReward
from tasks.verifiers.tools import ToolAnswerReward, ToolCallMatchReward, ToolCallReward

_CLASSES: list[type[Reward]] = [
    MathAnswerReward, FormatReward, TagCountReward, ExactMatchReward, NumericMatchReward, EquationReward,
    CodeReward, LanguageConsistencyReward, SoftOverlongReward, CosineLengthReward, RepetitionPenaltyReward,
    RandomReward, ToolAnswerReward, ToolCallReward, ToolCallMatchReward, SqlExecutionReward,
]



class FamilyReward(Reward):
    """Mixtures: each row scored by the registered verifier its task family names (default:
    math -> math_answer_reward, countdown -> equation_reward, code -> code_reward,
    sql -> sql_execution_reward).

    Scoring rule: that verifier's score for the row; ``None`` for a family not in ``by_family``.
    One name for the places a recipe takes a single verifier (``data.verifier`` for cold-start
    checks and the pass-rate filter, the canary, held-out evaluation). Params: ``by_family``.
    """

    name = "family_reward"
    PARAMS = {"by_family": {"math": "math_answer_reward", "countdown": "equation_reward", "code": "code_reward",
                            "sql": "sql_execution_reward"}}

    def _validate(self) -> None:
        bad = [v for v in self.params["by_family"].values() if v not in REWARDS or v == self.name]
        if bad:
            self._fail(f"by_family names unknown verifiers {bad}; valid: {', '.join(sorted(REWARDS))}")
        self.by_family = {f: type(REWARDS[v])() for f, v in self.params["by_family"].items()}

    def applies(self, family: str | None) -> bool:
        return family is None or family in self.by_family

    def required_columns(self) -> list[str]:
        return []  # each family's verifier checks its own (tasks.verifiers.rows.column_problems)

    def sandbox_isolation(self) -> str | None:
        return next((lvl for r in self.by_family.values() if (lvl := r.sandbox_isolation())), None)

    def runtime_problem(self) -> str | None:
        return next((p for r in self.by_family.values() if (p := r.runtime_problem())), None)

    def score_batch(self, texts, prompts, kwargs):
        families = column(kwargs, "family", len(texts))
        out: list[float | None] = [None] * len(texts)
        for family, reward in self.by_family.items():
            mine = [i for i, f in enumerate(families) if f == family]
            if mine:
                picked = {k: pick_entries(v, mine, len(texts)) for k, v in kwargs.items()}
                for i, score in zip(mine, reward.score_batch([texts[i] for i in mine], prompts, picked)):
                    out[i] = score
        return out


#: The one registry: name -> reward with default parameters (a callable ``Reward`` instance).
REWARDS: dict[str, Any] = {cls.name: cls() for cls in _CLASSES}
REWARDS[FamilyReward.name] = FamilyReward()


def _lookup(name: str) -> Reward:
    if name not in REWARDS:
        raise ValueError(f"unknown verifier {name!r}{did_you_mean(name, REWARDS)} Valid: {', '.join(sorted(REWARDS))}")
    return REWARDS[name]


def build_reward(name: str, params: dict | None = None) -> Reward:
    """A picklable reward ``name`` configured with ``params``; ``__name__`` equals ``name``.

    Raises ``ValueError`` for an unknown name (listing the valid names), an unknown parameter
    (naming the closest valid one) or a bad parameter value.
    """
    proto = _lookup(name)
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"params for {name} must be a mapping, got {type(params).__name__}")
    return type(proto)(**(params or {}))


def verifier_problems(where: str, name: str, params: dict | None = None, params_at: str | None = None) -> list[str]:
    """The one check of a verifier reference in a recipe (stage rewards, data verifier, canary,
    benchmarks): [] when `build_reward(name, params)` works and can run here, else one message at
    `where` (an unknown name, with the closest valid one) or at `params_at` (a bad parameter, or a
    level of isolation this machine cannot give), so the problem shows before any compute."""
    try:
        reward = build_reward(name, params)
    except (ValueError, TypeError) as e:
        return [f"{where if name not in REWARDS else params_at or where}: {e}"]
    if problem := reward.runtime_problem():  # e.g. no sandbox for code_reward
        return [f"{params_at or where}: {problem}"]
    return []


def sandbox_tags(rewards: list[Reward]) -> dict[str, str]:
    """MLflow tags for a stage that runs these rewards: ``sandbox.isolation`` when any runs code."""
    levels = sorted({lvl for r in rewards if (lvl := r.sandbox_isolation())})
    return {"sandbox.isolation": ",".join(levels)} if levels else {}


def reward_param_names(name: str) -> set[str]:
    """The parameter names ``build_reward(name, ...)`` accepts (for the recipe validator)."""
    return set(type(_lookup(name)).PARAMS)


__all__ = [
    "REWARDS",
    "Reward",
    "build_reward",
    "completion_text",
    "extract_final_answer",
    "reward_param_names",
    "verifier_problems",
    "sandbox_tags",
    "score_math_answer",
    "tests_problem",
]
