"""Where a verifier audit goes: `audit.json` beside the stage's outputs, the MLflow table of the
disagreeing completions, the Prefect artifact section, and the `rlvr verify --audit` text."""

from __future__ import annotations

import json
from pathlib import Path

AUDIT_FILE = "audit.json"
TABLE = "audit/disagreements.json"


def write_audit(report: dict, out_dir: str | Path, run_id: str | None) -> None:
    """`<out_dir>/audit.json`, and the disagreements as the MLflow table `audit/disagreements.json`."""
    Path(out_dir, AUDIT_FILE).write_text(json.dumps(report, indent=2))
    if run_id and report["disagreements"]:
        import pandas as pd
        from mlflow import MlflowClient

        MlflowClient().log_table(run_id, pd.DataFrame(report["disagreements"]), TABLE)


def read_audit(out_dir: str | Path) -> dict | None:
    path = Path(out_dir) / AUDIT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _rate_rows(s: dict) -> list[tuple[str, str, str, int]]:
    return [(f"false {side}s", f"{s[f'audit/false_{side}_rate']:.1%}",
             f"{s[f'audit/false_{side}_rate_low']:.1%}-{s[f'audit/false_{side}_rate_high']:.1%}",
             int(s[f"audit/{side}s_checked"])) for side in ("negative", "positive")]


def _oneline(text: str, n: int) -> str:
    return text[-n:].replace("\n", "\\n")


def audit_markdown(report: dict | None, examples: int = 5) -> list[str]:
    """The "Verifier audit" section of a stage's Prefect artifact (empty without an audit)."""
    if not report:
        return []
    s = report["summary"]
    lines = ["", "## Verifier audit", "", "| | rate | 95% Wilson | checked |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _rate_rows(s)]
    lines += ["", f"Undecided: {int(s['audit/undecided'])}; skipped (time budget): {int(s['audit/skipped'])}; "
                  f"disagreements in the MLflow table `{TABLE}`.", ""]
    for d in report["disagreements"][:examples]:
        text = _oneline(d["completion"], 200).replace("|", "\\|").replace("`", "'")
        lines.append(f"- **{d['kind']}** ({d['method']}; gold `{d['gold']}`, answer `{d['answer']}`): `{text}`")
    return lines


def audit_text(report: dict, examples: int = 10) -> str:
    """`rlvr verify --audit`: rates with intervals and sample sizes, then the disagreements."""
    s = report["summary"]
    lines = ["verifier audit (re-check by exact re-parse, exact numbers, multi-point evaluation, math-verify"
             + (", LLM judge" if report.get("judge") else "") + "):"]
    lines += [f"  {a}: {b} (95% Wilson {c}) of {d} checked" for a, b, c, d in _rate_rows(s)]
    lines.append(f"  undecided {int(s['audit/undecided'])}, skipped {int(s['audit/skipped'])}")
    for d in report["disagreements"][:examples]:
        lines.append(f"  [{d['kind']}] {d['verifier']} via {d['method']}: gold {d['gold']!r}, answer "
                     f"{d['answer']!r}: {_oneline(d['completion'], 160)}")
    return "\n".join(lines)


def audit_completions(rows: list[dict], rewards: list, judge=None) -> dict:
    """`rlvr verify --audit`: every auditable verifier's verdict on every row, re-checked."""
    import random

    from tasks.verifiers.audit import AuditTally, audit_batch, auditable

    columns = {k: [r.get(k) for r in rows] for k in dict.fromkeys(k for r in rows for k in r)
               if k not in ("completion", "prompt")}
    prompts = [r.get("prompt") or r.get("question") for r in rows]
    completions = [str(r["completion"]) for r in rows]
    tally = AuditTally(max_examples=len(rows))
    for reward in filter(auditable, rewards):
        scores = reward(prompts=prompts, completions=completions, **columns)
        items, skipped = audit_batch(reward, completions, scores, prompts, columns, sample_rate=1.0,
                                     max_per_batch=len(rows), max_seconds=float("inf"), rng=random.Random(0),
                                     judge=judge)
        tally.add(items, skipped)
    return {"summary": tally.summary(), "disagreements": tally.disagreements,
            "judge": {"calls": judge.calls, "failures": judge.failures} if judge else None}
