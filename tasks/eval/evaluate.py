"""Evaluation of one checkpoint on every benchmark of the recipe, through lm-eval.

    metrics = run_evaluation(model_dir, recipe.evaluation, out_dir, heldout=data_dir / "eval.jsonl")

Reproducible by construction: each benchmark is one `simple_evaluate` call seeded (python,
numpy, torch, few-shot) with `evaluation.seed`, so its numbers do not depend on which
benchmarks ran before it; the exact task YAMLs, lm-eval's results and configs and every
sample are kept with the run. The model is lm-eval's HF backend on the loaded checkpoint
(GPU when there is one), or its vLLM backend on the saved path (`evaluation.backend: vllm`).

Metric names are MLflow-safe `<benchmark>/<metric>[/<filter>]` (lm-eval writes
`exact_match,strict-match`; the filter `none` and our own `samples` filter are left out):
`heldout/pass_at_1`, `gsm8k_local/exact_match/strict-match`. Every benchmark also reports
`<benchmark>/docs` and `<benchmark>/no_answer_count[/<filter>]`: generations with no parseable
answer (lm-eval's regex filters yield `[invalid]`), which score 0 and never fail a run. The
verifier-scored benchmarks are audited (tasks.eval.audit): `audit/*` and `<benchmark>/audit/*`,
`audit.json` and the MLflow table `audit/disagreements.json`.
"""

from __future__ import annotations

import json
import logging
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from tasks.eval.audit import EvaluationAudit, flat
from tasks.eval.benchmark_checks import vllm_available
from tasks.eval.benchmarks import SAMPLES_FILTER, BenchmarkRun, write_benchmarks
from tasks.eval.promote import checkpoint_from_model_uri
from tasks.layout import MODEL_DIR, SAMPLES_FILE, file_digest, is_finished, model_dir
from tasks.modeling import load_model
from tasks.recipe import EvaluationSection, Recipe, stable_hash
from tasks.stages import StageOutput, StageSpec, resolve_output, stage_name
from tasks.tracking import safe_metric_name
from tasks.verifiers.audit_report import write_audit

log = logging.getLogger(__name__)

NO_ANSWER = "[invalid]"  # what lm-eval's regex filter returns when nothing matches


def eval_settings(cfg: EvaluationSection) -> dict:
    """The settings that change the numbers (not which checkpoints, nor how promotion decides)."""
    return cfg.model_dump(mode="json", exclude={"checkpoints", "primary_metric", "promotion_margin",
                                                "first_champion", "audit"})


def suite_key(cfg: EvaluationSection, data_key: str | None, system_prompt: str | None) -> str:
    """Identity of an evaluation suite: scores with the same key are comparable, across runs too."""
    files = [file_digest(p) for b in cfg.benchmarks for p in _local_files(b) if Path(p).is_file()]
    uses_heldout = any(b.kind == "heldout" for b in cfg.benchmarks)
    return stable_hash([eval_settings(cfg), data_key if uses_heldout else None, system_prompt, files])


def _local_files(bench) -> list[str]:
    """The files a benchmark reads besides the curated data: its rows, data files, task YAML."""
    task_yaml = [bench.lm_eval] if bench.lm_eval and bench.lm_eval.endswith((".yaml", ".yml")) else []
    return ([bench.path] if bench.path else []) + sorted(bench.data_files.values()) + task_yaml


def benchmark_datasets(cfg: EvaluationSection, heldout: Path | None) -> dict[str, Path]:
    """Benchmark name -> the local JSONL rows it scores (the held-out split, a jsonl benchmark's
    file, an lm-eval task's local test split): the evaluation run's datasets."""
    files = {b.name: heldout if b.kind == "heldout" else Path(b.path or b.data_files.get("test", ""))
             for b in cfg.benchmarks}
    return {name: path for name, path in files.items() if path and path.suffix == ".jsonl" and path.is_file()}


def eval_key(suite: str, checkpoint_key: str) -> str:
    """Cache key of one checkpoint's evaluation: the suite and the checkpoint's own key."""
    return stable_hash([suite, checkpoint_key])


