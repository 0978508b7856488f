"""Model registry: register the final model as `challenger`; make it `champion` only if it wins.

    version = register_model(model_dir, "rlvr-default", model_id)   # the stage's LoggedModel
    decision = promote_if_better("rlvr-default", version, "heldout/pass_at_1", 0.61, margin=0.0, suite=key)
    record_decision(decision)                       # promotion.json + tags on the active run

Scores are compared only within one evaluation suite (`tasks.eval.evaluate.suite_key`: same
benchmarks, data and sampling settings). The champion's score comes from its model-version
tags when they were recorded under the same suite; otherwise the caller evaluates the champion
again under these settings and passes `champion_value`.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path

from tasks.eval.registry_lock import RegistryError, registry_lock
from tasks.layout import model_dir
from tasks.lineage import BACKGROUND, log_checkpoint, model_id_of_source, ready_model
from tasks.recipe import Recipe, stable_hash
from tasks.stages import StageOutput, stage_dir, stage_kind

log = logging.getLogger(__name__)

METRIC_TAG = "metric."  # model-version tags hold the numbers the decision used
SUITE_TAG = "eval.suite"


def register_model(model_path: str | Path, name: str, model_id: str | None = None) -> str:
    """A new version of `name` from the checkpoint's LoggedModel: `model_id`, the one its stage
    logged (waited for while it uploads), or, when that is not READY in this store, `model_path`
    logged now as a LoggedModel of the active run. Returns the version."""
    import mlflow

    BACKGROUND.flush()
    if not ready_model(model_id):
        model_id = log_checkpoint(mlflow.active_run().info.run_id, model_path, name, wait=True)
    return str(mlflow.register_model(f"models:/{model_id}", name).version)


def current_champion(name: str):
    """The model version aliased `champion`, or None when the model is not registered yet or has
    no champion. Any other registry error raises RegistryError: an unreadable champion is never
    read as "no champion yet" (that would promote without a comparison)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(name, "champion")
    except MlflowException as e:
        absent = e.error_code == "RESOURCE_DOES_NOT_EXIST" or (
            e.error_code == "INVALID_PARAMETER_VALUE" and re.search(r"alias \S+ not found", e.message))
        if absent:
            return None
        raise RegistryError(f"model registry error reading the champion of {name!r} "
                            f"({e.error_code}: {e.message.splitlines()[0]}); nothing was promoted") from None


def champion_score(version, metric: str, suite: str | None) -> float | None:
    """The score recorded on a model version for `metric`, if it came from the same suite."""
    value = version.tags.get(METRIC_TAG + metric)
    if value is None or (suite is not None and version.tags.get(SUITE_TAG) != suite):
        return None
    return float(value)


def promote_if_better(name: str, version: str, metric: str, value: float, margin: float, *,
                      suite: str | None = None, champion_value: float | None = None,
                      champion_version: str | None = None, evidence: dict | None = None,
                      first_refusal: str | None = None) -> dict:
    """Alias `version` as challenger; move `champion` to it if it beats the champion by > margin.

    `champion_value` is the champion's score measured under `suite` by the caller, for the version
    `champion_version` (when None, the champion the caller saw is the current one). The read,
    the comparison and the alias moves happen under the model's promotion lock, so a pipeline
    promoting at the same moment is compared against, never overwritten. The decision (numbers,
    margin, both versions, reason) is returned and tagged on the challenger's model version.
    `first_refusal` (`first_champion_refusal`) keeps a model that is below the first champion's
    floor from becoming champion when there is none yet."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    run = mlflow.active_run()
    with registry_lock(name, holder=run.info.run_id if run else f"{socket.gethostname()}:{os.getpid()}"):
        champ = current_champion(name)
        stale = champion_version is not None and champ is not None and str(champ.version) != str(champion_version)
        if champ is not None and (champion_value is None or stale):
            # the champion's recorded score; a champion promoted while this run evaluated counts by its own
            champion_value = champion_score(champ, metric, suite)
        promoted = first_refusal is None if champ is None else (
            champion_value is not None and value > champion_value + margin)
        decision = _decision(name, version, metric, value, margin, suite, champ, champion_value, promoted,
                             {**(evidence or {}), **({"floor": first_refusal} if champ is None and first_refusal else {})})
        tags = {METRIC_TAG + metric: str(value), "promotion": "champion" if promoted else "challenger",
                **{f"promotion.{k}": str(v) for k, v in decision.items() if k not in ("model", "challenger_version")}}
        if suite:
            tags[SUITE_TAG] = suite
        for k, v in tags.items():
            client.set_model_version_tag(name, version, k, v)
        client.set_registered_model_alias(name, "challenger", version)
        if promoted:
            client.set_registered_model_alias(name, "champion", version)
    log.info("promotion of %s v%s: %s", name, version, decision["reason"])
    return decision


def _decision(name, version, metric, value, margin, suite, champ, champion_value, promoted, evidence) -> dict:
    champ_version = str(champ.version) if champ else None
    if champ is None:
        reason = "no champion yet" if promoted else f"no champion yet, but {evidence['floor']}"
    elif champion_value is None:  # fail closed: never promote past a champion it cannot compare with
        reason = (f"champion v{champ_version} has no {metric} score from this evaluation suite ({suite}); "
                  f"evaluate it under these settings to compare (the pipeline does, unless it was promoted "
                  f"while this run evaluated)")
    else:
        reason = f"{value:.4f} {'>' if promoted else '<='} {champion_value:.4f} + margin {margin}"
    return {
        "model": name, "metric": metric, "margin": margin, "suite": suite,
        "challenger_version": version, "challenger_value": value,
        "champion_version": champ_version, "champion_value": champion_value,
        "promoted": promoted, "champion_after": version if promoted else champ_version,
        "reason": reason, **(evidence or {}),
    }


def first_champion_refusal(recipe: Recipe, value: float, base_value: float | None) -> str | None:
    """Why a model scoring `value` may not become the first champion (evaluation.first_champion),
    or None. `base_value`: the base checkpoint's primary metric in this run, if it was evaluated."""
    floor, metric = recipe.evaluation.first_champion, recipe.evaluation.primary_metric
    if floor.min_value is not None and value < floor.min_value:
        return f"{metric} {value:.4f} is below evaluation.first_champion.min_value {floor.min_value}"
    if floor.beat_base_by is None:
        return None
    if base_value is None:  # fail closed: no evidence that training helped
        return ("the base checkpoint was not evaluated, so evaluation.first_champion.beat_base_by cannot be "
                "checked (add base to evaluation.checkpoints)")
    if value <= base_value + floor.beat_base_by:
        return (f"{metric} {value:.4f} does not beat the base model's {base_value:.4f} by more than "
                f"evaluation.first_champion.beat_base_by {floor.beat_base_by}")
    return None


