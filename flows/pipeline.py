"""The whole pipeline: curate -> SFT -> GRPO stages -> evaluate -> promote, under one MLflow run."""

from __future__ import annotations

import mlflow
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Failed

from flows.alerts import emit_warnings_event, ensure_warnings_automation
from flows.curate import curate_flow
from flows.evaluate import check_benchmarks_ready, evaluate_flow
from flows.grpo import grpo_flow
from flows.reporting import artifact_key, flow_recipe, prefect_tags, run_namer
from flows.sft import sft_flow
from tasks.eval.evaluate import suite_key
from tasks.eval.promote import evaluation_refs, promote_checkpoint, registry_checkpoint_name
from tasks.eval.report import headline_metrics
from tasks.lineage import flush_into_run
from tasks.ops.run_notes import (
    WARNINGS_TAG,
    failure_line,
    note_failure,
    pipeline_run_name,
    stage_warnings,
    warnings_line,
    warnings_markdown,
)
from tasks.recipe import Recipe
from tasks.stages import StageOutput, stage_name
from tasks.tracking import configure_tracking, flatten, run_liveness, ui_link
from tasks.train.grpo import check_stage_rewards


@task(name="promote-model")
def promote_model(recipe: Recipe, final: StageOutput, row: dict, suite: str, champion_value: float | None,
                  champion_version: str | None, base_value: float | None) -> dict:
    """Register the final checkpoint as challenger; champion if it wins (decision tagged and logged)."""
    return promote_checkpoint(recipe, final, row, suite, champion_value, champion_version, base_value)


def evaluate_and_promote(recipe: Recipe, data: StageOutput, checkpoints: list[StageOutput],
                         pid: str) -> tuple[list[dict], dict | None]:
    """Evaluate the chosen checkpoints, and the champion too when its recorded score came from
    other evaluation settings (scores are compared within one suite only); promote the final one."""
    cfg = recipe.evaluation
    suite = suite_key(cfg, data.key, recipe.data.system_prompt)
    refs, champ_version = evaluation_refs(recipe, checkpoints, suite)
    # The champion's rows, when it is evaluated again under this suite, are named after its version.
    champion = champ_version and registry_checkpoint_name(recipe.tracking.registered_model, champ_version)
    rows = evaluate_flow(recipe, refs, data.path, pid)
    shown = list(dict.fromkeys([cfg.primary_metric, *headline_metrics(cfg, rows).values()]))
    for r in rows:
        mlflow.log_metrics({f"{r['checkpoint']}/{m}": r[m] for m in shown if m in r})
    final = next((r for r in rows if r["checkpoint"] == checkpoints[-1].stage), None)
    if final is None:
        return rows, None
    champ_value = next((r.get(cfg.primary_metric) for r in rows if champion and r["checkpoint"] == champion), None)
    base_value = next((r.get(cfg.primary_metric) for r in rows if r["checkpoint"] == "base"), None)
    return rows, promote_model(recipe, checkpoints[-1], final, suite, champ_value, champ_version, base_value)


