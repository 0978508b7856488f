"""The verifier audit of an evaluation: a sample of each verifier-scored benchmark's samples is
re-checked by tasks.verifiers.audit (docs/evaluation.md#verifier-audit).

    audit = EvaluationAudit(cfg)
    audit.add_benchmark(run.name, res["samples"])   # after each verifier-scored benchmark
    audit.metrics()    # audit/* pooled over the benchmarks, <benchmark>/audit/* for each
    audit.report()     # what tasks.verifiers.audit_report writes to audit.json and the MLflow table

Each document's samples are scored again by the benchmark's verifier (only rows an auditable
verifier scores: math, exact and numeric match; code rows are never re-run), then a sample of
its 0s and 1s is re-checked, seeded by `evaluation.seed`.
"""

from __future__ import annotations

import random
import time

from tasks.recipe import EvaluationSection
from tasks.verifiers import build_reward
from tasks.verifiers.audit import AuditTally, audit_batch, auditable
from tasks.verifiers.audit_judge import build_judge
from tasks.verifiers.rows import repeat_columns, reward_columns


def flat(x) -> list[str]:
    """lm-eval's nested responses as one flat list of strings."""
    if isinstance(x, (list, tuple)):
        return [y for item in x for y in flat(item)]
    return [x if isinstance(x, str) else str(x)]


class EvaluationAudit:
    """One evaluation's audit: a tally per verifier-scored benchmark."""

    def __init__(self, cfg: EvaluationSection):
        self.cfg, self.settings = cfg, cfg.audit
        self.judge = build_judge(cfg.audit.judge)
        self.rng = random.Random(cfg.seed)
        self.tallies: dict[str, AuditTally] = {}

    def add_benchmark(self, name: str, samples: dict[str, list[dict]]) -> None:
        """Audit one benchmark's lm-eval samples (`res["samples"]`)."""
        bench = next((b for b in self.cfg.benchmarks if b.name == name), None)
        if not self.settings.enabled or bench is None or not bench.scored_by_verifier:
            return
        reward = build_reward(bench.verifier or "math_answer_reward", bench.verifier_params)
        fams = auditable(reward)
        if not fams:
            return
        q_col, a_col = bench.columns.get("question", "question"), bench.columns.get("answer", "answer")
        tally = self.tallies.setdefault(name, AuditTally(max_examples=self.settings.examples))
        seen: set = set()
        for key, docs in samples.items():
            for s in docs:  # one entry per document and filter: audit each document once
                doc = s.get("doc") or {}
                if (key, s["doc_id"]) in seen or not (None in fams or doc.get("family") in fams):
                    continue
                seen.add((key, s["doc_id"]))
                self._audit_doc(reward, tally, {**doc, "question": doc.get(q_col), "answer": doc.get(a_col)},
                                flat(s.get("resps")))

    def _audit_doc(self, reward, tally: AuditTally, row: dict, texts: list[str]) -> None:
        n = len(texts)
        columns = repeat_columns(reward_columns([row]), [n])
        prompts = [row["question"]] * n
        scores = reward(prompts=prompts, completions=texts, **columns)
        t0, s = time.perf_counter(), self.settings
        items, skipped = audit_batch(reward, texts, scores, prompts, columns, sample_rate=s.sample_rate,
                                     max_per_batch=s.max_per_batch, max_seconds=s.max_seconds_per_batch,
                                     rng=self.rng, judge=self.judge)
        tally.add(items, skipped, time.perf_counter() - t0)

    def pooled(self) -> AuditTally:
        total = AuditTally(max_examples=self.settings.examples)
        for name, t in self.tallies.items():
            for k in ("negatives", "false_negatives", "positives", "false_positives", "undecided", "skipped", "seconds"):
                setattr(total, k, getattr(total, k) + getattr(t, k))
            total.disagreements += [{"benchmark": name, **d} for d in t.disagreements]
        return total

    def metrics(self) -> dict[str, float]:
        """`audit/*` over every audited benchmark, and `<benchmark>/audit/*` for each."""
        if not self.tallies:
            return {}
        out = self.pooled().summary()
        for name, t in self.tallies.items():
            out.update({f"{name}/{k}": v for k, v in t.summary().items()})
        return out

    def report(self) -> dict:
        pooled = self.pooled()
        return {"summary": pooled.summary(), "seconds": pooled.seconds, "disagreements": pooled.disagreements,
                "benchmarks": {name: t.summary() for name, t in self.tallies.items()},
                "judge": {"calls": self.judge.calls, "failures": self.judge.failures} if self.judge else None,
                "settings": self.settings.model_dump(mode="json")}
