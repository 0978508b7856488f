"""GRPO through the pipeline vs the same TRL GRPOTrainer config in a plain script (issue 5).

Target: pipeline wall time / plain wall time <= 1.05 with the lineage and rollout traces on
(issue 17). Also reports the reward share of step time (issue 3 target: <= 5% in the default
recipe) and throughput.

Setup, once: curate the recipe's data, build its from-scratch base model and give it a short
cold-start SFT (so completions look like the real run's: a format, an answer to verify). Then,
alternating the order each repeat, both sides train GRPO stage 1 for `--steps` steps from that
checkpoint with the same GRPOConfig (the recipe's `trainer:` map over the pipeline's defaults,
`report_to: mlflow` into an active run on both sides):
- pipeline: `tasks.train.grpo.run_grpo_stage` inside `tasks.stages.run_stage` with the GRPO flow's
  lineage (concurrent rewards, monitors, canary baseline, sample tables, rollout traces, timing
  metrics, plots, the dataset and model inputs, the checkpoint as a LoggedModel, result
  bookkeeping), timed until the background lineage thread has finished too;
- plain: `trl.GRPOTrainer(model=path, reward_funcs=[...], args=GRPOConfig(**same), train_dataset=...)`,
  `.train()`, `.save_model()` in an MLflow run, on the same rows (the pipeline's canary rows
  are held back on both sides, so both sample the same prompts).
Each side is timed from trainer construction to the saved model (imports are done first), in wall
seconds and in this process's CPU seconds (all threads, the background lineage thread's too; on a
machine shared with other work, CPU seconds move less than wall time), plus the CPU seconds of the
lineage thread's own jobs (LoggedModel upload, datasets, sample tables, traces): the cost the
lineage adds, which the load hardly moves.

    python measurements/grpo_overhead.py                      # configs/default.yaml, 20 steps, 3 repeats
    python measurements/grpo_overhead.py --steps 10 --repeats 2 --recipe configs/tiny.yaml
    python measurements/grpo_overhead.py --steps 5 --repeats 2 --recipe configs/smollm2-arithmetic.yaml

A recipe without cold start (sft.enabled: false) starts both sides from its base model.
Where a pipeline step's time goes (generation, reward, log-probs, scoring, update = forward +
backward + optimizer step, canary) comes from the stage's `time/<phase>` metrics, each measured by
the trainer's one phase timer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlflow
from trl import GRPOConfig, GRPOTrainer

from tasks.data.curate import curate, read_split
from tasks.layout import model_dir, split_file
from tasks.lineage import BACKGROUND, log_checkpoint
from tasks.modeling import pretrained_path
from tasks.recipe_checks import load_recipe
from tasks.stages import StageOutput, StageSpec, run_stage
from tasks.tracking import configure_tracking
from tasks.train.common import trainer_defaults
from tasks.train.grpo import grpo_dataset, run_grpo_stage, select_rows, split_canary
from tasks.train.presets import lora_config, stage_rewards, stage_trainer_fields
from tasks.train.sft import prepare_base_model, run_sft
from tasks.train.trainer import PHASES
from tasks.verifiers import build_reward

TARGET_RATIO = 1.05
STEP_PARTS = ("step", *PHASES)  # the stage's grpo/time/<part>: mean seconds per step


def prepare(recipe, root: Path, sft_steps: int) -> tuple[Path, Path, str]:
    """Curated data, an SFT checkpoint (the base model when the recipe has no cold start) and its
    LoggedModel id (what the GRPO stage starts from)."""
    data, base, sft = root / "data", root / "base", root / "sft"
    curate(recipe.data, data, model_path=pretrained_path(recipe))
    prepare_base_model(recipe, data, base)
    if not recipe.sft.enabled:
        with mlflow.start_run(run_name="base-for-benchmark") as run:
            return data, base, log_checkpoint(run.info.run_id, model_dir(base), "base", wait=True)
    short = recipe.model_copy(deep=True)
    short.sft.trainer["max_steps"] = sft_steps
    with mlflow.start_run(run_name="sft-for-benchmark") as run:
        run_sft(short, data, base, sft)
        model_id = log_checkpoint(run.info.run_id, model_dir(sft), "sft", wait=True)
    return data, sft, model_id


def plain_config(recipe, stage, out: Path) -> dict:
    """The GRPOConfig fields the pipeline passes for this stage (see tasks/train/grpo.py)."""
    fields = stage_trainer_fields(stage)
    return {**trainer_defaults(recipe, out), "save_total_limit": 2, "ddp_find_unused_parameters": False, **fields,
            "reward_weights": [s.weight for s in stage_rewards(stage, fields)]}


def training_rows(stage, data: Path) -> list[dict]:
    """The rows the pipeline trains on (its canary rows held back), so both sides see the same prompts."""
    return split_canary(select_rows(read_split(data, "grpo"), stage.data), stage)[0]


def run_plain(recipe, stage, data: Path, init: Path, out: Path) -> float:
    specs = stage_rewards(stage, stage_trainer_fields(stage))
    t0 = time.perf_counter()
    with mlflow.start_run(run_name="plain-trl"):
        trainer = GRPOTrainer(model=str(model_dir(init)), reward_funcs=[build_reward(s.name, s.params) for s in specs],
                              args=GRPOConfig(**plain_config(recipe, stage, out)),
                              train_dataset=grpo_dataset(recipe, training_rows(stage, data)),
                              peft_config=lora_config(stage.lora))  # the same adapter the stage trains
        trainer.train()
        trainer.save_model(str(model_dir(out)))
    return time.perf_counter() - t0


def run_pipeline(recipe, stage, data: Path, init: Path, init_model: str, key: str) -> tuple[float, dict]:
    t0, lineage0 = time.perf_counter(), BACKGROUND.cpu_s
    start = StageOutput(stage="init", key="init", path=str(init), model_id=init_model)
    out = run_stage(recipe, StageSpec("grpo-bench", key, lambda o, hooks: run_grpo_stage(recipe, stage, data, init, o),
                                      inputs={"grpo": split_file(data, "grpo")}, init=start))  # as grpo_spec
    failures = BACKGROUND.flush()
    assert not failures, failures
    return time.perf_counter() - t0, {**out.metrics, "lineage_cpu_s": BACKGROUND.cpu_s - lineage0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="configs/default.yaml")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sft-steps", type=int, default=200)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="grpo-overhead-"))
    # Dynamic sampling is the pipeline's own (plain TRL has none): off, so both sides do the same work.
    recipe = load_recipe(args.recipe, [f"tracking.runs_dir={root / 'runs'}", "tracking.experiment=grpo-overhead",
                                       f"grpo.stages.0.max_steps={args.steps}",
                                       "grpo.stages.0.dynamic_sampling.enabled=false"])
    configure_tracking(recipe.tracking)
    stage = recipe.grpo.stages[0]
    print(f"recipe {args.recipe}, stage {stage.name}: {args.steps} steps, trainer {stage.trainer}", flush=True)
    data, init, init_model = prepare(recipe, root, args.sft_steps)

    pipeline_s, plain_s, metrics = [], [], []
    cpu_s: dict[str, list[float]] = {"pipeline": [], "plain": []}  # this process, every thread: less load-bound
    for i in range(args.repeats):
        order = ("pipeline", "plain") if i % 2 == 0 else ("plain", "pipeline")
        for side in order:
            c0 = time.process_time()
            if side == "plain":
                plain_s.append(run_plain(recipe, stage, data, init, root / f"plain-{i}"))
            else:
                seconds, m = run_pipeline(recipe, stage, data, init, init_model, f"rep{i}")
                pipeline_s.append(seconds)
                metrics.append(m)
            cpu_s[side].append(time.process_time() - c0)
            print(f"repeat {i} {side}: {(plain_s if side == 'plain' else pipeline_s)[-1]:.1f} s, "
                  f"{cpu_s[side][-1]:.1f} CPU s (load average {os.getloadavg()[0]:.1f})", flush=True)

    ratios = [p / q for p, q in zip(pipeline_s, plain_s)]
    share = statistics.mean(m["grpo/reward_time_share"] for m in metrics)
    print(f"\npipeline s: {[round(x, 1) for x in pipeline_s]}  median {statistics.median(pipeline_s):.1f}")
    print(f"plain s:    {[round(x, 1) for x in plain_s]}  median {statistics.median(plain_s):.1f}")
    print(f"ratio per repeat: {[round(r, 3) for r in ratios]}; ratio of medians "
          f"{statistics.median(pipeline_s) / statistics.median(plain_s):.3f} (target <= {TARGET_RATIO})")
    print(f"CPU s: pipeline {[round(x, 1) for x in cpu_s['pipeline']]}, plain {[round(x, 1) for x in cpu_s['plain']]}; "
          f"ratio of medians {statistics.median(cpu_s['pipeline']) / statistics.median(cpu_s['plain']):.3f}")
    lineage = [m["lineage_cpu_s"] for m in metrics]
    print(f"lineage thread CPU s per pipeline repeat: {[round(x, 2) for x in lineage]} = "
          f"{statistics.median(lineage) / statistics.median(cpu_s['plain']):.2%} of plain's median CPU s "
          "(the traces are exported on it too)")
    print(f"reward time share of step time (pipeline, mean over repeats): {share:.2%} (target <= 5%)")
    parts = {k: statistics.mean(m[f"grpo/time/{k}"] for m in metrics) for k in STEP_PARTS}
    print("pipeline seconds per step (timers, mean over repeats): "
          + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    print(f"throughput (pipeline, prompt+completion tokens/s per device): "
          f"{statistics.mean(m['grpo/throughput_tokens_per_s'] for m in metrics):.0f}")


if __name__ == "__main__":
    main()
