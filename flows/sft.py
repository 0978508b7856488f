"""SFT flow: the starting model (scratch or given), then cold-start SFT on verified traces."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows.curate import curate_flow
from flows.progress import training_progress
from flows.reporting import flow_recipe, post_stage_artifact, prefect_tags, run_namer
from tasks.layout import split_file
from tasks.recipe import Recipe
from tasks.tracking import StageOutput, configure_tracking, resolve_output, run_stage
from tasks.train.sft import base_key, base_model_inputs, prepare_base_model, run_sft, sft_key


@task(name="prepare-base-model")
def prepare_base(recipe: Recipe, data: StageOutput, parent_run_id: str | None) -> StageOutput:
    return run_stage(recipe, "base", base_key(recipe, data.key), lambda out: prepare_base_model(recipe, data.path, out),
                     parent_run_id=parent_run_id, params={"model": recipe.model.model_dump(mode="json")},
                     tags=prefect_tags(), inputs=base_model_inputs(recipe, data.path))


@task(name="train-sft")
def train_sft(recipe: Recipe, data: StageOutput, base: StageOutput, parent_run_id: str | None) -> StageOutput:
    on_line = get_run_logger().info  # multi-process workers' output streams into this task's log
    return run_stage(recipe, "sft", sft_key(recipe, data.key, base.key), lambda out: run_sft(recipe, data.path, base.path, out, on_line,
                                                             training_progress(recipe.name, "sft")),
                     parent_run_id=parent_run_id, params={"sft": recipe.sft.model_dump(mode="json")},
                     tags=prefect_tags(), inputs={"sft": split_file(data.path, "sft")}, init_model=base.model_id)


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
    base = prepare_base(recipe, data_out, parent_run_id)
    post_stage_artifact(recipe.name, base, "Starting model.")
    if not recipe.sft.enabled:
        return [base]
    sft = train_sft(recipe, data_out, base, parent_run_id)
    post_stage_artifact(recipe.name, sft, "Cold-start SFT checkpoint.")
    return [base, sft]
