"""Difficulty filter by pass rate, run at the start of a GRPO stage with that stage's policy.

    metrics = filter_stage_rows(recipe, stage, data_dir, init_dir, out_dir)   # the GRPO flow's step
    metrics = filter_by_pass_rate(rows, recipe.data, policy="runs/.../sft/model", out_dir=d)

Why here and not in curation: the policy that exists before GRPO is the SFT checkpoint (and,
for a later stage, the previous stage), so the filter is a step of the GRPO flow: its own
cached stage `difficulty-<stage>` between the starting checkpoint and the stage's training.
Each prompt is answered `samples` times, the data verifier scores the answers, and prompts
whose pass rate lies outside [min_pass_rate, max_pass_rate] are quarantined with the reason
("too easy: pass rate 1.0 above max 0.9"): an all-right or all-wrong group has zero reward
variance and gives GRPO no gradient (open-r1 `scripts/pass_rate_filtering`). The kept rows go
to `grpo.jsonl` with a `pass_rate` column; the stage trains on that file.

With `max_rows` the filter stops after the batch in which that many prompts are kept (the
stage would not train on more); later rows are not scored and stay only in the curated split.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tasks.data.generation import judge, make_sampler
from tasks.data.sources import prompt_messages, read_jsonl, write_jsonl
from tasks.layout import QUARANTINE, model_dir, split_file
from tasks.recipe import DataSection, DifficultySection, GRPOStage, Recipe, stable_hash
from tasks.stages import StageOutput, StageSpec, stage_name
from tasks.train.grpo import select_rows


def difficulty_key(recipe: Recipe, index: int, data_key: str, init_key: str) -> str:
    """Cache key of the pass-rate filter before GRPO stage `index`: the filter's settings, the
    verifier and prompt that score the answers, the stage's row selection, data and policy."""
    return stable_hash([recipe.digest("seed", "grpo.difficulty", "data.verifier", "data.system_prompt",
                                      f"grpo.stages.{index}.data"), data_key, init_key])


def band_reason(pass_rate: float, lo: float, hi: float) -> str | None:
    """Why a prompt with this pass rate gives GRPO too little signal, or None when in the band."""
    if pass_rate > hi:
        return f"too easy: pass rate {round(pass_rate, 3)} above max {hi}"
    if pass_rate < lo:
        return f"too hard: pass rate {round(pass_rate, 3)} below min {lo}"
    return None


def filter_by_pass_rate(rows: list[dict], d: DifficultySection, cfg: DataSection, policy: str, out_dir: Path,
                        max_rows: int | None = None) -> dict[str, float]:
    """Write `grpo.jsonl` (in-band rows + `pass_rate`) and `quarantine.jsonl` to `out_dir`; the
    answers are scored by `cfg.verifier` on prompts with `cfg.system_prompt`."""
    sample = make_sampler(policy, d, cfg.seed)
    kept, rejected, rates = [], [], []
    step = d.batch_size
    for start in range(0, len(rows), step):
        if max_rows is not None and len(kept) >= max_rows:
            break
        batch = rows[start: start + step]
        prompts = [prompt_messages(r, cfg.system_prompt) for r in batch]
        for row, ok in zip(batch, judge(cfg.verifier, batch, prompts, sample(prompts, d.samples))):
            rate = sum(ok) / len(ok)
            rates.append(rate)
            reason = band_reason(rate, d.min_pass_rate, d.max_pass_rate)
            if reason:
                rejected.append({**row, "pass_rate": rate, "reason": reason})
            else:
                kept.append({**row, "pass_rate": rate})
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(split_file(out_dir, "grpo"), kept)
    write_jsonl(split_file(out_dir, QUARANTINE), rejected)
    by_reason = Counter(r["reason"].split(":")[0].replace(" ", "_") for r in rejected)
    return {"difficulty/scored": float(len(rates)), "difficulty/kept": float(len(kept)),
            "difficulty/mean_pass_rate": sum(rates) / len(rates) if rates else float("nan"),
            "difficulty/unscored": float(len(rows) - len(rates)),
            **{f"quarantine/{k}": float(v) for k, v in by_reason.items()}}


def difficulty_spec(recipe: Recipe, index: int, data: StageOutput, init: StageOutput) -> StageSpec:
    """The pass-rate filter before GRPO stage `index` as a stage, scored with the policy `init`."""
    stage = recipe.grpo.stages[index]
    return StageSpec(stage_name("difficulty", stage.name), difficulty_key(recipe, index, data.key, init.key),
                     lambda out, hooks: filter_stage_rows(recipe, stage, data.path, init.path, out),
                     params={"difficulty": recipe.grpo.difficulty.model_dump(mode="json")},
                     inputs={"grpo": split_file(data.path, "grpo")}, init=init)


def filter_stage_rows(recipe: Recipe, stage: GRPOStage, data_dir: str | Path, init_dir: str | Path,
                      out_dir: Path) -> dict[str, float]:
    """Filter the rows `stage` selects from the curated GRPO split, with the policy the stage
    starts from (or `difficulty.policy`); writes the stage's own `grpo.jsonl`."""
    selection = stage.data.model_copy(update={"max_rows": None})  # max_rows counts kept rows, below
    rows = select_rows(list(read_jsonl(split_file(data_dir, "grpo"))), selection)
    policy = recipe.grpo.difficulty.policy
    policy = str(model_dir(init_dir)) if policy == "current" else policy
    return filter_by_pass_rate(rows, recipe.grpo.difficulty, recipe.data, policy, out_dir, max_rows=stage.data.max_rows)
