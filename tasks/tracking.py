"""MLflow plumbing: the store and experiment, runs left behind by dead processes, run liveness,
metric and param names MLflow accepts, dataset inputs, UI links.

    configure_tracking(recipe.tracking)                 # sqlite store under runs_dir by default

The life of a stage (its directory, cache, MLflow run, seed, body, result) is tasks/stages.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.layout import file_digest
from tasks.lineage import jsonl_dataset_input, log_inputs
from tasks.locking import file_lock, try_lock
from tasks.recipe import TrackingSection
from tasks.reproducibility import set_embedded_env

log = logging.getLogger(__name__)


#: MLflow 3 picks an experiment's page layout from this tag: without it a new experiment with
#: traces opens as a generative-AI app (traces, "Agent versions"); this one is model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def tag_experiment_kind(experiment_id: str) -> None:
    """Mark the experiment as model training, for new and existing experiments alike."""
    from mlflow import MlflowClient

    client = MlflowClient()
    if client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


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
    tag_experiment_kind(exp_id)
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


def log_jsonl_dataset(path: Path, name: str, sample_rows: int = 50) -> None:
    """A JSONL split as an MLflow dataset (digest, row count) plus a sample table; `eval*` is eval context."""
    import mlflow

    entity, head = jsonl_dataset_input(path, name, file_digest(path), "eval" if name.startswith("eval") else "training",
                                       sample_rows)
    log_inputs(mlflow.MlflowClient(), mlflow.active_run().info.run_id, [entity])
    if len(head):
        mlflow.log_table(head, artifact_file=f"samples/{name}.json")


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str))


def ui_link(run_id: str | None) -> str:
    """Where a person opens the run: the tracking server, or the MLflow UI of `rlvr stack up` (override
    RLVR_MLFLOW_UI)."""
    import mlflow

    if not run_id:
        return ""
    uri = mlflow.get_tracking_uri()  # a tracking server is its own UI
    base = os.environ.get("RLVR_MLFLOW_UI") or (uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000")
    exp = mlflow.get_run(run_id).info.experiment_id
    # MLflow 3's UI starts in its GenAI layout unless the link asks for model training
    return f"{base}/#/experiments/{exp}/runs/{run_id}?workflowType=machine_learning"
