"""Score a file of completions with a recipe's verifiers before anyone trains against them.

    report = verify_completions(rows, rewards)   # rows: dataset columns + "completion"
    print(format_report(report))

Used by `rlvr verify`: per-verifier statistics (mean, how many rows scored, not applicable,
distribution of scores) and a few example completions for each distinct outcome.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

EXAMPLES_PER_OUTCOME = 2


def join_completions(completions: list[dict], dataset: list[dict] | None) -> list[dict]:
    """Completions with their dataset row's columns; rows are matched by `id` when a dataset is given."""
    if dataset is None:
        return completions
    by_id = {str(r["id"]): r for r in dataset}
    missing = [c.get("id") for c in completions if str(c.get("id")) not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} completions have no dataset row with the same id, e.g. {missing[:3]}")
    return [{**by_id[str(c["id"])], **c} for c in completions]


def verify_completions(rows: list[dict], rewards: list[Any]) -> dict[str, dict]:
    """Run every reward over all rows (one batch, as TRL calls them) and summarise."""
    if not rows:
        raise ValueError("no completions to verify")
    columns = {k: [r.get(k) for r in rows] for k in rows[0] if k not in ("completion", "prompt")}
    prompts = [r.get("prompt") or r.get("question") for r in rows]
    completions = [r["completion"] for r in rows]
    report = {}
    for reward in rewards:
        scores = reward(prompts=prompts, completions=completions, **columns)
        scored = [s for s in scores if s is not None]
        examples: dict[str, list[dict]] = defaultdict(list)
        for row, s in zip(rows, scores):
            outcome = "n/a" if s is None else f"{s:.3g}"
            if len(examples[outcome]) < EXAMPLES_PER_OUTCOME:
                examples[outcome].append({"id": row.get("id"), "completion": str(row["completion"])[:300]})
        report[reward.__name__] = {
            "rows": len(scores),
            "scored": len(scored),
            "not_applicable": len(scores) - len(scored),
            "mean": sum(scored) / len(scored) if scored else None,
            "distribution": dict(Counter("n/a" if s is None else f"{s:.3g}" for s in scores).most_common()),
            "examples": dict(examples),
        }
    return report


def format_report(report: dict[str, dict]) -> str:
    lines = []
    for name, r in report.items():
        mean = "-" if r["mean"] is None else f"{r['mean']:.4f}"
        lines.append(f"{name}: mean {mean} over {r['scored']}/{r['rows']} rows "
                     f"({r['not_applicable']} not applicable)")
        lines.append("  scores: " + ", ".join(f"{k} x{v}" for k, v in r["distribution"].items()))
        for outcome, exs in r["examples"].items():
            for ex in exs:
                text = ex["completion"].replace("\n", "\\n")
                lines.append(f"  [{outcome}] id={ex['id']}: {text[:160]}")
    return "\n".join(lines)
