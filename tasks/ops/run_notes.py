"""What a person reads about a pipeline run in the UIs: its name, its source, the one-line cause
of a failure and the health warnings its stages raised.

    name = pipeline_run_name(recipe)               # "tiny seed 0 12-08 01:07 3fa2"
    mlflow.start_run(run_name=name, tags=source_tags("configs/tiny.yaml"))
    note_failure(run_id, exc)                      # tag `error` + description, one line
    warnings = stage_warnings(checkpoints)         # monitor trips of every GRPO stage
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from contextvars import ContextVar
from pathlib import Path

from tasks.layout import TRIPS_FILE
from tasks.recipe import Recipe
from tasks.redact import redact_override

REPO = Path(__file__).resolve().parents[2]

#: Parent-run tags: the one-line cause of a failure, and the stages whose monitors tripped.
ERROR_TAG = "error"
WARNINGS_TAG = "monitor_warnings"
#: MLflow shows this tag as the run's description.
NOTE_TAG = "mlflow.note.content"


def pipeline_run_name(recipe: Recipe, now: float | None = None) -> str:
    """The recipe, its seed, the start time and a short id: runs of one recipe told apart in
    chart legends, comparison columns and `rlvr compare`."""
    stamp = time.strftime("%m-%d %H:%M", time.gmtime(time.time() if now is None else now))
    return f"{recipe.name} seed {recipe.seed} {stamp} {uuid.uuid4().hex[:4]}"


def git_commit(repo: Path = REPO) -> str | None:
    """The checkout's commit (with `+dirty` when it has uncommitted changes), or None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def source_tags(source: str | None, overrides: list[str] | None = None) -> dict[str, str]:
    """MLflow's source tags: the recipe file (instead of Prefect's engine.py, shown as its file
    name), the overrides given with it, and the git commit."""
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": source or "recipe given as a parameter"}
    if overrides:
        tags["recipe.overrides"] = " ".join(redact_override(o) for o in overrides)[:5000]
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit.removesuffix("+dirty")
        tags["git.dirty"] = str(commit.endswith("+dirty")).lower()
    return tags


#: The source tags of the flow run in progress: its stage runs carry them too.
_RUN_SOURCE: ContextVar[dict[str, str] | None] = ContextVar("rlvr_run_source", default=None)


def set_run_source(source: str | None, overrides: list[str] | None, outermost: bool) -> None:
    """Record the run's source where the outermost flow starts (a subflow keeps its parent's)."""
    if outermost or _RUN_SOURCE.get() is None:
        _RUN_SOURCE.set(source_tags(source, overrides))


def run_source_tags() -> dict[str, str]:
    return _RUN_SOURCE.get() or {}


def failure_line(exc: BaseException, stage: str | None = None) -> str:
    """The cause of a failure in one line: the failing stage, the exception type and the first
    line of its message (the traceback stays in the logs)."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    where = f"stage {stage} failed: " if stage else ""
    return (f"{where}{type(exc).__name__}" + (f": {first}" if first else ""))[:400]


def failed_stage(parent_run_id: str) -> str | None:
    """The stage whose child run of `parent_run_id` ended FAILED (the last one), if any."""
    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_run(parent_run_id).info.experiment_id
    failed = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'FAILED'",
                                order_by=["attributes.start_time DESC"], max_results=1)
    return failed[0].data.tags.get("stage") if failed else None


def note_failure(parent_run_id: str, exc: BaseException) -> str:
    """Tag the parent run with the one-line cause (tag and description) and add it to the
    exception as a note, so it is the last line of the traceback (Prefect's state message)."""
    from mlflow import MlflowClient

    line = failure_line(exc, failed_stage(parent_run_id))
    client = MlflowClient()
    client.set_tag(parent_run_id, ERROR_TAG, line)
    client.set_tag(parent_run_id, NOTE_TAG, f"**Failed:** {line}")
    exc.add_note(f"pipeline failed: {line}")
    return line


def stage_warnings(outputs) -> dict[str, list[dict]]:
    """Stage -> the monitor trips its training recorded in its directory (reused stages included)."""
    trips = {o.stage: Path(o.path) / TRIPS_FILE for o in outputs}
    return {stage: json.loads(path.read_text()) for stage, path in trips.items() if path.is_file()
            and json.loads(path.read_text())}


def warnings_line(warnings: dict[str, list[dict]]) -> str:
    """`grpo-stage-1: zero_variance, truncation; ...`, or "" without warnings."""
    return "; ".join(f"{stage}: {', '.join(t['monitor'] for t in trips)}" for stage, trips in warnings.items())


def warnings_markdown(warnings: dict[str, list[dict]]) -> list[str]:
    """The pipeline summary's health section: every trip with its advice."""
    if not warnings:
        return ["## Health", "", "No monitor tripped in any stage."]
    lines = ["## Health warnings", ""]
    for stage, trips in warnings.items():
        lines += [f"- **{stage}** {t['monitor']} ({t['policy']}): {t['message']}" for t in trips]
    return lines
