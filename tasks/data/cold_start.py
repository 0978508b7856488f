"""The cold-start SFT set: verifier-checked reasoning traces in the <think>/<answer> template.

    picker = ColdStartPicker(recipe.data, model_path=recipe.model.name_or_path)
    sft, rest, rejected = picker.take(rows, wanted=100)    # rows in the curated (shuffled) order

Two modes (`data.cold_start.mode`):
- traces: a row's own worked solution (`reasoning`, e.g. GSM8K's or MATH's) is formatted
  and kept if the verifier accepts it and, when the trace states a final answer of its own
  (a MATH solution's \boxed{}), that answer too; otherwise the trace or the gold answer is
  wrong, so the row is quarantined.
- rejection_sampling (DeepSeek-R1's cold start): a teacher (a model directory, the policy,
  or an OpenAI-compatible endpoint) writes `candidates` answers per prompt; the first one the
  verifier accepts is formatted and kept. A prompt the teacher never solves is still a good
  RL prompt, so it goes on to the GRPO split rather than to quarantine.
"""

from __future__ import annotations

import logging
from collections import Counter

from tasks.data.generation import Sampler, judge, make_sampler
from tasks.data.sources import prompt_messages
from tasks.recipe import DataSection
from tasks.verifiers.math import extract_final_answer

log = logging.getLogger(__name__)


def format_completion(reasoning: str, answer: str) -> str:
    """The reasoning + final-answer format every stage and verifier agrees on."""
    return f"<think>\n{reasoning}\n</think>\n<answer>{answer}</answer>"


def reasoning_of(text: str) -> str:
    """The reasoning part of a teacher's answer: inside <think> if it has one, else all of it
    up to an <answer> block (a \\boxed{} answer stays inside the reasoning)."""
    if "</think>" in text:
        return text[: text.rfind("</think>")].replace("<think>", "").strip()
    return text.split("<answer>")[0].strip()


class ColdStartPicker:
    def __init__(self, cfg: DataSection, model_path: str | None = None):
        self.cfg = cfg
        self.stats: Counter = Counter()
        self._sampler: Sampler | None = None
        self._model_path = model_path
        c = cfg.cold_start
        if c.mode == "rejection_sampling" and c.teacher_is_endpoint and cfg.sft_size:
            self.sampler  # noqa: B018 - check the endpoint before any curation work

    @property
    def sampler(self) -> Sampler:
        """The teacher, loaded (or its endpoint checked) on first use."""
        if self._sampler is None:
            c = self.cfg.cold_start
            teacher = self._model_path if c.teacher == "policy" else c.teacher
            self._sampler = make_sampler(teacher, c, self.cfg.seed, **(
                {"model": c.teacher_model, "api_key_env": c.api_key_env, "timeout_s": c.timeout_s}
                if c.teacher_is_endpoint else {}))
        return self._sampler

    def take(self, rows: list[dict], wanted: int) -> tuple[list[dict], list[dict], list[dict]]:
        """(sft rows with `completion`, rows left for GRPO, quarantined rows with `reason`)."""
        if wanted <= 0:
            return [], rows, []
        if self.cfg.cold_start.mode == "traces":
            return self._from_traces(rows, wanted)
        return self._by_rejection_sampling(rows, wanted)

    def _accepted(self, rows: list[dict], completions: list[str]) -> list[bool]:
        prompts = [prompt_messages(r, self.cfg.system_prompt) for r in rows]
        return [ok[0] for ok in judge(self.cfg.verifier, rows, prompts, [[c] for c in completions])]

    def _from_traces(self, rows, wanted):
        tried, rest = [], []
        for row in rows:  # the first `wanted` rows that have a trace are tried
            (tried if len(tried) < wanted and row.get("reasoning") is not None else rest).append(row)
        completions = [format_completion(r["reasoning"], r["answer"]) for r in tried]
        # A trace that states its own final answer (\boxed{}, <answer>, ####) must reach the gold one.
        concludes = [extract_final_answer(r["reasoning"]) for r in tried]
        own = iter(self._accepted([r for r, c in zip(tried, concludes) if c],
                                  [r["reasoning"] for r, c in zip(tried, concludes) if c]))
        sft, rejected = [], []
        for row, completion, ok, stated in zip(tried, completions, self._accepted(tried, completions), concludes):
            if stated is not None and not next(own):
                rejected.append({**row, "reason": f"cold-start trace fails the verifier: the trace concludes "
                                                  f"{stated!r}, the gold answer is {row['answer']!r}"})
            elif not ok:
                rejected.append({**row, "reason": f"cold-start trace fails the verifier: {self.cfg.verifier} "
                                                  f"rejects the formatted trace for gold answer {row['answer']!r}"})
            else:
                sft.append({**row, "completion": completion})
        self.stats.update(traces_tried=len(tried), traces_kept=len(sft))
        return sft, rest, rejected

    def _by_rejection_sampling(self, rows, wanted):
        sft, unsolved, i = [], [], 0
        while len(sft) < wanted and i < len(rows):  # more prompts until enough are solved
            batch = rows[i: i + wanted - len(sft)]
            i += len(batch)
            for row, completion, pass_rate in self._solve(batch):
                if completion is None:
                    unsolved.append(row)
                    continue
                sft.append({**row, "completion": completion, "metadata": {
                    **row["metadata"], "cold_start": "rejection_sampling", "teacher_pass_rate": pass_rate}})
        self.stats.update(accepted=len(sft))
        return sft, unsolved + rows[i:], []

    def _solve(self, rows):
        """(row, formatted first accepted answer or None, teacher pass rate) per row."""
        prompts = [prompt_messages(r, self.cfg.system_prompt) for r in rows]
        samples = self.sampler(prompts, self.cfg.cold_start.candidates)
        for row, group, ok in zip(rows, samples, judge(self.cfg.verifier, rows, prompts, samples)):
            self.stats.update(prompts=1, candidates=len(group), correct_candidates=sum(ok))
            # the formatted trace must pass the verifier too (the template moves the answer)
            formatted = (format_completion(reasoning_of(t), row["answer"]) for t, good in zip(group, ok) if good)
            completion = next((f for f in formatted if self._accepted([row], [f])[0]), None)
            yield row, completion, round(sum(ok) / max(len(ok), 1), 4)

    def metrics(self) -> dict[str, float]:
        out = {f"cold_start/{k}": float(v) for k, v in self.stats.items()}
        if self.stats.get("candidates"):
            out["cold_start/acceptance_rate"] = self.stats["correct_candidates"] / self.stats["candidates"]
        return out
