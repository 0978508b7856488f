"""SFT flow: the starting model (scratch or given), then cold-start SFT on verified traces."""

from __future__ import annotations

from prefect import flow

from flows.curate import curate_flow
from flows.reporting import flow_recipe, post_stage_artifact, run_namer
from flows.stage import stage_task
from tasks.recipe import Recipe
from tasks.stages import StageOutput, resolve_output
from tasks.tracking import configure_tracking
from tasks.train.sft import base_spec, sft_spec


@flow(name="sft", flow_run_name=run_namer("sft"))
def sft_flow(recipe: Recipe | None = None, data: str | None = None, parent_run_id: str | None = None,
             base: str = "default", overrides: list[str] | None = None) -> list[StageOutput]:
    """Steps: resolve the curated data (a stage directory or MLflow run id; curate if absent);
    save the starting model (tokenizer trained on our data + decoder from scratch, or
    `model.name_or_path`); cold-start SFT with TRL when `sft.enabled`. Returns [base, sft].

    Args:
        recipe: The full typed recipe (advanced). Empty: `base` with `overrides`.
        base: A recipe of configs/ (`tiny`, `default`, ...) or a path to a recipe YAML.
        overrides: `key.path=value` settings applied to the recipe, as `rlvr run --set` takes them.
    """
    recipe = flow_recipe(recipe, base, overrides)
    configure_tracking(recipe.tracking)
    data_out = resolve_output(data) if data else curate_flow(recipe, parent_run_id)
    start = stage_task(recipe, base_spec(recipe, data_out), parent_run_id)
    post_stage_artifact(recipe.name, start, "Starting model.")
    if not recipe.sft.enabled:
        return [start]
    sft = stage_task(recipe, sft_spec(recipe, data_out, start), parent_run_id)
    post_stage_artifact(recipe.name, sft, "Cold-start SFT checkpoint.")
    return [start, sft]
