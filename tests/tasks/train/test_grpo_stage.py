"""A GRPO stage on the tiny model with real TRL and MLflow: killed at step 3, re-run, it resumes
from checkpoint-2 in the same MLflow run; what users look at is logged along the way."""

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from transformers import TrainerCallback

from tasks.recipe import GRPOStage, StageData
from tasks.recipe_checks import load_recipe
from tasks.tracking import configure_tracking, run_stage
from tasks.train.grpo import check_stage_rewards, run_grpo_stage, select_rows, split_canary
from tests.conftest import CONFIGS


class KillAt(TrainerCallback):
    """Stands in for a crash or a kill after `step` - 1 steps were checkpointed."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"killed at step {self.step}")


def test_select_rows_and_the_canary_slice():
    rows = [{"id": str(i), "family": "math" if i % 2 else "code", "metadata": {"level": i}} for i in range(20)]
    picked = select_rows(rows, StageData(where={"family": "math", "metadata.level": {"min": 5, "max": 15}}, max_rows=4))
    assert [r["id"] for r in picked] == ["5", "7", "9", "11"]
    assert select_rows(rows, StageData(where={"family": ["code"]}))[-1]["id"] == "18"
    train, canary = split_canary(rows, GRPOStage.model_validate({"monitors": {"reward_hacking": {"rows": 3}}}))
    assert len(train) == 17 and [r["id"] for r in canary] == ["17", "18", "19"]
    train, canary = split_canary(rows, GRPOStage.model_validate({"monitors": {"reward_hacking": {"rows": 30}}}))
    assert len(canary) == 5  # at most a quarter of the selection
    assert split_canary(rows, GRPOStage.model_validate({"monitors": {"reward_hacking": {"policy": "off"}}}))[1] == []


@pytest.mark.integration
def test_killed_stage_resumes_from_its_last_checkpoint_in_the_same_run(tmp_path, tiny_model_dir, tiny_data_dir):
    recipe = load_recipe(CONFIGS / "tiny.yaml", [
        f"tracking.runs_dir={tmp_path / 'runs'}", "grpo.stages.0.checkpoint_every=1", "grpo.stages.0.preset=dapo",
        "grpo.stages.0.trainer.max_steps=4", "grpo.stages.0.dynamic_sampling={max_resamples: 1}",
        "grpo.stages.0.monitors.reward_hacking={every: 2, rows: 4}", "grpo.stages.0.log_samples=4",
        "grpo.stages.0.audit={sample_rate: 1.0, max_per_batch: 1000, max_seconds_per_batch: 60.0}"])
    configure_tracking(recipe.tracking)
    stage = recipe.grpo.stages[0]

    def body(callbacks):
        return lambda out: run_grpo_stage(recipe, stage, tiny_data_dir, tiny_model_dir.parent, out, callbacks=callbacks)

    with pytest.raises(RuntimeError, match="killed at step 3"):
        run_stage(recipe, "grpo-stage-1", "resume", body([KillAt(3)]))
    out = run_stage(recipe, "grpo-stage-1", "resume", body([]))

    client = MlflowClient()
    run = client.get_run(out.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from"] == "checkpoint-2"
    assert len(client.search_runs([run.info.experiment_id])) == 1  # continued, not forked
    assert out.metrics["grpo/resumed_from_step"] == 2 and out.metrics["grpo/steps"] == 4
    # never from step 0: each step's reward was logged exactly once across the two attempts
    assert [m.step for m in client.get_metric_history(out.run_id, "reward")] == [1, 2, 3, 4]

    metrics = run.data.metrics
    for key in ("timing/step_s", "timing/generation_s", "timing/reward_s", "timing/update_s", "timing/other_s",
                "timing/reward_share",
                "timing/reward/math_answer_reward_s", "perf/throughput", "perf/generated_tokens_per_s",
                "dynamic_sampling/resampled", "dynamic_sampling/dropped_groups", "canary/accuracy",
                "rewards/soft_overlong_reward/mean",  # the dapo preset's overlong shaping
                "audit/false_negative_rate", "audit/false_positive_rate_high", "timing/audit_s"):
        assert key in metrics, key
    assert metrics["dynamic_sampling/resampled"] == 1  # tiny model: every group has zero variance
    audit = json.loads((Path(out.path) / "audit.json").read_text())
    assert audit["summary"]["audit/negatives_checked"] + audit["summary"]["audit/positives_checked"] > 0
    assert [m.step for m in client.get_metric_history(out.run_id, "canary/accuracy")] == [0, 2, 4]

    samples = {a.path for a in client.list_artifacts(out.run_id, "samples")}
    assert {f"samples/step_{s:05d}.json" for s in (1, 2, 3, 4)} <= samples
    table = json.loads(open(client.download_artifacts(out.run_id, "samples/step_00004.json")).read())
    assert {"prompt", "completion", "reward/math_answer_reward", "advantage"} <= set(table["columns"])
    assert len(table["data"]) == 4
    plots = {a.path for a in client.list_artifacts(out.run_id, "plots")}
    assert {"plots/reward.png", "plots/kl.png", "plots/clip_ratios.png"} <= plots


def test_a_reward_whose_column_the_curated_rows_lack_fails_before_training(tmp_path):
    recipe = load_recipe(CONFIGS / "tiny-code.yaml")
    rows = [{"id": f"k{i}", "family": "code", "question": "Write f(x).", "metadata": {}} for i in range(8)]
    (tmp_path / "grpo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"grpo.stages 'stage-1' rewards: code_reward needs column 'tests'"):
        check_stage_rewards(recipe, tmp_path)
    good = [{**r, "metadata": {"tests": [{"type": "assert", "code": "assert f(1) == 2"}]}} for r in rows]
    (tmp_path / "grpo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good))
    check_stage_rewards(recipe, tmp_path)
