"""The whole pipeline on the tiny recipe: real Prefect server, real MLflow (sqlite), real TRL."""

import json

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


def _lineage(client, run_id):
    """(dataset name -> context, digests, model inputs, model outputs) of one run."""
    run = client.get_run(run_id)
    datasets = {d.dataset.name: {t.key: t.value for t in d.tags}["mlflow.data.context"] for d in run.inputs.dataset_inputs}
    digests = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    return (datasets, digests, [m.model_id for m in run.inputs.model_inputs],
            [m.model_id for m in run.outputs.model_outputs])


def test_lineage_runs_read_datasets_and_models_and_write_logged_models(first_run):
    _, summary = first_run
    client = MlflowClient()
    children = _children(summary["parent_run_id"])
    _, data_digests, _, _ = _lineage(client, children["data"]["run_id"])
    base = _lineage(client, children["base"]["run_id"])
    sft = _lineage(client, children["sft"]["run_id"])
    grpo = _lineage(client, children["grpo-stage-1"]["run_id"])
    ev = _lineage(client, children["eval-grpo-stage-1"]["run_id"])
    assert base[0] == {"sft": "training", "grpo": "training"}  # the scratch tokenizer's corpus
    assert sft[0] == {"sft": "training"} and sft[1]["sft"] == data_digests["sft"]
    assert grpo[0] == {"grpo": "training"} and grpo[1]["grpo"] == data_digests["grpo"]
    assert ev[0] == {"heldout": "eval"} and ev[1]["heldout"] == data_digests["eval"]
    # data -> base -> SFT -> GRPO -> evaluation, through LoggedModels
    assert len(base[3]) == len(sft[3]) == len(grpo[3]) == 1
    assert sft[2] == base[3] and grpo[2] == sft[3] and ev[2] == grpo[3]
    exp = client.get_run(summary["parent_run_id"]).info.experiment_id
    ranked = mlflow.search_logged_models(experiment_ids=[exp], output_format="list",
                                         order_by=[{"field_name": "metrics.heldout/pass_at_1", "ascending": False}])
    scored = {m.name: m for m in ranked if any(x.key == "heldout/pass_at_1" for x in m.metrics)}
    assert {"base", "sft", "grpo-stage-1"} <= set(scored)
    grpo_model = scored["grpo-stage-1"]
    assert grpo_model.model_id == grpo[3][0] and str(grpo_model.status).endswith("READY")
    metric = next(x for x in grpo_model.metrics if x.key == "heldout/pass_at_1")
    assert metric.value == summary["evaluation"][-1]["heldout/pass_at_1"] and metric.dataset_name == "heldout"
    assert grpo_model.tags["init_model"] == sft[3][0]
    loaded = mlflow.transformers.load_model(f"models:/{grpo_model.model_id}", return_type="components")
    assert loaded["tokenizer"].apply_chat_template([{"role": "user", "content": "1+1"}], tokenize=False)


def test_registered_version_is_the_final_logged_model_and_rollouts_are_traces(first_run):
    recipe, summary = first_run
    client = MlflowClient()
    grpo_run = _children(summary["parent_run_id"])["grpo-stage-1"]["run_id"]
    final = client.get_run(grpo_run).outputs.model_outputs[0].model_id
    champ = client.get_model_version_by_alias(recipe.tracking.registered_model, "champion")
    assert champ.source == f"models:/{final}"
    assert {"name": recipe.tracking.registered_model, "version": champ.version} in \
        json.loads(client.get_logged_model(final).tags["mlflow.modelVersions"])
    traces = mlflow.search_traces(run_id=grpo_run, return_type="list")
    cap = recipe.tracking.rollout_traces
    assert len(traces) == min(cap.per_stage, cap.per_step * 2)  # 2 logging steps in the tiny recipe
    assert {t.info.tags["step"] for t in traces} == {"1", "2"}
    spans = {s.name: s for s in traces[0].data.spans}
    assert {"grpo-stage-1/rollout", "reward/math_answer_reward", "reward/format_reward"} <= set(spans)
    assert "prompt" in spans["grpo-stage-1/rollout"].inputs and "completion" in spans["grpo-stage-1/rollout"].outputs


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
    # the verifier audit: a section of the GRPO stage's summary, an artifact per evaluated checkpoint
    assert "## Verifier audit" in next(a for a in arts if a.key == "tiny-grpo-stage-1").data
    assert "## Verifier audit" in next(a for a in arts if a.key == "tiny-eval-grpo-stage-1").data


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


def _printed_json(text: str):
    """The JSON document a CLI verb prints last (training prints its own lines before it)."""
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if line in ("{", "["))
    return json.loads("\n".join(lines[start:]))


def test_stage_verbs_run_one_stage_from_the_cache_or_from_references(first_run, capsys):
    from tasks.ops.cli import main
    from tests.conftest import CONFIGS

    recipe, summary = first_run
    args = [str(CONFIGS / "tiny.yaml"), "--set", f"tracking.runs_dir={recipe.tracking.runs_dir}"]
    assert main(["curate", *args]) == 0
    assert _printed_json(capsys.readouterr().out)["cached"]  # unchanged: from the cache
    assert main(["sft", *args]) == 0
    assert [s["path"] for s in _printed_json(capsys.readouterr().out)] == \
        [summary["checkpoints"]["base"], summary["checkpoints"]["sft"]]
    champion = MlflowClient().get_model_version_by_alias(recipe.tracking.registered_model, "champion")
    assert main(["grpo", *args, "--init", f"models:/{recipe.tracking.registered_model}@champion"]) == 0
    (stage,) = _printed_json(capsys.readouterr().out)
    assert not stage["cached"] and stage["model_id"]  # a new start: trained from the registered model
    inputs = MlflowClient().get_run(stage["run_id"]).inputs.model_inputs
    assert [m.model_id for m in inputs] == [champion.source.removeprefix("models:/")]
    assert main(["evaluate", *args, "--checkpoint", stage["run_id"]]) == 0
    (row,) = _printed_json(capsys.readouterr().out)
    assert row["checkpoint"] == "grpo-stage-1" and 0.0 <= row["heldout/pass_at_1"] <= 1.0
