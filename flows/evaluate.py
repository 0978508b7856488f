"""Evaluation flow: every benchmark on every checkpoint, then a comparison.

    evaluate_flow(recipe)                                        # the registered champion
    evaluate_flow(recipe, ["models:/rlvr-default@champion", "runs/default/stages/sft/<key>", "<run id>"])
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from urllib.parse import quote

import mlflow
from prefect import flow, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact

from flows.curate import curate_flow
from flows.reporting import artifact_key, post_stage_artifact, post_table, prefect_tags
from tasks.eval.benchmark_checks import check_benchmarks_load
from tasks.eval.benchmarks import write_benchmarks
from tasks.eval.evaluate import (
    benchmark_datasets,
    checkpoint_model_dir,
    eval_key,
    eval_settings,
    resolve_checkpoint,
    run_evaluation,
    suite_key,
)
from tasks.eval.report import comparison_chart, comparison_markdown, comparison_rows, headline_metrics
from tasks.layout import split_file
from tasks.recipe import Recipe
from tasks.recipe_checks import default_recipe
from tasks.tracking import StageOutput, configure_tracking, resolve_output, run_stage, ui_link
from tasks.verifiers.audit_report import audit_markdown, read_audit


@task(name="check-benchmarks")
def check_benchmarks_ready(recipe: Recipe, heldout: str | None, skip_heldout: bool = False) -> dict[str, int]:
    """Every benchmark's task YAML is written and loaded with its data before any model generates
    (`skip_heldout`: all but the held-out split, e.g. before curation made it). Rows per benchmark."""
    cfg = recipe.evaluation
    if skip_heldout:
        cfg = cfg.model_copy(update={"benchmarks": [b for b in cfg.benchmarks if b.kind != "heldout"]})
    with tempfile.TemporaryDirectory() as tmp:
        runs = write_benchmarks(cfg, Path(tmp), Path(heldout) if heldout else None, recipe.data.system_prompt)
        return check_benchmarks_load(runs)


@task(name="evaluate-checkpoint")
def evaluate_checkpoint(recipe: Recipe, heldout: str | None, ckpt: StageOutput, suite: str,
                        parent_run_id: str | None) -> StageOutput:
    cfg = recipe.evaluation
    return run_stage(recipe, f"eval-{ckpt.stage}", eval_key(suite, ckpt.key),
                     lambda out: run_evaluation(checkpoint_model_dir(ckpt.path), cfg, out,
                                                Path(heldout) if heldout else None, recipe.data.system_prompt),
                     parent_run_id=parent_run_id, inputs=benchmark_datasets(cfg, Path(heldout) if heldout else None),
                     scored_model=ckpt.model_id, params={"evaluation": eval_settings(cfg), "checkpoint": ckpt.path},
                     tags={**prefect_tags(), "checkpoint": ckpt.stage, "eval.suite": suite,
                           "eval.seed": str(cfg.seed), "eval.backend": cfg.backend,
                           "eval.benchmarks": ",".join(b.name for b in cfg.benchmarks)})


@contextlib.contextmanager
def _parent_run(recipe: Recipe, parent_run_id: str | None):
    """The pipeline's run, or an `evaluate` run of its own when the flow runs alone."""
    if parent_run_id:
        yield parent_run_id
        return
    with mlflow.start_run(run_name=f"evaluate-{recipe.name}", tags={**prefect_tags(), "stage": "evaluate"}) as run:
        yield run.info.run_id


@flow(name="evaluate")
def evaluate_flow(recipe: Recipe = default_recipe(), checkpoints: list[str] | None = None, data: str | None = None,
                  parent_run_id: str | None = None) -> list[dict]:
    """Steps: open an `evaluate` MLflow run unless a parent run is given; resolve the curated data
    (only when a benchmark is the held-out split); write every benchmark as an lm-eval task and
    load it with its data, so a broken benchmark fails before any generation; resolve each
    checkpoint (`models:/name@alias` or `/version`, stage or model directory, MLflow run id; no
    checkpoints: the registered champion); evaluate each on every benchmark (an MLflow child run
    each, cached per checkpoint and evaluation suite) and post its verifier audit; post the comparison (Prefect table, image
    and markdown artifacts; MLflow table and bar chart). Returns one row of metrics per checkpoint."""
    cfg = recipe.evaluation
    configure_tracking(recipe.tracking)
    refs = [f"models:/{recipe.tracking.registered_model}@champion"] if checkpoints is None else checkpoints
    with _parent_run(recipe, parent_run_id) as pid:
        data_out = None
        if any(b.kind == "heldout" for b in cfg.benchmarks):
            data_out = resolve_output(data) if data else curate_flow(recipe, pid)
        heldout = str(split_file(data_out.path, "eval")) if data_out else None
        check_benchmarks_ready(recipe, heldout)
        suite = suite_key(cfg, data_out.key if data_out else None, recipe.data.system_prompt)
        rows = []
        for ckpt in [resolve_checkpoint(r, recipe) for r in refs]:
            out = evaluate_checkpoint(recipe, heldout, ckpt, suite, pid)
            if audit := read_audit(out.path):
                post_stage_artifact(recipe.name, out, "\n".join(audit_markdown(audit)))
            rows.append({"checkpoint": ckpt.stage, **out.metrics, "cached": out.cached,
                         "mlflow_run": ui_link(out.run_id), "path": out.path})
        if rows:
            post_comparison(recipe, rows, pid)
    return rows


def post_comparison(recipe: Recipe, rows: list[dict], run_id: str) -> None:
    """The comparison as Prefect table, image and markdown artifacts, and in the MLflow run."""
    primary = recipe.evaluation.primary_metric
    headline = headline_metrics(recipe.evaluation, rows)
    table = comparison_rows(rows, headline, primary)
    post_table(recipe.name, "eval-comparison", table, f"checkpoints x benchmarks; promotion uses {primary}")
    chart = comparison_chart(rows, headline, Path(recipe.tracking.runs_dir).resolve() / "reports" / run_id
                             / "comparison.png", primary)
    client = mlflow.MlflowClient()
    client.log_artifact(run_id, str(chart), artifact_path="eval")
    client.log_table(run_id, {k: [r.get(k) for r in rows] for k in dict.fromkeys(k for r in rows for k in r)},
                     "eval/comparison.json")
    url = artifact_url(run_id, f"eval/{chart.name}")
    create_image_artifact(url, key=artifact_key(recipe.name, "eval-chart"), description="comparison bar chart")
    create_markdown_artifact(comparison_markdown(table, primary, url, chart),
                             key=artifact_key(recipe.name, "evaluation"), description="evaluation comparison")


def artifact_url(run_id: str, path: str) -> str:
    """Where the MLflow UI serves one artifact of a run (the Prefect image artifact shows it)."""
    return f"{ui_link(run_id).split('/#/')[0]}/get-artifact?path={quote(path)}&run_uuid={run_id}"
