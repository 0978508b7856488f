"""The locks are what the README's commands install: they must satisfy pyproject.toml (a
dependency changed without `make lock` fails here) and agree with each other."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

# vLLM pins its own torch (and what that torch needs): the only pins the GPU lock may change.
GPU_MAY_DIFFER = {"torch", "numpy", "setuptools"}


def _pins(name: str) -> dict[str, str]:
    text = (REPO / name).read_text()
    return {canonicalize_name(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)}


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """The project's requirements with these extras, following self-references like `rlvr-pipeline[x]`."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs, todo, seen = [Requirement(r) for r in project["dependencies"]], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in map(Requirement, project["optional-dependencies"][extra]):
            if canonicalize_name(r.name) == canonicalize_name(project["name"]):
                todo.extend(r.extras)
            else:
                reqs.append(r)
    return reqs


def _unmet(lock: dict[str, str], extras: tuple[str, ...]) -> list[str]:
    return [f"{r} (lock: {lock.get(canonicalize_name(r.name), 'missing')})" for r in _requirements(extras)
            if canonicalize_name(r.name) not in lock
            or not r.specifier.contains(lock[canonicalize_name(r.name)], prereleases=True)]


def test_the_cpu_lock_satisfies_pyproject_with_the_dev_extras():
    assert not _unmet(_pins("requirements.lock"), ("dev",)), "run `make lock` after changing pyproject.toml"


def test_the_gpu_lock_adds_vllm_and_keeps_the_cpu_pins():
    cpu, gpu = _pins("requirements.lock"), _pins("requirements-gpu.lock")
    assert not _unmet(gpu, ("dev", "gpu")), "run `make lock` after changing pyproject.toml"
    assert "vllm" in gpu and "vllm" not in cpu
    moved = {n: (cpu[n], gpu[n]) for n in cpu.keys() & gpu.keys() if cpu[n] != gpu[n]}
    assert set(moved) <= GPU_MAY_DIFFER, moved


def test_the_locks_name_no_local_path():
    """A `pkg @ file:///...` pin installs from the machine that ran `make lock`; a fresh clone
    elsewhere fails (or silently installs another checkout)."""
    for name in ("requirements.lock", "requirements-gpu.lock"):
        local = [line for line in (REPO / name).read_text().splitlines() if "file:" in line and not line.startswith("#")]
        assert not local, f"{name}: {local}"
