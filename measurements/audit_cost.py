"""What the verifier audit adds to a GRPO step (issue 27 target: <= 5% at the default settings).

Setup, once (as measurements/grpo_overhead.py): curate the recipe's data, build its base model
and give it a short cold-start SFT, so completions have the real run's shape. Then, alternating
the order each repeat, GRPO stage 1 trains `--steps` steps from that checkpoint through the
pipeline (`run_grpo_stage` in `run_stage`) twice: with the recipe's audit settings and with
`audit.enabled: false`. Reported:

- the audit's own share of step time inside each audited run: `timing/audit_s` (re-check seconds
  per optimizer step, measured around the re-checks) over `timing/step_s`, from the same run's
  MLflow history, so the machine's load moves numerator and denominator alike;
- side by side: the wall seconds and the mean `timing/step_s` of audited over unaudited runs
  (noisy on a shared machine: read it with the load average printed beside it);
- the audit's counts (checked, false negatives / positives) of the audited runs.

The process lowers its own priority (nice 10): the machine is shared.

    python measurements/audit_cost.py                          # configs/default.yaml, 20 steps, 2 repeats
    python measurements/audit_cost.py --steps 10 --repeats 1 --set grpo.stages.0.audit.sample_rate=0.1
    python measurements/audit_cost.py --data runs/default/stages/data/KEY --init runs/default/stages/sft/KEY
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlflow  # noqa: E402

from measurements.grpo_overhead import prepare  # noqa: E402
from tasks.layout import split_file  # noqa: E402
from tasks.lineage import BACKGROUND  # noqa: E402
from tasks.recipe_checks import load_recipe  # noqa: E402
from tasks.tracking import configure_tracking, run_stage  # noqa: E402
from tasks.train.grpo import run_grpo_stage  # noqa: E402

TARGET = 0.05


def history_mean(run_id: str, key: str) -> float:
    values = [m.value for m in mlflow.MlflowClient().get_metric_history(run_id, key)]
    return statistics.mean(values) if values else float("nan")


def run_side(recipe, audited: bool, data: Path, init: Path, init_model: str, key: str) -> dict:
    stage = recipe.grpo.stages[0].model_copy(deep=True)
    stage.audit = stage.audit.model_copy(update={"enabled": audited})
    t0 = time.perf_counter()
    out = run_stage(recipe, "grpo-audit-cost", key, lambda o: run_grpo_stage(recipe, stage, data, init, o),
                    inputs={"grpo": split_file(data, "grpo")}, init_model=init_model)
    BACKGROUND.flush()
    wall = time.perf_counter() - t0
    client, rid = mlflow.MlflowClient(), out.run_id
    last = client.get_run(rid).data.metrics
    return {"wall_s": wall, "step_s": history_mean(rid, "timing/step_s"), "audit_s": history_mean(rid, "timing/audit_s"),
            "checked": last.get("audit/negatives_checked", 0) + last.get("audit/positives_checked", 0),
            "false_negatives": last.get("audit/false_negatives", 0), "false_positives": last.get("audit/false_positives", 0),
            "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="configs/default.yaml")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sft-steps", type=int, default=200)
    ap.add_argument("--data", help="a curated data stage directory to reuse (with --init: no setup)")
    ap.add_argument("--init", help="an SFT stage directory to start GRPO from (with --data)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    os.nice(10)

    root = Path(tempfile.mkdtemp(prefix="audit-cost-"))
    recipe = load_recipe(args.recipe, [f"tracking.runs_dir={root / 'runs'}", "tracking.experiment=audit-cost",
                                       f"grpo.stages.0.max_steps={args.steps}", *args.overrides])
    configure_tracking(recipe.tracking)
    print(f"recipe {args.recipe}: {args.steps} steps, audit {recipe.grpo.stages[0].audit.model_dump()}", flush=True)
    if args.data and args.init:
        data, init, init_model = Path(args.data), Path(args.init), None
    else:
        data, init, init_model = prepare(recipe, root, args.sft_steps)
    sides: dict[bool, list[dict]] = {True: [], False: []}
    for i in range(args.repeats):
        for audited in ((True, False) if i % 2 == 0 else (False, True)):
            r = run_side(recipe, audited, data, init, init_model, f"{'on' if audited else 'off'}{i}")
            sides[audited].append(r)
            print(f"repeat {i} audit {'on ' if audited else 'off'}: {r['wall_s']:.1f} s wall, step {r['step_s']:.3f} s, "
                  f"audit {r['audit_s'] * 1000:.1f} ms/step, checked {r['checked']:.0f} "
                  f"(load average {r['load']:.1f})", flush=True)
    on, off = sides[True], sides[False]
    share = statistics.mean(r["audit_s"] / r["step_s"] for r in on)
    print(f"\naudit share of step time, inside the audited runs: {share:.2%} (target <= {TARGET:.0%})")
    print(f"side by side, audited / unaudited: wall {statistics.median(r['wall_s'] for r in on) / statistics.median(r['wall_s'] for r in off):.3f}, "
          f"step_s {statistics.mean(r['step_s'] for r in on) / statistics.mean(r['step_s'] for r in off):.3f}")
    print(f"audited runs: checked {[r['checked'] for r in on]}, false negatives {[r['false_negatives'] for r in on]}, "
          f"false positives {[r['false_positives'] for r in on]}; load average {[round(r['load'], 1) for r in on + off]}")


if __name__ == "__main__":
    main()
