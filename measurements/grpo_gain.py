"""Does GRPO against the verifier raise held-out accuracy over the SFT checkpoint?

Runs the default recipe's whole pipeline once per seed (the same flow a user runs) and prints,
per seed, the held-out pass@1 of the SFT and the final GRPO checkpoints (identical decoding:
the recipe's evaluation section), their difference, and the mean over seeds. A recipe without
cold start (R1-Zero, e.g. configs/smollm2-arithmetic.yaml) is compared with its base model; the
"SFT" columns then hold the base checkpoint's numbers.

Format vs accuracy: the share of samples with a final answer the verifier can read, and the
accuracy of those (a gain made of format alone raises the first, not the second).

Where the gain comes from, read off the held-out samples: the share of completions that skip
the reasoning (an empty <think> block, as 30% of the default's cold-start traces do) and the
accuracy of those that reason, each completion scored by the recipe's `data.verifier` against
its held-out row (any family: math, countdown, code).

`--control random` also trains, per seed, the same GRPO stage from the same (cached) SFT
checkpoint with `random_reward` in place of the stage's rewards, at p = the SFT checkpoint's
held-out pass@1 (the mean reward the verifier gives at GRPO's sampling temperature), and prints
the control's pass@1 and GRPO's margin over it (spurious-reward control).

    python measurements/grpo_gain.py                       # seeds 0 1 2, configs/default.yaml
    python measurements/grpo_gain.py --recipe configs/countdown.yaml --control random --seeds 0
    python measurements/grpo_gain.py --seeds 0 --set grpo.stages.0.max_steps=50
    python measurements/grpo_gain.py --readme README.md     # rewrite the README's table from this run

The table names the commit, the lock file's digest and the CPU that produced it, so the
README's numbers are a run's output, never a hand copy.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

from tasks.data.cold_start import reasoning_of
from tasks.data.curate import read_split
from tasks.recipe_checks import load_recipe
from tasks.reproducibility import provenance, set_embedded_env
from tasks.verifiers import build_reward
from tasks.verifiers.rows import repeat_columns, reward_columns


def reasoning_split(eval_dir: str, data_dir: str, verifier: str) -> dict[str, float]:
    """Share of held-out samples with an empty <think> block, and the accuracy of the others
    (each completion scored by `verifier` against its held-out row's columns)."""
    skipped = reasoned = reasoned_right = 0
    heldout, reward = read_split(data_dir, "eval"), build_reward(verifier)
    for line in (Path(eval_dir) / "samples.jsonl").read_text().splitlines():
        doc = json.loads(line)
        if not doc["benchmark"].startswith("heldout") or "completions" not in doc:  # multi-turn: tool_split
            continue
        n = len(doc["completions"])
        right = reward(completions=doc["completions"], **repeat_columns(reward_columns([heldout[doc["doc_id"]]]), [n]))
        for completion, r in zip(doc["completions"], right):
            if reasoning_of(completion).strip():
                reasoned, reasoned_right = reasoned + 1, reasoned_right + (r == 1.0)
            else:
                skipped += 1
    return {"skips_reasoning": skipped / max(skipped + reasoned, 1), "reasoned_accuracy": reasoned_right / max(reasoned, 1)}


#: a tool-use recipe's held-out call statistics (tasks.eval.multi_turn), per checkpoint
TOOL_METRICS = ("called_rate", "tool_calls_mean", "with_call/pass_at_1", "without_call/pass_at_1")


def tool_split(metrics: dict) -> dict[str, float]:
    """How often the checkpoint called a tool on the held-out split and how accurate it was
    with and without a call (empty for a single-turn recipe)."""
    return {k: metrics[f"heldout/{k}"] for k in TOOL_METRICS if f"heldout/{k}" in metrics}


def answer_split(eval_dir: str) -> dict[str, float]:
    """Format vs accuracy: the share of held-out samples with a final answer the verifier could
    read (\\boxed{}, <answer>, ####), and the accuracy of those."""
    samples = answered = right = 0.0
    for line in (Path(eval_dir) / "samples.jsonl").read_text().splitlines():
        doc = json.loads(line)
        if doc["benchmark"].startswith("heldout"):
            n = len(doc["completions"])
            samples, answered = samples + n, answered + n - doc["no_answer_count"]
            right += doc["pass_at_1"] * n
    return {"answered": answered / samples, "answered_accuracy": right / max(answered, 1)}


README_BEGIN, README_END = "<!-- grpo-gain table: begin -->", "<!-- grpo-gain table: end -->"


def produced_by(recipe_path: str) -> str:
    """One line naming what made the numbers: commit, lock digest, CPU, threads."""
    repo = Path(__file__).resolve().parents[1]
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=repo, capture_output=True, text=True)
    tags = provenance(seed=0)
    return (f"`python measurements/grpo_gain.py` on `{recipe_path}`, commit `{git.stdout.strip() or 'unknown'}`, "
            f"requirements.lock `{tags['repro.lock_sha256']}`, {tags['repro.cpu_model']} "
            f"({tags['repro.cpu_capability']} kernels, {tags['repro.threads']} threads), {time.strftime('%Y-%m-%d')}")


