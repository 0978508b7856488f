"""MLflow 3 lineage of every stage, logged off the training's critical path.

    model_id = log_checkpoint(run_id, model_dir, "sft", tags)   # the id now; the upload is queued
    BACKGROUND.submit("datasets of sft", lambda c: log_inputs(c, run_id, [jsonl_dataset_input(...)[0]]))
    log_rollouts(run_id, "grpo-stage-1", step, samples)        # traces, queued
    BACKGROUND.flush()                                          # before registering; at exit

- Datasets a stage read are run inputs (`MlflowClient.log_inputs`) with the file's digest, row
  count, schema and a context: `training` for the splits a trainer reads, `eval` for benchmarks.
- Every checkpoint is an MLflow LoggedModel (transformers flavor, so
  `mlflow.transformers.load_model("models:/<model_id>")` loads it), an output of its stage run.
  Its id exists at once (result.json and the registry name it); its files are uploaded on the
  background thread, after which it is READY (FAILED when the upload failed).
- The LoggedModels a stage starts from or scores are model inputs of its run; evaluation metrics
  are logged against the scored model and the benchmark's dataset, so `search_logged_models`
  ranks checkpoints by them.
- Rollouts: sampled completions of a GRPO logging step become traces (prompt in, completion
  out, one span per reward, the advantage), linked to the stage run and tagged with the step.

Everything queued runs on one daemon thread in submission order, each job with a client on the
tracking URI that was current when it was queued; MLflow exports the traces on that thread too
(`MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false` in tasks.reproducibility.OFFLINE_ENV: a second queue would
only add its own polling delay to every flush). A failing job is logged as a warning and
counted; it never raises into training. `flush()` waits for the queue (atexit does too).
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_ROWS = 100  # rows read for a dataset's schema (the row count is of the whole file)
MODEL_TYPE = "transformers"


class BackgroundLog:
    """One daemon thread running queued MLflow calls in order; `fn(client)` per job."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.failures: list[str] = []
        self.cpu_s = 0.0  # CPU seconds the jobs took on this thread: what lineage costs, under any load

    def submit(self, what: str, fn: Callable) -> None:
        import mlflow

        uri = mlflow.get_tracking_uri()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="mlflow-lineage", daemon=True)
                self._thread.start()
        self._queue.put((what, fn, uri))

    def _work(self) -> None:
        from mlflow import MlflowClient

        while True:
            what, fn, uri = self._queue.get()
            start = time.thread_time()
            try:
                fn(MlflowClient(uri))
            except Exception as e:  # noqa: BLE001 - lineage is best effort; training goes on
                self.failures.append(f"{what}: {type(e).__name__}: {e}")
                log.warning("MLflow lineage: %s failed: %s: %s", what, type(e).__name__, e)
            finally:
                self.cpu_s += time.thread_time() - start
                self._queue.task_done()

    def flush(self) -> list[str]:
        """Wait for every job queued so far; returns and clears the failures."""
        if self._thread is None:
            return []
        self._queue.join()
        failures, self.failures = self.failures, []
        return failures


BACKGROUND = BackgroundLog()
_TRACED = threading.Event()  # a rollout trace was written in this process


def _at_exit() -> None:
    BACKGROUND.flush()
    if _TRACED.is_set():  # release MLflow's tracer now: its trace-id generator raises if collected at teardown
        import mlflow.tracing

        mlflow.tracing.reset()


atexit.register(_at_exit)  # registered after mlflow's own handlers, so it runs before them


def flush_into_run() -> list[str]:
    """Wait for the queued lineage; its failures (if any) become the active run's `lineage.failures` tag."""
    import mlflow

    failures = BACKGROUND.flush()
    if failures:
        mlflow.set_tag("lineage.failures", "; ".join(failures)[:5000])
    return failures