def record_decision(decision: dict) -> None:
    """The decision as `promotion.json` and `promotion.*` tags on the active MLflow run."""
    import mlflow

    mlflow.log_dict(decision, "promotion.json")
    mlflow.set_tags({f"promotion.{k}": str(v) for k, v in decision.items()})


def promote_checkpoint(recipe: Recipe, final: StageOutput, row: dict, suite: str,
                       champion_value: float | None, champion_version: str | None = None,
                       base_value: float | None = None) -> dict:
    """Register the final checkpoint as challenger; champion if it wins (decision tagged and logged).
    `champion_value`: the score this run measured for champion `champion_version`, if any;
    `base_value`: the base checkpoint's score in this run (the first champion's floor)."""
    metric, name = recipe.evaluation.primary_metric, recipe.tracking.registered_model
    if metric not in row:
        raise ValueError(f"evaluation.primary_metric {metric!r} was not reported for {row['checkpoint']}; "
                         f"reported: {', '.join(k for k in row if '/' in k)}")
    version = register_model(model_dir(final.path), name, final.model_id)
    decision = promote_if_better(name, version, metric, row[metric], recipe.evaluation.promotion_margin, suite=suite,
                                 champion_value=champion_value, champion_version=champion_version,
                                 evidence={"eval_run": row.get("mlflow_run"), "checkpoint": final.path},
                                 first_refusal=first_champion_refusal(recipe, row[metric], base_value))
    record_decision(decision)
    return decision


def evaluation_refs(recipe: Recipe, checkpoints: list[StageOutput], suite: str) -> tuple[list[str], str | None]:
    """What the pipeline evaluates: the checkpoints `evaluation.checkpoints` chooses, plus the
    champion (`models:/name/version`) when its recorded score came from other evaluation settings
    (scores are compared within one suite only). Returns the references and, when the champion is
    re-evaluated, its version (its rows are named `registry_checkpoint_name(name, version)`)."""
    cfg, name = recipe.evaluation, recipe.tracking.registered_model
    refs = [c.path for c in checkpoints if stage_kind(c.stage) in cfg.checkpoints]
    champ = current_champion(name)
    if champ is None or champion_score(champ, cfg.primary_metric, suite) is not None:
        return refs, None
    return refs + [f"models:/{name}/{champ.version}"], str(champ.version)


def checkpoint_from_model_uri(uri: str, recipe):
    """Materialise a registered model (`models:/name@alias` or `models:/name/3`) as a stage directory."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, _, ref = uri.removeprefix("models:/").partition("@")
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, ref).version if ref else name.partition("/")[2]
    except MlflowException as e:
        raise ValueError(f"{uri}: no version of registered model {name!r} has alias {ref!r} ({e.message})") from None
    name = name.partition("/")[0]
    model_id = model_id_of_source(client.get_model_version(name, version).source)
    out_dir = stage_dir(recipe, "registry", stable_hash([name, version]))
    model_path = model_dir(out_dir)
    if not (model_path / "config.json").is_file():
        parts = mlflow.transformers.load_model(f"models:/{name}/{version}", return_type="components")
        parts["model"].save_pretrained(model_path)
        parts["tokenizer"].save_pretrained(model_path)
    return StageOutput(stage=registry_checkpoint_name(name, version), key=stable_hash(["registry", name, version]),
                       path=str(out_dir), model_id=model_id)


def registry_checkpoint_name(name: str, version: str | int) -> str:
    """How a registered model version is named as a checkpoint (comparison rows, eval runs)."""
    return f"{name}-v{version}"
