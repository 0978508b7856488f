"""Prefect-side helpers every stage flow shares: run names and tags, the stage's markdown artifact."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from tasks.ops.run_notes import pipeline_run_name, run_source_tags, set_run_source
from tasks.recipe import Recipe
from tasks.recipe_checks import apply_overrides, base_recipe_file, form_recipe
from tasks.stages import StageOutput
from tasks.tracking import ui_link


def prefect_tags() -> dict[str, str]:
    """Tags that tie an MLflow run to the Prefect flow run that made it, and to its source (the
    recipe file, its overrides and the git commit)."""
    tags = {"prefect.flow_run_id": str(flow_run.id or ""), "prefect.flow_run_name": str(flow_run.name or "")}
    return {**{k: v for k, v in tags.items() if v}, **run_source_tags()}


def flow_recipe(recipe: Recipe | None, base: str, overrides: list[str] | None) -> Recipe:
    """A flow's recipe from its parameters (tasks.recipe_checks.form_recipe), its source recorded for its MLflow runs."""
    recipe, source = form_recipe(recipe, base, overrides)
    set_run_source(source, overrides, outermost=flow_run.parent_flow_run_id is None)
    return recipe


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def post_stage_artifact(recipe_name: str, out: StageOutput, summary: str = "") -> None:
    """A markdown summary of one stage with its metrics and a link to its MLflow run."""
    lines = [f"# {out.stage}", "", summary, "",
             f"- outputs: `{out.path}`",
             f"- MLflow run: [{out.run_id}]({ui_link(out.run_id)})" if out.run_id else "- MLflow run: none",
             f"- cached: {'yes, reused a finished stage' if out.cached else 'no'}", ""]
    if out.metrics:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4g} |" for k, v in sorted(out.metrics.items())]
    create_markdown_artifact("\n".join(lines), key=artifact_key(recipe_name, out.stage),
                             description=f"{out.stage} summary")


def post_table(recipe_name: str, name: str, rows: list[dict], description: str) -> None:
    create_table_artifact(rows, key=artifact_key(recipe_name, name), description=description)


def _parameter_recipe(params: dict) -> tuple[str, int]:
    """The recipe's name and seed from a flow run's parameters (the typed recipe, or the base
    recipe's YAML with the overrides), read without validating: naming a run never fails it."""
    recipe = params.get("recipe")
    if recipe is not None:
        raw = recipe.model_dump(mode="json") if hasattr(recipe, "model_dump") else dict(recipe)
        raw = apply_overrides(raw, list(params.get("overrides") or []))
    else:
        raw = apply_overrides(yaml.safe_load(base_recipe_file(params.get("base") or "default").read_text()) or {},
                              list(params.get("overrides") or []))
    return str(raw.get("name", "default")), int(raw.get("seed", 0))


def run_namer(stage: str | None = None) -> Callable[[], str]:
    """A flow's `flow_run_name`: the pipeline's `<recipe> seed <n> <time> <id>` (its MLflow run
    has the same name), a stage flow's `<stage>-<recipe>`."""
    def name() -> str:
        params = dict(flow_run.parameters or {})
        try:
            recipe_name, seed = _parameter_recipe(params)
        except Exception:  # a bad recipe fails in the flow, with its own message
            recipe_name, seed = Path(str(params.get("base") or "default")).stem, 0
        if stage:
            return f"{stage}-{recipe_name}"
        return pipeline_run_name(Recipe.model_construct(name=recipe_name, seed=seed))

    return name
