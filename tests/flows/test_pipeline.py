"""The whole pipeline on the tiny recipe: real Prefect server, real MLflow (sqlite), real TRL."""

import mlflow
import pytest
from mlflow import MlflowClient

from flows.evaluate import evaluate_flow
from flows.grpo import grpo_flow
from flows.pipeline import pipeline_flow

pytestmark = pytest.mark.integration

STAGES = {"data", "base", "sft", "grpo-stage-1", "eval-base", "eval-sft", "eval-grpo-stage-1"}


@pytest.fixture(scope="module")
def first_run(prefect_server, tmp_path_factory):
    from tasks.recipe_checks import load_recipe
    from tests.conftest import CONFIGS

    runs = tmp_path_factory.mktemp("pipeline") / "runs"
    recipe = load_recipe(CONFIGS / "tiny.yaml", [f"tracking.runs_dir={runs}"])
    return recipe, pipeline_flow(recipe)


def _children(parent_id):
    runs = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r["tags.stage"]: r for _, r in runs.iterrows()}


def test_every_stage_has_a_finished_child_run_under_the_parent(first_run):
    recipe, summary = first_run
    client = MlflowClient()
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags.get("prefect.flow_run_id")
    children = _children(summary["parent_run_id"])
    assert set(children) == STAGES
    assert all(c["status"] == "FINISHED" for c in children.values())
    assert summary["cached"] == []


def test_trainer_metrics_datasets_and_artifacts_are_tracked(first_run):
    _, summary = first_run
    client = MlflowClient()
    children = _children(summary["parent_run_id"])
    sft = client.get_run(children["sft"]["run_id"])
    assert "train_loss" in sft.data.metrics and "sft.learning_rate" in sft.data.params
    grpo = client.get_run(children["grpo-stage-1"]["run_id"])
    assert "reward" in grpo.data.metrics and "rewards/math_answer_reward/mean" in grpo.data.metrics
    data = client.get_run(children["data"]["run_id"])
    assert {d.dataset.name for d in data.inputs.dataset_inputs} == {"grpo", "sft", "eval"}
    ev = client.get_run(children["eval-grpo-stage-1"]["run_id"])
    assert "heldout/pass_at_1" in ev.data.metrics
    paths = {a.path for a in client.list_artifacts(ev.info.run_id, "lm_eval")} | {
        a.path for a in client.list_artifacts(ev.info.run_id, "eval")}
    assert {"lm_eval/results.json", "lm_eval/configs.json", "eval/samples.json"} <= paths
    top = {a.path for a in client.list_artifacts(summary["parent_run_id"])}
    assert {"recipe.yaml", "promotion.json", "eval"} <= top  # the model is an MLflow 3 LoggedModel


def test_final_model_is_registered_and_promoted(first_run):
    recipe, summary = first_run
    client = MlflowClient()
    champ = client.get_model_version_by_alias(recipe.tracking.registered_model, "champion")
    assert str(champ.version) == summary["promotion"]["challenger_version"]
    assert summary["promotion"]["promoted"] and summary["promotion"]["reason"] == "no champion yet"


def test_prefect_artifacts_link_each_stage_to_mlflow(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    recipe, summary = first_run
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="tiny-")))
    keys = {a.key for a in arts}
    assert {"tiny-data", "tiny-sft", "tiny-grpo-stage-1", "tiny-evaluation", "tiny-pipeline",
            "tiny-eval-comparison"} <= keys
    sft_md = next(a for a in arts if a.key == "tiny-sft").data
    assert "MLflow run" in sft_md and "#/experiments/" in sft_md


def test_rerun_is_cached_and_a_grpo_change_reruns_only_grpo_and_its_eval(first_run):
    recipe, summary = first_run
    again = pipeline_flow(recipe)
    assert set(again["cached"]) == STAGES
    assert again["evaluation"] == [{**r, "cached": True} for r in summary["evaluation"]]

    changed = recipe.model_copy(deep=True)
    changed.grpo.stages[0].trainer["learning_rate"] = 2e-4
    third = pipeline_flow(changed)
    assert set(third["cached"]) == STAGES - {"grpo-stage-1", "eval-grpo-stage-1"}


def test_stage_flows_run_alone_from_references(first_run):
    recipe, summary = first_run
    children = _children(summary["parent_run_id"])
    # GRPO from MLflow run ids of the data and SFT stages: the same key, so the cached result
    outs = grpo_flow(recipe, data=children["data"]["run_id"], init=children["sft"]["run_id"])
    assert outs[0].path == summary["checkpoints"]["grpo-stage-1"] and outs[0].cached
    # evaluation of the registered champion, by alias
    rows = evaluate_flow(recipe, [f"models:/{recipe.tracking.registered_model}@champion"],
                         data=children["data"]["run_id"])
    assert rows[0]["checkpoint"].startswith(recipe.tracking.registered_model)
    assert 0.0 <= rows[0]["heldout/pass_at_1"] <= 1.0
