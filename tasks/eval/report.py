"""The comparison of evaluated checkpoints: one headline metric per benchmark, a table and a chart.

    headline = headline_metrics(recipe.evaluation, rows)   # {"heldout": "heldout/pass_at_1", ...}
    comparison_chart(rows, headline, "comparison.png", primary=recipe.evaluation.primary_metric)
"""

from __future__ import annotations

import math
from pathlib import Path

from tasks.recipe import EvaluationSection
from tasks.tracking import safe_metric_name

_NOT_HEADLINE = ("no_answer", "docs")


def headline_metrics(cfg: EvaluationSection, rows: list[dict]) -> dict[str, str]:
    """Benchmark -> the metric that stands for it: the primary metric for its benchmark, else the
    benchmark's `metric`, else pass_at_1 (verifier-scored) or the first metric lm-eval reported."""
    primary_bench = cfg.primary_metric.split("/")[0]
    out = {}
    for b in cfg.benchmarks:
        if b.name == primary_bench:
            out[b.name] = cfg.primary_metric
        elif b.metric:
            out[b.name] = f"{b.name}/{b.metric}"
        elif b.scored_by_verifier:
            out[b.name] = f"{b.name}/pass_at_1"
        else:
            reported = [k for r in rows for k in r if k.startswith(f"{b.name}/")
                        and k.split("/")[1] not in _NOT_HEADLINE]
            if reported:
                out[b.name] = reported[0]
    return {b: safe_metric_name(m) for b, m in out.items()}


def comparison_rows(rows: list[dict], headline: dict[str, str], primary: str) -> list[dict]:
    """The comparison table: checkpoint, the headline metric of each benchmark, no-answer rates."""
    metrics = list(dict.fromkeys([primary, *headline.values()]))
    rates = sorted({k for r in rows for k in r if k.split("/")[-1] == "no_answer" or "/no_answer/" in k})
    return [{"checkpoint": r["checkpoint"], **{m: r.get(m) for m in metrics + rates},
             **{k: r[k] for k in ("cached", "mlflow_run") if k in r}} for r in rows]


def comparison_markdown(table: list[dict], primary: str, chart_url: str, chart_path: Path) -> str:
    cols = [c for c in table[0] if c != "mlflow_run"]
    lines = ["# Evaluation", "", f"Primary metric (decides promotion): `{primary}`", "",
             "| " + " | ".join(cols) + " | MLflow |", "|" + " --- |" * (len(cols) + 1)]
    for r in table:
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in (r.get(c) for c in cols)]
        lines.append("| " + " | ".join(cells) + f" | [run]({r.get('mlflow_run', '')}) |")
    lines += ["", f"![comparison]({chart_url})", "", f"Chart: [{chart_url}]({chart_url}) (local file `{chart_path}`)"]
    return "\n".join(lines)


def comparison_chart(rows: list[dict], headline: dict[str, str], path: str | Path, primary: str = "") -> Path:
    """Grouped bars: one group per benchmark (its headline metric), one bar per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(headline.values())
    fig, ax = plt.subplots(figsize=(2.5 + 0.7 * len(metrics) * max(1, len(rows)), 3.6))
    grouped_bars(ax, [m + (" *" if m == primary else "") for m in metrics],
                 {r["checkpoint"]: [r.get(m) or 0.0 for m in metrics] for r in rows})
    ax.set_ylabel("score")
    ax.set_title("checkpoints by benchmark" + (f" (* = primary: {primary})" if primary in metrics else ""),
                 fontsize=9)
    return save_figure(fig, path)


def grouped_bars(ax, groups: list[str], series: dict[str, list[float]]) -> None:
    """One group of bars per label in `groups`, one bar per series (legend: the series names); a
    NaN value leaves its bar and label out."""
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar([j + i * width for j in range(len(groups))], values, width, label=name)
        ax.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.3f}" for v in values], fontsize=7)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(groups))], groups, fontsize=8)
    ax.set_ylim(0, 1.15 * max([1.0, *(v for values in series.values() for v in values if not math.isnan(v))]))
    if series:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def save_figure(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
