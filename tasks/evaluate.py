"""Evaluation through lm-eval, scored by the same verifier code as the GRPO reward.

    write_heldout_benchmark(eval_jsonl, bench_dir, recipe.evaluation)   # lm-eval YAML + hook
    metrics, samples = evaluate_model(model_dir, bench_dir, recipe.evaluation)

The held-out split becomes an lm-eval benchmark (YAML, absolute data path). Each prompt is
sampled `samples` times at the recipe's temperature/top-p (DeepSeek-R1 protocol); we report
pass@1 (mean over samples), unbiased pass@k, and the share of samples with no parseable answer.
"""

from __future__ import annotations

import logging
from math import comb
from pathlib import Path

import yaml

from tasks.recipe import EvaluationSection
from tasks.verifiers.math import extract_final_answer, score_math_answer

log = logging.getLogger(__name__)

BENCHMARK = "heldout"
# The hook lm-eval imports from beside the YAML (`!function` paths are relative to it).
_HOOK = "from tasks.evaluate import process_results  # noqa: F401\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def process_results(doc: dict, results: list) -> dict[str, float]:
    """lm-eval hook: score every sample of one prompt with the math verifier."""
    samples = results[0] if results and isinstance(results[0], list) else results
    scores = [score_math_answer(s, doc["answer"]) for s in samples]
    correct = sum(1 for s in scores if s == 1.0)
    n = len(samples)
    return {
        "pass_at_1": correct / n,
        f"pass_at_{n}": pass_at_k(n, correct, n),
        "no_answer": sum(extract_final_answer(s) is None for s in samples) / n,
    }


def write_heldout_benchmark(eval_jsonl: str | Path, bench_dir: Path, cfg: EvaluationSection) -> Path:
    """Write the lm-eval task YAML for the held-out split; returns its directory."""
    eval_jsonl = Path(eval_jsonl).resolve()
    if not eval_jsonl.is_file():
        raise FileNotFoundError(f"held-out split not found: {eval_jsonl}")
    bench_dir.mkdir(parents=True, exist_ok=True)
    greedy = cfg.temperature == 0
    gen = {"until": ["<|im_end|>"], "max_gen_toks": cfg.max_new_tokens, "do_sample": not greedy}
    if not greedy:
        gen.update(temperature=cfg.temperature, top_p=cfg.top_p)
    k = cfg.samples
    task = {
        "task": BENCHMARK,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(eval_jsonl)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{question}}",
        "doc_to_target": "{{answer}}",
        "generation_kwargs": gen,
        "repeats": k,
        "filter_list": [{"name": "samples", "filter": [{"function": "take_first_k", "k": k}]}],
        "process_results": "__HOOK__",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": hib}
                        for m, hib in (("pass_at_1", True), (f"pass_at_{k}", True), ("no_answer", False))],
        "metadata": {"version": 1.0},
    }
    text = yaml.safe_dump(task, sort_keys=False).replace("__HOOK__", "!function verifier_hook.process_results")
    (bench_dir / f"{BENCHMARK}.yaml").write_text(text)
    (bench_dir / "verifier_hook.py").write_text(_HOOK)
    return bench_dir


def evaluate_model(model_path: str | Path, bench_dir: Path, cfg: EvaluationSection):
    """Run the held-out benchmark on one checkpoint; returns (metrics, per-sample rows, raw results)."""
    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from tasks.modeling import load_model

    model, tok = load_model(model_path)
    model.eval()
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=cfg.batch_size,
              device="cuda" if torch.cuda.is_available() else "cpu")
    res = lm_eval.simple_evaluate(
        model=lm, tasks=[BENCHMARK], task_manager=TaskManager(include_path=str(bench_dir), include_defaults=False),
        apply_chat_template=True, limit=cfg.limit, bootstrap_iters=0, log_samples=True,
        random_seed=cfg.seed, numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed,
    )
    metrics = {}
    for name, value in res["results"][BENCHMARK].items():
        metric, _, filt = name.partition(",")
        if isinstance(value, (int, float)) and not metric.endswith("_stderr") and metric not in ("alias", "sample_len"):
            metrics[f"{BENCHMARK}/{metric}"] = float(value)
    samples = [{"doc_id": s["doc_id"], "question": s["doc"]["question"], "answer": s["doc"]["answer"],
                "completion": s["filtered_resps"][0][0] if s["filtered_resps"] else "",
                **{k: v for k, v in s.items() if k in ("pass_at_1", "no_answer")}}
               for s in res["samples"][BENCHMARK]]
    return metrics, samples, res


def run_evaluation(model_path: str | Path, data_dir: str | Path, cfg: EvaluationSection, out_dir: Path) -> dict:
    """Evaluate one checkpoint on the held-out split; log metrics, samples and lm-eval's JSON."""
    import json

    import mlflow

    bench_dir = write_heldout_benchmark(Path(data_dir) / "eval.jsonl", out_dir / "benchmark", cfg)
    metrics, samples, res = evaluate_model(model_path, bench_dir, cfg)
    (out_dir / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    mlflow.log_table({k: [s.get(k) for s in samples] for k in samples[0]}, artifact_file="eval/samples.json")
    mlflow.log_dict(_jsonable(res["results"]), "lm_eval/results.json")
    mlflow.log_dict(_jsonable(res["configs"]), "lm_eval/configs.json")
    mlflow.log_artifacts(str(bench_dir), artifact_path="lm_eval/benchmark")
    return metrics


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, default=str))


def comparison_chart(rows: list[dict], metric: str, path: Path) -> Path:
    """Bar chart of `metric` for each evaluated checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(rows), 3.2))
    names, values = [r["checkpoint"] for r in rows], [r.get(metric, 0.0) for r in rows]
    bars = ax.bar(names, values, color="#4c78a8")
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylabel(metric)
    ax.set_ylim(0, max(1.0, max(values) * 1.15))
    ax.set_title("held-out accuracy by checkpoint")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
