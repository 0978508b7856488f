"""The Prefect short form: a base recipe (name or path) plus overrides, or the full typed recipe."""

import pytest

from tasks.recipe import RecipeError
from tasks.recipe_checks import load_recipe
from tasks.recipe_form import base_recipe_file, form_recipe
from tests.conftest import CONFIGS


def test_a_base_is_a_recipe_of_configs_by_name_or_any_path():
    assert base_recipe_file("tiny") == base_recipe_file("tiny.yaml") == (CONFIGS / "tiny.yaml").resolve()
    assert base_recipe_file(str(CONFIGS / "tiny.yaml")) == (CONFIGS / "tiny.yaml").resolve()
    with pytest.raises(RecipeError, match="base recipe 'tinny'.*tiny"):
        base_recipe_file("tinny")


def test_overrides_apply_to_the_base_and_the_source_says_so():
    recipe, source = form_recipe(None, "tiny", ["name=tiny-form", "grpo.stages.0.max_steps=3"])
    assert recipe == load_recipe(CONFIGS / "tiny.yaml", ["name=tiny-form", "grpo.stages.0.max_steps=3"])
    assert source == "configs/tiny.yaml"


def test_the_typed_recipe_wins_over_the_base_and_the_overrides_adjust_it(tiny_recipe):
    recipe, source = form_recipe(tiny_recipe, "configs/tiny.yaml", ["seed=7"])
    assert recipe.seed == 7 and recipe.name == tiny_recipe.name and source == "configs/tiny.yaml"
    assert form_recipe(tiny_recipe, "x", None)[0] is tiny_recipe


def test_a_misspelled_override_fails_before_compute_naming_the_key():
    with pytest.raises(RecipeError, match=r"grpo\.stages\.0\.trainer\.learnin_rate: not a field.*learning_rate"):
        form_recipe(None, "tiny", ["grpo.stages.0.trainer.learnin_rate=1e-4"])
