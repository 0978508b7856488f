"""Worker entry point of a multi-process stage (started by tasks.train.launch via `accelerate launch`).

    python -m tasks.train.entry grpo --recipe out/recipe.json --data D --init I --out O --stage stage-1

Rebuilds the recipe, trains in this process (one rank of the data-parallel group) and, on the
main rank, writes the stage metrics to `<out>/train_metrics.json` for the launcher.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from tasks.layout import METRICS_FILE
from tasks.progress import trainer_progress
from tasks.recipe import Recipe
from tasks.reproducibility import set_embedded_env
from tasks.stages import stage_name
from tasks.train.grpo import run_grpo_stage
from tasks.train.sft import run_sft


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.train.entry")
    parser.add_argument("kind", choices=["sft", "grpo"])
    parser.add_argument("--recipe", required=True, help="recipe JSON written by the launcher")
    parser.add_argument("--data", required=True)
    parser.add_argument("--init", required=True, help="stage directory holding the starting model/")
    parser.add_argument("--out", required=True)
    parser.add_argument("--stage", help="GRPO stage name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    set_embedded_env()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    print(f"[worker rank {rank} of {world}] {args.kind} {args.stage or ''}", flush=True)
    recipe = Recipe.model_validate_json(Path(args.recipe).read_text())
    out = Path(args.out)

    if args.kind == "sft":
        metrics = run_sft(recipe, args.data, args.init, out, callbacks=[trainer_progress("sft")])
    else:
        stage = next(s for s in recipe.grpo.stages if s.name == args.stage)
        metrics = run_grpo_stage(recipe, stage, args.data, args.init, out,
                                 callbacks=[trainer_progress(stage_name("grpo", stage.name))])
    if rank == 0:
        (out / METRICS_FILE).write_text(json.dumps(metrics))
    leave_process_group()


def leave_process_group() -> None:
    """Every rank leaves the process group before the interpreter exits: a group left to
    interpreter teardown can abort a rank that trained fine ("terminate called without an
    active exception", seen on rank 1 after a finished 2-process ZeRO-3 GRPO stage), and the
    launcher then fails the stage."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
