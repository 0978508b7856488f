"""Multi-process training: a stage's trainer as `accelerate launch` worker processes.

    if should_launch(stage.launcher):
        metrics = launch_stage("grpo", recipe, out_dir, data_dir, init_dir, stage.launcher, stage_name, on_line)

The workers run `python -m tasks.train_entry`, which rebuilds the recipe from the JSON this
writes and trains in-process. They log into the calling stage's MLflow run (`MLFLOW_RUN_ID`,
`MLFLOW_TRACKING_URI`); every output line goes to `on_line` (the Prefect task's logger), and a
failed worker raises with the last lines of its output.

On a CPU machine accelerate spawns N local processes only through its torchrun path, which
its config calls `distributed_type: MULTI_GPU` (`MULTI_CPU` goes through mpirun and starts one
process without a hostfile); the trainer's `use_cpu=True` then picks gloo. See
configs/accelerate/cpu_2proc.yaml.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = REPO / "configs" / "accelerate"
WORKER_ENV = "RLVR_TRAIN_WORKER"  # set in workers: train here, never launch again
METRICS_FILE = "train_metrics.json"


def should_launch(launcher) -> bool:
    return launcher.num_processes > 1 and not os.environ.get(WORKER_ENV)


def default_config() -> Path:
    import torch

    return ACCELERATE_CONFIGS / ("ddp.yaml" if torch.cuda.is_available() else "cpu_2proc.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(launcher, entry_args: list[str], port: int | None = None) -> list[str]:
    """`accelerate launch` of `python -m tasks.train_entry <entry_args>` on `num_processes` workers."""
    config = launcher.config or default_config()
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", str(launcher.num_processes), "--main_process_port", str(port or _free_port()),
            "-m", "tasks.train_entry", *entry_args]


def worker_env(run_id: str | None, tracking_uri: str | None) -> dict[str, str]:
    from tasks.tracking import OFFLINE_ENV

    env = {**OFFLINE_ENV, **os.environ, WORKER_ENV: "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    if run_id:
        env["MLFLOW_RUN_ID"] = run_id
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def stream(cmd: list[str], env: dict[str, str], on_line: Callable[[str], None], tail: int = 40) -> None:
    """Run `cmd`, passing each output line to `on_line`; raise with the last lines if it fails.
    The workers run in their own process group, which is killed if this is interrupted."""
    recent: deque[str] = deque(maxlen=tail)
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        for raw in proc.stdout:  # bytes, split on \n only
            # A progress bar redraws with \r, and both workers share the pipe: keep its last state.
            parts = raw.decode(errors="replace").rstrip().split("\r")
            line = next((part for part in reversed(parts) if part.strip()), "")
            recent.append(line)
            on_line(line)
        code = proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if code != 0:
        raise RuntimeError(f"training workers exited with status {code}: {' '.join(cmd)}\n" + "\n".join(recent))


def launch_stage(kind: str, recipe, out_dir: Path, data_dir, init_dir, launcher, stage_name: str | None = None,
                 on_line: Callable[[str], None] | None = None) -> dict[str, float]:
    """Train stage `kind` ("sft" | "grpo") on `launcher.num_processes` workers; returns the
    metrics the main worker wrote."""
    import mlflow

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_FILE).unlink(missing_ok=True)
    recipe_path = out_dir / "recipe.json"
    recipe_path.write_text(recipe.model_dump_json())
    args = [kind, "--recipe", str(recipe_path), "--data", str(data_dir), "--init", str(init_dir), "--out", str(out_dir)]
    if stage_name:
        args += ["--stage", stage_name]
    run = mlflow.active_run()
    cmd = accelerate_command(launcher, args)
    log.info("launching %d workers: %s", launcher.num_processes, " ".join(cmd))
    stream(cmd, worker_env(run.info.run_id if run else None, mlflow.get_tracking_uri()), on_line or log.info)
    return json.loads((out_dir / METRICS_FILE).read_text())
