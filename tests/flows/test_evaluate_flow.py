"""evaluate_flow on its own: the registered champion by default (what a scheduled deployment
runs), any model directory, the comparison artifacts, and a broken benchmark failing first."""

import json

import mlflow
import pytest
from mlflow import MlflowClient

from flows.evaluate import evaluate_flow
from tasks.eval.promote import promote_if_better, register_model
from tasks.recipe import RecipeError
from tasks.tracking import configure_tracking

pytestmark = pytest.mark.integration

NAME = "eval-flow-test"


@pytest.fixture(scope="module")
def recipe(prefect_server, tiny_model_dir, tmp_path_factory):
    """The tiny recipe on a jsonl benchmark (no curation needed), with the tiny model as champion."""
    from tasks.recipe_checks import load_recipe
    from tests.conftest import CONFIGS

    tmp = tmp_path_factory.mktemp("evaluate")
    rows = tmp / "arith.jsonl"
    rows.write_text("".join(json.dumps({"question": f"Compute {i}+1.", "answer": str(i + 1)}) + "\n" for i in range(4)))
    recipe = load_recipe(CONFIGS / "tiny.yaml", [
        f"tracking.runs_dir={tmp / 'runs'}", f"tracking.registered_model={NAME}",
        f"evaluation.benchmarks=[{{name: arith, path: {rows}}}]", "evaluation.primary_metric=arith/pass_at_1",
        "evaluation.limit=3", "evaluation.max_new_tokens=8"])
    configure_tracking(recipe.tracking)
    with mlflow.start_run():
        version = register_model(tiny_model_dir, NAME)
    promote_if_better(NAME, version, "arith/pass_at_1", 0.0, margin=0.0)
    return recipe


def test_evaluates_the_registered_champion_when_given_no_checkpoints(recipe):
    rows = evaluate_flow(recipe)
    assert [r["checkpoint"] for r in rows] == [f"{NAME}-v1"]
    assert rows[0]["arith/pass_at_1"] == 0.0 and rows[0]["arith/no_answer_count"] == 3 * 2

    client = MlflowClient()
    parent = mlflow.search_runs(filter_string="tags.stage = 'evaluate'", output_format="list")[0]
    assert parent.info.status == "FINISHED" and parent.data.tags.get("prefect.flow_run_id")
    assert {"eval/comparison.json", "eval/comparison.png"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "eval")}
    child = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                               output_format="list")[0]
    assert child.data.tags["eval.seed"] == str(recipe.evaluation.seed) and child.data.tags["eval.backend"] == "hf"
    assert child.data.params["evaluation.seed"] == str(recipe.evaluation.seed)
    assert child.data.metrics["arith/pass_at_1"] == 0.0
    logged = {a.path for a in client.list_artifacts(child.info.run_id, "lm_eval")}
    assert {"lm_eval/results.json", "lm_eval/configs.json", "lm_eval/settings.json", "lm_eval/benchmarks"} <= logged


def test_alias_uri_and_plain_model_directory_side_by_side(recipe, tiny_model_dir):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    rows = evaluate_flow(recipe, checkpoints=[f"models:/{NAME}@champion", str(tiny_model_dir)])
    assert [r["checkpoint"] for r in rows] == [f"{NAME}-v1", "tiny-model0"]
    assert rows[0]["cached"] and not rows[1]["cached"]  # same checkpoint, same suite: reused
    # the same weights give the same numbers, whichever way they were referenced
    assert {k: v for k, v in rows[0].items() if "/" in k and not k.startswith("mlflow")} == \
        {k: v for k, v in rows[1].items() if "/" in k and not k.startswith("mlflow")}
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="tiny-eval")))
    by_key = {a.key: a for a in sorted(arts, key=lambda a: a.created)}  # the newest version of each
    assert {"tiny-eval-comparison", "tiny-eval-chart"} <= set(by_key)
    assert "get-artifact?path=eval/" in by_key["tiny-eval-chart"].data
    table = json.loads(by_key["tiny-eval-comparison"].data) if isinstance(by_key["tiny-eval-comparison"].data, str) \
        else by_key["tiny-eval-comparison"].data
    assert [r["checkpoint"] for r in table] == [f"{NAME}-v1", "tiny-model0"]


def test_a_broken_benchmark_fails_before_any_generation(recipe, tmp_path):
    missing = tmp_path / "gone.jsonl"
    broken = recipe.model_copy(deep=True)
    broken.evaluation.benchmarks[0].path = str(missing)
    before = len(mlflow.search_runs(filter_string="tags.stage LIKE 'eval-%'", output_format="list"))
    with pytest.raises(RecipeError, match=f"evaluation.benchmarks.0 \\(arith\\): jsonl: file not found: {missing}"):
        evaluate_flow(broken)  # the recipe gate, as `rlvr validate` says it
    assert len(mlflow.search_runs(filter_string="tags.stage LIKE 'eval-%'", output_format="list")) == before


def test_pipeline_promotion_re_evaluates_a_champion_scored_under_other_settings(recipe, tiny_model_dir, tmp_path):
    import shutil

    from flows.pipeline import evaluate_and_promote
    from tasks.stages import StageOutput

    final = StageOutput(stage="grpo-stage-1", key="k", path=str(tmp_path))  # a finished GRPO stage's directory
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    (tmp_path / "result.json").write_text(final.model_dump_json())
    no_data = StageOutput(stage="data", key="d", path=str(tmp_path))  # no benchmark reads curated data
    # the fixture's champion score carries no evaluation suite, so it is not comparable
    with mlflow.start_run() as run:
        rows, decision = evaluate_and_promote(recipe, no_data, [final], run.info.run_id)
    assert [r["checkpoint"] for r in rows] == ["grpo-stage-1", f"{NAME}-v1"]
    assert decision["champion_value"] == rows[1]["arith/pass_at_1"] and not decision["promoted"]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    tags = client.get_model_version(NAME, decision["challenger_version"]).tags
    assert tags["eval.suite"] == decision["suite"] and tags["promotion.eval_run"] == rows[0]["mlflow_run"]
    parent = client.get_run(run.info.run_id)
    assert parent.data.tags["promotion.promoted"] == "False"
    assert parent.data.metrics[f"{NAME}-v1/arith/pass_at_1"] == 0.0
