"""Score a file of completions with a recipe's verifiers before anyone trains against them.

    report = verify_completions(rows, rewards)   # rows: dataset columns + "completion"
    print(format_report(report))

Used by `rlvr verify`: per-verifier statistics (mean, how many rows scored, not applicable,
distribution of scores and of their reasons: no answer found, wrong or right answer) with a few
example completions for each distinct outcome, and each stage's weighted total (what GRPO sums).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from tasks.verifiers.math import extract_final_answer

EXAMPLES_PER_OUTCOME = 2
_EXTRACT = ("think_tag", "answer_tag", "prefilled_think")


def score_reason(reward: Any, text: str, score: float | None) -> str:
    """Why a completion got its score: the reward does not apply (a column it reads is missing),
    or, for rewards that read a final answer, no answer found vs a wrong or right answer."""
    if score is None:
        return "not applicable (the row lacks a column it reads)"
    if "answer_tag" not in reward.PARAMS and "math" not in (reward.FAMILIES or ()):
        return f"scored {score:.3g}"
    answer = extract_final_answer(str(text), **{k: getattr(reward, k) for k in _EXTRACT if k in reward.PARAMS})
    if answer is None:
        return "no answer found"
    if not set(reward.FAMILIES or ()) & {"math", "countdown"}:  # a format reward: the answer is not judged
        return f"answer found, scored {score:.3g}"
    return f"{'right' if score >= 1.0 else 'wrong'} answer {answer[:40]!r}"


def _reason_kind(reason: str) -> str:
    return reason.split(" '", 1)[0]  # "wrong answer '7'" -> "wrong answer"


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
        reasons = []
        for i, (row, s) in enumerate(zip(rows, scores)):
            outcome = "n/a" if s is None else f"{s:.3g}"
            reasons.append(score_reason(reward, row["completion"], s))
            if len(examples[outcome]) < EXAMPLES_PER_OUTCOME:
                examples[outcome].append({"id": row.get("id") if row.get("id") is not None else f"line {i + 1}",
                                          "reason": reasons[-1], "completion": str(row["completion"])[:300]})
        report[reward.__name__] = {
            "rows": len(scores),
            "scored": len(scored),
            "not_applicable": len(scores) - len(scored),
            "mean": sum(scored) / len(scored) if scored else None,
            "distribution": dict(Counter("n/a" if s is None else f"{s:.3g}" for s in scores).most_common()),
            "reasons": dict(Counter(_reason_kind(r) for r in reasons).most_common()),
            "scores": scores,
            "examples": dict(examples),
        }
    return report


def weighted_totals(report: dict[str, dict], stages: list) -> dict[str, float | None]:
    """Stage name -> mean over rows of the weighted sum of its rewards, as GRPO adds them (a reward
    that does not apply to a row adds nothing; a row no reward applies to has no total)."""
    totals = {}
    for stage in stages:
        per_row = []
        for i in range(len(next(iter(report.values()))["scores"])):
            parts = [r.weight * report[r.name]["scores"][i] for r in stage.rewards
                     if r.name in report and report[r.name]["scores"][i] is not None]
            if parts:
                per_row.append(sum(parts))
        totals[stage.name] = sum(per_row) / len(per_row) if per_row else None
    return totals


def format_report(report: dict[str, dict], stages: list = ()) -> str:
    lines = []
    for name, r in report.items():
        mean = "-" if r["mean"] is None else f"{r['mean']:.4f}"
        lines.append(f"{name}: mean {mean} over {r['scored']}/{r['rows']} rows "
                     f"({r['not_applicable']} not applicable)")
        lines.append("  scores: " + ", ".join(f"{k} x{v}" for k, v in r["distribution"].items()))
        lines.append("  reasons: " + ", ".join(f"{k} x{v}" for k, v in r["reasons"].items()))
        for outcome, exs in r["examples"].items():
            for ex in exs:
                text = ex["completion"].replace("\n", "\\n")
                lines.append(f"  [{outcome}] id={ex['id']} ({ex['reason']}): {text[:160]}")
    for stage, total in weighted_totals(report, list(stages)).items():
        spec = next(s for s in stages if s.name == stage)
        weights = " + ".join(f"{r.weight:g}×{r.name}" for r in spec.rewards)
        shown = "-" if total is None else f"{total:.4f}"
        lines.append(f"stage {stage}: weighted total {shown} (mean over rows of {weights})")
    return "\n".join(lines)
