"""Same recipe + seed -> the same numbers on every machine of a kind.

A float sum depends on the order of its terms, and three things reorder them between hosts
running identical code: the number of threads (how a reduction is split), the vector width a
kernel picks at run time (ATen, oneDNN and MKL dispatch AVX-512 on one EPYC and AVX2 on the
next), and algorithms that are non-deterministic by design. The embedded mode pins all three;
`provenance()` records them, with the installed package set, on every stage run so a number
can be traced to what produced it. A value the user sets in the environment wins.
"""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path

LOCK_FILE = Path(__file__).resolve().parents[1] / "requirements.lock"

# Read once by each library at its first kernel call (ATen lazily, so setting them before the
# first tensor operation is enough); AVX2 is the widest ISA every x86-64 host of ours has.
CPU_MATH_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",       # ATen's vectorised kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",        # oneDNN (mkldnn) convolutions and matmuls
    "MKL_CBWR": "AVX2",                  # MKL's conditional numerical reproducibility
    "OMP_NUM_THREADS": "2",              # the reduction split; 2 = the cores of the embedded machine
    "MKL_NUM_THREADS": "2",
    # Not numerics, speed: on a busy host (CI beside other jobs) spinning OpenMP threads made a
    # training step 5-15x slower (measurements/ notes); passive waiters cost nothing when idle.
    "OMP_WAIT_POLICY": "PASSIVE",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # deterministic cuBLAS, for the same recipe on a GPU
}


def pin_cpu_math() -> None:
    """Set the pins in this process's environment (inherited by every process it starts)."""
    for k, v in CPU_MATH_ENV.items():
        os.environ.setdefault(k, v)


OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    # Trace ids from a private RNG: stages seed `random` alike, so two runs would write the same trace ids.
    "MLFLOW_TRACE_USE_ISOLATED_RANDOM_ID_GENERATOR": "true",
    # Rollout traces are written on tasks.lineage's background thread already: export them there.
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
}
# What every process of an embedded run starts with: offline, and the same CPU math everywhere.
EMBEDDED_ENV = {**OFFLINE_ENV, **CPU_MATH_ENV}


def set_embedded_env() -> None:
    """Embedded mode: nothing may reach a hub, CPU math is pinned; user-set values win."""
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    pin_cpu_math()


def seed_and_pin(seed: int) -> None:
    """Seed every generator and fix torch's threads and algorithms for one stage."""
    import torch
    from transformers import set_seed

    pin_cpu_math()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    # warn_only: an op with no deterministic kernel (some CUDA ones) warns instead of failing a run
    torch.use_deterministic_algorithms(True, warn_only=True)
    set_seed(seed)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def installed_packages() -> str:
    """`name==version` of every installed distribution, sorted: what actually ran."""
    pkgs = {(d.metadata["Name"] or "").lower().replace("_", "-"): d.version for d in metadata.distributions()}
    return "\n".join(f"{n}=={v}" for n, v in sorted(pkgs.items()) if n)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The widest vector extensions the host offers (what an unpinned kernel would use)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return ",".join(f for f in ("avx512f", "avx2", "fma", "neon") if f in flags) or "baseline"


def provenance(seed: int) -> dict[str, str]:
    """MLflow tags naming everything a stage's numbers depend on besides the recipe."""
    import torch

    lock = LOCK_FILE.read_text() if LOCK_FILE.is_file() else ""
    return {
        "repro.seed": str(seed),
        "repro.lock_sha256": _digest(lock) if lock else "no lock file",
        "repro.packages_sha256": _digest(installed_packages()),
        "repro.python": platform.python_version(),
        "repro.torch": torch.__version__,
        "repro.cpu_model": cpu_model(),
        "repro.cpu_isa": cpu_isa(),
        "repro.cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "repro.threads": str(torch.get_num_threads()),
        "repro.mkl_cbwr": os.environ.get("MKL_CBWR", ""),
        "repro.deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()),
    }
