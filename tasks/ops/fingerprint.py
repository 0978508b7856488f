"""What a run of a recipe must produce on any x86-64 CPU: its curated data, its tokenizer, its
initial weights and the losses of its first SFT steps, bit for bit.

    python -m tasks.ops.fingerprint configs/default.yaml          # compare with the recorded one
    python -m tasks.ops.fingerprint configs/default.yaml --record # (re)record it

The recorded fingerprints (FINGERPRINTS) are committed: a host whose run differs (another CPU
vendor, a thread count, a library that dispatches another kernel) fails
tests/tasks/test_fingerprint.py, and the first entry that differs says where it diverged:
data generation, tokenizer training, initialisation or the training math. Curation, the base
model and SFT run through the real stages (tasks.stages.run_stage) in a scratch runs_dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from tasks.layout import model_dir, split_file

FINGERPRINTS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "fingerprints.json"
SFT_STEPS = 3
SPLITS = ("sft", "grpo", "eval")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _stop_after(steps: int, history: list):
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        """Records each step's loss and gradient norm; stops the trainer after `steps`."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                history.append([state.global_step, logs["loss"], logs.get("grad_norm")])

        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step >= steps

    return StopAfter()


def fingerprint(recipe_path: str | Path, runs_dir: str | Path, sft_steps: int = SFT_STEPS) -> dict:
    """Curate, build the starting model and take `sft_steps` SFT steps of the recipe (its own
    learning-rate schedule, a loss logged every step); digests and per-step numbers."""
    from tasks.data.curate import curate_spec
    from tasks.recipe_checks import load_recipe
    from tasks.stages import run_stage
    from tasks.tracking import configure_tracking
    from tasks.train.sft import base_spec, run_sft, sft_spec

    recipe = load_recipe(recipe_path, [f"tracking.runs_dir={runs_dir}", "sft.trainer.logging_steps=1",
                                       "tracking.log_checkpoints=false"])
    configure_tracking(recipe.tracking)
    data = run_stage(recipe, curate_spec(recipe))
    base = run_stage(recipe, base_spec(recipe, data))
    history: list = []
    first_steps = dataclasses.replace(sft_spec(recipe, data, base), body=lambda out, hooks: run_sft(
        recipe, data.path, base.path, out, callbacks=[_stop_after(sft_steps, history)]))
    run_stage(recipe, first_steps)
    return {
        "data": {s: _sha(split_file(data.path, s)) for s in SPLITS},
        "tokenizer": _sha(model_dir(base.path) / "tokenizer.json"),
        "initial_weights": _sha(model_dir(base.path) / "model.safetensors"),
        "sft_steps": history,
    }


def recorded(name: str) -> dict | None:
    return json.loads(FINGERPRINTS.read_text()).get(name) if FINGERPRINTS.is_file() else None


def differences(expected: dict, got: dict) -> list[str]:
    """Where `got` departs from `expected`, in pipeline order (the first one is where it diverged)."""
    out = [f"data/{s}: {expected['data'][s]} != {got['data'][s]}" for s in SPLITS
           if expected["data"][s] != got["data"][s]]
    out += [f"{k}: {expected[k]} != {got[k]}" for k in ("tokenizer", "initial_weights") if expected[k] != got[k]]
    out += [f"sft step {e[0]} (step, loss, grad_norm): {e} != {g}"
            for e, g in zip(expected["sft_steps"], got["sft_steps"]) if e != g]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--record", action="store_true", help=f"write the fingerprints into {FINGERPRINTS.name}")
    args = ap.parse_args(argv)
    book = json.loads(FINGERPRINTS.read_text()) if FINGERPRINTS.is_file() else {}
    failed = False
    for path in args.recipes:
        with tempfile.TemporaryDirectory() as tmp:
            got = fingerprint(path, tmp)
        name = Path(path).stem
        if args.record:
            book[name] = got
        elif name not in book:
            print(f"{name}: no recorded fingerprint (record one with --record)")
            failed = True
        else:
            diff = differences(book[name], got)
            print(f"{name}: " + ("matches the recorded fingerprint" if not diff else "DIFFERS\n  " + "\n  ".join(diff)))
            failed |= bool(diff)
    if args.record:
        FINGERPRINTS.parent.mkdir(parents=True, exist_ok=True)
        FINGERPRINTS.write_text(json.dumps(book, indent=1, sort_keys=True) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
