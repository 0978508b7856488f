"""One GRPO stage: its data selection, rewards, preset and settings, monitors, checkpoints.

    metrics = run_grpo_stage(recipe, stage, data_dir, init_dir, out_dir, on_line=logger.info)

The stage starts from `init_dir/model` (the SFT checkpoint or the previous stage) and writes
`out_dir/model` (a LoRA adapter is merged into it). It resumes from the newest
`out_dir/checkpoints/checkpoint-N` an earlier attempt left, inside the same MLflow run (the
caller, `stages.run_stage`, re-opens it). With `launcher.num_processes > 1` the training runs
in `accelerate launch` workers (tasks.train.launch) that log into the same run. At the end: PNG
plots in `out_dir/plots` (also MLflow artifacts), monitor trips in `out_dir/monitor_trips.json`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from statistics import mean
from typing import Any

from tasks.data.curate import prompt_messages, read_split
from tasks.layout import PLOTS_DIR, model_dir, split_file
from tasks.recipe import GRPOStage, Recipe, StageData, stable_hash
from tasks.stages import StageHooks, StageOutput, StageSpec, stage_name, stage_run_id, tag_stage_run
from tasks.train.common import last_checkpoint, trainer_defaults, without_hub_token
from tasks.train.launch import launch_stage, should_launch, tag_distribution
from tasks.train.plots import plot_training_curves
from tasks.train.presets import (
    check_vllm_server,
    dynamic_sampling_for,
    lora_config,
    stage_rewards,
    stage_trainer_fields,
    vllm_settings,
)
from tasks.verifiers import build_reward, sandbox_tags
from tasks.verifiers.rows import column_problems, reward_columns

log = logging.getLogger(__name__)

def grpo_key(recipe: Recipe, index: int, data_key: str, init_key: str) -> str:
    """Cache key of GRPO stage `index`: the seed, that stage's settings, its data and its start."""
    return stable_hash([recipe.digest("seed", f"grpo.stages.{index}"), data_key, init_key])


