"""Evaluation flow: the held-out benchmark on every checkpoint, then a comparison."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.curate import curate_flow
from flows.reporting import artifact_key, post_table, prefect_tags
from tasks.evaluate import comparison_chart, run_evaluation
from tasks.recipe import Recipe, stable_hash
from tasks.sft import model_dir
from tasks.tracking import StageOutput, configure_tracking, resolve_output, run_stage, ui_link


@task(name="evaluate-checkpoint")
def evaluate_checkpoint(recipe: Recipe, data: StageOutput, ckpt: StageOutput,
                        parent_run_id: str | None) -> StageOutput:
    key = stable_hash([recipe.digest("evaluation"), data.key, ckpt.key])
    return run_stage(recipe, f"eval-{ckpt.stage}", key,
                     lambda out: run_evaluation(model_dir(ckpt.path), data.path, recipe.evaluation, out),
                     parent_run_id=parent_run_id,
                     params={"evaluation": recipe.evaluation.model_dump(mode="json"), "checkpoint": ckpt.path},
                     tags={**prefect_tags(), "checkpoint": ckpt.stage})


@flow(name="evaluate")
def evaluate_flow(recipe: Recipe = Recipe(), checkpoints: list[str] | None = None, data: str | None = None,
                  parent_run_id: str | None = None) -> list[dict]:
    """Steps: resolve the held-out data and each checkpoint (stage directory, MLflow run id or
    `models:/name@alias`); write the held-out split as an lm-eval benchmark scored by our
    verifier; evaluate each checkpoint (cached per checkpoint and settings); post a comparison
    table and bar chart. Returns one row of metrics per checkpoint."""
    from tasks.promote import checkpoint_from_model_uri

    configure_tracking(recipe.tracking)
    data_out = resolve_output(data) if data else curate_flow(recipe, parent_run_id)
    ckpts = [checkpoint_from_model_uri(c, recipe) if c.startswith("models:/") else resolve_output(c)
             for c in checkpoints or []]
    rows = []
    for ckpt in ckpts:
        out = evaluate_checkpoint(recipe, data_out, ckpt, parent_run_id)
        rows.append({"checkpoint": ckpt.stage, **out.metrics, "cached": out.cached, "mlflow_run": ui_link(out.run_id)})
    if rows:
        post_comparison(recipe, rows, parent_run_id)
    return rows


def post_comparison(recipe: Recipe, rows: list[dict], parent_run_id: str | None) -> None:
    """Comparison table and chart as Prefect artifacts and in the parent MLflow run."""
    import mlflow

    metric = recipe.evaluation.primary_metric
    post_table(recipe.name, "eval-comparison", rows, f"{metric} per checkpoint")
    chart = comparison_chart(rows, metric, Path(recipe.tracking.runs_dir) / f"{recipe.name}-comparison.png")
    lines = ["# Evaluation", "", f"Primary metric: `{metric}`", "",
             "| checkpoint | " + metric + " |", "| --- | --- |"]
    lines += [f"| {r['checkpoint']} | {r.get(metric, float('nan')):.4f} |" for r in rows]
    create_markdown_artifact("\n".join(lines), key=artifact_key(recipe.name, "evaluation"),
                             description="held-out comparison")
    if parent_run_id:
        client = mlflow.MlflowClient()
        client.log_artifact(parent_run_id, str(chart), artifact_path="eval")
        client.log_table(parent_run_id, {k: [r.get(k) for r in rows] for k in rows[0]}, "eval/comparison.json")
