"""Compare pipeline runs from MLflow: what differed in their recipes, what they scored, and
how their GRPO reward moved.

    runs = pipeline_runs("tiny", last=5)                # parent runs, newest first
    print(format_table(*comparison_table(runs)))
    plot_runs(runs, "compare.png")                      # reward curves + eval bars

A pipeline run is an MLflow parent run tagged `stage=pipeline`; it carries the recipe as
`recipe.*` params, one `<checkpoint>/<metric>` per evaluated checkpoint, and `stage_run.<stage>`
tags naming the run that trained each stage (an earlier run's, when the stage was cached).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tasks.eval.report import grouped_bars, save_figure
from tasks.stages import stage_kind

REWARD = "reward"  # TRL GRPOTrainer's mean total reward per logging step


@dataclass
class PipelineRun:
    run_id: str
    experiment_id: str
    name: str
    start_time: int  # ms since the epoch, as MLflow keeps it
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    rewards: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # GRPO stage -> (step, reward)

    @property
    def label(self) -> str:
        status = "" if self.status == "FINISHED" else f" ({self.status})"
        return f"{self.name} {self.run_id[:8]}{status}"


def pipeline_runs(experiment: str, last: int = 5) -> list[PipelineRun]:
    """The newest `last` pipeline runs of `experiment` in the current tracking store."""
    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(f"no MLflow experiment {experiment!r}; found: {', '.join(names) or 'none'}")
    found = client.search_runs([exp.experiment_id], "tags.stage = 'pipeline'",
                               order_by=["attributes.start_time DESC"], max_results=last)
    return [PipelineRun(r.info.run_id, r.info.experiment_id, r.info.run_name, r.info.start_time, r.info.status,
                        dict(r.data.params), dict(r.data.metrics), _reward_curves(client, r)) for r in found]


def _reward_curves(client, parent) -> dict[str, list[tuple[int, float]]]:
    """Reward history of each GRPO stage of a pipeline run (from whichever run trained it)."""
    stage_runs = {k.removeprefix("stage_run."): v for k, v in parent.data.tags.items()
                  if k.startswith("stage_run.") and stage_kind(k.removeprefix("stage_run.")) == "grpo"}
    if not stage_runs:  # runs from before the stage_run tags: the GRPO children
        children = client.search_runs([parent.info.experiment_id],
                                      f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        stage_runs = {c.data.tags["stage"]: c.info.run_id for c in children
                      if stage_kind(c.data.tags.get("stage", "")) == "grpo"}
    return {stage: [(m.step, m.value) for m in sorted(client.get_metric_history(rid, REWARD), key=lambda m: m.step)]
            for stage, rid in sorted(stage_runs.items())}


def differing_params(runs: list[PipelineRun]) -> list[str]:
    """Recipe params whose values are not the same in every run (absent counts as a value)."""
    keys = sorted({k for r in runs for k in r.params if k.startswith("recipe.")})
    return [k for k in keys if len({r.params.get(k) for r in runs}) > 1]


def comparison_table(runs: list[PipelineRun]) -> tuple[list[str], list[list[str]]]:
    """Header (one column per run) and rows: when, status, differing recipe params, metrics,
    the last reward of each GRPO stage."""
    header = ["", *[r.label for r in runs]]
    rows = [["started", *[time.strftime("%Y-%m-%d %H:%M", time.localtime(r.start_time / 1000)) for r in runs]],
            ["status", *[r.status for r in runs]]]
    rows += [[k, *[r.params.get(k, "-") for r in runs]] for k in differing_params(runs)]
    for name in sorted({m for r in runs for m in r.metrics}):
        rows.append([name, *[_fmt(r.metrics.get(name)) for r in runs]])
    for stage in sorted({s for r in runs for s in r.rewards}):
        rows.append([f"{stage}/{REWARD} (last)", *[_fmt(r.rewards[stage][-1][1] if r.rewards.get(stage) else None)
                                                   for r in runs]])
    return header, rows


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_runs(runs: list[PipelineRun], out: str | Path) -> Path:
    """Left: the reward curve of every GRPO stage of every run. Right: each run's evaluated
    checkpoints (`<checkpoint>/<metric>` on the parent run) as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(14, 4.5))
    for r in runs:
        for stage, points in r.rewards.items():
            if points:
                curves.plot(*zip(*points), marker=".", label=f"{r.label} {stage}")
    curves.set(title="GRPO reward", xlabel="step", ylabel=REWARD)
    if curves.has_data():
        curves.legend(fontsize=7)
    metrics = sorted({m for r in runs for m in r.metrics})
    # a metric a run lacks (it failed, or evaluated other benchmarks) is a gap, not a 0.000 bar
    grouped_bars(bars, [m.replace("/", "/\n", 1) for m in metrics],
                 {r.label: [r.metrics.get(m, math.nan) for m in metrics] for r in runs})
    bars.set_title("held-out evaluation")
    return save_figure(fig, out)


def compare_url(experiment_id: str, run_ids: list[str]) -> str:
    """The MLflow UI's side-by-side compare view of these runs (UI base: RLVR_MLFLOW_UI)."""
    ui_base = os.environ.get("RLVR_MLFLOW_UI", "http://127.0.0.1:5000")
    def as_list(ids):
        return quote("[" + ",".join(f'"{i}"' for i in ids) + "]")

    return (f"{ui_base}/#/compare-runs?runs={as_list(run_ids)}&experiments={as_list([experiment_id])}"
            "&workflowType=machine_learning")
