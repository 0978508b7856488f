"""Command line: `rlvr run|validate|verify|curate|sft|grpo|evaluate RECIPE [--set key.path=value ...]`, `rlvr stack up|down [--team]`, `rlvr compare`.

`curate`, `sft`, `grpo` and `evaluate` run one stage flow; the stages upstream of it come from the
cache when unchanged, or from references (`--data`, `--init`, `--checkpoint`).

The recipe is loaded and validated before anything is imported, computed or written, so a
bad recipe costs a second, not a run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings

from tasks.data.sources import read_jsonl
from tasks.eval.compare import compare_url, comparison_table, format_table, pipeline_runs, plot_runs
from tasks.lineage import BACKGROUND
from tasks.ops.stack import Stack, StackError, describe, migrate_embedded_prefect, run_until_stopped
from tasks.ops.team import Team, TeamError
from tasks.recipe import RecipeError
from tasks.recipe_checks import load_recipe
from tasks.redact import redact_logs, redact_override, secret_values
from tasks.reproducibility import set_embedded_env
from tasks.tracking import tracking_uri
from tasks.verifiers import build_reward
from tasks.verifiers.audit_judge import build_judge
from tasks.verifiers.audit_report import audit_completions, audit_text
from tasks.verifiers.report import format_report, join_completions, verify_completions
from tasks.verifiers.rows import row_fields


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlvr", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("run", "validate a recipe, then run the whole pipeline"),
                        ("validate", "validate a recipe and print it resolved")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("recipe", help="path to a recipe YAML, e.g. configs/default.yaml")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override one recipe value (YAML-parsed), e.g. grpo.stages.0.max_steps=50")
    sub.choices["validate"].add_argument(
        "--allow-missing", action="store_true",
        help="accept packages and devices this machine lacks (vLLM, DeepSpeed, CUDA): check a GPU recipe on a laptop")
    _stage_verbs(sub)
    v = sub.add_parser("verify", help="score a JSONL of completions with the recipe's verifiers")
    v.add_argument("recipe")
    v.add_argument("--completions", required=True,
                   help="JSONL: one object per completion with a `completion` field and the dataset columns "
                        "(answer, tests, ...) or an `id` matching --data")
    v.add_argument("--data", help="JSONL dataset rows (with `id`) to join the completions with")
    v.add_argument("--stage", type=int, help="use this GRPO stage's verifiers (default: every stage's)")
    v.add_argument("--audit", action="store_true",
                   help="also re-check every verdict of the math/match verifiers by slower means and report "
                        "false-negative and false-positive rates with the disagreeing completions")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    st = sub.add_parser("stack", help="local Prefect server + worker with the deployments, and the MLflow UI")
    st.add_argument("action", choices=["up", "down"])
    st.add_argument("--recipe", default="configs/default.yaml",
                    help="up: the deployments' default recipe; the MLflow UI shows its tracking store")
    st.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    st.add_argument("--state-dir", default="runs/stack", help="Prefect database, logs and the pid file")
    st.add_argument("--prefect-port", type=int, default=4200)
    st.add_argument("--mlflow-port", type=int, default=5000)
    st.add_argument("--detach", action="store_true", help="up: return once started; stop with `rlvr stack down`")
    st.add_argument("--host", default="127.0.0.1", help="address both servers listen on (0.0.0.0: every interface)")
    st.add_argument("--team", action="store_true",
                    help="up: both servers on PostgreSQL with authentication on (docs/operations.md, team mode)")
    st.add_argument("--db-port", type=int, default=5432, help="team: port of the stack's own PostgreSQL")
    st.add_argument("--database-url", help="team: use this PostgreSQL (postgresql://USER@HOST:PORT/DB; password "
                                           "from PGPASSWORD) instead of starting one; or RLVR_DATABASE_URL")
    st.add_argument("--artifacts", help="team: artifact root MLflow serves (default: <state-dir>/artifacts)")
    c = sub.add_parser("compare", help="recipe differences, metrics and reward curves of the last pipeline runs")
    c.add_argument("--recipe", default="configs/default.yaml", help="read this recipe's tracking store")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    c.add_argument("--experiment", help="MLflow experiment (default: the recipe's)")
    c.add_argument("--last", type=int, default=5, help="how many pipeline runs, newest first")
    c.add_argument("--out", help="plot file (default: <runs_dir>/compare-<experiment>.png)")
    return p


STAGE_VERBS = {"curate": "run the curation flow alone", "sft": "run the SFT flow (base model + cold-start SFT)",
               "grpo": "run every GRPO stage of the recipe", "evaluate": "evaluate checkpoints on the recipe's benchmarks"}


def _stage_verbs(sub) -> None:
    ref = "a stage directory, or the MLflow run id of a stage"
    for name, help_ in STAGE_VERBS.items():
        s = sub.add_parser(name, help=help_)
        s.add_argument("recipe", help="path to a recipe YAML")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
        if name != "curate":
            s.add_argument("--data", help=f"curated data: {ref} (default: curate, or reuse the cached curation)")
        if name == "grpo":
            s.add_argument("--init", help=f"starting checkpoint: {ref}, or models:/NAME@ALIAS|/VERSION "
                                          "(default: SFT, or its cached result)")
        if name == "evaluate":
            s.add_argument("--checkpoint", dest="checkpoints", action="append", metavar="REF",
                           help=f"a checkpoint to score (repeatable): {ref}, a model directory, or "
                                "models:/NAME@ALIAS|/VERSION (default: the registered champion)")


def _run_stage(recipe, args) -> int:
    """One stage flow; unchanged upstream stages come from the cache (content-addressed)."""
    from flows.curate import curate_flow
    from flows.evaluate import evaluate_flow
    from flows.grpo import grpo_flow
    from flows.sft import sft_flow

    source = {"base": args.recipe, "overrides": [redact_override(o) for o in args.overrides]}  # the runs' source
    out = {"curate": lambda: curate_flow(recipe, **source), "sft": lambda: sft_flow(recipe, args.data, **source),
           "grpo": lambda: grpo_flow(recipe, args.data, args.init, **source),
           "evaluate": lambda: evaluate_flow(recipe, args.checkpoints, args.data, **source)}[args.command]()
    for failure in BACKGROUND.flush():  # the lineage queued off the critical path (also waited for at exit)
        print(f"warning: MLflow lineage: {failure}", file=sys.stderr)
    print(json.dumps(out, indent=2, default=lambda o: o.model_dump(mode="json") if hasattr(o, "model_dump") else str(o)))
    return 0


def _verify(recipe, args) -> int:
    from pathlib import Path

    stages = recipe.grpo.stages if args.stage is None else [recipe.grpo.stages[args.stage]]
    specs = {(r.name, json.dumps(r.params, sort_keys=True)): r for s in stages for r in s.rewards}
    rewards = [build_reward(r.name, r.params) for r in specs.values()]
    for path in filter(None, (args.completions, args.data)):
        if not Path(path).is_file():
            print(f"error: file not found: {path}", file=sys.stderr)
            return 2
    rows = join_completions(list(read_jsonl(Path(args.completions))),
                            list(read_jsonl(Path(args.data))) if args.data else None)
    rows = [row_fields(r) for r in rows]  # metadata fields (tests, db_sql, ...) as columns, as in GRPO
    print(format_report(verify_completions(rows, rewards), stages))
    if args.audit:
        print(audit_text(audit_completions(rows, rewards, build_judge(stages[0].audit.judge))))
    return 0


def _stack(recipe, args) -> int:
    try:
        team = Team(args.state_dir, args.db_port, args.database_url, args.artifacts) if args.team else None
    except TeamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stack = Stack(args.state_dir, args.prefect_port, args.mlflow_port, team, args.host)
    if args.action == "down":
        stopped = stack.down()
        print(f"stopped {len(stopped)} process(es)" if stopped else f"no stack running from {args.state_dir}")
        return 0
    print(f"starting the {'team ' if team else ''}stack (about {'a minute' if team else 'half a minute'}) ...",
          file=sys.stderr)
    try:
        urls = stack.up(recipe, args.recipe, args.overrides)
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # up() has already stopped what it started
        return 130
    how = "stop it with `rlvr stack down`" if args.detach else "Ctrl-C stops it"
    print(f"rlvr stack is up ({how}):\n{describe(urls)}", flush=True)
    return 0 if args.detach else run_until_stopped(stack)


def _compare(recipe, args) -> int:
    from pathlib import Path

    import mlflow

    mlflow.set_tracking_uri(tracking_uri(recipe.tracking))
    experiment = args.experiment or recipe.tracking.experiment
    try:
        runs = pipeline_runs(experiment, args.last)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not runs:
        print(f"no pipeline runs in experiment {experiment!r} of {tracking_uri(recipe.tracking)}", file=sys.stderr)
        return 1
    print(format_table(*comparison_table(runs)))
    out = plot_runs(runs, args.out or Path(recipe.tracking.runs_dir) / f"compare-{experiment}.png")
    print(f"\nplot: {out}\nMLflow compare view: {compare_url(runs[0].experiment_id, [r.run_id for r in runs])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5 renames; not the user's to fix
    for ours in ("tasks", "flows"):
        logging.getLogger(ours).setLevel(logging.INFO)
    if args.command == "stack" and args.action == "down":
        return _stack(None, args)
    try:
        recipe = load_recipe(args.recipe, args.overrides, allow_missing=getattr(args, "allow_missing", False))
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    redact_logs(secret_values(recipe.model_dump(mode="json", context={"secrets": True})))
    if args.command == "stack":
        return _stack(recipe, args)
    if args.command == "compare":
        return _compare(recipe, args)
    if args.command == "verify":
        return _verify(recipe, args)
    if args.command == "validate":
        print(recipe.model_dump_json(indent=2))
        print(f"{args.recipe}: valid", file=sys.stderr)
        return 0
    set_embedded_env()
    migrate_embedded_prefect()
    if args.command in STAGE_VERBS:
        return _run_stage(recipe, args)
    from flows.pipeline import pipeline_flow

    summary = pipeline_flow(recipe, base=args.recipe, overrides=[redact_override(o) for o in args.overrides])
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
