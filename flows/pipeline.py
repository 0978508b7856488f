"""The whole pipeline: curate -> SFT -> GRPO stages -> evaluate -> promote, under one MLflow run."""

from __future__ import annotations

import mlflow
import yaml
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.curate import curate_flow
from flows.evaluate import evaluate_flow
from flows.grpo import grpo_flow
from flows.reporting import artifact_key, prefect_tags
from flows.sft import sft_flow
from tasks.promote import promote_if_better, register_model
from tasks.recipe import Recipe
from tasks.sft import model_dir
from tasks.tracking import StageOutput, configure_tracking, flatten, ui_link


@task(name="promote-model")
def promote_model(recipe: Recipe, final: StageOutput, score: float) -> dict:
    version = register_model(model_dir(final.path), recipe.tracking.registered_model)
    decision = promote_if_better(recipe.tracking.registered_model, version, recipe.evaluation.primary_metric,
                                 score, recipe.evaluation.promotion_margin)
    mlflow.log_dict(decision, "promotion.json")
    mlflow.set_tags({f"promotion.{k}": str(v) for k, v in decision.items()})
    return decision


@flow(name="pipeline")
def pipeline_flow(recipe: Recipe = Recipe()) -> dict:
    """Steps: open the parent MLflow run (tagged with this flow run); curate; prepare the base
    model and run cold-start SFT; run every GRPO stage; evaluate the chosen checkpoints on the
    held-out benchmark; register the final model as challenger and promote it to champion if
    it beats the current one. Stage outputs are cached by content, so an unchanged re-run
    finishes in seconds and a changed GRPO setting re-runs only GRPO and evaluation."""
    configure_tracking(recipe.tracking)
    with mlflow.start_run(run_name=f"pipeline-{recipe.name}", tags={**prefect_tags(), "stage": "pipeline"}) as run:
        # An exception leaves this run (and the failing stage's child run) FAILED.
        pid = run.info.run_id
        mlflow.log_params(flatten(recipe.model_dump(mode="json"), "recipe."))
        mlflow.log_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), "recipe.yaml")
        data = curate_flow(recipe, pid)
        checkpoints = sft_flow(recipe, data.path, pid)
        checkpoints += grpo_flow(recipe, data.path, checkpoints[-1].path, pid)
        wanted = [c for c in checkpoints if c.stage.split("-")[0] in recipe.evaluation.checkpoints]
        rows = evaluate_flow(recipe, [c.path for c in wanted], data.path, pid)
        metric = recipe.evaluation.primary_metric
        for r in rows:
            mlflow.log_metric(f"{r['checkpoint']}/{metric}", r[metric])
        final_score = next((r[metric] for r in rows if r["checkpoint"] == checkpoints[-1].stage), None)
        decision = promote_model(recipe, checkpoints[-1], final_score) if final_score is not None else None
    stages = [data, *checkpoints]
    summary = {"parent_run_id": pid, "evaluation": rows, "promotion": decision,
               "checkpoints": {c.stage: c.path for c in checkpoints},
               "cached": sorted([s.stage for s in stages if s.cached] + [f"eval-{r['checkpoint']}" for r in rows if r["cached"]])}
    create_markdown_artifact(
        f"# Pipeline `{recipe.name}`\n\nMLflow parent run: [{pid}]({ui_link(pid)})\n\n"
        + "\n".join(f"- {r['checkpoint']}: {metric} = {r[metric]:.4f}" for r in rows)
        + (f"\n\nPromotion: {decision['reason']} -> {'champion' if decision['promoted'] else 'challenger'}"
           if decision else ""),
        key=artifact_key(recipe.name, "pipeline"), description="pipeline summary")
    return summary