@flow(name="pipeline", flow_run_name=run_namer())
def pipeline_flow(recipe: Recipe | None = None, base: str = "default", overrides: list[str] | None = None):
    """Steps: open the parent MLflow run (tagged with this flow run); curate; prepare the base
    model and run cold-start SFT; run every GRPO stage; evaluate the chosen checkpoints on every
    benchmark (those that need no curated data are loaded before training, so a broken one fails
    first); register the final model as challenger and promote it to champion if it beats the
    current one on the primary metric within one evaluation suite (the first champion must clear
    `evaluation.first_champion`). Stage outputs are cached by content, so an unchanged re-run
    finishes in seconds and a changed GRPO setting re-runs only GRPO and evaluation. A failure
    leaves its one-line cause on the parent run and as the last line of this flow run's message;
    monitor warnings of any stage are tagged on the parent run and sent as a Prefect event.

    Args:
        recipe: The full typed recipe (advanced). Empty: `base` with `overrides`.
        base: A recipe of configs/ (`tiny`, `default`, ...) or a path to a recipe YAML.
        overrides: `key.path=value` settings applied to the recipe, as `rlvr run --set` takes them,
            e.g. `grpo.stages.0.max_steps=50` or `name=my-run`.
    """
    pid = None
    try:
        recipe = flow_recipe(recipe, base, overrides)
        configure_tracking(recipe.tracking)
        ensure_warnings_automation(recipe)  # a missing notification block fails before compute
        with (run_liveness(recipe.tracking) as alive,  # held until after the run ends
              mlflow.start_run(run_name=flow_run.name or pipeline_run_name(recipe),
                               tags={**prefect_tags(), "stage": "pipeline", **alive}) as run):
            pid = run.info.run_id  # an exception leaves this run (and the failing stage's child run) FAILED
            return _pipeline_steps(recipe, pid)
    except Exception as e:
        line = note_failure(pid, e) if pid else failure_line(e)
        get_run_logger().exception("pipeline failed")
        return Failed(message=f"Flow run encountered an exception: {type(e).__name__}: {e}\n{line}", data=e)


def _pipeline_steps(recipe: Recipe, pid: str) -> dict:
    mlflow.log_params(flatten(recipe.model_dump(mode="json"), "recipe."))
    mlflow.log_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), "recipe.yaml")
    check_benchmarks_ready(recipe, None, skip_heldout=True)
    data = curate_flow(recipe, pid)
    check_stage_rewards(recipe, data.path)  # a reward missing its column fails here, before SFT
    checkpoints = sft_flow(recipe, data.path, pid)
    checkpoints += grpo_flow(recipe, data.path, checkpoints[-1].path, pid)
    # Which MLflow run made each stage, also one reused from the cache (no child run here).
    mlflow.set_tags({f"stage_run.{s.stage}": s.run_id for s in [data, *checkpoints] if s.run_id})
    warnings = report_warnings(recipe, pid, checkpoints)
    rows, decision = evaluate_and_promote(recipe, data, checkpoints, pid)
    flush_into_run()  # the LoggedModels, datasets and traces queued off the training's critical path
    stages = [data, *checkpoints]
    summary = {"parent_run_id": pid, "evaluation": rows, "promotion": decision, "data": str(data.path),
               "checkpoints": {c.stage: c.path for c in checkpoints}, "monitor_warnings": warnings,
               "cached": sorted([s.stage for s in stages if s.cached] + [stage_name("eval", r["checkpoint"]) for r in rows if r["cached"]])}
    post_summary(recipe, pid, rows, decision, warnings)
    return summary


def report_warnings(recipe: Recipe, pid: str, checkpoints: list[StageOutput]) -> dict[str, list[dict]]:
    """The stages' monitor trips on the parent run (a tag and monitor_warnings.md) and as a Prefect
    event (what the recipe's automation sends on)."""
    warnings = stage_warnings(checkpoints)
    if warnings:
        mlflow.set_tag(WARNINGS_TAG, warnings_line(warnings))
        mlflow.log_text("\n".join(warnings_markdown(warnings)), "monitor_warnings.md")
        emit_warnings_event(recipe, pid, warnings_line(warnings), ui_link(pid))
    return warnings


def post_summary(recipe: Recipe, pid: str, rows: list[dict], decision: dict | None,
                 warnings: dict[str, list[dict]]) -> None:
    metric = recipe.evaluation.primary_metric
    create_markdown_artifact(
        f"# Pipeline `{recipe.name}`\n\nMLflow parent run: [{pid}]({ui_link(pid)})\n\n"
        + "\n".join(f"- {r['checkpoint']}: {metric} = {r.get(metric, float('nan')):.4f}" for r in rows)
        + (f"\n\nPromotion: {decision['reason']} -> {'champion' if decision['promoted'] else 'challenger'}"
           if decision else "")
        + "\n\n" + "\n".join(warnings_markdown(warnings)),
        key=artifact_key(recipe.name, "pipeline"), description="pipeline summary")
