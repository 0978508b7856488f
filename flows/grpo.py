"""GRPO flow: each stage of `grpo.stages` in order, each starting from the previous checkpoint."""

from __future__ import annotations

import base64
from pathlib import Path

from prefect import flow, get_run_logger, task

from flows.curate import curate_flow
from flows.progress import training_progress
from flows.reporting import post_stage_artifact, post_table, prefect_tags
from flows.sft import sft_flow
from tasks.eval.evaluate import resolve_checkpoint
from tasks.layout import PLOTS_DIR, split_file
from tasks.recipe import GRPOStage, Recipe
from tasks.recipe_checks import default_recipe
from tasks.tracking import StageOutput, configure_tracking, resolve_output, run_stage
from tasks.train.difficulty import difficulty_key, filter_stage_rows
from tasks.train.grpo import grpo_key, run_grpo_stage
from tasks.train.monitors import read_trips
from tasks.train.plots import PANELS
from tasks.verifiers.audit_report import audit_markdown, read_audit


@task(name="train-grpo-stage")
def train_grpo_stage(recipe: Recipe, index: int, data: StageOutput, init: StageOutput,
                     parent_run_id: str | None) -> StageOutput:
    stage: GRPOStage = recipe.grpo.stages[index]
    on_line = get_run_logger().info  # multi-process workers' output streams into this task's log
    return run_stage(recipe, f"grpo-{stage.name}", grpo_key(recipe, index, data.key, init.key),
                     lambda out: run_grpo_stage(recipe, stage, data.path, init.path, out, on_line=on_line,
                                                callbacks=training_progress(recipe.name, f"grpo-{stage.name}")),
                     parent_run_id=parent_run_id, params={"grpo": stage.model_dump(mode="json")},
                     tags=prefect_tags(), inputs={"grpo": split_file(data.path, "grpo")}, init_model=init.model_id)


@task(name="filter-by-pass-rate")
def filter_stage_data(recipe: Recipe, index: int, data: StageOutput, init: StageOutput,
                      parent_run_id: str | None) -> StageOutput:
    """The stage's rows whose pass rate under its starting policy lies in the band (grpo.difficulty)."""
    stage: GRPOStage = recipe.grpo.stages[index]
    return run_stage(recipe, f"difficulty-{stage.name}", difficulty_key(recipe, index, data.key, init.key),
                     lambda out: filter_stage_rows(recipe, stage, data.path, init.path, out),
                     parent_run_id=parent_run_id, params={"difficulty": recipe.grpo.difficulty.model_dump(mode="json")},
                     tags=prefect_tags(), inputs={"grpo": split_file(data.path, "grpo")}, init_model=init.model_id)


@flow(name="grpo")
def grpo_flow(recipe: Recipe = default_recipe(), data: str | None = None, init: str | None = None,
              parent_run_id: str | None = None) -> list[StageOutput]:
    """Steps: resolve the data and the starting checkpoint (stage directories or MLflow run
    ids, or a `models:/` URI for the checkpoint; run the upstream flows if absent); train each GRPO stage in order with its verifier
    rewards, each from the previous stage's checkpoint; with `grpo.difficulty.enabled`, first
    keep the stage's prompts whose pass rate under that checkpoint lies in the band (a cached
    `difficulty-<stage>` step whose grpo.jsonl the stage trains on). Returns one output per stage."""
    configure_tracking(recipe.tracking)
    data_out = resolve_output(data) if data else curate_flow(recipe, parent_run_id)
    start = resolve_checkpoint(init, recipe) if init else sft_flow(recipe, data_out.path, parent_run_id)[-1]
    outputs = []
    for i, stage in enumerate(recipe.grpo.stages):
        stage_data = data_out
        if recipe.grpo.difficulty.enabled:
            stage_data = filter_stage_data(recipe, i, data_out, start, parent_run_id)
            post_stage_artifact(recipe.name, stage_data, f"Pass-rate filter for `{stage.name}`; rejected rows "
                                "are in `quarantine.jsonl` with their pass rate.")
        start = train_grpo_stage(recipe, i, stage_data, start, parent_run_id)
        post_grpo_report(recipe, stage, start)
        outputs.append(start)
    return outputs


def post_grpo_report(recipe: Recipe, stage: GRPOStage, out: StageOutput) -> None:
    """The stage's Prefect artifacts: a summary with its monitor trips and training-curve
    plots (embedded PNGs), the verifier audit, and a table of the trips when any monitor tripped."""
    trips = read_trips(out.path)
    lines = [f"GRPO stage `{stage.name}` (preset `{stage.preset}`) with rewards "
             + ", ".join(f"{r.name}×{r.weight}" for r in stage.rewards), ""]
    lines += ["## Monitor trips", ""] + [f"- **{t['monitor']}** ({t['policy']}): {t['message']}" for t in trips] \
        if trips else ["No monitor tripped."]
    lines += audit_markdown(read_audit(out.path))
    for stem in PANELS:
        png = Path(out.path) / PLOTS_DIR / f"{stem}.png"
        if png.is_file():
            lines += ["", f"![{stem}](data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()})"]
    post_stage_artifact(recipe.name, out, "\n".join(lines))
    if trips:
        post_table(recipe.name, f"{out.stage}-monitor-trips", trips, f"{out.stage}: health monitor trips")
