"""Recipe sections of the verifier audit (docs/verifiers.md#audit): how many of a verifier's
verdicts are re-checked by slower means, what that may cost, and the optional LLM judge."""

from __future__ import annotations

from pydantic import Field, model_validator

from tasks.recipe.base import Section


class JudgeSettings(Section):
    """An LLM judge at an OpenAI-compatible endpoint (TinyV-style); off while `url` is empty."""

    url: str | None = Field(None, description="Base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1. "
                                              "Empty: no judge (the default; nothing offline needs one).")
    model: str = Field("", description="Model name sent to the endpoint.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key (if any).")
    timeout_s: float = Field(20.0, gt=0, description="Seconds per judge call.")
    max_calls: int = Field(64, ge=0, description="Judge calls per stage or evaluation at most.")

    @model_validator(mode="after")
    def _model_with_url(self):
        if self.url and not self.model:
            raise ValueError("a judge url needs the model name to ask for (judge.model)")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"judge.url must be an http(s) URL of an OpenAI-compatible API, got {self.url!r}")
        return self


class AuditSection(Section):
    """Re-check a sample of the verifier's 0s and 1s (false negatives / false positives)."""

    enabled: bool = Field(True, description="Audit the stage's correctness verifiers (math, exact, numeric match).")
    sample_rate: float = Field(0.02, ge=0, le=1, description="Share of the verifier's 0s, and of its 1s, re-checked.")
    max_per_batch: int = Field(8, ge=0, description="Re-checks per side (0s, 1s) of one reward call at most.")
    max_seconds_per_batch: float = Field(0.05, gt=0, description="Time budget of one reward call's re-checks; "
                                                                 "the rest are skipped (audit/skipped).")
    examples: int = Field(200, ge=0, description="Disagreeing completions kept for the MLflow table.")
    judge: JudgeSettings = JudgeSettings()


class GRPOAudit(AuditSection):
    reward_false_negatives: bool = Field(
        False, description="TinyV's recheck: every 0 of an audited verifier is re-checked and a confirmed false "
                           "negative is paid the verifier's 1 (logged as audit/recheck_reward, apart from "
                           "audit/verifier_reward).")


class EvalAudit(AuditSection):
    sample_rate: float = Field(0.25, ge=0, le=1, description="Share of the verifier's 0s, and of its 1s, re-checked.")
    max_per_batch: int = Field(64, ge=0, description="Re-checks per side of one document's samples at most.")
    max_seconds_per_batch: float = Field(2.0, gt=0, description="Time budget of one document's re-checks.")
