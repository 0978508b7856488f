"""Multi-process training: a stage's trainer as `accelerate launch` worker processes, on one
machine or several.

    if should_launch(stage.launcher):
        metrics = launch_stage("grpo", recipe, out_dir, data_dir, init_dir, stage.launcher, stage_name, on_line)

The workers run `python -m tasks.train.entry`, which rebuilds the recipe from the JSON this
writes and trains in-process. They log into the calling stage's MLflow run (`MLFLOW_RUN_ID`,
`MLFLOW_TRACKING_URI`); every output line goes to `on_line` (the Prefect task's logger), and a
failed worker raises with the last lines of its output.

With `launcher.num_machines` N > 1 this host is machine 0 (`--machine_rank 0`, reached at
`main_process_ip`) and `launcher.peers` starts machines 1..N-1, which join it through torch's
static rendezvous: `local` as more `accelerate launch` process groups on this host (lines
prefixed `[machine i]`; one failing ends them all), `kubernetes` as an Indexed Job rendered from
deployments/k8s/multinode-workers.yaml (its pod i is machine i+1), deleted when machine 0 is
done. Every machine sees the same stage directory: one host, or the shared /runs volume.

On a CPU machine accelerate spawns N local processes only through its torchrun path, which
its config calls `distributed_type: MULTI_GPU` (`MULTI_CPU` goes through mpirun and starts one
process without a hostfile); the trainer's `use_cpu=True` then picks gloo. See
configs/accelerate/cpu_2proc.yaml.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from tasks.layout import METRICS_FILE
from tasks.reproducibility import OFFLINE_ENV, THREADS_ENV

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
ACCELERATE_CONFIGS = REPO / "configs" / "accelerate"
WORKER_ENV = "RLVR_TRAIN_WORKER"  # set in workers: train here, never launch again
KUBERNETES_INSTALL = "pip install 'kubernetes<37'"  # the bound: see pyproject.toml's `kubernetes` extra
DEEPSPEED_INSTALL = "pip install -e '.[deepspeed]'"  # pyproject.toml's `deepspeed` extra
RANK_FROM_INDEX = "$((JOB_COMPLETION_INDEX + 1))"  # shell: pod i of the worker Job is machine i + 1
# A Python exception's last traceback line, e.g. "[rank1]: ValueError: ..." (torchrun's own
# ChildFailedError, which only reports that a rank died, is not the cause).
EXCEPTION_LINE = re.compile(r"^(\[rank\d+\]: )?(?!torch\.distributed\.elastic)[\w.]*(Error|Exception|Interrupt)\b: ")


def should_launch(launcher) -> bool:
    return launcher.num_processes > 1 and not os.environ.get(WORKER_ENV)


def launcher_problems(where: str, launcher) -> list[str]:
    """What would stop a launcher before any worker starts (run by `validate_recipe`): a missing
    accelerate config, DeepSpeed without its package, ZeRO-3 saving shards the next stage could
    not load; for kubernetes peers, a missing worker Job template or package."""
    problems = _accelerate_config_problems(f"{where}.config", launcher.config)
    if launcher.peers == "kubernetes":
        if not (REPO / launcher.kubernetes.manifest).is_file():
            problems.append(f"{where}.kubernetes.manifest: worker Job template not found: "
                            f"{launcher.kubernetes.manifest}")
        if importlib.util.find_spec("kubernetes") is None:
            problems.append(f"{where}.peers: 'kubernetes' needs the kubernetes package ({KUBERNETES_INSTALL})")
    return problems


def _accelerate_config_problems(where: str, config: str | None) -> list[str]:
    if not config:
        return []
    if not Path(config).is_file():
        return [f"{where}: accelerate config not found: {config} (see configs/accelerate/)"]
    import yaml

    settings = yaml.safe_load(Path(config).read_text()) or {}
    if settings.get("distributed_type") != "DEEPSPEED":
        return []
    problems = []
    if importlib.util.find_spec("deepspeed") is None:
        problems.append(f"{where}: {config} uses DeepSpeed: {DEEPSPEED_INSTALL} (on a machine without CUDA it "
                        "compiles a communication op at start: it needs a C++ compiler)")
    deepspeed = settings.get("deepspeed_config") or {}
    if (deepspeed.get("zero_stage") == 3 and not deepspeed.get("zero3_save_16bit_model")
            and not deepspeed.get("deepspeed_config_file")):
        problems.append(f"{where}: {config} shards the weights (zero_stage 3) without deepspeed_config."
                        "zero3_save_16bit_model: true, so the stage would save no model the next stage can load")
    return problems


def tag_distribution(accelerator, run_id: str | None) -> None:
    """Tag the stage's MLflow run with how its training was spread: accelerate's distributed type
    (NO, MULTI_CPU, MULTI_GPU, DEEPSPEED, FSDP), processes, machines, mixed precision and the
    ZeRO stage, so a run records the setup that produced it (the main process writes them)."""
    if not run_id or not accelerator.is_main_process:
        return
    from mlflow import MlflowClient
    from mlflow.entities import RunTag

    tags = {"distributed.type": accelerator.distributed_type.value,
            "distributed.processes": accelerator.num_processes,
            # torchrun's LOCAL_WORLD_SIZE: processes per machine
            "distributed.machines": accelerator.num_processes // int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
            "distributed.mixed_precision": accelerator.mixed_precision}
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:
        tags["distributed.zero_stage"] = plugin.zero_stage
    MlflowClient().log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])


def default_config() -> Path:
    import torch

    return ACCELERATE_CONFIGS / ("ddp.yaml" if torch.cuda.is_available() else "cpu_2proc.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(launcher, entry_args: list[str], port: int | None = None, machine_rank: int | str = 0,
                       main_process_ip: str = "127.0.0.1") -> list[str]:
    """`accelerate launch` of `python -m tasks.train.entry <entry_args>`: `num_processes` workers in
    all; with several machines, this command starts machine `machine_rank`'s share of them."""
    config = launcher.config or default_config()
    machines = ["--num_machines", str(launcher.num_machines), "--machine_rank", str(machine_rank),
                "--main_process_ip", main_process_ip] if launcher.num_machines > 1 else []
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", str(launcher.num_processes), *machines,
            "--main_process_port", str(port or _free_port()), "-m", "tasks.train.entry", *entry_args]