def markdown_table(results: list[dict], metric: str, source: str) -> str:
    """The per-seed table the README shows, numbers to 4 decimals (with the random-reward
    control's columns when --control random ran)."""
    control = all("control" in r for r in results)
    head = ("| seed | SFT pass@1 | GRPO pass@1 | gain (points) | answer-only completions SFT → GRPO "
            "| accuracy when it reasons SFT → GRPO | wall |")
    if control:
        head += " random-reward control pass@1 | GRPO − control (points) |"
    rows = [head, "|" + " --- |" * head.count(" |")]
    for r in results:
        row = (f"| {r['seed']} | {r['sft']:.4f} | {r['grpo']:.4f} | {100 * r['gain']:+.2f} "
               f"| {r['sft_skips_reasoning']:.1%} → {r['grpo_skips_reasoning']:.1%} "
               f"| {r['sft_reasoned_accuracy']:.4f} → {r['grpo_reasoned_accuracy']:.4f} | {r['wall_s']} s |")
        if control:
            row += f" {r['control']:.4f} | {100 * (r['grpo'] - r['control']):+.2f} |"
        rows.append(row)
    mean = 100 * sum(r["gain"] for r in results) / len(results)
    summary = f"Mean gain **{mean:+.2f} points** ({metric}, {len(results)} seeds)"
    if control:
        margin = 100 * sum(r["grpo"] - r["control"] for r in results) / len(results)
        summary += f"; mean margin over the random-reward control **{margin:+.2f} points**"
    return "\n".join([*rows, "", f"{summary}. Produced by {source}."])


def write_readme_table(readme: Path, table: str) -> None:
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"{readme} has no {README_BEGIN} ... {README_END} section to rewrite")
    pattern = re.compile(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.S)
    readme.write_text(pattern.sub(lambda _: f"{README_BEGIN}\n{table}\n{README_END}", text))


