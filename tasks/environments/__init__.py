"""Registered environments: the tools of multi-turn rollouts, named by a recipe like a verifier.

    factory = environment_factory("shop", {"max_calls": 4})   # GRPOTrainer(environment_factory=factory)
    env = factory(); env.reset(**row_fields(row)); env.price(item="fig"); env.expected

`data.environment` names one for the recipe: GRPO passes its factory to TRL's `GRPOTrainer`
(one instance per rollout, `reset` from the row's columns), evaluation runs the same tools in
`tasks.environments.rollout`, cold-start traces replay their calls through it, and the rewards
of `tasks.verifiers.tools` read its state (`expected`, `calls`). Walk-through:
docs/adding-an-environment.md.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from tasks.environments._base import Environment, tool
from tasks.environments.shop import ShopEnvironment

ENVIRONMENTS: dict[str, type[Environment]] = {cls.name: cls for cls in (ShopEnvironment,)}

__all__ = ["ENVIRONMENTS", "Environment", "environment_factory", "environment_row_problem",
           "rollout_environment_problems", "tool"]


def rollout_environment_problems(where: str, name: str | None, params: dict | None = None) -> list[str]:
    """Why `name` with `params` cannot be built (an unknown name or parameter, a wrongly typed
    value): [] when it can. Recipe validation reports these before any compute."""
    if name is None:
        return []
    if name not in ENVIRONMENTS:
        return [f"{where}: unknown environment {name!r}; registered: {', '.join(sorted(ENVIRONMENTS))}"]
    cls, problems = ENVIRONMENTS[name], []
    for key, value in (params or {}).items():
        if key not in cls.PARAMS:
            problems.append(f"{where}_params: {name} has no parameter {key!r}; valid: {', '.join(sorted(cls.PARAMS))}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"{where}_params.{key}: must be a positive number, got {value!r}")
    return problems


def environment_factory(name: str, params: dict[str, Any] | None = None):
    """A zero-argument callable that builds a fresh `name` environment (TRL's contract)."""
    problems = rollout_environment_problems("data.environment", name, params)
    if problems:
        raise ValueError("; ".join(problems))
    return partial(ENVIRONMENTS[name], **(params or {}))


def environment_row_problem(name: str, params: dict | None, row: dict) -> str | None:
    """Why a curated row of one of `name`'s families cannot start that environment (its state
    columns missing or unreadable, no expected answer), or None: curation quarantines such rows."""
    cls = ENVIRONMENTS.get(name)
    if cls is None or row.get("family") not in cls.FAMILIES:
        return None
    meta = row.get("metadata")
    meta = json.loads(meta) if isinstance(meta, str) else meta or {}
    env = cls(**(params or {}))
    try:
        env.reset(**{**meta, **{k: v for k, v in row.items() if k != "metadata"}})
        env.expected  # noqa: B018 - computing it is the check
    except (ValueError, KeyError, TypeError) as e:
        return f"bad environment state: {name} cannot start from this row ({type(e).__name__}: {e})"
    return None
