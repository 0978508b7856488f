"""tasks.train.checkpoint_models: every checkpoint the trainer saves is a LoggedModel of the stage
run when `tracking.log_checkpoints: all` asks."""

import shutil

import pytest
from mlflow import MlflowClient

from tasks.lineage import BACKGROUND, ready_model
from tasks.recipe_checks import load_recipe
from tasks.stages import StageSpec, run_stage
from tasks.tracking import configure_tracking
from tasks.train.sft import run_sft
from tests.conftest import CONFIGS


@pytest.mark.integration
def test_every_saved_checkpoint_becomes_a_logged_model_when_asked(tiny_recipe, tiny_model_dir, tiny_data_dir,
                                                                  tmp_path):

    recipe = load_recipe(CONFIGS / "tiny.yaml", [f"tracking.runs_dir={tmp_path / 'runs'}", "tracking.log_checkpoints=all",
                                                 "sft.trainer.save_steps=2"])
    configure_tracking(recipe.tracking)
    shutil.copytree(tiny_model_dir, tmp_path / "base" / "model")
    out = run_stage(recipe, StageSpec("sft", "k", lambda out_dir, hooks: run_sft(recipe, tiny_data_dir, tmp_path / "base", out_dir)))
    assert BACKGROUND.flush() == []
    client = MlflowClient()
    outputs = {o.model_id: o.step for o in client.get_run(out.run_id).outputs.model_outputs}
    names = {client.get_logged_model(m).name: step for m, step in outputs.items()}
    assert names == {"sft-step-2": 2, "sft-step-4": 4, "sft": 0}
    assert all(ready_model(m) for m in outputs)