def run_seed(args, seed: int) -> dict:
    """One seed's pipeline (and, with --control random, its random-reward GRPO control)."""
    from flows.pipeline import pipeline_flow

    overrides = [*args.overrides, f"seed={seed}", f"tracking.runs_dir={Path(args.runs_dir) / f'seed-{seed}'}"]
    recipe = load_recipe(args.recipe, overrides)
    metric = recipe.evaluation.primary_metric
    start = time.perf_counter()
    summary = pipeline_flow(recipe)
    by_ckpt = {r["checkpoint"]: r for r in summary["evaluation"]}
    final = list(summary["checkpoints"])[-1]
    begin = "sft" if "sft" in by_ckpt else "base"  # where GRPO started: no cold start (R1-Zero) starts at base
    out = {"seed": seed, "start": begin, "sft": by_ckpt[begin][metric], "grpo": by_ckpt[final][metric],
           "base": by_ckpt.get("base", {}).get(metric), "wall_s": round(time.perf_counter() - start)}
    out["gain"] = out["grpo"] - out["sft"]
    for name, ckpt in (("sft", begin), ("grpo", final)):
        split = {**reasoning_split(by_ckpt[ckpt]["path"], summary["data"], recipe.data.verifier),
                 **answer_split(by_ckpt[ckpt]["path"])}
        out.update({f"{name}_{k}": v for k, v in split.items()})
        out.update({f"{name}_{k}": v for k, v in tool_split(by_ckpt[ckpt]).items()})
    if args.control == "random":
        p = round(out["sft"], 4)
        coin = f"[{{name: random_reward, params: {{p: {p}, seed: {seed}}}}}]"
        control = load_recipe(args.recipe, [*overrides, *(f"grpo.stages.{i}.rewards={coin}"
                                                          for i in range(len(recipe.grpo.stages)))])
        rows = {r["checkpoint"]: r for r in pipeline_flow(control)["evaluation"]}
        out.update(control=rows[final][metric], control_p=p)
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="configs/default.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runs-dir", default="runs/bench-grpo-gain")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--json", help="write the per-seed numbers here")
    p.add_argument("--readme", help="rewrite this file's grpo-gain table section with the results")
    p.add_argument("--control", choices=["none", "random"], default="none",
                   help="random: also train each seed's GRPO stages with random_reward at the SFT pass@1")
    args = p.parse_args()
    set_embedded_env()
    results = [run_seed(args, seed) for seed in args.seeds]
    metric = load_recipe(args.recipe, list(args.overrides)).evaluation.primary_metric

    print(f"\n{'seed':>4} {'base':>7} {'sft':>7} {'grpo':>7} {'gain':>7} {'wall_s':>7}   ({metric})"
          "   skips reasoning sft -> grpo   accuracy when reasoning sft -> grpo")
    for r in results:
        base = f"{r['base']:.3f}" if r["base"] is not None else "-"
        print(f"{r['seed']:>4} {base:>7} {r['sft']:7.3f} {r['grpo']:7.3f} {r['gain']:+7.3f} {r['wall_s']:>7}"
              f"   {r['sft_skips_reasoning']:14.3f} -> {r['grpo_skips_reasoning']:.3f}"
              f"   {r['sft_reasoned_accuracy']:20.3f} -> {r['grpo_reasoned_accuracy']:.3f}")
    for r in results:
        if "sft_called_rate" in r:
            print(f"seed {r['seed']}: " + "   ".join(f"{k} {r[f'sft_{k}']:.3f} -> {r[f'grpo_{k}']:.3f}"
                                                   for k in TOOL_METRICS if f"sft_{k}" in r))
        print(f"seed {r['seed']} ({r['start']} -> grpo): samples with a readable answer {r['sft_answered']:.3f} -> "
              f"{r['grpo_answered']:.3f}, accuracy of those {r['sft_answered_accuracy']:.3f} -> "
              f"{r['grpo_answered_accuracy']:.3f}")
    mean_gain = sum(r["gain"] for r in results) / len(results)
    print(f"mean gain over {len(results)} seeds: {100 * mean_gain:+.1f} points")
    if args.control == "random":
        for r in results:
            print(f"seed {r['seed']}: random-reward control {r['control']:.3f} (p={r['control_p']:.3f}), "
                  f"GRPO - control {100 * (r['grpo'] - r['control']):+.1f} points")
        margin = sum(r["grpo"] - r["control"] for r in results) / len(results)
        print(f"mean GRPO - control over {len(results)} seeds: {100 * margin:+.1f} points")
    table = markdown_table(results, metric, produced_by(args.recipe))
    print("\n" + table)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "mean_gain": mean_gain}, indent=2))
    if args.readme:
        write_readme_table(Path(args.readme), table)


if __name__ == "__main__":
    main()
