"""Loading a recipe and every check before compute: YAML, overrides, readable errors, and the
checks that need other modules (TRL config fields, verifiers, benchmarks, launchers, files).

    recipe = load_recipe("configs/default.yaml", overrides=["grpo.stages.0.learning_rate=1e-5"])
    recipe, source = form_recipe(None, "tiny", ["name=tiny-ui"])   # Prefect's short form; source configs/tiny.yaml

`load_recipe` turns pydantic's errors into one message per problem that names the key path, the
bad value and what is allowed (the closest valid key for a typo), and checks every `trainer:`
map against the installed TRL config dataclasses, all before any compute starts. This module
sits above the schema (`tasks.recipe`) and the stage modules it consults.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tasks.environments import rollout_environment_problems
from tasks.eval.benchmark_checks import check_benchmarks
from tasks.modeling import gguf_problems
from tasks.recipe import Recipe, RecipeError, did_you_mean
from tasks.redact import REDACTED
from tasks.train.presets import check_stages, stage_trainer_fields
from tasks.train.requirements import environment_problems, value_problems
from tasks.verifiers import verifier_problems

#: The embedded default recipe: every flow's default base recipe (so the Prefect form and
#: `prefect deploy --all`), and what `rlvr run configs/default.yaml` and the README run.
DEFAULT_RECIPE_FILE = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `a.b.0.c=value` overrides (value parsed as YAML) to a raw recipe dict.

    A path that cannot be followed (an index out of range or not an integer, a key under a
    scalar) is one RecipeError naming the path and what exists there; unknown keys of a
    mapping are left to the schema, which names the closest valid key."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not of the form key.path=value")
        path, value = item.split("=", 1)
        keys = path.strip().split(".")
        if not all(keys):
            raise RecipeError(f"override {item!r}: empty key in path {path.strip()!r}")
        node: Any = raw
        for depth, k in enumerate(keys):
            here = ".".join(keys[:depth]) or "<recipe>"
            last = depth == len(keys) - 1
            if isinstance(node, list):
                if not re.fullmatch(r"-?[0-9]+", k):
                    raise RecipeError(f"override {path}: {here} is a list of {len(node)}: "
                                      f"{k!r} is not an index (use 0..{len(node) - 1})")
                i = int(k)
                if not 0 <= i < len(node):
                    raise RecipeError(f"override {path}: {here} has indices 0..{len(node) - 1}, no index {i}")
                if last:
                    node[i] = _parse_value(value)
                else:
                    node = node[i]
            elif isinstance(node, dict):
                if last:
                    node[k] = _parse_value(value)
                else:
                    node = node.setdefault(k, {})
            else:
                raise RecipeError(f"override {path}: {here} is a value ({node!r}), not a section: "
                                  f"it has no key {k!r}")
    return raw


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-5` as a float, as YAML 1.2 does (1.1 reads it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)$"),
    list("-+0123456789"))


def _parse_value(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at `loc` (for 'did you mean')."""
    cls: Any = Recipe
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        cls = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if cls is None:
            return None
    return cls



def _describe(err: dict) -> str:
    loc = tuple(err["loc"])
    path = ".".join(str(p) for p in loc) or "<recipe>"
    if err["type"] == "extra_forbidden":
        owner = _model_at(loc)
        valid = sorted(owner.model_fields) if owner else []
        return f"{path}: unknown key{did_you_mean(loc[-1], valid)} (valid keys here: {', '.join(valid)})"
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict) else "{...}"
    return f"{path}: {err['msg']} (got {shown})"


def _check_trainer_keys(recipe: Recipe) -> list[str]:
    """Each `trainer:` map must hold fields of the installed TRL config and build a valid config."""
    from trl import GRPOConfig, SFTConfig  # heavy: imported when a recipe is checked, not at import

    problems = []
    maps = [("sft.trainer", SFTConfig, recipe.sft.trainer, recipe.sft.trainer_fields())] + [
        (f"grpo.stages.{i}.trainer", GRPOConfig, s.trainer, stage_trainer_fields(s))
        for i, s in enumerate(recipe.grpo.stages)]
    for where, cls, trainer, settings in maps:  # settings: preset + typed settings + the trainer map
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = [k for k in trainer if k not in fields]
        for k in unknown:
            problems.append(f"{where}.{k}: not a field of TRL {cls.__name__}{did_you_mean(k, fields)}")
        if unknown or where == "sft.trainer" and not recipe.sft.enabled:
            continue
        try:  # the config's own cross-field checks (e.g. batch divisible by num_generations)
            with tempfile.TemporaryDirectory() as tmp:
                cls(**{"output_dir": tmp, "report_to": "none", "use_cpu": True, **settings})
        except (ValueError, TypeError) as e:
            problems.append(f"{where}: TRL {cls.__name__} rejects these settings: {e}")
    return problems


def _check_rewards(recipe: Recipe) -> list[str]:
    """Every verifier the recipe names: stage rewards, data.verifier, the reward-hacking canary."""
    problems = []
    for i, stage in enumerate(recipe.grpo.stages):
        for j, spec in enumerate(stage.rewards):
            where = f"grpo.stages.{i}.rewards.{j}"
            problems += verifier_problems(f"{where}.name", spec.name, spec.params, params_at=f"{where}.params")
        canary = stage.monitors.reward_hacking
        if canary.policy != "off":
            problems += verifier_problems(f"grpo.stages.{i}.monitors.reward_hacking.reward", canary.reward)
    problems += rollout_environment_problems("data.environment", recipe.data.environment, recipe.data.environment_params)
    return problems + verifier_problems("data.verifier", recipe.data.verifier)


