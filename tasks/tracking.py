"""MLflow and stage lifecycle helpers, written once for every stage.

    configure_tracking(recipe.tracking)                 # sqlite store under runs_dir by default
    out = run_stage(recipe, "sft", key, body, parent_run_id=pid, params={...})

`run_stage` is the shared life of a stage: a content-addressed output directory (a finished
one is reused, which is the cross-run cache), seeding, an MLflow child run that is marked
FAILED with whatever it logged when the body raises, and a `result.json` that later stages
and other runs read as the stage's reference.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.layout import RESULT_FILE, RUN_ID_FILE, is_finished, lock_file, model_dir, stage_path
from tasks.lineage import BACKGROUND, jsonl_dataset_input, log_checkpoint, log_inputs, log_scores
from tasks.locking import file_lock, try_lock
from tasks.recipe import Recipe, TrackingSection
from tasks.redact import redact
from tasks.reproducibility import CPU_MATH_ENV, pin_cpu_math, provenance, seed_and_pin

log = logging.getLogger(__name__)

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    # Trace ids from a private RNG: stages seed `random` alike, so two runs would write the same trace ids.
    "MLFLOW_TRACE_USE_ISOLATED_RANDOM_ID_GENERATOR": "true",
    # Rollout traces are written on tasks.lineage's background thread already: export them there.
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
}
# What every process of an embedded run starts with: offline, and the same CPU math everywhere.
EMBEDDED_ENV = {**OFFLINE_ENV, **CPU_MATH_ENV}


class StageOutput(BaseModel):
    """What a stage hands to the next: where its outputs are and which MLflow run made them."""

    stage: str
    key: str = Field(description="Content hash of the stage's settings and inputs.")
    path: str = Field(description="Directory holding the stage's outputs.")
    run_id: str | None = Field(None, description="MLflow run that produced the outputs.")
    model_id: str | None = Field(None, description="MLflow LoggedModel of the stage's model/ directory.")
    metrics: dict[str, float] = Field(default_factory=dict)
    cached: bool = False


def set_embedded_env() -> None:
    """Embedded mode: nothing may reach a hub, CPU math is pinned; user-set values win."""
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    pin_cpu_math()


def tracking_uri(cfg: TrackingSection) -> str:
    """The recipe's store; by default sqlite beside the runs, waiting up to a minute for a
    concurrent writer instead of failing with "database is locked" after sqlite's 5 s."""
    if cfg.tracking_uri:
        return cfg.tracking_uri
    return f"sqlite:///{Path(cfg.runs_dir).resolve() / 'mlflow.db'}?timeout=60"


def configure_tracking(cfg: TrackingSection) -> str:
    """Point MLflow at the recipe's store and experiment; returns the experiment id."""
    import mlflow

    set_embedded_env()
    Path(cfg.runs_dir).mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri(cfg))
    # Two runs creating one fresh sqlite store (its tables) or one experiment at once collide
    # ("table ... already exists"): one at a time, the second finds them made.
    with file_lock(Path(cfg.runs_dir).resolve() / "mlflow.lock"):
        exp = mlflow.get_experiment_by_name(cfg.experiment)
        if exp is not None:
            exp_id = exp.experiment_id
        elif cfg.tracking_uri:  # a server: another machine may create it at the same moment
            exp_id = _create_server_experiment(cfg.experiment)
        else:  # keep artifacts beside the sqlite store, not in the current directory
            root = (Path(cfg.runs_dir).resolve() / "mlartifacts").as_uri()
            exp_id = mlflow.create_experiment(cfg.experiment, artifact_location=root)
    mlflow.set_experiment(experiment_id=exp_id)
    end_dead_runs(exp_id)
    return exp_id


def _create_server_experiment(name: str) -> str:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.create_experiment(name)
    except MlflowException:  # created a moment ago by a run on another machine
        if (exp := mlflow.get_experiment_by_name(name)) is None:
            raise
        return exp.experiment_id


#: Run tag: the lock file its process holds while the run is open (tasks.locking).
LIVENESS_TAG = "rlvr.lock"


def end_dead_runs(experiment_id: str) -> list[str]:
    """Runs left RUNNING by a process that is gone (SIGKILL, a lost machine) end KILLED: their
    liveness lock is free (taken here while the status is read again, so a run that finishes
    meanwhile is left alone). A killed stage's run is continued by the next attempt at it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    dead = []
    for r in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
        lock = r.data.tags.get(LIVENESS_TAG)
        if not lock:
            continue
        with try_lock(lock) as free:
            if not free or client.get_run(r.info.run_id).info.status != "RUNNING":
                continue
            client.set_tag(r.info.run_id, "killed", "its process ended without closing the run (found by a later run)")
            client.set_terminated(r.info.run_id, status="KILLED")
        dead.append(r.info.run_id)
        log.warning("MLflow run %s was left RUNNING by a process that is gone: marked KILLED", r.info.run_id)
    return dead


@contextlib.contextmanager
def run_liveness(cfg: TrackingSection) -> Iterator[dict[str, str]]:
    """A lock held while a run is open (enter it before the run starts, leave it after the run
    ends), so a later run can tell the run died; yields the run tag naming it."""
    import uuid

    path = Path(cfg.runs_dir).resolve() / "live" / f"{uuid.uuid4().hex}.lock"
    with file_lock(path):
        yield {LIVENESS_TAG: str(path)}
    path.unlink(missing_ok=True)


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ :]")


def safe_metric_name(name: str) -> str:
    """MLflow rejects commas and other characters lm-eval and TRL use: rewrite, never drop."""
    return _UNSAFE.sub("/", name.replace(",", "/"))


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}, for MLflow params (values truncated to MLflow's limit)."""
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = str(d)[:6000]
    return out


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({safe_metric_name(k): float(v) for k, v in metrics.items()}, step=step)


