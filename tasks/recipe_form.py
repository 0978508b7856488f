"""The recipe a flow run was given through Prefect's short form: a base recipe (a name from
configs/ or a path) plus `key.path=value` overrides, as `rlvr run BASE --set ...` takes them;
or the full typed recipe, which the overrides then adjust.

    recipe, source = form_recipe(None, "tiny", ["name=tiny-ui", "grpo.stages.0.max_steps=4"])  # configs/tiny.yaml
"""

from __future__ import annotations

from pathlib import Path

from tasks.recipe import Recipe, RecipeError
from tasks.recipe_checks import DEFAULT_RECIPE_FILE, apply_overrides, load_recipe, validate_recipe

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
        if overrides:
            recipe = validate_recipe(apply_overrides(recipe.model_dump(mode="json", context={"secrets": True}),
                                                     overrides))
        return recipe, base
    path = base_recipe_file(base)
    source = str(path.relative_to(CONFIGS.parent)) if path.is_relative_to(CONFIGS.parent) else str(path)
    return load_recipe(path, overrides), source
