"""Intermediate checkpoints as MLflow LoggedModels (`tracking.log_checkpoints: all`).

    callbacks = checkpoint_callbacks(recipe, "grpo-stage-1", run_id)   # [] unless asked for

Each `checkpoint-N` the trainer saves becomes a LoggedModel `<stage>-step-N` of the stage run,
an output at step N, uploaded on tasks.lineage's background thread (the stage's final model is
logged by tasks.stages.run_stage). A LoRA stage's checkpoints hold adapters only; they are
skipped, and its merged final model is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

from tasks.lineage import log_checkpoint

log = logging.getLogger(__name__)


class CheckpointModels(TrainerCallback):
    def __init__(self, stage: str, run_id: str, tags: dict[str, str] | None = None):
        self.stage, self.run_id, self.tags = stage, run_id, tags or {}

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if (ckpt / "adapter_config.json").is_file() or not (ckpt / "config.json").is_file():
            log.info("%s: %s holds no whole model; not logged as a LoggedModel", self.stage, ckpt.name)
            return
        log_checkpoint(self.run_id, ckpt, f"{self.stage}-step-{state.global_step}",
                       {**self.tags, "stage": self.stage, "step": str(state.global_step)}, step=state.global_step)


def checkpoint_callbacks(recipe, stage: str, run_id: str | None) -> list[TrainerCallback]:
    return [CheckpointModels(stage, run_id, {"recipe": recipe.name})] \
        if recipe.tracking.log_checkpoints == "all" and run_id else []
