import re

import pytest

from tasks.data.curate import curate, read_split
from tasks.recipe import DataSection, DifficultySection, RecipeError
from tasks.recipe_checks import load_recipe, validate_recipe
from tasks.train.difficulty import filter_by_pass_rate, filter_stage_rows
from tests.conftest import CONFIGS


def _policy(question, n):
    """Always right on `Compute 0+..`, right half the time on `1+..`, never on the rest."""
    a, b = map(int, re.findall(r"\d+", question))
    right, wrong = f"<think>\n{a}+{b}\n</think>\n<answer>{a + b}</answer>", "<answer>-1</answer>"
    share = {0: n, 1: n // 2}.get(a, 0)
    return [right] * share + [wrong] * (n - share)


def test_pass_rate_band_keeps_prompts_with_signal(tmp_path, chat_server):
    url, requests = chat_server(_policy)
    rows = [{"id": f"r{a}", "question": f"Compute {a}+5.", "answer": str(a + 5), "family": "math", "metadata": {}}
            for a in range(3)]
    metrics = filter_by_pass_rate(rows, DifficultySection(enabled=True, samples=4), DataSection(), url, tmp_path)
    assert read_split(tmp_path, "grpo") == [{**rows[1], "pass_rate": 0.5}]
    reasons = {r["id"]: (r["reason"], r["pass_rate"]) for r in read_split(tmp_path, "quarantine")}
    assert reasons == {"r0": ("too easy: pass rate 1.0 above max 0.9", 1.0),
                       "r2": ("too hard: pass rate 0.0 below min 0.1", 0.0)}
    assert metrics["quarantine/too_easy"] == metrics["quarantine/too_hard"] == 1 and metrics["difficulty/kept"] == 1
    assert {r["n"] for r in requests} == {4}


def test_grpo_step_filters_the_stage_rows_with_its_starting_checkpoint(tmp_path, tiny_model_dir):
    recipe = load_recipe(CONFIGS / "tiny.yaml", [
        "grpo.difficulty={enabled: true, samples: 2, min_pass_rate: 0.0, max_new_tokens: 8, batch_size: 4}",
        "grpo.stages.0.data.max_rows=6"])
    stage, data = recipe.grpo.stages[0], tmp_path / "data"
    curate(recipe.data, data)
    metrics = filter_stage_rows(recipe, stage, data, tiny_model_dir.parent, tmp_path / "a")
    kept = read_split(tmp_path / "a", "grpo")
    # the from-scratch model never answers right: every pass rate is 0.0, which the band [0, 0.9] keeps;
    # the filter stops after the batch that reaches max_rows
    assert len(kept) == 8 and all(r["pass_rate"] == 0.0 for r in kept)
    assert metrics["difficulty/scored"] == 8 and metrics["difficulty/unscored"] == len(read_split(data, "grpo")) - 8
    filter_stage_rows(recipe, stage, data, tiny_model_dir.parent, tmp_path / "b")  # seeded: same rows again
    assert read_split(tmp_path / "b", "grpo") == kept


def test_band_and_verifier_are_checked_before_compute():
    with pytest.raises(RecipeError, match=r"min_pass_rate \(0.8\) is above max_pass_rate \(0.2\)"):
        validate_recipe({"grpo": {"difficulty": {"min_pass_rate": 0.8, "max_pass_rate": 0.2}}})
    with pytest.raises(RecipeError, match="data.verifier: unknown verifier 'math_answr_reward'.*math_answer_reward"):
        validate_recipe({"data": {"verifier": "math_answr_reward"}})
