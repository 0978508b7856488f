"""Prefect-side helpers every stage flow shares: run tags and the stage's markdown artifact."""

from __future__ import annotations

import re

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from tasks.stages import StageOutput
from tasks.tracking import ui_link


def prefect_tags() -> dict[str, str]:
    """Tags that tie an MLflow run to the Prefect flow run that made it."""
    tags = {"prefect.flow_run_id": str(flow_run.id or ""), "prefect.flow_run_name": str(flow_run.name or "")}
    return {k: v for k, v in tags.items() if v}


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
