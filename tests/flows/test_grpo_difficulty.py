"""The pass-rate filter as a step of the GRPO flow, with the checkpoint each stage starts from."""

import pytest

from flows.grpo import grpo_flow
from tasks.data.curate import read_split
from tasks.recipe_checks import load_recipe
from tests.conftest import CONFIGS

pytestmark = pytest.mark.integration


def test_each_stage_trains_on_its_pass_rate_filtered_rows(prefect_server, tmp_path):
    recipe = load_recipe(CONFIGS / "tiny.yaml", [
        f"tracking.runs_dir={tmp_path / 'runs'}",
        # the tiny model never answers right: pass rate 0 for every prompt, so a band that starts
        # at 0 keeps them all and one that starts above 0 would keep none
        "grpo.difficulty={enabled: true, samples: 2, min_pass_rate: 0.0, max_new_tokens: 8, batch_size: 8}",
        "grpo.stages.0.data.max_rows=16"])
    [stage] = grpo_flow(recipe)
    difficulty = next(p for p in (tmp_path / "runs" / "stages" / "difficulty-stage-1").iterdir() if p.is_dir())
    kept = read_split(difficulty, "grpo")
    assert len(kept) == 16 and all(r["pass_rate"] == 0.0 for r in kept)
    assert stage.metrics and (tmp_path / "runs" / "stages" / "grpo-stage-1").is_dir()
    again = grpo_flow(recipe)  # cached: the filter is not re-run
    assert again[0].cached
