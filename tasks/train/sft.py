"""Base model preparation and cold-start SFT (TRL SFTTrainer).

    prepare_base_model(recipe, data_dir, out_dir)    # tokenizer + scratch model, or a given model
    metrics = run_sft(recipe, data_dir, base_dir, out_dir)

Both write a `model/` directory (weights + tokenizer) that the next stage loads by path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from tasks.data.curate import prompt_messages, read_split
from tasks.modeling import init_model, load_model, train_tokenizer
from tasks.recipe import Recipe
from tasks.tracking import stage_run_id
from tasks.train.launch import launch_stage, should_launch, tag_distribution

log = logging.getLogger(__name__)


def model_dir(stage_out: str | Path) -> Path:
    return Path(stage_out) / "model"


def prepare_base_model(recipe: Recipe, data_dir: str | Path, out_dir: Path) -> dict[str, float]:
    """Save the starting model: `model.name_or_path`, or a tokenizer trained on the training
    splits plus a decoder initialised from scratch."""
    if recipe.model.name_or_path:
        model, tok = load_model(recipe.model.name_or_path)
    else:
        texts = [r["question"] + "\n" + r.get("completion", "") for split in ("sft", "grpo")
                 for r in read_split(data_dir, split)]
        tok = train_tokenizer(texts, recipe.model.scratch.vocab_size)
        model = init_model(tok, recipe.model.scratch, seed=recipe.seed)
    model.save_pretrained(model_dir(out_dir))
    tok.save_pretrained(model_dir(out_dir))
    return {"model/parameters": float(sum(p.numel() for p in model.parameters())), "model/vocab_size": float(len(tok))}


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
        "output_dir": str(out_dir / "checkpoints"),
        "report_to": ["mlflow"],  # streams into the active MLflow (child) run
        "seed": recipe.seed,
        "use_cpu": not torch.cuda.is_available(),
        **mixed_precision(),
        "disable_tqdm": True,
        "logging_steps": 10,
        "save_only_model": False,
    }


def run_sft(recipe: Recipe, data_dir: str | Path, base_dir: str | Path, out_dir: Path,
            on_line: Callable[[str], None] | None = None, callbacks: list | tuple = ()) -> dict[str, float]:
    """Cold-start SFT on the curated, verifier-checked traces (loss on the completion only);
    on `sft.launcher.num_processes` accelerate workers when that is more than one."""
    if should_launch(recipe.sft.launcher):
        return launch_stage("sft", recipe, out_dir, data_dir, base_dir, recipe.sft.launcher, on_line=on_line)
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = load_model(model_dir(base_dir))
    rows = read_split(data_dir, "sft")
    ds = Dataset.from_list([{
        "prompt": prompt_messages(r, recipe.data.system_prompt),
        "completion": [{"role": "assistant", "content": r["completion"]}],
    } for r in rows])
    args = SFTConfig(**{**trainer_defaults(recipe, out_dir), **recipe.sft.trainer})
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=list(callbacks))
    tag_distribution(trainer.accelerator, stage_run_id())
    last = _last_checkpoint(args.output_dir)
    result = trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(model_dir(out_dir)))
    if trainer.accelerator.is_main_process:
        tok.save_pretrained(model_dir(out_dir))
    return {"sft/train_loss": result.training_loss, "sft/rows": float(len(rows))}


def _last_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` a killed attempt left, so a retry resumes instead of restarting."""
    from transformers.trainer_utils import get_last_checkpoint

    if not Path(output_dir).is_dir():
        return None
    last = get_last_checkpoint(output_dir)
    if last:
        log.info("resuming from %s", last)
    return last
