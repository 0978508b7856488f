"""The default pipeline's training phases on a quiet machine and beside one competing CPU-bound
two-thread process, side by side in one run (issue 30).

Target: each phase <= 3x slower beside the competitor than quiet, and quiet no slower than with
the pins of cc3b0db (MKL's AVX2 branch, two threads always).

Each configuration runs `rlvr grpo` (curation, starting model, SFT for `--sft-steps`, GRPO stage 1
for `--grpo-steps`; no evaluation) in a fresh runs_dir, as a fresh process, and reads each
stage's wall time from its MLflow run. Configurations, in alternating order per repeat:
- `now`: the embedded defaults (MKL COMPATIBLE, threads chosen from what the machine can give);
- `cc3b0db`: the old pins, set in the environment (MKL_CBWR=AVX2, RLVR_CPU_THREADS=2);
- `threads=N`: the defaults at a fixed thread count (`--threads 1,2`: is one as fast as two?);
each quiet and beside the competitor: one process, two OpenMP threads multiplying 512x512
matrices in a loop (a training job's profile), started before the run and killed after it.

The load average (`uptime`) is printed before and after each run: on a machine shared with other
work the quiet numbers are upper bounds and "quiet" is only quieter.

    python measurements/shared_machine.py                           # 150 SFT + 10 GRPO steps
    python measurements/shared_machine.py --sft-steps 30 --grpo-steps 4 --threads 1,2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.reproducibility import CPU_MATH_ENV, THREADS_ENV, cpu_model  # noqa: E402

PHASES = ("data", "base", "sft", "grpo-stage-1")
COMPETITOR = ("import torch\ntorch.set_num_threads(2)\na = torch.randn(512, 512)\n"
              "while True:\n    a = (a @ a).tanh()\n")
TARGET = 3.0


def configurations(threads: list[str]) -> dict[str, dict[str, str]]:
    return {"now": {}, "cc3b0db": {"MKL_CBWR": "AVX2", THREADS_ENV: "2"},
            **{f"threads={t}": {THREADS_ENV: t} for t in threads}}


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run_once(recipe: str, env_over: dict[str, str], busy: bool, sft_steps: int, grpo_steps: int) -> dict[str, float]:
    """Wall seconds per stage of one fresh `rlvr grpo`, and the whole command's."""
    from mlflow import MlflowClient

    env = {k: v for k, v in os.environ.items() if k not in CPU_MATH_ENV and k not in ("OMP_NUM_THREADS", THREADS_ENV)}
    competitor = None
    if busy:  # the competitor is an ordinary job: its own thread count, default OpenMP waiting
        competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR], env={**env, "OMP_NUM_THREADS": "2"})
        time.sleep(2)
    with tempfile.TemporaryDirectory() as runs:
        start = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "tasks.ops.cli", "grpo", recipe,
                                   "--set", f"tracking.runs_dir={runs}", "--set", f"sft.max_steps={sft_steps}",
                                   "--set", f"grpo.stages.0.max_steps={grpo_steps}"],
                                  cwd=REPO, env={**env, **env_over}, capture_output=True, text=True)
        finally:
            if competitor:
                competitor.kill()
                competitor.wait()
        wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(done.stdout[-2000:] + done.stderr[-3000:])
        client = MlflowClient(f"sqlite:///{runs}/mlflow.db")
        out = {"total": wall}
        for exp in client.search_experiments():
            for r in client.search_runs([exp.experiment_id]):
                if r.info.run_name in PHASES and r.info.end_time:
                    out[r.info.run_name] = (r.info.end_time - r.info.start_time) / 1000
                    out[f"{r.info.run_name}/threads"] = r.data.tags.get("repro.threads", "?")
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="configs/default.yaml")
    ap.add_argument("--sft-steps", type=int, default=150)
    ap.add_argument("--grpo-steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", default="", help="also fixed thread counts, comma-separated (e.g. 1,2)")
    ap.add_argument("--only", default="", help="comma-separated configuration names to run")
    args = ap.parse_args()
    configs = configurations([t for t in args.threads.split(",") if t])
    if args.only:
        configs = {k: v for k, v in configs.items() if k in args.only.split(",")}
    results: dict[tuple[str, bool], list[dict]] = {}
    for rep in range(args.repeats):
        order = [(c, b) for c in configs for b in (False, True)]
        for name, busy in (order if rep % 2 == 0 else order[::-1]):
            before = load()
            r = run_once(args.recipe, configs[name], busy, args.sft_steps, args.grpo_steps)
            results.setdefault((name, busy), []).append(r)
            print(f"{name:>10} {'busy' if busy else 'quiet':>5}: " + ", ".join(
                f"{p} {r[p]:.1f}s ({r.get(p + '/threads')} thr)" for p in PHASES if p in r)
                  + f", total {r['total']:.1f}s; load {before} -> {load()}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    print(f"\n{args.recipe}, {args.sft_steps} SFT + {args.grpo_steps} GRPO steps, commit {commit}, {cpu_model()}, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; medians of {args.repeats}")
    print("| configuration | phase | quiet s | beside a 2-thread job s | slowdown |\n| --- | --- | --- | --- | --- |")
    for name in configs:
        for phase in (*PHASES, "total"):
            q = sorted(r[phase] for r in results.get((name, False), []) if phase in r)
            b = sorted(r[phase] for r in results.get((name, True), []) if phase in r)
            if q and b:
                mq, mb = q[len(q) // 2], b[len(b) // 2]
                flag = "" if phase in ("data", "base") or mb / mq <= TARGET else " (over target)"
                print(f"| {name} | {phase} | {mq:.1f} | {mb:.1f} | {mb / mq:.2f}x{flag} |")


if __name__ == "__main__":
    main()
