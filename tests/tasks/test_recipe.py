import os
from pathlib import Path

import pytest
import yaml

from tasks.recipe import Recipe, RecipeError
from tasks.recipe_checks import apply_overrides, load_recipe, validate_recipe

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ALL_RECIPES = sorted(p for p in CONFIGS.rglob("*.yaml") if "lm_eval" not in p.parts and "accelerate" not in p.parts)


def test_there_are_recipes():
    assert len(ALL_RECIPES) >= 2


@pytest.mark.parametrize("path", ALL_RECIPES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_recipe_validates(path):
    text = path.read_text()
    assert text.startswith("#"), "a recipe opens with a comment header: purpose, hardware, command"
    assert isinstance(load_recipe(path, allow_missing=True), Recipe)  # GPU recipes: see test_recipe_checks


def _errors(raw) -> str:
    with pytest.raises(RecipeError) as e:
        validate_recipe(raw)
    return str(e.value)


def test_the_heldout_split_is_scored_by_the_data_verifier_unless_a_benchmark_names_one():
    """Countdown rows scored by math_answer_reward would all be None (0.0): held-out pass@1 read
    0.0 for a countdown model that solved most rows."""
    assert load_recipe(CONFIGS / "countdown.yaml").evaluation.benchmarks[0].verifier == "equation_reward"
    assert Recipe().evaluation.benchmarks[0].verifier == "math_answer_reward"  # shared default untouched
    named = load_recipe(CONFIGS / "countdown.yaml", ["evaluation.benchmarks=[{name: heldout, verifier: format_reward}]"])
    assert named.evaluation.benchmarks[0].verifier == "format_reward"


def test_unknown_key_names_key_and_closest():
    msg = _errors({"sft": {"enabeld": True}})
    assert "sft.enabeld" in msg and "did you mean 'enabled'" in msg


def test_unknown_nested_key_in_list():
    msg = _errors({"grpo": {"stages": [{"name": "a", "rewardz": []}]}})
    assert "grpo.stages.0.rewardz" in msg and "'rewards'" in msg


def test_bad_value_names_field_value_and_allowed():
    msg = _errors({"model": {"scratch": {"architecture": "gpt9"}}})
    assert "model.scratch.architecture" in msg and "gpt9" in msg and "qwen2" in msg


def test_unknown_trainer_field_names_closest_trl_field():
    msg = _errors({"grpo": {"stages": [{"trainer": {"learnig_rate": 1e-5}}]}})
    assert "grpo.stages.0.trainer.learnig_rate" in msg and "learning_rate" in msg and "GRPOConfig" in msg


def test_trl_cross_field_rule_is_reported_before_compute():
    msg = _errors({"grpo": {"stages": [{"trainer": {"per_device_train_batch_size": 6, "num_generations": 4}}]}})
    assert "grpo.stages.0.trainer" in msg and "num_generations" in msg


def test_unknown_verifier_lists_valid_names():
    msg = _errors({"grpo": {"stages": [{"rewards": [{"name": "math_answr_reward"}]}]}})
    assert "math_answer_reward" in msg and "format_reward" in msg


def test_a_code_sandbox_that_cannot_run_here_is_reported_before_compute(tmp_path, monkeypatch):
    fake = tmp_path / "bwrap"  # a bubblewrap that cannot make namespaces, as in a locked-down container
    fake.write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    code = {"name": "code_reward", "params": {"uid_count": 1 << 22}}  # a sandbox this session has not tried
    msg = _errors({"grpo": {"stages": [{"rewards": [{"name": "math_answer_reward"}, code]}]}})
    assert "grpo.stages.0.rewards.1.params: code sandbox (bwrap)" in msg and "Creating new namespace failed" in msg
    assert "cannot isolate here" in msg and "isolation: unshare or rlimits" in msg


def test_missing_source_file_names_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    msg = _errors({"data": {"sources": [{"kind": "jsonl", "name": str(missing)}]}})
    assert str(missing) in msg


def test_all_problems_reported_at_once():
    msg = _errors({"sft": {"enabeld": True}, "seed": "x"})
    assert "sft.enabeld" in msg and "seed" in msg


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_overrides_parse_yaml_values_and_list_indices():
    raw = apply_overrides({"grpo": {"stages": [{"trainer": {}}]}},
                          ["grpo.stages.0.trainer.learning_rate=1e-5", "sft.enabled=false", "seed=3"])
    assert raw["grpo"]["stages"][0]["trainer"]["learning_rate"] == 1e-5
    assert raw["sft"]["enabled"] is False and raw["seed"] == 3


def test_bad_recipe_writes_nothing(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(RecipeError):
        load_recipe(CONFIGS / "tiny.yaml", [f"tracking.runs_dir={runs}", "sft.trainer.nope=1"])
    assert not runs.exists()


def test_digest_changes_only_with_its_section():
    a = Recipe()
    b = Recipe.model_validate({"grpo": {"stages": [{"trainer": {"learning_rate": 1e-5}}]}})
    assert a.digest("data") == b.digest("data")
    assert a.digest("grpo") != b.digest("grpo")


def test_schema_is_a_prefect_form():
    """The flows take a Recipe; Prefect renders its JSON schema (with descriptions) as a form."""
    from prefect.utilities.callables import parameter_schema

    from flows.pipeline import pipeline_flow

    schema = parameter_schema(pipeline_flow.fn).model_dump()
    assert "recipe" in schema["properties"]
    defs = schema["definitions"]
    assert "Recipe" in defs and "GRPOStage" in defs
    assert "description" in defs["EvaluationSection"]["properties"]["samples"]
    assert yaml.safe_dump(schema)  # serialisable
