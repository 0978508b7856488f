"""GRPO flow: each stage of `grpo.stages` in order, each starting from the previous checkpoint."""

from __future__ import annotations

import base64
from pathlib import Path

from prefect import flow

from flows.curate import curate_flow
from flows.reporting import flow_recipe, post_stage_artifact, post_table, run_namer
from flows.sft import sft_flow
from flows.stage import stage_task
from tasks.eval.evaluate import resolve_checkpoint
from tasks.layout import PLOTS_DIR
from tasks.recipe import GRPOStage, Recipe
from tasks.stages import StageOutput, resolve_output
from tasks.tracking import configure_tracking
from tasks.train.difficulty import difficulty_spec
from tasks.train.grpo import grpo_spec
from tasks.train.monitors import read_trips
from tasks.train.plots import PANELS
from tasks.verifiers.audit_report import audit_markdown, read_audit


@flow(name="grpo", flow_run_name=run_namer("grpo"))
def grpo_flow(recipe: Recipe | None = None, data: str | None = None, init: str | None = None,
              parent_run_id: str | None = None, base: str = "default",
              overrides: list[str] | None = None) -> list[StageOutput]:
    """Steps: resolve the data and the starting checkpoint (stage directories or MLflow run
    ids, or a `models:/` URI for the checkpoint; run the upstream flows if absent); train each GRPO stage in order with its verifier
    rewards, each from the previous stage's checkpoint; with `grpo.difficulty.enabled`, first
    keep the stage's prompts whose pass rate under that checkpoint lies in the band (a cached
    `difficulty-<stage>` step whose grpo.jsonl the stage trains on). Returns one output per stage.

    Args:
        recipe: The full typed recipe (advanced). Empty: `base` with `overrides`.
        base: A recipe of configs/ (`tiny`, `default`, ...) or a path to a recipe YAML.
        overrides: `key.path=value` settings applied to the recipe, as `rlvr run --set` takes them.
    """
    recipe = flow_recipe(recipe, base, overrides)
    configure_tracking(recipe.tracking)
    data_out = resolve_output(data) if data else curate_flow(recipe, parent_run_id)
    start = resolve_checkpoint(init, recipe) if init else sft_flow(recipe, data_out.path, parent_run_id)[-1]
    outputs = []
    for i, stage in enumerate(recipe.grpo.stages):
        stage_data = data_out
        if recipe.grpo.difficulty.enabled:
            stage_data = stage_task(recipe, difficulty_spec(recipe, i, data_out, start), parent_run_id)
            post_stage_artifact(recipe.name, stage_data, f"Pass-rate filter for `{stage.name}`; rejected rows "
                                "are in `quarantine.jsonl` with their pass rate.")
        start = stage_task(recipe, grpo_spec(recipe, i, stage_data, start), parent_run_id)
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
