"""tasks.lineage: the background queue, dataset inputs, metrics against a LoggedModel, checkpoints
as LoggedModels, once per checkpoint when an attempt is resumed."""

import json
import shutil

import mlflow
import pytest
from mlflow import MlflowClient

from tasks.lineage import (
    BACKGROUND,
    BackgroundLog,
    jsonl_dataset_input,
    model_id_of_source,
    ready_model,
)
from tasks.stages import StageSpec, read_output, run_stage
from tasks.tracking import configure_tracking


def test_background_jobs_run_in_order_and_a_failure_is_counted_not_raised(tiny_recipe):
    configure_tracking(tiny_recipe.tracking)
    queue, seen = BackgroundLog(), []
    queue.submit("first", lambda c: seen.append(("first", c.tracking_uri)))
    queue.submit("broken", lambda c: 1 / 0)
    queue.submit("last", lambda c: seen.append(("last", c.tracking_uri)))
    assert queue.flush() == ["broken: ZeroDivisionError: division by zero"]
    assert seen == [("first", mlflow.get_tracking_uri()), ("last", mlflow.get_tracking_uri())]
    assert queue.flush() == []  # failures are reported once


def test_jsonl_dataset_counts_every_row_and_reads_the_schema_from_the_first(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}", "answer": str(i)}) + "\n" for i in range(250)))
    entity, head = jsonl_dataset_input(path, "grpo", "abc123", "training", head_rows=10)
    assert len(head) == 10 and json.loads(entity.dataset.profile) == {"num_rows": 250}
    assert {c["name"] for c in json.loads(entity.dataset.schema)["mlflow_colspec"]} == {"question", "answer"}
    assert (entity.dataset.name, entity.dataset.digest) == ("grpo", "abc123")
    assert [(t.key, t.value) for t in entity.tags] == [("mlflow.data.context", "training")]


def test_model_id_of_a_version_source():
    assert model_id_of_source("models:/m-0123abc") == "m-0123abc"
    assert model_id_of_source("models:/rlvr-default/3") is None
    assert model_id_of_source("file:///runs/mlartifacts/1/abc/artifacts/model") is None


def test_a_scoring_stage_links_its_datasets_the_model_and_logs_metrics_against_it(
        tiny_recipe, tiny_model_dir, tiny_data_dir):
    configure_tracking(tiny_recipe.tracking)

    def train(out_dir, hooks):
        shutil.copytree(tiny_model_dir, out_dir / "model")
        return {"loss": 1.0}

    made = run_stage(tiny_recipe, StageSpec("train", "k1", train, inputs={"grpo": tiny_data_dir / "grpo.jsonl"}))
    scored = run_stage(tiny_recipe, StageSpec("eval-train", "k2", lambda out, hooks: {"heldout/pass_at_1": 0.25, "speed/x": 3.0},
                                              inputs={"heldout": tiny_data_dir / "eval.jsonl"}, scored=made))
    assert BACKGROUND.flush() == []
    assert read_output(made.path).model_id == made.model_id and ready_model(made.model_id)
    client = MlflowClient()
    model = client.get_logged_model(made.model_id)
    assert model.source_run_id == made.run_id and model.tags["stage"] == "train"
    metrics = {m.key: m for m in model.metrics}
    assert metrics["heldout/pass_at_1"].value == 0.25 and metrics["heldout/pass_at_1"].dataset_name == "heldout"
    assert metrics["speed/x"].dataset_name is None  # no benchmark of that name
    run = client.get_run(scored.run_id)
    assert [m.model_id for m in run.inputs.model_inputs] == [made.model_id]
    assert [(d.dataset.name, d.tags[0].value) for d in run.inputs.dataset_inputs] == [("heldout", "eval")]
    assert run.data.metrics == {"heldout/pass_at_1": 0.25, "speed/x": 3.0}
    assert [m.model_id for m in client.get_run(made.run_id).outputs.model_outputs] == [made.model_id]
    loaded = mlflow.transformers.load_model(f"models:/{made.model_id}", return_type="components")
    assert loaded["model"].config.vocab_size == json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]


def test_log_checkpoints_off_logs_no_model(tiny_recipe, tiny_model_dir):
    configure_tracking(tiny_recipe.tracking)
    recipe = tiny_recipe.model_copy(update={"tracking": tiny_recipe.tracking.model_copy(
        update={"log_checkpoints": False})})
    out = run_stage(recipe, StageSpec("train", "k3", lambda out_dir, hooks: shutil.copytree(tiny_model_dir, out_dir / "model") and None))
    assert out.model_id is None and not MlflowClient().get_run(out.run_id).outputs.model_outputs


def test_a_resumed_attempt_logs_no_second_logged_model_for_its_checkpoint(tiny_recipe, tiny_model_dir):
    """Killed after its checkpoint became a LoggedModel but before result.json: the next attempt
    continues the same run and names the same LoggedModel."""
    from tasks.lineage import log_checkpoint
    from tasks.stages import stage_run_id

    configure_tracking(tiny_recipe.tracking)
    logged = []

    def killed(out_dir, hooks):
        shutil.copytree(tiny_model_dir, out_dir / "model")
        logged.append(log_checkpoint(stage_run_id(), out_dir / "model", "train"))
        raise RuntimeError("killed after logging the checkpoint")

    with pytest.raises(RuntimeError, match="killed"):
        run_stage(tiny_recipe, StageSpec("train", "k4", killed))
    out = run_stage(tiny_recipe, StageSpec("train", "k4", lambda out_dir, hooks: {"loss": 1.0}))
    assert BACKGROUND.flush() == []
    assert out.model_id == logged[0] and ready_model(out.model_id)
    outputs = MlflowClient().get_run(out.run_id).outputs.model_outputs
    assert [m.model_id for m in outputs] == logged


def test_a_multi_turn_rollout_trace_has_one_span_per_tool_call(tiny_recipe):
    from tasks.lineage import log_rollouts

    configure_tracking(tiny_recipe.tracking)
    with mlflow.start_run() as run:
        pass
    calls = [{"name": "price", "arguments": {"item": "fig"}, "result": "4", "error": None},
             {"name": "price", "arguments": {"item": "3"}, "result": None, "error": "argument 'item' must be str"}]
    log_rollouts(run.info.run_id, "grpo-s", 1, [{"prompt": "p", "completion": "c", "reward/r": 1.0,
                                                  "advantage": 0.5, "tool_calls": calls}])
    assert BACKGROUND.flush() == []
    (trace,) = mlflow.search_traces(run_id=run.info.run_id, return_type="list")
    tools = [s for s in trace.data.spans if s.name == "tool/price"]
    assert [s.inputs for s in tools] == [{"arguments": {"item": "fig"}}, {"arguments": {"item": "3"}}]
    assert [s.outputs["error"] for s in tools] == [None, "argument 'item' must be str"]
    assert [s.status.status_code for s in tools] == ["OK", "ERROR"]