# ---------------------------------------------------------------- datasets
def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def jsonl_dataset_input(path: Path, name: str, digest: str, context: str, head_rows: int = SCHEMA_ROWS):
    """(DatasetInput, first rows as a DataFrame) of a JSONL file: schema from its first rows,
    profile with the row count of the whole file, the given digest and context."""
    import mlflow
    import pandas as pd
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    size = path.stat().st_size
    head = pd.read_json(path, lines=True, nrows=head_rows, dtype=False).astype(str) if size else pd.DataFrame()
    d = mlflow.data.from_pandas(head, source=str(path), name=name, digest=digest).to_dict()
    entity = Dataset(name=name, digest=digest, source_type=d["source_type"], source=d["source"], schema=d.get("schema"),
                     profile=json.dumps({"num_rows": count_lines(path) if size else 0}))
    return DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]), head


def log_scores(client, run_id: str, metrics: dict[str, float], model_id: str | None,
               datasets: dict[str, tuple[str, str]]) -> None:
    """Metrics of a run, each against `model_id` and the dataset (name, digest) of its benchmark
    (the first part of the metric name), so the LoggedModel's page and `search_logged_models` show them."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    rows = []
    for key, value in metrics.items():
        name, digest = datasets.get(key.split("/", 1)[0], (None, None))
        rows.append(Metric(key, float(value), now, 0, model_id=model_id, dataset_name=name, dataset_digest=digest))
    for i in range(0, len(rows), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=rows[i:i + 1000])


#: How the store reports a row another writer inserted first (PostgreSQL, sqlite).
_DUPLICATE_ROW = ("UniqueViolation", "duplicate key value", "UNIQUE constraint failed")


def log_inputs(client, run_id: str, datasets: list | None = None, model_ids: list[str] | None = None,
               attempts: int = 3) -> None:
    """The run's dataset and model inputs. MLflow's store looks a dataset (experiment, name, digest)
    up and inserts it when absent, so two runs logging the same dataset at the same moment (two
    people running one recipe against the team server) collide on its key; the call is one
    transaction, rolled back, and made again finds the dataset."""
    from mlflow.entities import LoggedModelInput
    from mlflow.exceptions import MlflowException

    models = [LoggedModelInput(m) for m in model_ids] if model_ids else None
    for attempt in range(1, attempts + 1):
        try:
            client.log_inputs(run_id, datasets=datasets or None, models=models)
            return
        except MlflowException as e:
            if attempt == attempts or not any(s in str(e) for s in _DUPLICATE_ROW):
                raise
            log.info("MLflow inputs of run %s: a concurrent run inserted the same dataset; again", run_id)
            time.sleep(0.2 * attempt)


# ---------------------------------------------------------------- checkpoints as LoggedModels
def requirements() -> list[str]:
    """Pinned serving requirements (MLflow's own guess imports torchvision, which has no CPU build here)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("torch", "transformers", "tokenizers", "safetensors")]


def log_checkpoint(run_id: str, model_dir: str | Path, name: str, tags: dict[str, str] | None = None,
                   step: int = 0, wait: bool = False) -> str:
    """A LoggedModel for the checkpoint in `model_dir`, an output of `run_id` at `step`; returns its
    id at once and uploads it (transformers flavor) in the background, or now with `wait`."""
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelOutput

    client = MlflowClient()
    exp = client.get_run(run_id).info.experiment_id
    model = _logged_before(client, exp, run_id, name)
    if model is not None and str(model.status).endswith("READY"):
        return model.model_id
    if model is None:
        model = client.create_logged_model(exp, name=name, source_run_id=run_id, model_type=MODEL_TYPE,
                                           tags={k: str(v) for k, v in (tags or {}).items()})
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=step)])
    if wait:
        _upload(client, model, run_id, Path(model_dir))
    else:
        BACKGROUND.submit(f"LoggedModel {name} ({model.model_id})", lambda c: _upload(c, model, run_id, Path(model_dir)))
    return model.model_id


