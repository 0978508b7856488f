"""What TRL accepts but no run can use, and what a recipe needs from this machine.

    problems = value_problems(recipe)          # learning_rate <= 0, steps/lengths <= 0, ...
    problems = environment_problems(recipe)    # vLLM, CUDA for bf16/fp16/FSDP (DeepSpeed: launch.py)

Both run at validate time on the merged trainer settings (preset < typed settings <
`trainer:`), so a value set through the pass-through map is checked like a typed one.
`environment_problems` is skipped by `rlvr validate --allow-missing` (a GPU recipe checked on
a laptop); `rlvr run` always applies it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.recipe import Recipe
from tasks.train.presets import stage_trainer_fields

GPU_INSTALL = "pip install -e '.[gpu]' on a CUDA machine"


def _positive(v) -> bool:
    return v > 0


def _at_least(n: int) -> Callable[[Any], bool]:
    return lambda v: v >= n


#: field -> (allowed, how the allowed range reads). None always passes (TRL's "unset").
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "learning_rate": (_positive, "> 0"),
    "max_steps": (lambda v: v == -1 or v >= 1, ">= 1, or -1 (num_train_epochs decides)"),
    "num_train_epochs": (_positive, "> 0"),
    "num_generations": (_at_least(2), ">= 2 (GRPO compares completions within a group)"),
    "max_completion_length": (_at_least(1), ">= 1"),
    "max_prompt_length": (_at_least(1), ">= 1"),
    "max_length": (_at_least(1), ">= 1"),
    "per_device_train_batch_size": (_at_least(1), ">= 1"),
    "per_device_eval_batch_size": (_at_least(1), ">= 1"),
    "gradient_accumulation_steps": (_at_least(1), ">= 1"),
    "num_iterations": (_at_least(1), ">= 1"),
    "steps_per_generation": (_at_least(1), ">= 1"),
    "generation_batch_size": (_at_least(1), ">= 1"),
    "save_steps": (_positive, "> 0"),
    "logging_steps": (_positive, "> 0"),
    "temperature": (_positive, "> 0"),
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "beta": (_at_least(0), ">= 0"),
    "epsilon": (_positive, "> 0"),
    "warmup_ratio": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "warmup_steps": (_at_least(0), ">= 0"),
    "weight_decay": (_at_least(0), ">= 0"),
    "max_grad_norm": (_at_least(0), ">= 0"),
}


def _trainer_maps(recipe: Recipe) -> list[tuple[str, dict[str, Any], Any]]:
    """(where, merged trainer settings, launcher) for SFT (when enabled) and every GRPO stage."""
    maps = [("sft.trainer", recipe.sft.trainer_fields(), recipe.sft.launcher)] if recipe.sft.enabled else []
    return maps + [(f"grpo.stages.{i}.trainer", stage_trainer_fields(s), s.launcher)
                   for i, s in enumerate(recipe.grpo.stages)]


def value_problems(recipe: Recipe) -> list[str]:
    """Settings TRL would take that no run can use, each with its allowed range."""
    problems = []
    for where, fields, _ in _trainer_maps(recipe):
        for name, (allowed, reads) in RANGES.items():
            v = fields.get(name)
            if v is None or isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if not allowed(v):
                problems.append(f"{where}.{name}: {v!r} is out of range: allowed {reads}")
    return problems


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _accelerate_type(launcher) -> str | None:
    import yaml

    if not launcher.config or not Path(launcher.config).is_file():
        return None  # a missing config is reported by launcher_problems
    return (yaml.safe_load(Path(launcher.config).read_text()) or {}).get("distributed_type")


def environment_problems(recipe: Recipe) -> list[str]:
    """Packages and devices the training stages need that this machine lacks, each with the
    install hint (evaluation's vLLM backend is checked with the benchmarks, a DeepSpeed launcher
    config with the launchers)."""
    problems = []
    has_vllm = importlib.util.find_spec("vllm") is not None
    cuda = _cuda()
    for where, fields, launcher in _trainer_maps(recipe):
        if fields.get("use_vllm") and not has_vllm:
            problems.append(f"{where}.use_vllm: vLLM is not installed here ({GPU_INSTALL}), "
                            "or set use_vllm: false to generate with transformers")
        for flag in ("bf16", "fp16"):
            if fields.get(flag) and not cuda:
                problems.append(f"{where}.{flag}: needs a CUDA device and none is visible here "
                                f"(set {flag}: false to train in fp32 on CPU)")
        fsdp = fields.get("fsdp") or _accelerate_type(launcher) == "FSDP"
        if fsdp and not cuda:
            problems.append(f"{where}: FSDP needs CUDA devices and none is visible here "
                            "(use configs/accelerate/cpu_2proc.yaml on CPU)")
    return problems
