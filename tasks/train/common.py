"""What the SFT and GRPO trainers share: the settings always passed to a TRL config, mixed
precision, and resuming from the last checkpoint a killed attempt left."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from tasks.layout import CHECKPOINTS_DIR
from tasks.recipe import Recipe

log = logging.getLogger(__name__)


def mixed_precision() -> dict[str, bool]:
    """The trainer's bf16/fp16: in an `accelerate launch` worker, its config's mixed_precision
    (DeepSpeed refuses a trainer that disagrees with it); else bf16 where the GPU supports it."""
    import torch

    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if launched:
        return {"bf16": launched == "bf16", "fp16": launched == "fp16"}
    return {"bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported()}


def trainer_defaults(recipe: Recipe, out_dir: Path) -> dict:
    """Settings we always pass to a TRL config; the recipe's `trainer:` map overrides the rest."""
    import torch

    return {
        "output_dir": str(out_dir / CHECKPOINTS_DIR),
        "report_to": ["mlflow"],  # streams into the active MLflow (child) run
        "seed": recipe.seed,
        "use_cpu": not torch.cuda.is_available(),
        **mixed_precision(),
        "disable_tqdm": True,
        "logging_steps": 10,
        "save_only_model": False,
    }


def without_hub_token(settings: dict) -> dict:
    """The trainer settings less `hub_token`, which goes to huggingface_hub as HF_TOKEN instead:
    a TRL config is pickled into every checkpoint (training_args.bin) and logged with the model,
    so a token inside it would leave the process."""
    token = settings.get("hub_token")
    if token:
        os.environ["HF_TOKEN"] = token
    return {k: v for k, v in settings.items() if k != "hub_token"}


def _complete(checkpoint: Path) -> bool:
    """The trainer writes trainer_state.json last: a checkpoint without a readable one, naming
    its own step, was cut off while being written (a kill, a full disk)."""
    import json

    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return checkpoint.name == f"checkpoint-{state.get('global_step')}"


def last_checkpoint(output_dir: str) -> str | None:
    """The newest complete `checkpoint-N` a killed attempt left, so a retry resumes instead of
    restarting; a newer one cut off mid-write is set aside (never resumed from)."""
    import re

    if not Path(output_dir).is_dir():
        return None
    found = sorted((int(m[1]), p) for p in Path(output_dir).iterdir()
                   if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))
    for _, path in reversed(found):
        if _complete(path):
            log.info("resuming from %s", path)
            return str(path)
        aside = path.with_name(f"incomplete-{path.name}")
        log.warning("%s was cut off while being written: set aside as %s", path, aside.name)
        if aside.exists():
            shutil.rmtree(aside)
        path.rename(aside)
    return None
