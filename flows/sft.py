"""SFT flow: the starting model (scratch or given), then cold-start SFT on verified traces."""

from __future__ import annotations

from prefect import flow

from flows.curate import curate_flow
from flows.reporting import post_stage_artifact
from flows.stage import stage_task
from tasks.recipe import Recipe
from tasks.recipe_checks import check_recipe, default_recipe
from tasks.stages import StageOutput, resolve_output
from tasks.tracking import configure_tracking
from tasks.train.sft import base_spec, sft_spec


@flow(name="sft")
def sft_flow(recipe: Recipe = default_recipe(), data: str | None = None,
             parent_run_id: str | None = None) -> list[StageOutput]:
    """Steps: resolve the curated data (a stage directory or MLflow run id; curate if absent);
    save the starting model (tokenizer trained on our data + decoder from scratch, or
    `model.name_or_path`); cold-start SFT with TRL when `sft.enabled`. Returns [base, sft]."""
    recipe = check_recipe(recipe)  # before anything is computed or written
    configure_tracking(recipe.tracking)
    data_out = resolve_output(data) if data else curate_flow(recipe, parent_run_id)
    base = stage_task(recipe, base_spec(recipe, data_out), parent_run_id)
    post_stage_artifact(recipe.name, base, "Starting model.")
    if not recipe.sft.enabled:
        return [base]
    sft = stage_task(recipe, sft_spec(recipe, data_out, base), parent_run_id)
    post_stage_artifact(recipe.name, sft, "Cold-start SFT checkpoint.")
    return [base, sft]