def _field(row: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        row = row.get(part) if isinstance(row, dict) else None
    return row


def _matches(value: Any, cond: Any) -> bool:
    if isinstance(cond, dict):  # {min, max}, inclusive
        return (value is not None and ("min" not in cond or value >= cond["min"])
                and ("max" not in cond or value <= cond["max"]))
    if isinstance(cond, list):
        return value in cond
    return value == cond


def select_rows(rows: list[dict], data: StageData) -> list[dict]:
    """The rows a stage uses: those matching every `where` condition, at most `max_rows`."""
    kept = [r for r in rows if all(_matches(_field(r, k), c) for k, c in data.where.items())]
    return kept[: data.max_rows] if data.max_rows else kept


def split_canary(rows: list[dict], stage: GRPOStage) -> tuple[list[dict], list[dict]]:
    """(training rows, canary rows): the canary is the last `reward_hacking.rows` rows of the
    stage's selection (at most a quarter of it), held back from training. The evaluation
    split is never used here, so final held-out numbers stay unseen."""
    canary = stage.monitors.reward_hacking
    n = 0 if canary.policy == "off" else min(canary.rows, len(rows) // 4)
    return (rows[: len(rows) - n], rows[len(rows) - n:]) if n else (rows, [])


def grpo_dataset(recipe: Recipe, rows: list[dict]):
    from datasets import Dataset

    columns = reward_columns(rows)  # every canonical column and metadata field (tasks.verifiers.rows)
    return Dataset.from_dict({"prompt": [prompt_messages(r, recipe.data.system_prompt) for r in rows], **columns})


def stage_reward_problems(stage: GRPOStage, rewards: list, rows: list[dict]) -> list[str]:
    """Why the stage's rewards (and its canary verifier) cannot score its rows: [] when they can."""
    where = f"grpo.stages {stage.name!r}"
    problems = column_problems(f"{where} rewards", rewards, rows)
    if stage.monitors.reward_hacking.policy != "off":
        canary = build_reward(stage.monitors.reward_hacking.reward)
        problems += column_problems(f"{where} monitors.reward_hacking.reward", [canary], rows)
    return problems


def check_stage_rewards(recipe: Recipe, data_dir: str | Path) -> None:
    """Before any training: every GRPO stage's rewards (and canary) can score the curated rows
    that stage selects; else a ValueError naming each stage, reward and missing column."""
    rows = read_split(data_dir, "grpo")
    problems = []
    for stage in recipe.grpo.stages:
        if selected := select_rows(rows, stage.data):  # no rows at all: the stage itself says so
            problems += stage_reward_problems(stage, [build_reward(s.name, s.params) for s in stage.rewards], selected)
    if problems:
        raise ValueError("the curated rows do not fit the GRPO rewards: " + "; ".join(problems))


def grpo_spec(recipe: Recipe, index: int, data: StageOutput, init: StageOutput) -> StageSpec:
    """GRPO stage `index` as a stage: its rows of `data` (curated, or its difficulty filter's),
    starting from `init` (the SFT checkpoint or the previous stage)."""
    stage = recipe.grpo.stages[index]
    name = stage_name("grpo", stage.name)

    def body(out: Path, hooks: StageHooks) -> dict[str, float]:
        return run_grpo_stage(recipe, stage, data.path, init.path, out, on_line=hooks.on_line,
                              callbacks=hooks.trainer_callbacks(name))

    return StageSpec(name, grpo_key(recipe, index, data.key, init.key), body,
                     params={"grpo": stage.model_dump(mode="json")}, inputs={"grpo": split_file(data.path, "grpo")},
                     init=init)


def run_grpo_stage(recipe: Recipe, stage: GRPOStage, data_dir: str | Path, init_dir: str | Path, out_dir: Path,
                   on_line: Callable[[str], None] | None = None, callbacks: list | tuple = ()) -> dict[str, float]:
    """Train one GRPO stage (in this process, or on `stage.launcher.num_processes` workers)."""
    if should_launch(stage.launcher):
        return launch_stage("grpo", recipe, out_dir, data_dir, init_dir, stage.launcher, stage.name, on_line)
    return _train(recipe, stage, data_dir, init_dir, out_dir, list(callbacks))


def _train(recipe: Recipe, stage: GRPOStage, data_dir, init_dir, out_dir: Path, callbacks: list) -> dict[str, float]:
    from trl import GRPOConfig

    from tasks.train.audit import StageAudit
    from tasks.train.checkpoint_models import checkpoint_callbacks
    from tasks.train.monitors import StageMonitor
    from tasks.train.trainer import PipelineGRPOTrainer

    fields = stage_trainer_fields(stage)
    init_model = model_dir(init_dir)
    vllm_kwargs, serve_cmd = vllm_settings(fields, init_model)
    if serve_cmd:
        check_vllm_server(vllm_kwargs, serve_cmd)
    specs = stage_rewards(stage, fields)
    # Every parameter gets a gradient in GRPO, so DDP need not search for unused ones.
    settings = {**trainer_defaults(recipe, out_dir), "save_total_limit": 2, "ddp_find_unused_parameters": False,
                **fields, **vllm_kwargs}
    settings.setdefault("reward_weights", [s.weight for s in specs])
    tools = tool_use_kwargs(recipe, init_model)
    if tools:  # TRL's cap on tool rounds per rollout; the environment also caps calls and seconds
        settings.setdefault("max_tool_calling_iterations", int(tools["environment_factory"]().params["max_calls"]))
    args = GRPOConfig(**without_hub_token(settings))
    rows, canary = split_canary(select_rows(read_split(data_dir, "grpo"), stage.data), stage)
    if not rows:
        raise ValueError(f"grpo.stages {stage.name!r}: no curated GRPO rows match data.where={stage.data.where}")
    rewards = [build_reward(s.name, s.params) for s in specs]
    problems = stage_reward_problems(stage, rewards, rows)
    if problems:
        raise ValueError("; ".join(problems))
    audit = StageAudit(stage.audit, recipe.seed)
    # GRPOTrainer loads the reference model (beta > 0) from the policy's path, so pass the path.
    trainer = PipelineGRPOTrainer(
        model=str(init_model), reward_funcs=audit.wrap(rewards), args=args,
        train_dataset=grpo_dataset(recipe, rows), peft_config=lora_config(stage.lora),
        dynamic_sampling=dynamic_sampling_for(stage), **tools,
        callbacks=[*callbacks, *checkpoint_callbacks(recipe, stage_name("grpo", stage.name), stage_run_id())])
    run_id = stage_run_id()
    tag_distribution(trainer.accelerator, run_id)
    if trainer.accelerator.is_main_process:  # the isolation level of the rewards (and canary) that run code
        hacking = stage.monitors.reward_hacking
        tag_stage_run(sandbox_tags(rewards + ([build_reward(hacking.reward)] if hacking.policy != "off" else [])))
    trainer.metric_sources.append(audit.metrics)
    trainer.add_callback(StageMonitor(trainer, stage, run_id, out_dir, canary, recipe.data.system_prompt,
                                      recipe.tracking.rollout_traces,
                                      f"grpo.stages.{[s.name for s in recipe.grpo.stages].index(stage.name)}"))
    last = last_checkpoint(args.output_dir)
    if last and run_id and trainer.accelerator.is_main_process:
        from mlflow import MlflowClient

        MlflowClient().set_tag(run_id, "resumed_from", Path(last).name)
    result = trainer.train(resume_from_checkpoint=last)
    _save_policy(trainer, out_dir, lora=stage.lora is not None)
    if trainer.accelerator.is_main_process:
        audit.finish(out_dir, run_id)
    return _finish(trainer, stage, out_dir, run_id, result.training_loss, last)


def tool_use_kwargs(recipe: Recipe, init_model: Path) -> dict:
    """With `data.environment`: TRL's `environment_factory` (one environment per rollout) and
    the policy's tokenizer set up to render tools and parse tool calls; else {}."""
    if not recipe.data.environment:
        return {}
    from transformers import AutoTokenizer

    from tasks.environments import environment_factory
    from tasks.environments.chat import enable_tool_calls

    tok = enable_tool_calls(AutoTokenizer.from_pretrained(str(init_model)))
    tok.padding_side = "left"
    return {"environment_factory": environment_factory(recipe.data.environment, recipe.data.environment_params),
            "processing_class": tok}


def _save_policy(trainer, out_dir: Path, lora: bool) -> None:
    """The stage's model directory; a LoRA adapter is saved beside it and merged into it."""
    target = out_dir / "adapter" if lora else model_dir(out_dir)
    trainer.save_model(str(target))
    if not trainer.accelerator.is_main_process:
        return
    if lora:
        from peft import AutoPeftModelForCausalLM

        AutoPeftModelForCausalLM.from_pretrained(target).merge_and_unload().save_pretrained(model_dir(out_dir))
    trainer.processing_class.save_pretrained(model_dir(out_dir))


def _finish(trainer, stage: GRPOStage, out_dir: Path, run_id, train_loss: float, resumed: str | None) -> dict[str, float]:
    """Stage-end plots (MLflow artifacts) and the stage's summary metrics."""
    from tasks.train.monitors import read_trips
    from tasks.train.trainer import PHASES

    history = trainer.state.log_history
    if trainer.accelerator.is_main_process:
        plot_training_curves(history, out_dir / PLOTS_DIR)
        if run_id:
            from mlflow import MlflowClient

            MlflowClient().log_artifacts(run_id, str(out_dir / PLOTS_DIR), PLOTS_DIR)

    def mean_of(key: str) -> float:
        values = [h[key] for h in history if h.get(key) is not None]
        return float(mean(values)) if values else float("nan")

    trips = read_trips(out_dir)
    last_reward = next((h["reward"] for h in reversed(history) if h.get("reward") is not None), float("nan"))
    return {"grpo/train_loss": train_loss, "grpo/final_reward": float(last_reward),
            "grpo/steps": float(trainer.state.global_step),
            "grpo/resumed_from_step": float(int(Path(resumed).name.split("-")[-1])) if resumed else 0.0,
            "grpo/reward_time_share": mean_of("time/reward_share"),
            "grpo/throughput_tokens_per_s": mean_of("perf/throughput"),
            **{f"grpo/time/{part}": mean_of(f"time/{part}")  # seconds per step, by phase (tasks.train.trainer)
               for part in ("step", *PHASES)},
            "monitor/trips": float(len(trips)),
            "monitor/stopped": float(any(t["policy"] == "stop" for t in trips))}
