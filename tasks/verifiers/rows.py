"""The row-to-reward contract: how curated rows become the keyword columns a reward reads.

    columns = reward_columns(rows)          # {"id": [...], "answer": [...], "tests": [...], ...}
    scores = reward(prompts=prompts, completions=texts, **columns)

Every canonical column of a curated row (id, source, family, question, messages, answer,
reasoning) and every field of its `metadata` becomes one keyword column, one value per row
(`None` where a row lacks it; a canonical column wins over a metadata field of the same name).
Structured values (dicts, lists holding dicts) are JSON-encoded, so rows of different families
fit one Arrow dataset; rewards that read them (code_reward's `tests`) accept the JSON string.
GRPO, the reward-hacking canary, the pass-rate filter, cold-start rejection sampling and the
verifier-scored evaluation all call this one function, so a reward sees the same columns
everywhere. `column_problems` is the check before training: a reward whose needed column no
row of its families carries is an error naming the reward, the column and the stage.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.verifiers._base import Reward

#: canonical columns of a curated row (tasks.data.sources.CANONICAL, without `metadata`)
CANONICAL = ("id", "source", "family", "question", "messages", "answer", "reasoning")
#: keyword names TRL itself passes to a reward; a row field of that name is not forwarded
RESERVED = frozenset({"prompt", "prompts", "completions", "completion_ids", "trainer_state", "log_metric",
                      "log_extra", "metadata"})


def _encoded(value: Any) -> Any:
    if isinstance(value, dict) or (isinstance(value, (list, tuple)) and any(isinstance(v, dict) for v in value)):
        return json.dumps(value, sort_keys=True)
    return value


def row_fields(row: dict) -> dict[str, Any]:
    """One row's reward fields: its metadata, then its canonical columns (which win)."""
    meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    merged = {**meta, **{k: v for k, v in row.items() if k != "metadata"}}
    return {k: _encoded(v) for k, v in merged.items() if k not in RESERVED and not k.startswith("_")}


def reward_columns(rows: list[dict]) -> dict[str, list]:
    """The reward keyword columns of `rows`: every canonical column and metadata field, one
    value per row (`None` where a row lacks it)."""
    fields = [row_fields(r) for r in rows]
    keys = list(dict.fromkeys([*CANONICAL, *(k for f in fields for k in f)]))
    return {k: [f.get(k) for f in fields] for k in keys}


def repeat_columns(columns: dict[str, list], times: list[int]) -> dict[str, list]:
    """Each row's values repeated `times[i]` times (one per sampled completion of row i)."""
    return {k: [v for v, t in zip(vals, times) for _ in range(t)] for k, vals in columns.items()}


def column_problems(where: str, rewards: list[Reward], rows: list[dict]) -> list[str]:
    """Why `rewards` cannot score `rows` (empty when they can): a reward none of whose families
    occur in the rows, or whose needed column is missing from a row of its families."""
    problems = []
    fields = [row_fields(r) for r in rows]
    for reward in rewards:
        routed = getattr(reward, "by_family", None)  # family_reward: check each family's verifier
        if routed:
            present = {f.get("family") for f in fields}
            problems += column_problems(where, [r for fam, r in routed.items() if fam in present], rows)
        mine = [f for f in fields if reward.applies(f.get("family"))]
        if not mine:
            families = sorted({str(f.get("family")) for f in fields})
            problems.append(f"{where}: {reward.__name__} scores families {list(reward.FAMILIES or ())}, "
                            f"the rows are {families}")
            continue
        for col in reward.required_columns():
            lacking = sum(f.get(col) is None for f in mine)
            if lacking:
                problems.append(f"{where}: {reward.__name__} needs column {col!r}, which {lacking} of "
                                f"{len(mine)} rows it scores lack (add it to the rows, map it with "
                                f"data.sources[].columns, or set the reward's {col!r} parameter)")
    return problems


def family_means(scores: list[float | None], families: list) -> dict[str, float]:
    """Mean score per task family over the scored (non-None) entries."""
    acc: dict[str, list[float]] = {}
    for s, f in zip(scores, families):
        if s is not None:
            acc.setdefault(str(f), []).append(float(s))
    return {f: sum(v) / len(v) for f, v in acc.items()}