def eval_spec(recipe: Recipe, heldout: str | None, ckpt: StageOutput, suite: str) -> StageSpec:
    """One checkpoint's evaluation as a stage: every benchmark, scoring `ckpt`'s model."""
    cfg, held = recipe.evaluation, Path(heldout) if heldout else None
    return StageSpec(stage_name("eval", ckpt.stage), eval_key(suite, ckpt.key),
                     lambda out, hooks: run_evaluation(checkpoint_model_dir(ckpt.path), cfg, out, held,
                                                       recipe.data.system_prompt, environment_spec(recipe)),
                     params={"evaluation": eval_settings(cfg), "checkpoint": ckpt.path},
                     inputs=benchmark_datasets(cfg, held), scored=ckpt,
                     tags={"checkpoint": ckpt.stage, "eval.suite": suite, "eval.seed": str(cfg.seed),
                           "eval.backend": cfg.backend, "eval.benchmarks": ",".join(b.name for b in cfg.benchmarks)})


def checkpoint_model_dir(path: str | Path) -> Path:
    """The model directory of a checkpoint reference: a stage directory's `model/`, or the path itself."""
    path = Path(path)
    return model_dir(path) if (model_dir(path) / "config.json").is_file() else path


def resolve_checkpoint(ref: str, recipe: Recipe) -> StageOutput:
    """A checkpoint given as `models:/name@alias|/version`, a stage directory, a model directory
    (config.json, or a directory holding one in `model/`) or the MLflow run id of a stage."""
    if ref.startswith("models:/"):
        return checkpoint_from_model_uri(ref, recipe)
    path, model = Path(ref), checkpoint_model_dir(ref)
    if (model / "config.json").is_file() and not is_finished(path):
        # Size and mtime stand for the content: hashing the weights of a large model takes minutes.
        files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(model.iterdir()) if p.is_file()]
        label = path.parent.name if path.name == MODEL_DIR else path.name
        return StageOutput(stage=label, key=stable_hash([str(model.resolve()), files]), path=str(path.resolve()))
    return resolve_output(ref)


# ---------------------------------------------------------------- model backends
def vllm_model_args(model_path: str | Path, cfg: EvaluationSection) -> dict:
    """lm-eval `model="vllm"` arguments for a saved checkpoint (vLLM loads it from disk itself)."""
    path = str(Path(model_path).resolve())
    v = cfg.vllm
    args = {"pretrained": path, "tokenizer": path, "dtype": v.dtype, "gpu_memory_utilization": v.gpu_memory_utilization,
            "tensor_parallel_size": v.tensor_parallel_size, "seed": cfg.seed, "batch_size": "auto"}
    if v.max_model_len:
        args["max_model_len"] = v.max_model_len
    return args


def build_lm(model_path: str | Path, cfg: EvaluationSection):
    """The lm-eval model for one checkpoint, built once and shared by every benchmark."""
    if cfg.backend == "vllm":
        if not vllm_available():
            raise RuntimeError("evaluation.backend is vllm but vllm is not importable here (it needs a GPU "
                               "machine and `pip install -e '.[gpu]'`); use backend: hf")
        from lm_eval.api.registry import get_model

        return get_model("vllm")(**vllm_model_args(model_path, cfg))
    import torch
    from lm_eval.models.huggingface import HFLM

    model, tok = load_model(model_path)
    model.eval()
    return HFLM(pretrained=model, tokenizer=tok, batch_size=cfg.batch_size,
                device="cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------- running and reading lm-eval
@dataclass
class Evaluation:
    metrics: dict[str, float] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)
    lm_eval: dict[str, dict] = field(default_factory=lambda: {"results": {}, "configs": {}, "settings": {}})
    audit: dict | None = None  # tasks.eval.audit's report of the verifier-scored benchmarks