def _logged_before(client, experiment_id: str, run_id: str, name: str):
    """The LoggedModel `name` this run made already: an attempt killed after logging it (the run is
    resumed by the next attempt, tasks.tracking) gets its model again, uploaded anew unless READY."""
    found = client.search_logged_models(experiment_ids=[experiment_id], max_results=1,
                                        filter_string=f"source_run_id = '{run_id}' AND name = '{name}'")
    return found[0] if found else None


def _upload(client, model, run_id: str, model_dir: Path) -> None:
    import mlflow
    from mlflow.models import Model

    from tasks.modeling import load_model

    try:
        hf_model, tok = load_model(model_dir)
        with tempfile.TemporaryDirectory() as tmp:
            meta = Model(artifact_path=model.artifact_location, model_uuid=model.model_id, run_id=run_id,
                         model_id=model.model_id)
            # A components dict, not the path: MLflow 3.17's path mode breaks on transformers 5.
            mlflow.transformers.save_model({"model": hf_model, "tokenizer": tok}, path=f"{tmp}/model",
                                           mlflow_model=meta, task="text-generation",
                                           pip_requirements=requirements())
            client.log_model_artifacts(model.model_id, f"{tmp}/model")
    except BaseException:
        client.finalize_logged_model(model.model_id, "FAILED")
        raise
    client.finalize_logged_model(model.model_id, "READY")


def ready_model(model_id: str | None) -> bool:
    """`model_id` names a LoggedModel in the current store whose upload finished."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not model_id:
        return False
    try:
        return str(MlflowClient().get_logged_model(model_id).status) in ("READY", "LoggedModelStatus.READY")
    except MlflowException:
        return False


def model_id_of_source(source: str) -> str | None:
    """The LoggedModel a model version was registered from (`models:/m-<id>`), if any."""
    ref = source.removeprefix("models:/")
    return ref if source.startswith("models:/m-") and "/" not in ref else None


# ---------------------------------------------------------------- rollouts as traces
def log_rollouts(run_id: str, stage: str, step: int, samples: list[dict]) -> None:
    """Queue one trace per sample (`prompt`, `completion`, `reward/<name>`, `advantage`, and a
    `tool/<name>` span per entry of `tool_calls`), linked to the stage run and tagged with the
    stage and step."""
    if samples:
        BACKGROUND.submit(f"rollout traces of {stage} step {step}", lambda c: _traces(c, run_id, stage, step, samples))


def _traces(client, run_id: str, stage: str, step: int, samples: list[dict]) -> None:
    _TRACED.set()
    exp = client.get_run(run_id).info.experiment_id
    for i, s in enumerate(samples):
        rewards = {k: v for k, v in s.items() if k.startswith("reward/")}
        root = client.start_trace(f"{stage}/rollout", span_type="LLM", inputs={"prompt": s["prompt"]},
                                  attributes={"step": step, "sample": i, "advantage": s.get("advantage")},
                                  tags={"stage": stage, "step": str(step)}, experiment_id=exp, run_id=run_id)
        for call in s.get("tool_calls") or []:  # multi-turn rollouts: one span per tool call
            span = client.start_span(f"tool/{call['name']}", trace_id=root.trace_id, parent_id=root.span_id,
                                     span_type="TOOL", inputs={"arguments": call.get("arguments")})
            client.end_span(root.trace_id, span.span_id, outputs={"result": call.get("result"), "error": call.get("error")},
                            status="ERROR" if call.get("error") else "OK")
        for name, value in rewards.items():
            span = client.start_span(name, trace_id=root.trace_id, parent_id=root.span_id, span_type="EVALUATOR",
                                     inputs={"completion": s["completion"]})
            client.end_span(root.trace_id, span.span_id, outputs={"reward": value})
        client.end_trace(root.trace_id, outputs={"completion": s["completion"]},
                         attributes={**rewards, "advantage": s.get("advantage")})
