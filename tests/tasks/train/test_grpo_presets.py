"""Recipe -> GRPOConfig: presets (and their documented table), rewards, LoRA, vLLM wiring."""

import dataclasses
import importlib.util
import re

import pytest
from trl import GRPOConfig

from tasks.recipe import GRPOStage, RecipeError
from tasks.recipe_checks import validate_recipe
from tasks.train.presets import (
    PRESETS,
    dynamic_sampling_for,
    lora_config,
    stage_rewards,
    stage_trainer_fields,
    vllm_server_url,
    vllm_settings,
)
from tests.conftest import REPO


def _stage(**kw) -> GRPOStage:
    return GRPOStage.model_validate(kw)


def test_every_preset_builds_a_grpo_config_with_its_fields(tmp_path):
    grpo_fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    for name, (fields, paper) in PRESETS.items():
        assert set(fields) <= grpo_fields and paper
        args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                          **stage_trainer_fields(_stage(preset=name)))
        for k, v in fields.items():
            assert getattr(args, k) == v, (name, k)


def test_documented_preset_table_matches_the_code():
    doc = (REPO / "docs" / "grpo.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| (.*?) \|", doc, re.M)}
    for name, (fields, _) in PRESETS.items():
        for k, v in fields.items():
            assert f"`{k}: {v}`" in rows[name], (name, k, v)


def test_trainer_map_overrides_the_preset_and_checkpoint_every_sets_save_steps():
    fields = stage_trainer_fields(_stage(preset="dapo", checkpoint_every=7, trainer={"beta": 0.01}))
    assert fields["beta"] == 0.01 and fields["epsilon_high"] == 0.28
    assert fields["save_steps"] == 7 and fields["save_strategy"] == "steps"
    assert stage_trainer_fields(_stage(checkpoint_every=7, trainer={"save_steps": 3}))["save_steps"] == 3


def test_dapo_adds_overlong_shaping_sized_to_the_budget_and_dynamic_sampling():
    stage = _stage(preset="dapo", trainer={"max_completion_length": 100})
    specs = stage_rewards(stage, stage_trainer_fields(stage))
    assert [s.name for s in specs] == ["math_answer_reward", "format_reward", "soft_overlong_reward"]
    assert specs[-1].params == {"max_completion_len": 100, "soft_punish_cache": 20}
    assert dynamic_sampling_for(stage).max_resamples == 4
    listed = _stage(preset="dapo", rewards=[{"name": "soft_overlong_reward", "params": {"max_completion_len": 9}}])
    assert len(stage_rewards(listed, {})) == 1  # an explicit one is kept as written
    assert dynamic_sampling_for(_stage(preset="dapo", dynamic_sampling={"enabled": False})) is None
    assert dynamic_sampling_for(_stage()) is None
    assert dynamic_sampling_for(_stage(dynamic_sampling={"max_resamples": 2})).max_resamples == 2


def test_lora_spec_becomes_a_peft_config():
    cfg = lora_config(_stage(lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}).lora)
    assert (cfg.r, cfg.lora_alpha, set(cfg.target_modules), cfg.task_type) == (4, 8, {"q_proj", "v_proj"}, "CAUSAL_LM")
    assert lora_config(None) is None


def test_vllm_is_off_unless_asked():
    assert vllm_settings({"use_vllm": False}, "m") == ({}, None)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM installed here")
def test_asking_for_vllm_without_it_names_the_fix():
    with pytest.raises(RuntimeError, match=r"pip install -e '.\[gpu\]'.*use_vllm: false"):
        vllm_settings({"use_vllm": True}, "m")


def test_vllm_colocate_and_server_wiring(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else None)
    assert vllm_settings({"use_vllm": True}, "m") == ({"use_vllm": True, "vllm_mode": "colocate"}, None)
    kwargs, cmd = vllm_settings({"use_vllm": True, "vllm_mode": "server", "vllm_server_port": 8123,
                                 "vllm_tensor_parallel_size": 2, "vllm_max_model_length": 4096}, "/runs/sft/model")
    assert kwargs == {"use_vllm": True, "vllm_mode": "server", "vllm_server_host": "127.0.0.1",
                      "vllm_server_port": 8123}
    assert cmd == ["trl", "vllm-serve", "--model", "/runs/sft/model", "--host", "127.0.0.1", "--port", "8123",
                   "--tensor_parallel_size", "2", "--max_model_len", "4096"]
    assert vllm_server_url(kwargs) == "http://127.0.0.1:8123"
    GRPOConfig(output_dir="/tmp/x", use_cpu=True, report_to="none", **kwargs)  # fields TRL accepts
    _, cmd = vllm_settings({"use_vllm": True, "vllm_mode": "server", "vllm_server_host": "0.0.0.0"}, "m")
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"  # every network only when the recipe asks for it


def test_unreachable_vllm_server_fails_with_the_command_to_run():
    from tasks.train.presets import check_vllm_server

    kwargs = {"vllm_server_host": "127.0.0.1", "vllm_server_port": 9}  # discard port: nothing listens
    with pytest.raises(RuntimeError, match="CUDA_VISIBLE_DEVICES=1 trl vllm-serve --model m"):
        check_vllm_server(kwargs, ["trl", "vllm-serve", "--model", "m"], timeout_s=1)


def test_an_unknown_monitor_key_names_the_closest():
    with pytest.raises(RecipeError, match=r"grpo.stages.0.monitors.truncation.polcy: unknown key; did you mean 'policy'"):
        validate_recipe({"grpo": {"stages": [{"monitors": {"truncation": {"polcy": "stop"}}}]}})


def test_stage_problems_are_all_reported_before_compute():
    with pytest.raises(RecipeError) as e:
        validate_recipe({"grpo": {"stages": [{
            "preset": "dapo", "trainer": {"reward_weights": [1.0, 1.0]},
            "data": {"where": {"metadata.level": {"above": 3}}},
            "monitors": {"reward_hacking": {"reward": "math_answr_reward"}},
            "launcher": {"num_processes": 2, "config": "configs/accelerate/nope.yaml"}}]}})
    msg = str(e.value)
    assert "reward_weights: 2 weights for 3 rewards" in msg
    assert "data.where.metadata.level: a range is {min: .., max: ..}" in msg
    assert "reward_hacking.reward: unknown verifier 'math_answr_reward'" in msg
    assert "launcher.config: accelerate config not found" in msg


def test_the_validator_builds_the_config_the_preset_and_trainer_map_make(monkeypatch):
    import tasks.train.presets

    monkeypatch.setitem(tasks.train.presets.PRESETS, "grpo", ({"generation_batch_size": 12}, "test"))
    with pytest.raises(RecipeError, match="grpo.stages.0.trainer: TRL GRPOConfig rejects.*generation_batch_size"):
        validate_recipe({"grpo": {"stages": [{"preset": "grpo", "trainer": {"per_device_train_batch_size": 8}}]}})