def evaluate_model(model_path: str | Path, runs: list[BenchmarkRun], cfg: EvaluationSection) -> Evaluation:
    """Run every benchmark on one checkpoint; metrics, per-sample rows and lm-eval's own output."""
    import lm_eval

    lm = build_lm(model_path, cfg)
    ev, audit = Evaluation(), EvaluationAudit(cfg)
    for run in runs:
        seed = cfg.seed
        res = lm_eval.simple_evaluate(
            model=lm, tasks=[run.task], task_manager=run.task_manager(), num_fewshot=run.num_fewshot,
            gen_kwargs=run.gen_kwargs, limit=run.limit, apply_chat_template=run.chat_template,
            system_instruction=run.system_prompt, bootstrap_iters=0, log_samples=True,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
        metrics = benchmark_metrics(run, res)
        log.info("%s on %s: %s", model_path, run.name, {k: round(v, 4) for k, v in metrics.items()})
        ev.metrics.update(metrics)
        ev.samples += sample_rows(run, res)
        audit.add_benchmark(run.name, res["samples"])
        ev.lm_eval["results"].update(_jsonable(res["results"]))
        ev.lm_eval["configs"].update(_jsonable(res["configs"]))
        ev.lm_eval["settings"][run.name] = _jsonable(
            {k: res.get(k) for k in ("config", "n-shot", "n-samples", "versions", "higher_is_better", "date")})
    if audit.tallies:
        ev.metrics.update(audit.metrics())
        ev.audit = audit.report()
    return ev


def _prefix(run: BenchmarkRun, key: str) -> str:
    """Metric prefix of an lm-eval result key: the benchmark, or `<benchmark>/<subtask>` in a group."""
    return run.name if key in (run.name, run.task) else f"{run.name}/{key}"


def _name(prefix: str, metric: str, filt: str) -> str:
    parts = [prefix, metric] + ([filt] if filt and filt not in ("none", SAMPLES_FILTER) else [])
    return safe_metric_name("/".join(parts))


def benchmark_metrics(run: BenchmarkRun, res: dict) -> dict[str, float]:
    """lm-eval's aggregated numbers under MLflow-safe names, plus docs and no-answer counts."""
    out: dict[str, float] = {}
    for key, values in res["results"].items():
        for name, value in values.items():
            metric, _, filt = name.partition(",")
            if isinstance(value, numbers.Real) and not isinstance(value, bool) \
                    and not metric.endswith("_stderr") and metric != "sample_len":
                out[_name(_prefix(run, key), metric, filt)] = float(value)
    for key, samples in res["samples"].items():
        prefix = _prefix(run, key)
        by_filter: dict[str, list] = {}
        for s in samples:
            by_filter.setdefault(s["filter"], []).append(s)
        for filt, docs in by_filter.items():
            missing = sum(_no_answer(run, s) for s in docs)
            out[_name(prefix, "no_answer_count", filt)] = float(missing)
            if not run.by_verifier:  # a verifier-scored benchmark reports the rate itself
                out[_name(prefix, "no_answer", filt)] = missing / len(docs)
            out[f"{prefix}/docs"] = float(len(docs))
            if run.by_verifier:
                out.update(family_pass_rates(prefix, docs))
    return out


def family_pass_rates(prefix: str, samples: list[dict]) -> dict[str, float]:
    """`<benchmark>/<family>/pass_at_1` over the documents of each task family (rows with a
    `family` column: the held-out split of a mixture reports math, countdown and code apart)."""
    by_family: dict[str, list[float]] = {}
    for s in samples:
        family = (s.get("doc") or {}).get("family")
        if family and isinstance(s.get("pass_at_1"), numbers.Real):
            by_family.setdefault(str(family), []).append(float(s["pass_at_1"]))
    return {_name(prefix, f"{family}/pass_at_1", None): sum(v) / len(v) for family, v in by_family.items()}


def _no_answer(run: BenchmarkRun, sample: dict) -> int:
    """Generations of one document with no parseable answer."""
    if run.by_verifier:
        return round(sample.get("no_answer", 0.0) * run.samples)
    return int(all(r.strip() in ("", NO_ANSWER) for r in flat(sample["filtered_resps"])))


def sample_rows(run: BenchmarkRun, res: dict) -> list[dict]:
    """One row per document (and filter): prompt, target, completions and its scores."""
    rows = []
    for key, samples in res["samples"].items():
        for s in samples:
            args = s.get("arguments") or [[""]]
            completions = flat(s.get("resps"))
            rows.append({
                "benchmark": _prefix(run, key), "doc_id": s["doc_id"], "filter": s["filter"],
                "prompt": flat(args[0])[0], "target": str(s.get("target")),
                "completion": completions[0] if completions else "", "completions": completions,
                "extracted": flat(s.get("filtered_resps"))[0] if s.get("filtered_resps") else "",
                "no_answer_count": _no_answer(run, s),
                **{m: float(s[m]) for m in s.get("metrics", []) if isinstance(s.get(m), numbers.Real)},
            })
    return rows


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def environment_spec(recipe: Recipe) -> dict | None:
    """The recipe's `data.environment` as `run_evaluation` takes it; None for single-turn families."""
    d = recipe.data
    return {"name": d.environment, "params": d.environment_params, "verifier": d.verifier} if d.environment else None


def run_evaluation(model_path: str | Path, cfg: EvaluationSection, out_dir: Path, heldout: Path | None = None,
                   system_prompt: str | None = None, environment: dict | None = None) -> dict[str, float]:
    """Evaluate one checkpoint on every benchmark inside the active MLflow run: log the per-sample
    table, lm-eval's results/configs/settings JSON and the task YAMLs; return the metrics. With
    `environment` (`{"name", "params", "verifier"}`: the recipe's `data.environment`), the held-out
    split is answered in multi-turn rollouts with its tools (tasks.eval.multi_turn) instead."""
    import mlflow
    import pandas as pd

    bench_dir = out_dir / "benchmarks"
    runs = write_benchmarks(cfg, bench_dir, heldout, system_prompt)
    held = next((b for b in cfg.benchmarks if b.kind == "heldout"), None)
    metrics, samples = {}, []
    if environment and held and heldout:
        metrics, samples = _multi_turn(model_path, cfg, held, heldout, system_prompt, environment)
        runs = [r for r in runs if r.name != held.name]
    ev = evaluate_model(model_path, runs, cfg) if runs else Evaluation()
    ev.metrics.update(metrics)
    ev.samples += samples
    (out_dir / SAMPLES_FILE).write_text("".join(json.dumps(s, default=str) + "\n" for s in ev.samples))
    if ev.samples:
        mlflow.log_table(pd.DataFrame(ev.samples), artifact_file="eval/samples.json")
    for part, data in ev.lm_eval.items():
        mlflow.log_dict(data, f"lm_eval/{part}.json")
    mlflow.log_artifacts(str(bench_dir), artifact_path="lm_eval/benchmarks")
    if ev.audit:
        write_audit(ev.audit, out_dir, mlflow.active_run().info.run_id if mlflow.active_run() else None)
    return ev.metrics


def _multi_turn(model_path, cfg: EvaluationSection, bench, heldout: Path, system_prompt, environment: dict):
    import mlflow

    from tasks.eval.multi_turn import evaluate_in_environment, trace_samples
    from tasks.lineage import log_rollouts

    rows = [json.loads(line) for line in heldout.read_text().splitlines() if line.strip()]
    rows = rows[: bench.limit or cfg.limit or len(rows)]
    metrics, samples = evaluate_in_environment(
        model_path, rows, environment, samples=bench.samples or cfg.samples,
        temperature=cfg.temperature if bench.temperature is None else bench.temperature,
        max_new_tokens=bench.max_new_tokens or cfg.max_new_tokens, batch_size=cfg.batch_size,
        system_prompt=system_prompt, prefix=bench.name)
    log.info("%s on %s (multi-turn, %s): %s", model_path, bench.name, environment["name"],
             {k: round(v, 4) for k, v in metrics.items()})
    if (run := mlflow.active_run()) is not None:
        log_rollouts(run.info.run_id, f"eval-{bench.name}", 0, trace_samples(samples))
    return metrics, samples
