"""The stage, the pipeline's central idea, in one place: its name, its spec, and the life every
stage shares.

    spec = sft_spec(recipe, data, base)                     # next to the work: tasks/train/sft.py
    out = run_stage(recipe, spec, parent_run_id=pid)        # flows/stage.py's task runs any spec

A `StageSpec` says what a stage is: its name (`stage_name`), its cache key (a content hash of
its settings and its inputs' keys), the files it reads, the model it starts from or scores, its
MLflow params and its body. `run_stage` gives every spec the same life: a content-addressed
directory (a finished one is reused: the cross-run cache), one producer at a time, the MLflow
run (a child of the pipeline's or evaluation's run, or the run an earlier attempt left, resumed),
seeding, the body, and a `result.json` (a `StageOutput`) that later stages and runs read.

A list of stages chains specs: each spec's `init` is the output of the one before it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.layout import RESULT_FILE, RUN_ID_FILE, file_digest, is_finished, lock_file, model_dir, stage_path
from tasks.lineage import BACKGROUND, jsonl_dataset_input, log_checkpoint, log_inputs, log_scores
from tasks.locking import file_lock
from tasks.progress import ProgressHook, trainer_progress
from tasks.recipe import Recipe
from tasks.redact import redact
from tasks.reproducibility import provenance, seed_and_pin
from tasks.tracking import LIVENESS_TAG, flatten, log_metrics, safe_metric_name

log = logging.getLogger(__name__)


def stage_name(kind: str, name: str | None = None) -> str:
    """The one spelling of a stage's name: its kind, then the recipe's name for it when a kind
    runs more than once (`grpo-stage-1`, `difficulty-stage-1`, `eval-grpo-stage-1`)."""
    return f"{kind}-{name}" if name else kind


def stage_kind(stage: str) -> str:
    """What `stage_name` was given as kind: `grpo-stage-1` -> `grpo` (what evaluation.checkpoints lists)."""
    return stage.split("-", 1)[0]


class StageOutput(BaseModel):
    """What a stage hands to the next: where its outputs are and which MLflow run made them."""

    stage: str
    key: str = Field(description="Content hash of the stage's settings and inputs.")
    path: str = Field(description="Directory holding the stage's outputs.")
    run_id: str | None = Field(None, description="MLflow run that produced the outputs.")
    model_id: str | None = Field(None, description="MLflow LoggedModel of the stage's model/ directory.")
    metrics: dict[str, float] = Field(default_factory=dict)
    cached: bool = False


@dataclass(frozen=True)
class StageHooks:
    """What the orchestrator lends a stage's body: where launched workers' output lines go, and a
    (step, total) progress hook (the Prefect UI's progress artifact)."""

    on_line: Callable[[str], None] | None = None
    progress: ProgressHook | None = None

    def trainer_callbacks(self, stage: str) -> list:
        """The progress hook as a TRL/transformers trainer callback."""
        return [trainer_progress(stage, self.progress)] if self.progress else []


StageBody = Callable[[Path, StageHooks], "dict[str, float] | None"]


@dataclass(frozen=True)
class StageSpec:
    """One stage as data. `body(out_dir, hooks)` writes the stage's outputs into `out_dir` and may
    return metrics; a `model/` directory it writes becomes the run's LoggedModel."""

    name: str
    key: str
    body: StageBody
    params: dict[str, Any] = field(default_factory=dict)  # the run's MLflow params
    inputs: dict[str, str | Path] = field(default_factory=dict)  # JSONL files read: the run's datasets
    init: StageOutput | None = None  # the model it starts from (its LoggedModel: the run's model input)
    scored: StageOutput | None = None  # the model it scores (an evaluation: metrics go to that model)
    tags: dict[str, str] = field(default_factory=dict)


def stage_dir(recipe: Recipe, stage: str, key: str) -> Path:
    return stage_path(recipe.tracking.runs_dir, stage, key)


def read_output(path: str | Path) -> StageOutput:
    return StageOutput.model_validate_json((Path(path) / RESULT_FILE).read_text())


def run_stage(recipe: Recipe, spec: StageSpec, hooks: StageHooks | None = None, *,
              parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> StageOutput:
    """Run `spec` once per key inside its MLflow run; reuse a finished result.

    A directory left by a failed or killed attempt (no result.json) is handed to the next
    attempt as is, with its MLflow run, so a body can resume from its own checkpoints there.
    `spec.inputs` are logged as the run's datasets (context `eval` when it scores a model, else
    `training`), the LoggedModel it starts from or scores as its model input, an evaluation's
    metrics against the scored model. Uploads run in the background (tasks.lineage)."""
    out_dir = stage_dir(recipe, spec.name, spec.key)
    # One producer per stage directory: a concurrent run of the same recipe waits, then reuses.
    with file_lock(lock_file(out_dir), waiting=f"{spec.name}: another run is producing {out_dir}"):
        if is_finished(out_dir):
            cached = read_output(out_dir).model_copy(update={"cached": True})
            log.info("%s: reusing finished outputs %s (MLflow run %s)", spec.name, out_dir, cached.run_id)
            return cached
        return _produce(recipe, spec, out_dir, hooks or StageHooks(), parent_run_id, tags or {})


def _produce(recipe: Recipe, spec: StageSpec, out_dir: Path, hooks: StageHooks, parent_run_id: str | None,
             tags: dict[str, str]) -> StageOutput:
    import mlflow

    init_model = spec.init.model_id if spec.init else None
    scored_model = spec.scored.model_id if spec.scored else None
    out_dir.mkdir(parents=True, exist_ok=True)
    threads_chosen_by = seed_and_pin(recipe.seed)
    run_tags = {"stage": spec.name, "stage_key": spec.key, "recipe": recipe.name,
                **provenance(recipe.seed, threads_chosen_by),
                **spec.tags, **tags}
    resume_id = _unfinished_run(out_dir)
    with mlflow.start_run(run_id=resume_id, run_name=None if resume_id else spec.name,
                          parent_run_id=None if resume_id else parent_run_id,
                          tags=None if resume_id else run_tags,
                          nested=mlflow.active_run() is not None) as run:
        mlflow.set_tag(LIVENESS_TAG, str(lock_file(out_dir)))  # held by run_stage meanwhile
        (out_dir / RUN_ID_FILE).write_text(run.info.run_id)
        if not resume_id:
            mlflow.log_params(flatten(redact(spec.params)))
            _log_stage_inputs(run.info.run_id, spec.inputs, [m for m in (init_model, scored_model) if m],
                              "eval" if scored_model else "training")
        try:
            metrics = spec.body(out_dir, hooks) or {}
        except BaseException as e:  # the run ends FAILED (ActiveRun.__exit__); say why on it
            mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:5000])
            raise
        if metrics and scored_model:
            log_scores(mlflow.MlflowClient(), run.info.run_id, {safe_metric_name(k): v for k, v in metrics.items()},
                       scored_model, {n: (n, file_digest(p)) for n, p in spec.inputs.items()})
        elif metrics:
            log_metrics(metrics)
        model_id = None
        if recipe.tracking.log_checkpoints and model_dir(out_dir).is_dir():
            model_id = log_checkpoint(run.info.run_id, model_dir(out_dir), spec.name,
                                      {**run_tags, **({"init_model": init_model} if init_model else {})})
        result = StageOutput(stage=spec.name, key=spec.key, path=str(out_dir), run_id=run.info.run_id,
                             metrics=metrics, model_id=model_id)
        tmp = out_dir / f"{RESULT_FILE}.tmp"
        tmp.write_text(result.model_dump_json(indent=2))
        tmp.rename(out_dir / RESULT_FILE)
        mlflow.log_artifact(str(out_dir / RESULT_FILE))
    return result


