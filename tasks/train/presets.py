"""How a GRPO stage of the recipe becomes TRL settings: presets, rewards, LoRA, vLLM.

    fields = stage_trainer_fields(stage)        # preset < typed settings < checkpoint_every < stage.trainer
    specs = stage_rewards(stage, fields)        # the recipe's rewards (+ DAPO overlong shaping)
    kwargs, serve_cmd = vllm_settings(fields, model_path)

The preset table is the one in docs/grpo.md; a test keeps the two in step.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tasks.recipe import DynamicSampling, GRPOStage, LoraSpec, Recipe, RewardSpec
from tasks.train.launch import launcher_problems

#: preset -> (GRPOConfig fields, paper). `none` leaves TRL's defaults.
PRESETS: dict[str, tuple[dict[str, Any], str]] = {
    "none": ({}, "TRL 1.16 defaults"),
    "grpo": ({"loss_type": "grpo", "scale_rewards": "group", "beta": 0.04, "epsilon": 0.2},
             "DeepSeekMath, arXiv 2402.03300 §4.1 (KL 0.04, per-sequence normalisation, group std)"),
    "dr_grpo": ({"loss_type": "dr_grpo", "scale_rewards": "none", "beta": 0.0},
                "Dr. GRPO, arXiv 2503.20783 (no length or std normalisation, no KL)"),
    "dapo": ({"loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.28, "beta": 0.0},
             "DAPO, arXiv 2503.14476 (clip-higher, token-level loss; plus overlong shaping and dynamic sampling)"),
    "gspo": ({"importance_sampling_level": "sequence", "loss_type": "grpo", "beta": 0.0,
              "epsilon": 3e-4, "epsilon_high": 4e-4},
             "GSPO, arXiv 2507.18071 §5.1 (sequence-level importance ratio and clipping)"),
}

# DAPO's overlong buffer is 4096 of 20480 tokens: the last 20% of the completion budget.
OVERLONG_BUFFER_FRACTION = 0.2


def stage_trainer_fields(stage: GRPOStage) -> dict[str, Any]:
    """GRPOConfig fields of a stage: the preset's, then the typed settings (learning_rate, ...),
    then checkpointing, then `trainer:` (wins)."""
    return {**PRESETS[stage.preset][0], **stage.typed_fields(), "save_strategy": "steps",
            "save_steps": stage.checkpoint_every, **stage.trainer}


def dynamic_sampling_for(stage: GRPOStage) -> DynamicSampling | None:
    """The stage's dynamic sampling: as set, else on for the dapo preset."""
    if stage.dynamic_sampling is not None:
        return stage.dynamic_sampling if stage.dynamic_sampling.enabled else None
    return DynamicSampling() if stage.preset == "dapo" else None


def stage_rewards(stage: GRPOStage, fields: dict[str, Any]) -> list[RewardSpec]:
    """The stage's reward specs; the dapo preset adds soft overlong shaping sized to the
    completion budget unless the stage already lists `soft_overlong_reward`."""
    specs = list(stage.rewards)
    if stage.preset == "dapo" and not any(s.name == "soft_overlong_reward" for s in specs):
        budget = int(fields.get("max_completion_length", 512))  # TRL's default, when `fields` is not a stage's
        specs.append(RewardSpec(name="soft_overlong_reward", weight=1.0, params={
            "max_completion_len": budget, "soft_punish_cache": max(1, int(budget * OVERLONG_BUFFER_FRACTION))}))
    return specs


def lora_config(spec: LoraSpec | None):
    """A peft LoraConfig for the stage, or None (train all weights)."""
    if spec is None:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=spec.target_modules)


def vllm_settings(fields: dict[str, Any], model_path: str | Path) -> tuple[dict[str, Any], list[str] | None]:
    """The GRPOConfig fields for vLLM generation, and in server mode the `trl vllm-serve`
    command that must be running first (on GPUs the trainer does not use).

    Raises RuntimeError naming the fix when `use_vllm` is set but vLLM cannot be imported.
    """
    if not fields.get("use_vllm"):
        return {}, None
    if importlib.util.find_spec("vllm") is None:
        raise RuntimeError("trainer.use_vllm is true but vLLM is not installed here. On a CUDA machine: "
                           "pip install -e '.[gpu]'; otherwise set use_vllm: false to generate with transformers.")
    mode = fields.get("vllm_mode", "colocate")
    if mode == "colocate":
        return {"use_vllm": True, "vllm_mode": "colocate"}, None
    if mode != "server":
        raise ValueError(f"trainer.vllm_mode must be 'colocate' or 'server', got {mode!r}")
    # Loopback unless the recipe names a host (TRL's default, 0.0.0.0, would serve every network).
    host, port = fields.get("vllm_server_host", "127.0.0.1"), int(fields.get("vllm_server_port", 8000))
    kwargs = {"use_vllm": True, "vllm_mode": "server", "vllm_server_host": host, "vllm_server_port": port}
    if fields.get("vllm_server_base_url"):
        kwargs["vllm_server_base_url"] = fields["vllm_server_base_url"]
    cmd = ["trl", "vllm-serve", "--model", str(model_path), "--host", host, "--port", str(port),
           "--tensor_parallel_size", str(fields.get("vllm_tensor_parallel_size", 1))]
    if fields.get("vllm_max_model_length"):
        cmd += ["--max_model_len", str(fields["vllm_max_model_length"])]
    return kwargs, cmd


def vllm_server_url(kwargs: dict[str, Any]) -> str:
    if kwargs.get("vllm_server_base_url"):
        return kwargs["vllm_server_base_url"].rstrip("/")
    host = "127.0.0.1" if kwargs["vllm_server_host"] == "0.0.0.0" else kwargs["vllm_server_host"]
    return f"http://{host}:{kwargs['vllm_server_port']}"


def check_vllm_server(kwargs: dict[str, Any], serve_cmd: list[str], timeout_s: float = 5.0) -> None:
    """Fail before training, with the command to run, when the vLLM server does not answer."""
    import requests

    url = vllm_server_url(kwargs)
    try:
        requests.get(f"{url}/health/", timeout=timeout_s).raise_for_status()
    except requests.RequestException as e:
        raise RuntimeError(f"vllm_mode is 'server' but no vLLM server answers at {url} ({e}). Start it first on "
                           f"GPUs the trainer does not use, e.g.: CUDA_VISIBLE_DEVICES=1 {' '.join(serve_cmd)}") from None


def check_stages(recipe: Recipe) -> list[str]:
    """Recipe problems of the GRPO stages and launchers beyond the schema (run by `validate_recipe`)."""
    problems = []
    launchers = [("sft.launcher", recipe.sft.launcher)]
    for i, stage in enumerate(recipe.grpo.stages):
        where = f"grpo.stages.{i}"
        launchers.append((f"{where}.launcher", stage.launcher))
        weights, n = stage.trainer.get("reward_weights"), len(stage_rewards(stage, stage_trainer_fields(stage)))
        if weights is not None and len(weights) != n:
            problems.append(f"{where}.trainer.reward_weights: {len(weights)} weights for {n} rewards (the dapo "
                            "preset adds soft_overlong_reward); set each weight on `rewards:` instead")
        for key, cond in stage.data.where.items():
            if isinstance(cond, dict) and (not cond or set(cond) - {"min", "max"}):
                problems.append(f"{where}.data.where.{key}: a range is {{min: .., max: ..}}, got {cond}")
        if stage.lora is not None and importlib.util.find_spec("peft") is None:
            problems.append(f"{where}.lora: needs the peft package (pip install peft)")
    for where, launcher in launchers:
        problems += launcher_problems(where, launcher)
    return problems
