"""Every file of a stage directory, named once. Stages hand each other these directories.

    <tracking.runs_dir>/stages/<stage>/<key>/       key: digest of the stage's inputs and settings
        result.json            the StageOutput; written last, so it marks a finished stage
        mlflow_run_id          the stage's MLflow run (a killed attempt resumes in it)
        model/                 the stage's model and tokenizer (base, sft, grpo-<stage>)
        checkpoints/           resumable trainer checkpoints
        train_metrics.json     metrics the main rank of `accelerate launch` workers hands back
        monitor_trips.json     GRPO monitors that tripped (docs/grpo.md#monitors)
        plots/                 PNG training curves
        grpo.jsonl, sft.jsonl, eval.jsonl, quarantine.jsonl    curated splits (data, difficulty)
        samples.jsonl          evaluation samples
    <tracking.runs_dir>/stages/<stage>/<key>.lock   held while a run produces the directory
    <tracking.runs_dir>/models/gguf/<digest>/       a GGUF starting model converted to HF (tasks.modeling)
"""

from __future__ import annotations

from pathlib import Path

STAGES_DIR = "stages"
GGUF_DIR = "models/gguf"
RESULT_FILE = "result.json"
RUN_ID_FILE = "mlflow_run_id"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "train_metrics.json"
TRIPS_FILE = "monitor_trips.json"
PLOTS_DIR = "plots"
SAMPLES_FILE = "samples.jsonl"
SPLITS = ("grpo", "sft", "eval")  # the curated splits: GRPO prompts, cold-start SFT traces, held-out rows
QUARANTINE = "quarantine"  # rejected rows, each with a `reason`


def stage_path(runs_dir: str | Path, stage: str, key: str) -> Path:
    return Path(runs_dir).resolve() / STAGES_DIR / stage / key


def model_dir(stage_dir: str | Path) -> Path:
    return Path(stage_dir) / MODEL_DIR


def split_file(data_dir: str | Path, split: str) -> Path:
    """`<split>.jsonl` of a data stage directory (one of SPLITS, or QUARANTINE)."""
    return Path(data_dir) / f"{split}.jsonl"


def lock_file(stage_dir: str | Path) -> Path:
    """Beside the stage directory (not in it): held by the run producing it (tasks.locking)."""
    return Path(stage_dir).with_name(Path(stage_dir).name + ".lock")


def is_finished(stage_dir: str | Path) -> bool:
    return (Path(stage_dir) / RESULT_FILE).is_file()


def file_digest(path: str | Path) -> str:
    """Short sha256 of a file's bytes, read in blocks (sources can be large)."""
    import hashlib

    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
