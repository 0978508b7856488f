"""The verifier audit inside a GRPO stage (tasks.verifiers.audit does the re-checking).

    audit = StageAudit(stage.audit, seed)
    rewards = audit.wrap(rewards)                  # audited verifiers re-check a sample of each batch
    trainer.metric_sources.append(audit.metrics)   # audit/* and time/audit at each logging step (step -> dict)
    audit.finish(out_dir, run_id)                  # audit.json + the MLflow table of disagreements

The wrapped reward keeps its name, so `rewards/<name>/mean` is unchanged. With
`audit.reward_false_negatives` (TinyV's recheck) every 0 of an audited verifier is re-checked and
a confirmed false negative is paid 1.0; the stage then logs `audit/verifier_reward` (the
verifier's own mean) and `audit/recheck_reward` (the share paid by the recheck) apart, and
`rewards/<name>/mean` is their sum.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from tasks.recipe.audit import GRPOAudit
from tasks.verifiers._base import completion_text, log_metric
from tasks.verifiers.audit import AuditTally, audit_batch, auditable
from tasks.verifiers.audit_judge import build_judge
from tasks.verifiers.audit_report import write_audit


class AuditedReward:
    """A verifier whose calls also feed the stage's audit (attributes pass through to it)."""

    def __init__(self, reward, audit: StageAudit):
        self.reward, self.audit = reward, audit
        self.__name__ = reward.__name__

    def __getattr__(self, item):
        return getattr(self.__dict__["reward"], item)

    def __call__(self, prompts=None, completions=None, **kwargs):
        scores = self.reward(prompts=prompts, completions=completions, **kwargs)
        return self.audit.check(self.reward, prompts, completions, scores, kwargs)


class StageAudit:
    def __init__(self, cfg: GRPOAudit, seed: int = 0):
        self.cfg = cfg
        self.tally = AuditTally(max_examples=cfg.examples)
        self.judge = build_judge(cfg.judge)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()  # rewards run in worker threads
        self.last = (0, 0.0)  # (step, audit seconds) at the last logging step

    def wrap(self, rewards: list) -> list:
        if not self.cfg.enabled:
            return rewards
        return [AuditedReward(r, self) if auditable(r) else r for r in rewards]

    def check(self, reward, prompts, completions, scores: list, kwargs: dict) -> list:
        t0, texts = time.perf_counter(), [completion_text(c) for c in completions]
        columns = {k: v for k, v in kwargs.items() if k not in ("trainer_state", "log_metric", "log_extra")}
        pay = self.cfg.reward_false_negatives
        with self.lock:
            negatives = [i for i, s in enumerate(scores) if s == 0.0] if pay else None
            items, skipped = audit_batch(
                reward, texts, scores, prompts, columns, sample_rate=self.cfg.sample_rate,
                max_per_batch=self.cfg.max_per_batch, max_seconds=self.cfg.max_seconds_per_batch, rng=self.rng,
                judge=self.judge, negatives=negatives)
            self.tally.add(items, skipped, time.perf_counter() - t0)
        if not pay:
            return scores
        paid = {it.index for it in items if it.verdict == 0 and it.audit}
        out = [1.0 if i in paid else s for i, s in enumerate(scores)]
        given = [s for s in scores if s is not None]
        log_metric(kwargs, "audit/verifier_reward", sum(given) / max(len(given), 1))
        log_metric(kwargs, "audit/recheck_reward", len(paid) / max(len(given), 1))
        return out

    def metrics(self, step: int) -> dict[str, float]:
        """The stage's audit so far (cumulative) and `time/audit`: re-check seconds per
        optimizer step since the last logging step (part of `time/reward`)."""
        with self.lock:
            out, seconds = self.tally.summary(), self.tally.seconds
        if step > self.last[0]:
            out["time/audit"] = (seconds - self.last[1]) / (step - self.last[0])
            self.last = (step, seconds)
        return out

    def finish(self, out_dir: Path, run_id: str | None) -> dict:
        """Write audit.json (summary + disagreements) and log the disagreements table to the run."""
        report = {"summary": self.tally.summary(), "seconds": self.tally.seconds, "disagreements": self.tally.disagreements,
                  "judge": {"calls": self.judge.calls, "failures": self.judge.failures} if self.judge else None,
                  "settings": self.cfg.model_dump(mode="json")}
        write_audit(report, out_dir, run_id)
        return report
