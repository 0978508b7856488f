"""Progress people can follow in the Prefect UI while a stage runs: a progress artifact (a bar
on the flow run's Artifacts tab) and run-log lines with step/total, rate and ETA."""

from __future__ import annotations

from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows.reporting import artifact_key
from tasks.progress import ProgressHook, StepClock


def progress_hook(recipe_name: str, stage: str, every_s: float = 5.0) -> ProgressHook:
    """A (step, total) hook for a stage of the current Prefect run: creates the progress
    artifact `<recipe>-<stage>-progress` on the first report and updates it, at most every
    `every_s` seconds (and always on the last step), logging the same numbers with an ETA."""
    logger = get_run_logger()
    clock = StepClock(stage, every_s)
    artifact: UUID | None = None

    def hook(step: int, total: int) -> None:
        nonlocal artifact
        line = clock.line(step, total)
        if not clock.due(step, total):
            return
        percent = 100.0 * step / max(total, 1)
        if artifact is None:
            artifact = create_progress_artifact(percent, key=artifact_key(recipe_name, stage, "progress"),
                                                description=line)
        else:
            update_progress_artifact(artifact, percent, description=line)
        logger.info(line)

    return hook
