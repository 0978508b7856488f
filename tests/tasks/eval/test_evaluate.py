"""One checkpoint on every benchmark: metric names, no-answer counts, reproducibility, backends."""

import ast
import json
from pathlib import Path

import pytest

from tasks.eval.benchmarks import BenchmarkRun, write_benchmarks
from tasks.eval.evaluate import benchmark_metrics, build_lm, evaluate_model, family_pass_rates, vllm_model_args
from tasks.recipe import EvaluationSection
from tests.conftest import GSM8K


def test_lm_eval_results_become_mlflow_safe_names_with_no_answer_counts():
    run = BenchmarkRun("gsm8k_local", "gsm8k_local", "/x", by_verifier=False, samples=1, limit=2, chat_template=True)
    res = {"results": {"gsm8k_local": {"alias": "gsm8k_local", "sample_len": 2, "exact_match,strict-match": 0.5,
                                       "exact_match_stderr,strict-match": "N/A", "acc,none": 0.25}},
           "samples": {"gsm8k_local": [
               {"doc_id": 0, "filter": "strict-match", "filtered_resps": ["[invalid]"]},
               {"doc_id": 1, "filter": "strict-match", "filtered_resps": ["18"]}]}}
    assert benchmark_metrics(run, res) == {
        "gsm8k_local/exact_match/strict-match": 0.5, "gsm8k_local/acc": 0.25, "gsm8k_local/docs": 2.0,
        "gsm8k_local/no_answer_count/strict-match": 1.0, "gsm8k_local/no_answer/strict-match": 0.5}


def _vllm_init_params() -> set[str]:
    """Parameters of lm-eval's VLLM.__init__, read from its source (importing it needs vllm)."""
    import lm_eval

    tree = ast.parse((Path(lm_eval.__file__).parent / "models" / "vllm_causallms.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "VLLM")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return {a.arg for a in init.args.args + init.args.kwonlyargs}


def test_vllm_model_args_fit_lm_evals_vllm_backend(tmp_path):
    cfg = EvaluationSection.model_validate(
        {"seed": 7, "vllm": {"dtype": "bfloat16", "gpu_memory_utilization": 0.5, "max_model_len": 4096,
                             "tensor_parallel_size": 2}})
    args = vllm_model_args(tmp_path / "model", cfg)
    assert args["pretrained"] == args["tokenizer"] == str((tmp_path / "model").resolve())
    assert (args["seed"], args["dtype"], args["max_model_len"], args["tensor_parallel_size"]) == (7, "bfloat16", 4096, 2)
    # gpu_memory_utilization is not VLLM's own parameter: lm-eval passes it on to vllm.LLM(**kwargs)
    assert set(args) - {"gpu_memory_utilization"} <= _vllm_init_params()
    assert args["gpu_memory_utilization"] == 0.5
    assert "max_model_len" not in vllm_model_args(tmp_path, EvaluationSection())


def test_vllm_backend_without_vllm_is_a_clear_error(tiny_model_dir):
    from tasks.eval.benchmark_checks import vllm_available

    if vllm_available():
        pytest.skip("vllm is installed here")
    with pytest.raises(RuntimeError, match="vllm is not importable"):
        build_lm(tiny_model_dir, EvaluationSection(backend="vllm"))


@pytest.fixture(scope="module")
def two_benchmarks(tmp_path_factory):
    """A verifier-scored jsonl benchmark (2 samples at T=0.6) and lm-eval's gsm8k on local files."""
    root = tmp_path_factory.mktemp("bench")
    rows = root / "arith.jsonl"
    rows.write_text("".join(json.dumps({"question": f"Compute {i}+{i}.", "answer": str(2 * i)}) + "\n"
                            for i in range(5)))
    cfg = EvaluationSection.model_validate({
        "samples": 2, "max_new_tokens": 8, "batch_size": 8, "limit": 3, "seed": 11,
        "primary_metric": "arith/pass_at_1",
        "benchmarks": [{"name": "arith", "path": str(rows)},
                       {"name": "gsm8k_local", "lm_eval": "gsm8k", "num_fewshot": 0, "max_new_tokens": 8, "limit": 2,
                        "data_files": {"train": str(GSM8K / "train.jsonl"), "test": str(GSM8K / "test.jsonl")}}]})
    return cfg, write_benchmarks(cfg, root / "yaml")


@pytest.mark.integration
def test_same_seed_same_numbers_and_a_model_without_answers_scores_zero(tiny_model_dir, two_benchmarks):
    cfg, runs = two_benchmarks
    first = evaluate_model(tiny_model_dir, runs, cfg)
    again = evaluate_model(tiny_model_dir, runs, cfg)
    assert first.metrics == again.metrics
    assert [s["completions"] for s in first.samples] == [s["completions"] for s in again.samples]

    m = first.metrics
    # the untrained model never states an answer: 0, with every generation counted, no crash
    assert m["arith/pass_at_1"] == m["arith/pass_at_2"] == 0.0 and m["arith/no_answer"] == 1.0
    assert m["arith/docs"] == 3 and m["arith/no_answer_count"] == 3 * 2
    assert m["gsm8k_local/docs"] == 2 and 0.0 <= m["gsm8k_local/exact_match/strict-match"] <= 1.0
    assert "gsm8k_local/exact_match/flexible-extract" in m and "gsm8k_local/no_answer_count/strict-match" in m
    assert all("," not in k for k in m)
    assert {s["benchmark"] for s in first.samples} == {"arith", "gsm8k_local"}
    assert set(first.lm_eval["results"]) == {"arith", "gsm8k_local"}
    assert first.lm_eval["settings"]["arith"]["config"]["random_seed"] == 11
    # the verifier-scored benchmark is audited, lm-eval's own metrics are not
    assert "arith/audit/false_negative_rate" in m and "audit/negatives_checked" in m
    assert not any(k.startswith("gsm8k_local/audit/") for k in m) and first.audit["benchmarks"].keys() == {"arith"}

    reseeded = evaluate_model(tiny_model_dir, runs[:1], cfg.model_copy(update={"seed": 12}))
    assert [s["completions"] for s in reseeded.samples] != [s["completions"] for s in first.samples[:3]]


def test_family_pass_rates_split_a_mixture_heldout_by_family():
    samples = [{"doc": {"family": "math"}, "pass_at_1": 1.0}, {"doc": {"family": "math"}, "pass_at_1": 0.0},
               {"doc": {"family": "code"}, "pass_at_1": 0.5}, {"doc": {}, "pass_at_1": 1.0}]
    assert family_pass_rates("heldout", samples) == {"heldout/math/pass_at_1": 0.5, "heldout/code/pass_at_1": 0.5}