def main_process_ip(launcher) -> str:
    """Where machines 1..N-1 reach machine 0, this host."""
    if launcher.main_process_ip:
        return launcher.main_process_ip
    if launcher.peers == "kubernetes":  # POD_IP: the downward API, set by gpu-job-template.yaml
        return os.environ.get("POD_IP") or socket.gethostbyname(socket.gethostname())
    return "127.0.0.1"


def worker_env(run_id: str | None, tracking_uri: str | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The workers' environment: `base` (default: this process's) over the offline defaults, with
    the launcher's settings on top."""
    base = os.environ if base is None else base
    # One thread per rank, as torchrun does, unless the user chose a count: ranks share the cores.
    chosen = base.get(THREADS_ENV, "auto") != "auto"
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if not (chosen or base.get(k))}
    env = {**OFFLINE_ENV, **base, **threads, WORKER_ENV: "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), base.get("PYTHONPATH")) if p)}
    if run_id:
        env["MLFLOW_RUN_ID"] = run_id
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def _read_lines(machine: int, proc: subprocess.Popen, lines: queue.SimpleQueue) -> None:
    for raw in proc.stdout:  # bytes, split on \n only
        # A progress bar redraws with \r, and the workers share the pipe: keep its last state.
        parts = raw.decode(errors="replace").rstrip().split("\r")
        lines.put((machine, next((part for part in reversed(parts) if part.strip()), "")))
    lines.put((machine, None))  # end of output: the process has exited


def stream(cmds: list[list[str]], env: dict[str, str], on_line: Callable[[str], None], tail: int = 40) -> None:
    """Run `cmds` (one per machine) at once, passing each output line to `on_line`, prefixed with
    the machine when there are several. Each runs in its own process group; if one fails, or this
    is interrupted, all of them are killed, and a failure raises with that machine's last lines."""
    procs = [subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True) for cmd in cmds]
    lines: queue.SimpleQueue = queue.SimpleQueue()
    for machine, proc in enumerate(procs):
        threading.Thread(target=_read_lines, args=(machine, proc, lines), daemon=True).start()
    label = [f"[machine {i}] " if len(cmds) > 1 else "" for i in range(len(cmds))]
    recent = [deque(maxlen=tail) for _ in cmds]
    first_error = None  # the root cause; the tail is mostly torchrun's report of the ranks it then killed
    running = len(procs)
    try:
        while running:
            machine, line = lines.get()
            if line is not None:
                recent[machine].append(line)
                on_line(label[machine] + line)
                if first_error is None and EXCEPTION_LINE.search(line):
                    first_error = label[machine] + line
            elif procs[machine].wait() == 0:
                running -= 1
            else:
                cause = f"\nfirst error: {first_error}" if first_error else ""
                raise RuntimeError(f"{label[machine]}training workers exited with status {procs[machine].returncode}: "
                                   f"{' '.join(cmds[machine])}{cause}\n" + "\n".join(recent[machine]))
    except BaseException:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise


def worker_job(launcher, cmd: list[str], env: dict[str, str]) -> dict:
    """The Indexed Job of machines 1..N-1: `launcher.kubernetes.manifest` with its placeholders
    filled. `cmd` is the `accelerate launch` line with RANK_FROM_INDEX as the machine rank."""
    import yaml
    from prefect.utilities.templating import apply_values

    k8s = launcher.kubernetes
    line = " ".join(arg if arg == RANK_FROM_INDEX else shlex.quote(arg) for arg in cmd)
    values = {
        "namespace": k8s.namespace or _from_flow_pod("POD_NAMESPACE", "namespace"),
        "image": k8s.image or _from_flow_pod("RLVR_IMAGE", "image"),
        "runs_volume_claim": k8s.runs_volume_claim or _from_flow_pod("RLVR_RUNS_CLAIM", "runs_volume_claim"),
        "machines": launcher.num_machines - 1,
        "gpus": launcher.num_processes // launcher.num_machines,
        "workdir": str(REPO),
        "command": ["/bin/sh", "-c", f"exec {line}"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        # Owned by the flow pod: deleting it (a cancelled flow run) deletes the workers too.
        "owner": [{"apiVersion": "v1", "kind": "Pod", "name": os.environ["POD_NAME"], "uid": os.environ["POD_UID"]}]
        if os.environ.get("POD_UID") else [],
    }
    return apply_values(yaml.safe_load((REPO / k8s.manifest).read_text()), values)


def _from_flow_pod(var: str, key: str) -> str:
    if not os.environ.get(var):
        raise RuntimeError(f"launcher.kubernetes.{key} is empty and {var} is not set (deployments/k8s/"
                           "gpu-job-template.yaml sets it in the flow pod)")
    return os.environ[var]


def kubernetes_client():
    """The kubernetes client module, configured from the pod's service account (else ~/.kube/config)."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise RuntimeError(f"launcher.peers 'kubernetes' needs the kubernetes package: {KUBERNETES_INSTALL}") from None
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client


@contextlib.contextmanager
def kubernetes_peers(job: dict, on_line: Callable[[str], None]):
    """Machines 1..N-1 as `job` while machine 0 trains. The Job is deleted afterwards, whatever
    happened; after a failure, the last lines of each worker pod go to `on_line` first."""
    client = kubernetes_client()
    batch, namespace = client.BatchV1Api(), job["metadata"]["namespace"]
    name = batch.create_namespaced_job(namespace, job).metadata.name
    on_line(f"started machines 1..{job['spec']['completions']} as Job {namespace}/{name}")
    try:
        yield
    except BaseException:
        _worker_tails(client, namespace, name, on_line)
        raise
    finally:
        batch.delete_namespaced_job(name, namespace, propagation_policy="Background")


def _worker_tails(client, namespace: str, job_name: str, on_line: Callable[[str], None], tail: int = 40) -> None:
    """Best effort, the Job is about to go: its pods' logs vanish with it."""
    core = client.CoreV1Api()
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}").items
    except client.ApiException as e:
        return on_line(f"cannot list the worker pods: {e.reason}")
    for pod in pods:
        machine = int(pod.metadata.annotations["batch.kubernetes.io/job-completion-index"]) + 1
        try:
            text = core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=tail)
        except client.ApiException as e:  # e.g. a pod that never started
            text = f"no log: {e.reason}"
        for line in text.splitlines():
            on_line(f"[machine {machine}] {line}")


def launch_stage(kind: str, recipe, out_dir: Path, data_dir, init_dir, launcher, stage_name: str | None = None,
                 on_line: Callable[[str], None] | None = None) -> dict[str, float]:
    """Train stage `kind` ("sft" | "grpo") on `launcher.num_processes` workers over
    `launcher.num_machines` machines; returns the metrics the main worker wrote."""
    import mlflow

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_FILE).unlink(missing_ok=True)
    recipe_path = out_dir / "recipe.json"
    recipe_path.write_text(recipe.model_dump_json(context={"secrets": True}))  # the workers need them
    args = [kind, "--recipe", str(recipe_path), "--data", str(data_dir), "--init", str(init_dir), "--out", str(out_dir)]
    if stage_name:
        args += ["--stage", stage_name]
    run = mlflow.active_run()
    run_id, tracking_uri = run.info.run_id if run else None, mlflow.get_tracking_uri()
    on_line = on_line or log.info
    port, ip = _free_port(), main_process_ip(launcher)
    here = launcher.num_machines if launcher.peers == "local" else 1  # machines started on this host
    cmds = [accelerate_command(launcher, args, port, rank, ip) for rank in range(here)]
    peers = contextlib.nullcontext()
    if launcher.peers == "kubernetes":
        nccl = {k: v for k, v in os.environ.items() if k.startswith("NCCL_")}  # network settings every node needs
        job = worker_job(launcher, accelerate_command(launcher, args, port, RANK_FROM_INDEX, ip),
                         worker_env(run_id, tracking_uri, base=nccl))
        peers = kubernetes_peers(job, on_line)
    log.info("launching %d workers on %d machines: %s", launcher.num_processes, launcher.num_machines,
             " ".join(cmds[0]))
    with peers:
        stream(cmds, worker_env(run_id, tracking_uri), on_line)
    return json.loads((out_dir / METRICS_FILE).read_text())
