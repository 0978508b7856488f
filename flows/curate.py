"""Curation flow: raw sources -> quarantined, deduplicated splits and the cold-start set."""

from __future__ import annotations

from prefect import flow, task

from flows.reporting import post_stage_artifact, prefect_tags
from tasks.curate import curate, data_key, log_splits
from tasks.recipe import Recipe
from tasks.tracking import StageOutput, configure_tracking, run_stage


@task(name="curate-data")
def curate_data(recipe: Recipe, parent_run_id: str | None) -> StageOutput:
    def body(out_dir):
        stats = curate(recipe.data, out_dir)
        log_splits(out_dir)
        return stats

    return run_stage(recipe, "data", data_key(recipe), body, parent_run_id=parent_run_id,
                     params={"data": recipe.data.model_dump(mode="json")}, tags=prefect_tags())


@flow(name="curate")
def curate_flow(recipe: Recipe = Recipe(), parent_run_id: str | None = None) -> StageOutput:
    """Steps: read every source into canonical rows; quarantine unusable rows with a reason;
    drop exact duplicates; split eval / cold-start SFT / GRPO deterministically; check every
    cold-start trace with the verifier; log splits to MLflow as datasets."""
    configure_tracking(recipe.tracking)
    out = curate_data(recipe, parent_run_id)
    post_stage_artifact(recipe.name, out, "Curated splits; rejected rows are in `quarantine.jsonl` with a reason.")
    return out
