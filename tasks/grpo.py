"""One GRPO stage (TRL GRPOTrainer) against the stage's verifier rewards.

    metrics = run_grpo_stage(recipe, stage, data_dir, init_dir, out_dir)

The stage starts from `init_dir/model` (the SFT checkpoint or the previous stage) and writes
`out_dir/model`. Rewards come from the verifier registry, weighted as the recipe says.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tasks.curate import prompt_messages, read_split
from tasks.recipe import GRPOStage, Recipe
from tasks.sft import _last_checkpoint, model_dir, trainer_defaults

log = logging.getLogger(__name__)

# Canonical columns GRPO passes to the rewards; `prompt` is built from `question`.
REWARD_COLUMNS = ("id", "answer", "task")


def grpo_dataset(recipe: Recipe, stage: GRPOStage, data_dir: str | Path):
    from datasets import Dataset

    rows = read_split(data_dir, "grpo")
    if stage.max_rows:
        rows = rows[: stage.max_rows]
    return Dataset.from_list([
        {"prompt": prompt_messages(r, recipe.data.system_prompt), **{c: r.get(c) for c in REWARD_COLUMNS}}
        for r in rows])


def run_grpo_stage(recipe: Recipe, stage: GRPOStage, data_dir: str | Path, init_dir: str | Path,
                   out_dir: Path) -> dict[str, float]:
    from trl import GRPOConfig, GRPOTrainer

    from tasks.verifiers import build_reward

    rewards = [build_reward(r.name, r.params) for r in stage.rewards]
    settings = {**trainer_defaults(recipe, out_dir), **stage.trainer}
    settings.setdefault("reward_weights", [r.weight for r in stage.rewards])
    args = GRPOConfig(**settings)
    # GRPOTrainer loads the reference model (beta > 0) from the policy's path, so pass the path.
    trainer = GRPOTrainer(model=str(model_dir(init_dir)), reward_funcs=rewards, args=args,
                          train_dataset=grpo_dataset(recipe, stage, data_dir))
    result = trainer.train(resume_from_checkpoint=_last_checkpoint(args.output_dir))
    trainer.save_model(str(model_dir(out_dir)))
    trainer.processing_class.save_pretrained(model_dir(out_dir))
    last = next((h for h in reversed(trainer.state.log_history) if "reward" in h), {})
    return {"grpo/train_loss": result.training_loss, "grpo/final_reward": float(last.get("reward", float("nan")))}
