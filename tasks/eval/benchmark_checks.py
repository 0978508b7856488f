"""Checks that a benchmark can run, before any compute: in recipe validation (no data, no model)
and again just before generation (each lm-eval task built with its data).

    problems = check_benchmarks(recipe.evaluation)      # list of messages naming the key
    rows = check_benchmarks_load(write_benchmarks(...)) # BenchmarkError naming every broken one
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tasks.eval.benchmarks import (
    BenchmarkError,
    BenchmarkRun,
    reported_by_verifier,
    sampling,
    verifier_problem,
    write_benchmark,
)
from tasks.recipe import Benchmark, EvaluationSection


def _first_row(path: str | Path) -> dict | None:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return None
                return row if isinstance(row, dict) else None
    return None


def _missing_columns(path: str | Path, wanted: list[str]) -> str | None:
    row = _first_row(path)
    if row is None:
        return f"{path}: no json object on its first line"
    missing = [c for c in wanted if c not in row]
    if missing:
        return f"{path}: rows have no column {', '.join(map(repr, missing))} (columns: {', '.join(row)}); " \
               "map it with `columns: {question: ..., answer: ...}`"
    return None


def _config_problems(run: BenchmarkRun, bench: Benchmark) -> tuple[list[str], set[str] | None]:
    """What lm-eval would reject in a written YAML (read, not built: no dataset), and the metric names it yields."""
    from lm_eval.api.task import ALL_OUTPUT_TYPES
    from lm_eval.config.task import TaskConfig
    from lm_eval.tasks._yaml_loader import load_yaml

    if run.yaml_path is None:  # a registered group/tag: lm-eval's own definition
        return [], None
    try:
        conf = load_yaml(run.yaml_path, resolve_func=True)
    except Exception as e:  # noqa: BLE001 - any reason lm-eval cannot read it is the message
        return [f"lm-eval cannot read the task YAML: {type(e).__name__}: {e}"], None
    for k in ("tag", "group"):
        conf.pop(k, None)
    try:
        tc = TaskConfig(**conf)
    except (TypeError, ValueError) as e:
        return [f"lm-eval rejects the task config: {e}"], None
    problems = []
    if tc.output_type not in ALL_OUTPUT_TYPES:
        problems.append(f"output_type {tc.output_type!r} is not one of {', '.join(ALL_OUTPUT_TYPES)}")
    if bench.data_files:
        eval_split = tc.test_split or tc.validation_split
        if eval_split not in bench.data_files:
            problems.append(f"the task evaluates split {eval_split!r}; data_files has {', '.join(bench.data_files)}")
        shots = tc.num_fewshot or 0
        shot_split = tc.fewshot_split or tc.training_split
        if shots and shot_split not in bench.data_files:
            problems.append(f"{shots}-shot prompts read split {shot_split!r}; add it to data_files or set num_fewshot: 0")
        if bench.scored_by_verifier and eval_split in bench.data_files:
            problems += [p for p in [_missing_columns(bench.data_files[eval_split], [run.answer_column])] if p]
    if bench.scored_by_verifier:
        return problems, reported_by_verifier(run.samples)
    filters = [f["name"] for f in conf.get("filter_list") or []] or ["none"]
    metrics = [m["metric"] for m in conf.get("metric_list") or [] if isinstance(m.get("metric"), str)]
    names = {"docs"} | {"/".join([m, f] if f != "none" else [m])
                        for m in (*metrics, "no_answer", "no_answer_count") for f in filters}
    return problems, names if metrics else None


def check_benchmarks(cfg: EvaluationSection) -> list[str]:
    """Every problem lm-eval would hit with these benchmarks, found without loading data or a model:
    unknown task names, missing files and columns, YAML lm-eval rejects, a primary metric no
    benchmark reports, a vLLM backend that is not installed."""
    problems = []
    if cfg.backend == "vllm" and not vllm_available():
        problems.append("evaluation.backend: vllm is not importable here (it needs a GPU machine and "
                        "`pip install -e '.[gpu]'`); use backend: hf")
    names: dict[str, set[str] | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, bench in enumerate(cfg.benchmarks):
            where = f"evaluation.benchmarks.{i}"
            found = [p for p in [verifier_problem(bench)] if p]
            if bench.path and Path(bench.path).is_file():
                columns = [bench.columns.get("question", "question"), bench.columns.get("answer", "answer")]
                found += [p for p in [_missing_columns(bench.path, columns)] if p]
            if bench.kind == "heldout":  # our own YAML over data that exists only after curation
                names[bench.name] = reported_by_verifier(sampling(bench, cfg).samples)
            elif not found:
                try:
                    run = write_benchmark(bench, cfg, Path(tmp))
                except BenchmarkError as e:
                    found.append(str(e))
                else:
                    more, names[bench.name] = _config_problems(run, bench)
                    found += more
            problems += [f"{where} ({bench.name}): {p}" for p in found]
    bench, _, metric = cfg.primary_metric.partition("/")
    known = names.get(bench)
    if known and metric not in known:
        problems.append(f"evaluation.primary_metric: {bench} reports no {metric!r}; it reports "
                        f"{', '.join(sorted(known))}")
    return problems


def vllm_available() -> bool:
    from importlib.util import find_spec

    return find_spec("vllm") is not None


def check_benchmarks_load(runs: list[BenchmarkRun]) -> dict[str, int]:
    """Build every benchmark's lm-eval task with its data, before any model generates; returns
    rows per benchmark. A file, dataset or column that is missing, or a task lm-eval rejects,
    is one BenchmarkError naming every broken benchmark."""
    problems, rows = [], {}
    for run in runs:
        try:
            tasks = run.task_manager().load([run.task])["tasks"]
            rows[run.name] = 0
            for name, task in tasks.items():
                docs = task.eval_docs
                rows[run.name] += len(docs)
                if not len(docs):
                    problems.append(f"{run.name}: lm-eval task {name} has no rows to evaluate")
                elif run.by_verifier and run.answer_column not in docs[0]:
                    problems.append(f"{run.name}: rows have no column {run.answer_column!r} "
                                    f"(columns: {', '.join(docs[0])})")
        except Exception as e:  # noqa: BLE001 - whatever lm-eval or datasets raise is the message
            problems.append(f"{run.name}: lm-eval cannot load it: {type(e).__name__}: {str(e)[:500]}")
    if problems:
        raise BenchmarkError("benchmarks cannot run:\n  " + "\n  ".join(problems))
    return rows
