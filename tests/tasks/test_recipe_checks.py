"""Every `--set` mistake and every value no run can use: one `error:` line, exit 2, nothing written."""

from __future__ import annotations

import pytest

from tasks.ops.cli import main
from tasks.recipe import RecipeError
from tasks.recipe_checks import base_recipe_file, form_recipe, load_recipe
from tests.conftest import CONFIGS

TINY = str(CONFIGS / "tiny.yaml")


def _refused(capsys, tmp_path, *overrides: str, command: str = "run", recipe: str = TINY) -> str:
    """Run the CLI in-process with the runs dir in tmp_path; it must exit 2 and write nothing."""
    runs = tmp_path / "runs"
    args = [command, recipe, "--set", f"tracking.runs_dir={runs}"]
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 2
    assert not runs.exists(), "a refused recipe wrote its runs directory"
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("override, expected", [
    ("grpo.stages.5.trainer.max_steps=1", "override grpo.stages.5.trainer.max_steps: grpo.stages has indices 0..0, "
                                          "no index 5"),
    ("grpo.stages.-1.max_steps=1", "grpo.stages has indices 0..0, no index -1"),
    ("grpo.stages.x.max_steps=1", "override grpo.stages.x.max_steps: grpo.stages is a list of 1: 'x' is not an "
                                  "index (use 0..0)"),
    ("name.x=1", "override name.x: name is a value ('tiny'), not a section: it has no key 'x'"),
    ("grpo.stages.0.max_steps.x=1", "grpo.stages.0.max_steps is a value (2), not a section"),
    ("grpo..x=1", "empty key in path 'grpo..x'"),
    ("grpo.stages.0.max_step=1", "grpo.stages.0.max_step: unknown key; did you mean 'max_steps'? (valid keys here:"),
    ("grpo.stages.0.trainer.max_stepz=1", "grpo.stages.0.trainer.max_stepz: not a field of TRL GRPOConfig; "
                                          "did you mean 'max_steps'?"),
    ("seed", "override 'seed' is not of the form key.path=value"),
])
def test_override_mistakes(capsys, tmp_path, override, expected):
    assert expected in _refused(capsys, tmp_path, override)


@pytest.mark.parametrize("override, expected", [
    ("grpo.stages.0.trainer.learning_rate=-1", "grpo.stages.0.trainer.learning_rate: -1 is out of range: allowed > 0"),
    ("grpo.stages.0.trainer.learning_rate=0", "grpo.stages.0.trainer.learning_rate: 0 is out of range: allowed > 0"),
    ("grpo.stages.0.trainer.max_steps=0", "grpo.stages.0.trainer.max_steps: 0 is out of range: allowed >= 1, or -1"),
    ("grpo.stages.0.trainer.num_generations=1", "grpo.stages.0.trainer.num_generations: 1 is out of range: "
                                                "allowed >= 2"),
    ("grpo.stages.0.trainer.max_completion_length=0", "grpo.stages.0.trainer.max_completion_length: 0 is out of "
                                                      "range: allowed >= 1"),
    ("sft.trainer.max_length=-5", "sft.trainer.max_length: -5 is out of range: allowed >= 1"),
    ("sft.trainer.num_train_epochs=0", "sft.trainer.num_train_epochs: 0 is out of range: allowed > 0"),
    ("grpo.stages.0.trainer.temperature=0", "grpo.stages.0.trainer.temperature: 0 is out of range: allowed > 0"),
    ("grpo.stages.0.trainer.save_steps=0", "grpo.stages.0.trainer.save_steps: 0 is out of range: allowed > 0"),
])
def test_values_no_run_can_use(capsys, tmp_path, override, expected):
    assert expected in _refused(capsys, tmp_path, override)


@pytest.mark.parametrize("override, expected", [
    ("grpo.stages.0.trainer.use_vllm=true", "grpo.stages.0.trainer.use_vllm: vLLM is not installed here "
                                            "(pip install -e '.[gpu]' on a CUDA machine)"),
    ("grpo.stages.0.trainer.bf16=true", "grpo.stages.0.trainer.bf16: needs a CUDA device and none is visible here"),
    ("sft.trainer.fp16=true", "sft.trainer.fp16: needs a CUDA device and none is visible here"),
    ("grpo.stages.0.launcher.config=configs/accelerate/fsdp.yaml",
     "grpo.stages.0.trainer: FSDP needs CUDA devices and none is visible here"),
])
def test_missing_package_or_device_refused_unless_allowed(capsys, tmp_path, override, expected):
    import importlib.util

    import torch

    if torch.cuda.is_available() or importlib.util.find_spec("vllm"):
        pytest.skip("this machine has what the recipe needs")
    assert expected in _refused(capsys, tmp_path, override, command="validate")
    assert main(["validate", TINY, "--allow-missing", "--set", override]) == 0


def test_gpu_example_fails_here_without_allow_missing(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine")
    example = str(CONFIGS / "examples" / "qwen2.5-1.5b-gsm8k.yaml")
    err = _refused(capsys, tmp_path, command="validate", recipe=example)
    assert "grpo.stages.0.trainer.use_vllm: vLLM is not installed here" in err
    assert "sft.trainer.bf16: needs a CUDA device" in err
    assert main(["validate", example, "--allow-missing"]) == 0


# ---------------------------------------------------------------- Prefect's short form
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
def test_check_recipe_says_what_rlvr_validate_says(capsys, tmp_path, tiny_recipe):
    """The flows' gate, for a Recipe (the schema passed) or a dict, prints the CLI's message."""
    import yaml

    from tasks.recipe import Recipe, RecipeError
    from tasks.recipe_checks import check_recipe

    raw = tiny_recipe.model_dump(mode="json")
    raw["grpo"]["stages"][0]["trainer"]["learning_rat"] = 1e-5
    raw["evaluation"]["benchmarks"][0]["verifier"] = "math_answr_reward"
    with pytest.raises(RecipeError) as gate:
        check_recipe(Recipe.model_validate(raw))  # the schema lets both problems through
    with pytest.raises(RecipeError) as from_dict:
        check_recipe(raw)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    assert main(["validate", str(tmp_path / "bad.yaml")]) == 2
    assert capsys.readouterr().err == f"error: {gate.value}\n" == f"error: {from_dict.value}\n"
    lines = str(gate.value).splitlines()
    assert len(lines) == 3 and "learning_rat" in lines[2] and "math_answr_reward" in lines[1], lines
    assert check_recipe(tiny_recipe) is tiny_recipe  # a sound recipe passes through unchanged
