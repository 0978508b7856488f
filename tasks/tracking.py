"""MLflow and stage lifecycle helpers, written once for every stage.

    configure_tracking(recipe.tracking)                 # sqlite store under runs_dir by default
    out = run_stage(recipe, "sft", key, body, parent_run_id=pid, params={...})

`run_stage` is the shared life of a stage: a content-addressed output directory (a finished
one is reused, which is the cross-run cache), seeding, an MLflow child run that is marked
FAILED with whatever it logged when the body raises, and a `result.json` that later stages
and other runs read as the stage's reference.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.layout import MODEL_DIR, RESULT_FILE, RUN_ID_FILE, is_finished, model_dir, stage_path
from tasks.recipe import Recipe, TrackingSection
from tasks.reproducibility import CPU_MATH_ENV, pin_cpu_math, provenance, seed_and_pin

log = logging.getLogger(__name__)

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
}
# What every process of an embedded run starts with: offline, and the same CPU math everywhere.
EMBEDDED_ENV = {**OFFLINE_ENV, **CPU_MATH_ENV}


class StageOutput(BaseModel):
    """What a stage hands to the next: where its outputs are and which MLflow run made them."""

    stage: str
    key: str = Field(description="Content hash of the stage's settings and inputs.")
    path: str = Field(description="Directory holding the stage's outputs.")
    run_id: str | None = Field(None, description="MLflow run that produced the outputs.")
    metrics: dict[str, float] = Field(default_factory=dict)
    cached: bool = False


def set_embedded_env() -> None:
    """Embedded mode: nothing may reach a hub, CPU math is pinned; user-set values win."""
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    pin_cpu_math()


def tracking_uri(cfg: TrackingSection) -> str:
    if cfg.tracking_uri:
        return cfg.tracking_uri
    return f"sqlite:///{Path(cfg.runs_dir).resolve() / 'mlflow.db'}"


def configure_tracking(cfg: TrackingSection) -> str:
    """Point MLflow at the recipe's store and experiment; returns the experiment id."""
    import mlflow

    set_embedded_env()
    Path(cfg.runs_dir).mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri(cfg))
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        exp_id = exp.experiment_id
    elif cfg.tracking_uri:
        exp_id = mlflow.create_experiment(cfg.experiment)
    else:  # keep artifacts beside the sqlite store, not in the current directory
        root = (Path(cfg.runs_dir).resolve() / "mlartifacts").as_uri()
        exp_id = mlflow.create_experiment(cfg.experiment, artifact_location=root)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


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
) -> StageOutput:
    """Run `body(out_dir)` once per `key` inside an MLflow child run; reuse a finished result.

    `body` writes its outputs into `out_dir` and may return metrics. A directory left by a
    failed or killed attempt (no result.json) is handed to the next attempt as is, so a body
    can resume from its own checkpoints there. `inputs` (name -> JSONL file) are logged as the
    run's datasets; a `model/` directory the body writes is logged as the run's checkpoint
    (unless `tracking.log_checkpoints` is off).
    """
    import mlflow

    out_dir = stage_dir(recipe, stage, key)
    if is_finished(out_dir):
        cached = read_output(out_dir).model_copy(update={"cached": True})
        log.info("%s: reusing finished outputs %s (MLflow run %s)", stage, out_dir, cached.run_id)
        return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_and_pin(recipe.seed)
    run_tags = {"stage": stage, "stage_key": key, "recipe": recipe.name, **provenance(recipe.seed), **(tags or {})}
    resume_id = _unfinished_run(out_dir)
    with mlflow.start_run(run_id=resume_id, run_name=None if resume_id else stage,
                          parent_run_id=None if resume_id else parent_run_id,
                          tags=None if resume_id else run_tags,
                          nested=mlflow.active_run() is not None) as run:
        (out_dir / RUN_ID_FILE).write_text(run.info.run_id)
        if not resume_id:
            mlflow.log_params(flatten(params or {}))
            for name, path in (inputs or {}).items():
                log_jsonl_dataset(Path(path), name)
        try:
            metrics = body(out_dir) or {}
        except BaseException as e:  # the run ends FAILED (ActiveRun.__exit__); say why on it
            mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:5000])
            raise
        if metrics:
            log_metrics(metrics)
        if recipe.tracking.log_checkpoints and model_dir(out_dir).is_dir():
            mlflow.log_artifacts(str(model_dir(out_dir)), artifact_path=MODEL_DIR)
        result = StageOutput(stage=stage, key=key, path=str(out_dir), run_id=run.info.run_id, metrics=metrics)
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
    import pandas as pd

    df = pd.read_json(path, lines=True, dtype=False).astype(str) if path.stat().st_size else pd.DataFrame()
    ds = mlflow.data.from_pandas(df, source=str(path), name=name, digest=file_digest(path))
    mlflow.log_input(ds, context="eval" if name.startswith("eval") else "training")
    if len(df):
        mlflow.log_table(df.head(sample_rows), artifact_file=f"samples/{name}.json")


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
    """Where a person opens the run: the MLflow UI started by `rlvr ui` (override RLVR_MLFLOW_UI)."""
    import mlflow

    if not run_id:
        return ""
    base = os.environ.get("RLVR_MLFLOW_UI", "http://127.0.0.1:5000")
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
