"""Model registry: register the final model as `challenger`; make it `champion` only if it wins.

    decision = register_and_promote(model_dir, "rlvr-default", "heldout/pass@1", 0.61, margin=0.0)
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

METRIC_TAG = "metric."  # model-version tags hold the numbers the decision used


def register_model(model_path: str | Path, name: str) -> str:
    """Log `model_path` with the transformers flavor in the active run and register it; returns the version."""
    import mlflow

    from tasks.modeling import load_model

    # A components dict, not the path: MLflow 3.17's path mode breaks on transformers 5.
    model, tok = load_model(model_path)
    info = mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tok}, name="model", task="text-generation",
        registered_model_name=name, pip_requirements=_requirements())
    return str(info.registered_model_version)


def _requirements() -> list[str]:
    """Pinned serving requirements (MLflow's own guess imports torchvision, which has no CPU build here)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("torch", "transformers", "tokenizers", "safetensors")]


def promote_if_better(name: str, version: str, metric: str, value: float, margin: float) -> dict:
    """Alias `version` as challenger; move `champion` to it if it beats the champion by > margin."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    client.set_model_version_tag(name, version, METRIC_TAG + metric, str(value))
    client.set_registered_model_alias(name, "challenger", version)
    try:
        champ = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        champ = None
    champ_value = float(champ.tags.get(METRIC_TAG + metric, "-inf")) if champ else None
    promoted = champ is None or value > champ_value + margin
    if promoted:
        client.set_registered_model_alias(name, "champion", version)
    decision = {
        "model": name, "challenger_version": version, "metric": metric, "challenger_value": value,
        "champion_version": champ.version if champ else None, "champion_value": champ_value,
        "margin": margin, "promoted": promoted,
        "reason": ("no champion yet" if champ is None else
                   f"{value:.4f} {'>' if promoted else '<='} {champ_value:.4f} + margin {margin}"),
    }
    client.set_model_version_tag(name, version, "promotion", "champion" if promoted else "challenger")
    log.info("promotion: %s", decision["reason"])
    return decision


def checkpoint_from_model_uri(uri: str, recipe):
    """Materialise a registered model (`models:/name@alias` or `models:/name/3`) as a stage directory."""
    import mlflow
    from mlflow import MlflowClient

    from tasks.recipe import stable_hash
    from tasks.tracking import StageOutput, stage_dir

    name, _, ref = uri.removeprefix("models:/").partition("@")
    client = MlflowClient()
    if ref:
        version = client.get_model_version_by_alias(name, ref).version
    else:
        name, _, version = name.partition("/")
    out_dir = stage_dir(recipe, "registry", stable_hash([name, version]))
    model_path = out_dir / "model"
    if not (model_path / "config.json").is_file():
        parts = mlflow.transformers.load_model(f"models:/{name}/{version}", return_type="components")
        parts["model"].save_pretrained(model_path)
        parts["tokenizer"].save_pretrained(model_path)
    return StageOutput(stage=f"{name}-v{version}", key=stable_hash(["registry", name, version]), path=str(out_dir))