def _log_stage_inputs(run_id: str, inputs: dict[str, str | Path], models: list[str], context: str) -> None:
    """Queue the stage's datasets (digested on the background thread) and the models it reads."""
    def job(client):
        log_inputs(client, run_id, [jsonl_dataset_input(Path(p), n, file_digest(p), context)[0]
                                    for n, p in inputs.items()], models)

    if inputs or models:
        BACKGROUND.submit(f"inputs of run {run_id}", job)


def _unfinished_run(out_dir: Path) -> str | None:
    """The MLflow run of an earlier attempt at this stage, so a retry continues it."""
    marker = out_dir / RUN_ID_FILE
    if not marker.is_file():
        return None
    import mlflow

    try:
        mlflow.get_run(marker.read_text().strip())
    except Exception:  # the store was reset: start a new run
        return None
    return marker.read_text().strip()


def resolve_output(ref: str) -> StageOutput:
    """A stage reference given by a user: a stage directory, or the MLflow run id that made it."""
    import mlflow

    if is_finished(ref):
        return read_output(ref)
    try:
        local = mlflow.artifacts.download_artifacts(run_id=ref, artifact_path=RESULT_FILE)
    except Exception as e:
        raise ValueError(f"{ref!r} is neither a stage directory nor an MLflow run with a result.json: {e}") from None
    out = StageOutput.model_validate_json(Path(local).read_text())
    if not Path(out.path).is_dir():
        raise ValueError(f"run {ref} made {out.path}, which is not on this machine")
    return out


def stage_run_id() -> str | None:
    """The stage's MLflow run: the launcher's `MLFLOW_RUN_ID` in a worker, else the active run."""
    import mlflow

    run = mlflow.active_run()
    return os.environ.get("MLFLOW_RUN_ID") or (run.info.run_id if run else None)


def tag_stage_run(tags: dict[str, str]) -> None:
    """Set ``tags`` on the stage's MLflow run (``stage_run_id``), when there is one."""
    run_id = stage_run_id() if tags else None
    if run_id:
        from mlflow import MlflowClient

        client = MlflowClient()
        for k, v in tags.items():
            client.set_tag(run_id, k, v)
