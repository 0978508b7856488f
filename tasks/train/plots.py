"""Stage-end PNG plots of a GRPO stage's training curves, from the trainer's log history.

    paths = plot_training_curves(trainer.state.log_history, out_dir / "plots")

One PNG per panel: reward (and the canary), reward per verifier, KL, entropy, completion
length, clip ratios (PPO clipping and truncation). A panel whose metrics were never logged
(e.g. KL with beta = 0) says so instead of being left out, so the set of files is fixed.
"""

from __future__ import annotations

from pathlib import Path

#: file stem -> (title, y label, metric names or a prefix ending in "/" that selects `.../mean` series)
PANELS: dict[str, tuple[str, str, list[str]]] = {
    "reward": ("Reward", "mean reward", ["reward", "canary/accuracy"]),
    "reward_per_verifier": ("Reward per verifier", "mean reward", ["rewards/"]),
    "kl": ("KL to the reference", "kl", ["kl"]),
    "entropy": ("Entropy", "nats per token", ["entropy"]),
    "completion_length": ("Completion length", "tokens", ["completions/mean_length", "completions/max_length",
                                                          "completions/mean_terminated_length"]),
    "clip_ratios": ("Clip ratios", "fraction", ["clip_ratio/region_mean", "clip_ratio/low_mean",
                                                "clip_ratio/high_mean", "completions/clipped_ratio"]),
}


def series(log_history: list[dict], names: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """name -> (steps, values) for each requested metric present in the history; a name ending
    in "/" selects every `<name><x>/mean` metric (one per verifier)."""
    wanted = []
    for name in names:
        if name.endswith("/"):
            found = {k for h in log_history for k in h if k.startswith(name) and k.endswith("/mean")}
            wanted += sorted(found)
        else:
            wanted.append(name)
    out = {}
    for name in wanted:
        points = [(h["step"], float(h[name])) for h in log_history if h.get(name) is not None and "step" in h]
        if points:
            out[name] = ([s for s, _ in points], [v for _, v in points])
    return out


def plot_training_curves(log_history: list[dict], out_dir: Path) -> list[Path]:
    """Write one PNG per panel of PANELS into `out_dir`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, (title, ylabel, names) in PANELS.items():
        fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
        lines = series(log_history, names)
        for name, (steps, values) in lines.items():
            ax.plot(steps, values, marker="." if len(steps) < 30 else None, label=name)
        if lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged in this stage", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=title, xlabel="step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"{stem}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
