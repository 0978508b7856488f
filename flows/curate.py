"""Curation flow: raw sources -> quarantined, deduplicated, decontaminated splits and the cold-start set."""

from __future__ import annotations

from prefect import flow

from flows.reporting import flow_recipe, post_stage_artifact, post_table, run_namer
from flows.stage import stage_task
from tasks.data.curate import curate_spec
from tasks.recipe import Recipe
from tasks.stages import StageOutput
from tasks.tracking import configure_tracking


def _counts(metrics: dict[str, float], prefix: str, suffix: str = "") -> list[dict]:
    return [{"name": k[len(prefix): len(k) - len(suffix)], "rows": int(v)} for k, v in sorted(metrics.items())
            if k.startswith(prefix) and k.endswith(suffix)]


@flow(name="curate", flow_run_name=run_namer("curate"))
def curate_flow(recipe: Recipe | None = None, parent_run_id: str | None = None, base: str = "default",
                overrides: list[str] | None = None) -> StageOutput:
    """Steps: read every source into canonical rows; quarantine unusable rows (unreadable, bad
    encoding, empty prompt, missing or unparseable gold answer, prompt over budget) with a
    reason; quarantine rows sharing a word n-gram with any evaluation benchmark; drop exact and
    near duplicates (MinHash LSH); split eval / cold-start SFT / GRPO deterministically and
    decontaminate training rows against the held-out split; build the cold-start set from
    verifier-checked traces or by rejection sampling from a teacher; log every split to MLflow
    as a dataset and post the counts per quarantine reason and per benchmark.

    Args:
        recipe: The full typed recipe (advanced). Empty: `base` with `overrides`.
        base: A recipe of configs/ (`tiny`, `default`, ...) or a path to a recipe YAML.
        overrides: `key.path=value` settings applied to the recipe, as `rlvr run --set` takes them.
    """
    recipe = flow_recipe(recipe, base, overrides)
    configure_tracking(recipe.tracking)
    out = stage_task(recipe, curate_spec(recipe), parent_run_id)
    post_stage_artifact(recipe.name, out, "Curated splits; every rejected row is in `quarantine.jsonl` with a reason.")
    post_table(recipe.name, "data-quarantine", _counts(out.metrics, "quarantine/") or [{"name": "none", "rows": 0}],
               "rows quarantined per reason")
    post_table(recipe.name, "data-decontamination", _counts(out.metrics, "decontamination/", "/hits"),
               "training rows sharing a word n-gram with each benchmark (quarantined)")
    return out
