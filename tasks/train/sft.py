"""Base model preparation and cold-start SFT (TRL SFTTrainer).

    prepare_base_model(recipe, data_dir, out_dir)    # tokenizer + scratch model, or a given model
    metrics = run_sft(recipe, data_dir, base_dir, out_dir)

Both write a `model/` directory (weights + tokenizer) that the next stage loads by path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tasks.data.curate import prompt_messages, read_split
from tasks.environments import environment_factory
from tasks.environments.rollout import cold_start_example, corpus_text
from tasks.layout import file_digest, model_dir, split_file
from tasks.modeling import find_gguf, init_model, load_model, pretrained_path, record_gguf_source, train_tokenizer
from tasks.recipe import Recipe, stable_hash
from tasks.stages import StageHooks, StageOutput, StageSpec, stage_name, stage_run_id
from tasks.train.common import last_checkpoint, trainer_defaults, without_hub_token
from tasks.train.launch import launch_stage, should_launch, tag_distribution
from tasks.verifiers.rows import row_fields


def base_key(recipe: Recipe, data_key: str) -> str:
    """Cache key of the starting model: the seed, the model section, the curated data and the
    bytes of a GGUF file (a file replaced under the same name makes a new starting model)."""
    gguf = file_digest(find_gguf(recipe.model.gguf)) if recipe.model.gguf else None
    return stable_hash([recipe.digest("seed", "model"), data_key] + ([gguf] if gguf else []))


def sft_key(recipe: Recipe, data_key: str, base_key: str) -> str:
    """Cache key of cold-start SFT: the seed, the sft section, the data and the starting model."""
    return stable_hash([recipe.digest("seed", "sft"), data_key, base_key])


def base_model_inputs(recipe: Recipe, data_dir: str | Path) -> dict[str, Path]:
    """The splits `prepare_base_model` reads: the tokenizer's corpus (none for a given model)."""
    return {} if recipe.model.pretrained else {s: split_file(data_dir, s) for s in ("sft", "grpo")}


def base_spec(recipe: Recipe, data: StageOutput) -> StageSpec:
    """The starting model as a stage: from the curated data (its tokenizer) or `model.name_or_path`."""
    return StageSpec(stage_name("base"), base_key(recipe, data.key),
                     lambda out, hooks: prepare_base_model(recipe, data.path, out),
                     params={"model": recipe.model.model_dump(mode="json")}, inputs=base_model_inputs(recipe, data.path))


def sft_spec(recipe: Recipe, data: StageOutput, base: StageOutput) -> StageSpec:
    """Cold-start SFT as a stage: the curated traces, starting from `base`."""
    name = stage_name("sft")

    def body(out: Path, hooks: StageHooks) -> dict[str, float]:
        return run_sft(recipe, data.path, base.path, out, hooks.on_line, hooks.trainer_callbacks(name))

    return StageSpec(name, sft_key(recipe, data.key, base.key), body, params={"sft": recipe.sft.model_dump(mode="json")},
                     inputs={"sft": split_file(data.path, "sft")}, init=base)


def prepare_base_model(recipe: Recipe, data_dir: str | Path, out_dir: Path) -> dict[str, float]:
    """Save the starting model: `model.name_or_path`, or a tokenizer trained on the training
    splits plus a decoder initialised from scratch."""
    if recipe.model.pretrained:
        model, tok = load_model(pretrained_path(recipe), recipe.model.dtype)
        if recipe.model.gguf:  # which file the converted model came from, in the base stage's run
            record_gguf_source(recipe.model.gguf)
    else:
        texts = [r["question"] + "\n" + r.get("completion", "") for split in ("sft", "grpo")
                 for r in read_split(data_dir, split)]
        if recipe.data.environment:  # the tool calls and the tools line are text the model writes and reads
            env = environment_factory(recipe.data.environment, recipe.data.environment_params)()
            texts += [corpus_text(row_fields(r), env) for r in read_split(data_dir, "sft")]
        tok = train_tokenizer(texts, recipe.model.scratch.vocab_size)
        model = init_model(tok, recipe.model.scratch, seed=recipe.seed)
        if recipe.model.dtype != "auto":
            import torch

            model = model.to(getattr(torch, recipe.model.dtype))
    model.save_pretrained(model_dir(out_dir))
    tok.save_pretrained(model_dir(out_dir))
    return {"model/parameters": float(sum(p.numel() for p in model.parameters())), "model/vocab_size": float(len(tok))}


def sft_example(recipe: Recipe, row: dict) -> dict:
    """One SFT example: the prompt and the verifier-checked completion; with `data.environment`,
    the completion is the row's tool calls, their results from the environment, then the answer,
    and `tools` (JSON) is what the chat template renders into the prompt."""
    example = {"prompt": prompt_messages(row, recipe.data.system_prompt),
               "completion": [{"role": "assistant", "content": row["completion"]}]}
    if recipe.data.environment:
        env = environment_factory(recipe.data.environment, recipe.data.environment_params)()
        example["completion"], tools = cold_start_example(row_fields(row), env, row["completion"])
        example["tools"] = json.dumps(tools)
    return example


def run_sft(recipe: Recipe, data_dir: str | Path, base_dir: str | Path, out_dir: Path,
            on_line: Callable[[str], None] | None = None, callbacks: list | tuple = ()) -> dict[str, float]:
    """Cold-start SFT on the curated, verifier-checked traces (loss on the completion only);
    on `sft.launcher.num_processes` accelerate workers when that is more than one."""
    if should_launch(recipe.sft.launcher):
        return launch_stage("sft", recipe, out_dir, data_dir, base_dir, recipe.sft.launcher, on_line=on_line)
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from tasks.train.checkpoint_models import checkpoint_callbacks

    model, tok = load_model(model_dir(base_dir))
    rows = read_split(data_dir, "sft")
    ds = Dataset.from_list([sft_example(recipe, r) for r in rows])
    args = SFTConfig(**without_hub_token({**trainer_defaults(recipe, out_dir), **recipe.sft.trainer_fields()}))
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         callbacks=[*callbacks, *checkpoint_callbacks(recipe, "sft", stage_run_id())])
    tag_distribution(trainer.accelerator, stage_run_id())
    last = last_checkpoint(args.output_dir)
    result = trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(model_dir(out_dir)))
    if trainer.accelerator.is_main_process:
        tok.save_pretrained(model_dir(out_dir))
    return {"sft/train_loss": result.training_loss, "sft/rows": float(len(rows))}
