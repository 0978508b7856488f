"""Command line: `rlvr run RECIPE [--set key.path=value ...]`, `rlvr validate RECIPE`.

The recipe is loaded and validated before anything is imported, computed or written, so a
bad recipe costs a second, not a run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from tasks.recipe import RecipeError, load_recipe
from tasks.tracking import set_offline_env


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlvr", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("run", "validate a recipe, then run the whole pipeline"),
                        ("validate", "validate a recipe and print it resolved")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("recipe", help="path to a recipe YAML, e.g. configs/default.yaml")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override one recipe value (YAML-parsed), e.g. grpo.stages.0.trainer.max_steps=50")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for ours in ("tasks", "flows"):
        logging.getLogger(ours).setLevel(logging.INFO)
    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "validate":
        print(recipe.model_dump_json(indent=2))
        print(f"{args.recipe}: valid", file=sys.stderr)
        return 0
    set_offline_env()
    from flows.pipeline import pipeline_flow

    summary = pipeline_flow(recipe)
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
