"""grpo_flow with a LoRA stage whose monitor policy is `stop`: the stage ends early but cleanly,
the trip is an MLflow tag and Prefect artifacts, and the merged model is a plain model."""

import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows.grpo import grpo_flow
from tasks.recipe_checks import load_recipe
from tasks.stages import StageSpec, run_stage
from tests.conftest import CONFIGS

pytestmark = pytest.mark.integration


def test_a_stop_monitor_ends_the_stage_and_is_reported(prefect_server, tmp_path, tiny_model_dir, tiny_data_dir):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from transformers import AutoModelForCausalLM

    recipe = load_recipe(CONFIGS / "tiny.yaml", [
        f"tracking.runs_dir={tmp_path / 'runs'}", "name=grpoflow", "grpo.stages.0.trainer.max_steps=3",
        "grpo.stages.0.lora={r: 4, alpha: 8}", "grpo.stages.0.monitors={patience: 1, reward_hacking: {policy: off}, "
        "entropy_collapse: {threshold: 1.0e6, policy: stop}}"])  # always below 1e6 nats per completion
    data = run_stage(recipe, StageSpec("data", "given", lambda out, hooks: shutil.copytree(tiny_data_dir, out, dirs_exist_ok=True) and None))
    sft = run_stage(recipe, StageSpec("sft", "given", lambda out, hooks: shutil.copytree(tiny_model_dir, out / "model") and None))

    [out] = grpo_flow(recipe, data=data.path, init=sft.path)

    assert out.metrics["grpo/steps"] == 1 and out.metrics["monitor/stopped"] == 1
    tags = MlflowClient().get_run(out.run_id).data.tags
    assert tags["monitor.stopped_by"] == "entropy_collapse" and "Change:" in tags["monitor.entropy_collapse"]
    with get_client(sync_client=True) as client:
        arts = {a.key: a for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="grpoflow-")))}
    summary = arts["grpoflow-grpo-stage-1"].data
    assert "entropy_collapse" in summary and "data:image/png;base64," in summary
    assert "grpoflow-grpo-stage-1-monitor-trips" in arts
    model = Path(out.path) / "model"
    assert (Path(out.path) / "adapter" / "adapter_config.json").is_file() and not (model / "adapter_config.json").exists()
    assert AutoModelForCausalLM.from_pretrained(model).num_parameters() > 0  # LoRA merged into a plain model
