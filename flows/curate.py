"""Curation flow: raw sources -> quarantined, deduplicated, decontaminated splits and the cold-start set."""

from __future__ import annotations

from prefect import flow, task

from flows.progress import progress_hook
from flows.reporting import post_stage_artifact, post_table, prefect_tags
from tasks.data.curate import curate, data_key, log_splits
from tasks.data.decontaminate import benchmark_sources
from tasks.modeling import pretrained_path
from tasks.recipe import Recipe
from tasks.recipe_checks import default_recipe
from tasks.tracking import StageOutput, configure_tracking, run_stage


@task(name="curate-data")
def curate_data(recipe: Recipe, parent_run_id: str | None) -> StageOutput:
    def body(out_dir):
        stats = curate(recipe.data, out_dir, model_path=pretrained_path(recipe),
                       benchmarks=benchmark_sources(recipe), progress=progress_hook(recipe.name, "data"))
        log_splits(out_dir)
        return stats

    return run_stage(recipe, "data", data_key(recipe), body, parent_run_id=parent_run_id,
                     params={"data": recipe.data.model_dump(mode="json")}, tags=prefect_tags())


def _counts(metrics: dict[str, float], prefix: str, suffix: str = "") -> list[dict]:
    return [{"name": k[len(prefix): len(k) - len(suffix)], "rows": int(v)} for k, v in sorted(metrics.items())
            if k.startswith(prefix) and k.endswith(suffix)]


@flow(name="curate")
def curate_flow(recipe: Recipe = default_recipe(), parent_run_id: str | None = None) -> StageOutput:
    """Steps: read every source into canonical rows; quarantine unusable rows (unreadable, bad
    encoding, empty prompt, missing or unparseable gold answer, prompt over budget) with a
    reason; quarantine rows sharing a word n-gram with any evaluation benchmark; drop exact and
    near duplicates (MinHash LSH); split eval / cold-start SFT / GRPO deterministically and
    decontaminate training rows against the held-out split; build the cold-start set from
    verifier-checked traces or by rejection sampling from a teacher; log every split to MLflow
    as a dataset and post the counts per quarantine reason and per benchmark."""
    configure_tracking(recipe.tracking)
    out = curate_data(recipe, parent_run_id)
    post_stage_artifact(recipe.name, out, "Curated splits; every rejected row is in `quarantine.jsonl` with a reason.")
    post_table(recipe.name, "data-quarantine", _counts(out.metrics, "quarantine/") or [{"name": "none", "rows": 0}],
               "rows quarantined per reason")
    post_table(recipe.name, "data-decontamination", _counts(out.metrics, "decontamination/", "/hits"),
               "training rows sharing a word n-gram with each benchmark (quarantined)")
    return out