def _check_files(recipe: Recipe) -> list[str]:
    problems = []
    data = recipe.data
    listed = [(f"data.sources.{i}", s) for i, s in enumerate(data.sources)] + [
        (f"data.decontamination.benchmarks.{i}", s) for i, s in enumerate(data.decontamination.benchmarks)]
    for where, src in listed:
        if src.kind in ("jsonl", "parquet", "csv") and not Path(src.name).is_file():
            problems.append(f"{where}.name: file not found: {src.name}")
    difficulty = recipe.grpo.difficulty
    models = [("grpo.difficulty.policy", difficulty.policy if difficulty.policy != "current" else None),
              ("data.cold_start.teacher", data.cold_start.teacher if data.cold_start.mode == "rejection_sampling"
               and data.cold_start.teacher != "policy" and not data.cold_start.teacher_is_endpoint else None)]
    for where, path in models:
        if path and (path.startswith((".", "/")) or Path(path).exists()) and not Path(path).is_dir():
            problems.append(f"{where}: model directory not found: {path}")
    path = recipe.model.name_or_path
    if path and (path.startswith((".", "/")) or Path(path).exists()) and not Path(path).is_dir():
        problems.append(f"model.name_or_path: directory not found: {path}")
    return problems


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise RecipeError("invalid recipe:\n  " + "\n  ".join(problems))


def _problems(recipe: Recipe, allow_missing: bool) -> list[str]:
    """Every check beyond the schema; this machine's packages and devices once the recipe is sound."""
    problems = (_check_files(recipe) + check_benchmarks(recipe.evaluation) + _check_rewards(recipe)
                + (value_problems(recipe) or _check_trainer_keys(recipe)) + check_stages(recipe))
    return problems or ([] if allow_missing else gguf_problems(recipe.model.gguf) + environment_problems(recipe))


def validate_recipe(raw: dict, allow_missing: bool = False) -> Recipe:
    """A Recipe from a raw dict, or one RecipeError that lists every problem. `allow_missing`
    skips the packages and devices this machine lacks (a GPU recipe checked on a laptop)."""
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        _raise_if([_describe(err) for err in e.errors()])
    _raise_if(_problems(recipe, allow_missing))
    if not allow_missing:
        _PASSED.add(_identity(recipe))
    return recipe


#: Recipes that passed every check, this machine's included, in this process (`_identity`).
_PASSED: set[str] = set()


def _identity(recipe: Recipe) -> str:
    return recipe.model_dump_json(context={"secrets": True})


def check_recipe(recipe: Recipe) -> Recipe:
    """The gate every way in passes first (each flow, so the Prefect form, deployments,
    schedules, triggers and Python; the CLI through `load_recipe`): every check of
    `validate_recipe`, with the same messages, before anything is computed or written. A
    recipe that passed once in this process (`rlvr run`'s load, a pipeline's sub-flows) is not
    checked again."""
    if not isinstance(recipe, Recipe):  # a dict from Python that skipped Prefect's parameter check
        return validate_recipe(recipe)
    if _identity(recipe) not in _PASSED:
        _raise_if(_problems(recipe, allow_missing=False))
        _PASSED.add(_identity(recipe))
    return recipe


def _read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    return raw


def load_recipe(path: str | Path, overrides: list[str] | None = None, allow_missing: bool = False) -> Recipe:
    """Read, override and validate a recipe YAML; nothing is written or computed."""
    return validate_recipe(apply_overrides(_read_yaml(path), overrides or []), allow_missing)


# ---------------------------------------------------------------- Prefect's short form
# A flow run's recipe: a base recipe (a name from configs/ or a path) plus `key.path=value`
# overrides, as `rlvr run BASE --set ...` takes them; or the full typed recipe, which the
# overrides then adjust.
CONFIGS = DEFAULT_RECIPE_FILE.parent


def base_recipe_file(base: str) -> Path:
    """`tiny`, `tiny.yaml`, `configs/tiny.yaml` or any path to a recipe YAML."""
    for candidate in (Path(base), CONFIGS / base, CONFIGS / f"{base}.yaml"):
        if candidate.is_file():
            return candidate.resolve()
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    raise RecipeError(f"base recipe {base!r}: no such file, nor a recipe of configs/ ({', '.join(names)})")


def form_recipe(recipe: Recipe | None, base: str, overrides: list[str] | None) -> tuple[Recipe, str]:
    """The recipe to run and its source file (what MLflow records as the run's source): `recipe`
    with the overrides applied when one is given (its source is then `base` as given, e.g. the
    file `rlvr run` read), else the base recipe file with the overrides. Every check of `rlvr validate`
    runs, so a bad key fails here, before compute, naming the key."""
    overrides = list(overrides or [])
    if recipe is not None:
        # A redacted override (how `rlvr run` records a secret it already applied) keeps the recipe's value.
        overrides = [o for o in overrides if REDACTED not in o]
        if overrides:
            recipe = validate_recipe(apply_overrides(recipe.model_dump(mode="json", context={"secrets": True}),
                                                     overrides))
        return check_recipe(recipe), base
    path = base_recipe_file(base)
    source = str(path.relative_to(CONFIGS.parent)) if path.is_relative_to(CONFIGS.parent) else str(path)
    return load_recipe(path, overrides), source
