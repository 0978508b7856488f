"""Same recipe + seed -> the same numbers on every x86-64 CPU, at whatever thread count the machine can give.

A float sum depends on the order of its terms, and three things reorder them between hosts
running identical code: the vector width a kernel picks at run time, the vendor-specific code
path a library picks, and how a reduction is split between threads. The embedded mode pins:

- ATen's and oneDNN's kernels at AVX2 width (both dispatch on CPU features, not on the vendor);
- MKL, which runs every float matmul, on its COMPATIBLE branch. MKL's AVX2 branch
  (`MKL_CBWR=AVX2`, what we pinned until cc3b0db) is honoured on Intel CPUs only: on AMD, MKL
  falls back to AUTO, its own code path, so an Intel Xeon and an AMD EPYC trained different
  models from the first matmul on (measurements/shared_machine.py's notes; docs/operations.md).
  COMPATIBLE is the branch MKL runs alike on every x86-64 vendor;
- deterministic torch algorithms, and every seed.

With these pins the tiny models' numbers do not depend on the thread count (1 and 2 threads
log identical metrics; tests/tasks/test_reproducibility.py), so the count is chosen per stage
from what the machine can give right now: the CPUs this process may run on, the cgroup's quota
and the idle CPU time, at most `AUTO_MAX_THREADS`. On a busy machine one thread is much faster
than two OpenMP threads in lockstep, each stalling whenever the other is descheduled.
`RLVR_CPU_THREADS` (or `OMP_NUM_THREADS`) overrides the choice; values you set in the environment win.
`provenance()` records all of it, with the installed package set, on every stage run.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import time
from importlib import metadata
from pathlib import Path

LOCK_FILE = Path(__file__).resolve().parents[1] / "requirements.lock"

# Read once by each library at its first kernel call (ATen lazily, so setting them before the
# first tensor operation is enough).
CPU_MATH_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",       # ATen's vectorised kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",        # oneDNN (mkldnn) convolutions and matmuls
    "MKL_CBWR": "COMPATIBLE",            # MKL's only branch that is the same code on Intel and AMD
    # Speed, not numerics: a spinning OpenMP thread on a busy host steals the core its partner
    # needs; passive waiters cost nothing when idle.
    "OMP_WAIT_POLICY": "PASSIVE",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # deterministic cuBLAS, for the same recipe on a GPU
}
#: Environment override of the thread count: a number, or "auto" (the default).
THREADS_ENV = "RLVR_CPU_THREADS"
#: The most threads "auto" gives a stage: the tiny models gain little past two (measurements/shared_machine.py).
AUTO_MAX_THREADS = 2
_IDLE_SAMPLE_S = 0.25


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


def seed_and_pin(seed: int) -> str:
    """Seed every generator, fix torch's algorithms and give it the threads the machine can
    give now; returns how the count was chosen (`choose_threads`), for the run's tags."""
    import torch
    from transformers import set_seed

    pin_cpu_math()
    threads, why = choose_threads()
    torch.set_num_threads(threads)
    # warn_only: an op with no deterministic kernel (some CUDA ones) warns instead of failing a run
    torch.use_deterministic_algorithms(True, warn_only=True)
    set_seed(seed)
    return why


# ------------------------------------------------------------------ how many threads the machine can give
def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup's CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time the cgroup may use (cgroup v2 `cpu.max`, v1 `cfs_quota_us`); None = unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def _cpu_times(cpus: set[int]) -> tuple[int, int]:
    """(idle, total) jiffies summed over `cpus`, from /proc/stat."""
    idle = total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            values = [int(v) for v in fields[:8]]
            idle += values[3] + values[4]  # idle + iowait
            total += sum(values)
    return idle, total


def idle_cpus(sample_s: float = _IDLE_SAMPLE_S) -> float | None:
    """How many of this process's CPUs sat idle over the last `sample_s` seconds; None off Linux."""
    try:
        cpus = os.sched_getaffinity(0)
        idle0, total0 = _cpu_times(cpus)
        time.sleep(sample_s)
        idle1, total1 = _cpu_times(cpus)
    except (OSError, AttributeError, ValueError):
        return None
    return len(cpus) * (idle1 - idle0) / (total1 - total0) if total1 > total0 else None


def choose_threads() -> tuple[int, str]:
    """(threads, why): an override from the environment, else what the machine can give now,
    at most AUTO_MAX_THREADS; one thread when the other CPUs are busy."""
    for var in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value and value != "auto":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"{var}={value!r}: expected a positive thread count or 'auto'")
            return int(value), var
    usable = usable_cpus()
    idle = idle_cpus()
    free = usable if idle is None else max(1, min(usable, math.floor(idle + 0.25)))
    return min(AUTO_MAX_THREADS, free), f"auto: {usable} usable CPUs, {idle if idle is None else round(idle, 2)} idle"


# ------------------------------------------------------------------ provenance
def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def installed_packages() -> str:
    """`name==version` of every installed distribution, sorted: what actually ran."""
    pkgs = {(d.metadata["Name"] or "").lower().replace("_", "-"): d.version for d in metadata.distributions()}
    return "\n".join(f"{n}=={v}" for n, v in sorted(pkgs.items()) if n)


def _cpuinfo(field: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_vendor() -> str:
    """GenuineIntel, AuthenticAMD, ...: MKL picks its code path by vendor as well as by ISA."""
    return _cpuinfo("vendor_id") or platform.machine()


def cpu_isa() -> str:
    """The widest vector extensions the host offers (what an unpinned kernel would use)."""
    flags = (_cpuinfo("flags") or "").split()
    return ",".join(f for f in ("avx512f", "avx2", "fma", "neon") if f in flags) or "baseline"


def provenance(seed: int, threads_chosen_by: str = "") -> dict[str, str]:
    """MLflow tags naming everything a stage's numbers depend on besides the recipe (and the
    thread count, which they do not depend on, with how it was chosen)."""
    import torch

    lock = LOCK_FILE.read_text() if LOCK_FILE.is_file() else ""
    return {
        "repro.seed": str(seed),
        "repro.lock_sha256": _digest(lock) if lock else "no lock file",
        "repro.packages_sha256": _digest(installed_packages()),
        "repro.python": platform.python_version(),
        "repro.torch": torch.__version__,
        "repro.cpu_vendor": cpu_vendor(),
        "repro.cpu_model": cpu_model(),
        "repro.cpu_isa": cpu_isa(),
        "repro.cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "repro.threads": str(torch.get_num_threads()),
        **({"repro.threads_chosen_by": threads_chosen_by} if threads_chosen_by else {}),
        "repro.mkl_cbwr": os.environ.get("MKL_CBWR", ""),
        "repro.deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()),
    }