def stage_dir(recipe: Recipe, stage: str, key: str) -> Path:
    return stage_path(recipe.tracking.runs_dir, stage, key)


def read_output(path: str | Path) -> StageOutput:
    return StageOutput.model_validate_json((Path(path) / RESULT_FILE).read_text())


def run_stage(
    recipe: Recipe,
    stage: str,
    key: str,
    body: Callable[[Path], dict[str, float] | None],
    *,
    parent_run_id: str | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    inputs: dict[str, str | Path] | None = None,
    init_model: str | None = None,
    scored_model: str | None = None,
) -> StageOutput:
    """Run `body(out_dir)` once per `key` inside an MLflow child run; reuse a finished result.

    `body` writes its outputs into `out_dir` and may return metrics. A directory left by a
    failed or killed attempt (no result.json) is handed to the next attempt as is, so a body
    can resume from its own checkpoints there. `inputs` (name -> JSONL file) are logged as the
    run's datasets (context `eval` when the stage scores `scored_model`, else `training`), the
    LoggedModels it starts from (`init_model`) or scores as its model inputs, the metrics of a
    scoring stage against that model and its benchmark datasets (an input named like the
    metric's first part); a `model/` directory the body writes becomes the run's LoggedModel
    (unless `tracking.log_checkpoints` is off). See tasks.lineage: the uploads run in the background.
    """
    out_dir = stage_dir(recipe, stage, key)
    # One producer per stage directory: a concurrent run of the same recipe waits, then reuses.
    with file_lock(lock_file(out_dir), waiting=f"{stage}: another run is producing {out_dir}"):
        if is_finished(out_dir):
            cached = read_output(out_dir).model_copy(update={"cached": True})
            log.info("%s: reusing finished outputs %s (MLflow run %s)", stage, out_dir, cached.run_id)
            return cached
        return _produce(recipe, stage, key, out_dir, body, parent_run_id, params, tags, inputs,
                        (init_model, scored_model))


def _produce(recipe: Recipe, stage: str, key: str, out_dir: Path, body, parent_run_id, params, tags,
             inputs, models: tuple[str | None, str | None]) -> StageOutput:
    import mlflow

    init_model, scored_model = models
    out_dir.mkdir(parents=True, exist_ok=True)
    threads_chosen_by = seed_and_pin(recipe.seed)
    run_tags = {"stage": stage, "stage_key": key, "recipe": recipe.name, **provenance(recipe.seed, threads_chosen_by),
                **(tags or {})}
    resume_id = _unfinished_run(out_dir)
    with mlflow.start_run(run_id=resume_id, run_name=None if resume_id else stage,
                          parent_run_id=None if resume_id else parent_run_id,
                          tags=None if resume_id else run_tags,
                          nested=mlflow.active_run() is not None) as run:
        mlflow.set_tag(LIVENESS_TAG, str(lock_file(out_dir)))  # held by run_stage meanwhile
        (out_dir / RUN_ID_FILE).write_text(run.info.run_id)
        if not resume_id:
            mlflow.log_params(flatten(redact(params or {})))
            _log_stage_inputs(run.info.run_id, inputs or {}, [m for m in models if m],
                              "eval" if scored_model else "training")
        try:
            metrics = body(out_dir) or {}
        except BaseException as e:  # the run ends FAILED (ActiveRun.__exit__); say why on it
            mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:5000])
            raise
        if metrics and scored_model:
            log_scores(mlflow.MlflowClient(), run.info.run_id, {safe_metric_name(k): v for k, v in metrics.items()},
                       scored_model, {n: (n, file_digest(p)) for n, p in (inputs or {}).items()})
        elif metrics:
            log_metrics(metrics)
        model_id = None
        if recipe.tracking.log_checkpoints and model_dir(out_dir).is_dir():
            model_id = log_checkpoint(run.info.run_id, model_dir(out_dir), stage,
                                      {**run_tags, **({"init_model": init_model} if init_model else {})})
        result = StageOutput(stage=stage, key=key, path=str(out_dir), run_id=run.info.run_id, metrics=metrics,
                             model_id=model_id)
        tmp = out_dir / f"{RESULT_FILE}.tmp"
        tmp.write_text(result.model_dump_json(indent=2))
        tmp.rename(out_dir / RESULT_FILE)
        mlflow.log_artifact(str(out_dir / RESULT_FILE))
    return result


def file_digest(path: str | Path) -> str:
    """Short sha256 of a file's bytes, read in blocks (sources can be large)."""
    import hashlib

    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def log_jsonl_dataset(path: Path, name: str, sample_rows: int = 50) -> None:
    """A JSONL split as an MLflow dataset (digest, row count) plus a sample table; `eval*` is eval context."""
    import mlflow

    entity, head = jsonl_dataset_input(path, name, file_digest(path), "eval" if name.startswith("eval") else "training",
                                       sample_rows)
    log_inputs(mlflow.MlflowClient(), mlflow.active_run().info.run_id, [entity])
    if len(head):
        mlflow.log_table(head, artifact_file=f"samples/{name}.json")


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


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str))


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


def ui_link(run_id: str | None) -> str:
    """Where a person opens the run: the tracking server, or the MLflow UI of `rlvr stack up` (override
    RLVR_MLFLOW_UI)."""
    import mlflow

    if not run_id:
        return ""
    uri = mlflow.get_tracking_uri()  # a tracking server is its own UI
    base = os.environ.get("RLVR_MLFLOW_UI") or (uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000")
    exp = mlflow.get_run(run_id).info.experiment_id
    return f"{base}/#/experiments/{exp}/runs/{run_id}"


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
