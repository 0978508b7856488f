"""Benchmarks as lm-eval tasks: the YAML we write loads in lm-eval, and a broken benchmark is
reported by recipe validation (no data, no model) or by the pre-generation check."""

import json

import pytest
import yaml

from tasks.eval.benchmark_checks import check_benchmarks_load, vllm_available
from tasks.eval.benchmarks import BenchmarkError, pass_at_k, verifier_scorer, write_benchmark, write_benchmarks
from tasks.recipe import Benchmark, EvaluationSection, RecipeError
from tasks.recipe_checks import validate_recipe
from tests.conftest import GSM8K

GSM8K_LOCAL = {"name": "gsm8k_local", "lm_eval": "gsm8k", "num_fewshot": 0,
               "data_files": {"train": str(GSM8K / "train.jsonl"), "test": str(GSM8K / "test.jsonl")}}


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _load(run):
    return run.task_manager().load([run.task])["tasks"][run.task]


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - (7 * 6) / (10 * 9))


def test_verifier_hook_scores_every_sample_and_counts_missing_answers():
    score = verifier_scorer("math_answer_reward", {}, {})
    samples = ["<think>\n1+2=3\n</think>\n<answer>3</answer>", "<think>\n1+2=4\n</think>\n<answer>4</answer>",
               "garbage", "<think>\n1+2=3\n</think>\n<answer>3</answer>"]
    assert score({"question": "Compute 1+2.", "answer": "3"}, [samples]) == \
        {"pass_at_1": 0.5, "pass_at_4": 1.0, "no_answer": 0.25}
    # columns map the rows' own names; a model with no parseable answer scores 0, no crash
    mapped = verifier_scorer("math_answer_reward", {}, {"question": "problem", "answer": "solution"})
    assert mapped({"problem": "1+2?", "solution": "#### 3"}, [["", "no idea"]]) == \
        {"pass_at_1": 0.0, "pass_at_2": 0.0, "no_answer": 1.0}


def test_heldout_yaml_samples_k_times_at_the_recipe_temperature(tmp_path):
    heldout = _jsonl(tmp_path / "eval.jsonl", [{"question": "Compute 1+2.", "answer": "3"}])
    run = write_benchmark(Benchmark(name="heldout"), EvaluationSection(samples=3), tmp_path / "b", heldout)
    task = _load(run)
    assert task.config.repeats == 3 and callable(task.config.process_results)
    assert task.config.generation_kwargs["temperature"] == 0.6 and task.config.generation_kwargs["do_sample"]
    assert [m["metric"] for m in task.config.metric_list] == ["pass_at_1", "pass_at_3", "no_answer"]


def test_greedy_benchmark_takes_one_sample(tmp_path):
    heldout = _jsonl(tmp_path / "eval.jsonl", [{"question": "Compute 1+2.", "answer": "3"}])
    cfg = EvaluationSection(samples=4, benchmarks=[Benchmark(name="heldout", temperature=0)])
    run = write_benchmarks(cfg, tmp_path / "b", heldout)[0]
    task = _load(run)
    assert run.samples == 1 and task.config.repeats == 1
    assert task.config.generation_kwargs["do_sample"] is False


def test_gsm8k_local_is_lm_evals_own_definition_on_local_files(tmp_path):
    from lm_eval.tasks._index import TaskIndex

    run = write_benchmark(Benchmark(**GSM8K_LOCAL, max_new_tokens=16), EvaluationSection(), tmp_path)
    written = yaml.safe_load(run.yaml_path.read_text())
    assert written["include"].endswith("lm_eval/tasks/gsm8k/gsm8k.yaml") and written["task"] == "gsm8k_local"
    assert TaskIndex.entry_from_path(run.yaml_path).name == "gsm8k_local"
    assert check_benchmarks_load([run]) == {"gsm8k_local": 1319}
    task = _load(run)
    assert task.config.doc_to_text.startswith("Question:") and task.config.num_fewshot == 0
    assert [f["name"] for f in task.config.filter_list] == ["strict-match", "flexible-extract"]
    assert task.config.generation_kwargs["max_gen_toks"] == 16 and "Question:" in task.config.generation_kwargs["until"]


def _problems(tmp_path, **evaluation) -> str:
    runs = tmp_path / "runs"
    with pytest.raises(RecipeError) as e:
        validate_recipe({"evaluation": evaluation, "tracking": {"runs_dir": str(runs)}})
    assert not runs.exists(), "validation must not write or compute anything"
    return str(e.value)


def test_validation_names_unknown_lm_eval_task_and_closest(tmp_path):
    msg = _problems(tmp_path, benchmarks=[{"name": "heldout"}, {"name": "gsm8kk"}])
    assert "evaluation.benchmarks.1 (gsm8kk)" in msg and "unknown lm-eval task" in msg and "'gsm8k'" in msg


def test_validation_catches_missing_files_splits_columns_and_rejected_yaml(tmp_path):
    bad_yaml = tmp_path / "mine.yaml"
    bad_yaml.write_text("task: mine\ndataset_path: json\noutput_type: generate_until\nbogus_key: 1\n")
    rows = _jsonl(tmp_path / "ood.jsonl", [{"problem": "1+1?", "answer": "2"}])
    msg = _problems(tmp_path, benchmarks=[
        {"name": "heldout"},
        {"name": "ood", "path": str(tmp_path / "missing.jsonl")},
        {"name": "g", "lm_eval": "gsm8k", "data_files": {"train": str(GSM8K / "train.jsonl")}},
        {"name": "mine", "lm_eval": str(bad_yaml)},
        {"name": "cols", "path": str(rows)},
    ])
    assert "(ood): jsonl: file not found" in msg and "missing.jsonl" in msg
    assert "(g): the task evaluates split 'test'; data_files has train" in msg
    assert "(mine): lm-eval rejects the task config" in msg and "bogus_key" in msg
    assert "(cols):" in msg and "no column 'question'" in msg


def test_validation_checks_primary_metric_against_what_the_benchmark_reports(tmp_path):
    msg = _problems(tmp_path, benchmarks=[GSM8K_LOCAL], primary_metric="gsm8k_local/exact_match")
    assert "evaluation.primary_metric" in msg and "exact_match/strict-match" in msg
    recipe = validate_recipe({"evaluation": {"benchmarks": [GSM8K_LOCAL],
                                             "primary_metric": "gsm8k_local/exact_match/strict-match"}})
    assert recipe.evaluation.benchmarks[0].kind == "lm_eval"


@pytest.mark.parametrize("spec, expected", [
    ({"name": "x", "path": "/a.jsonl", "lm_eval": "gsm8k"}, "not both"),
    ({"name": "heldout", "path": "/a.jsonl"}, "curated held-out split"),
    ({"name": "gsm8k", "samples": 4}, "set `verifier:` for k samples"),
    ({"name": "x", "path": "/a.jsonl", "temperature": 0, "samples": 2}, "greedy"),
    ({"name": "x", "path": "/a.jsonl", "num_fewshot": 3}, "num_fewshot applies to lm-eval tasks"),
    ({"name": "bad name!"}, "benchmarks.0.name"),
])
def test_benchmark_schema_rejects_fields_that_do_not_fit_its_kind(tmp_path, spec, expected):
    assert expected in _problems(tmp_path, benchmarks=[spec], primary_metric=f"{spec['name']}/x")


def test_duplicate_benchmarks_and_unknown_primary_benchmark(tmp_path):
    assert "repeated: ['heldout']" in _problems(tmp_path, benchmarks=[{"name": "heldout"}, {"name": "heldout"}])
    assert "primary_metric 'gsm8k/pass_at_1'" in _problems(tmp_path, primary_metric="gsm8k/pass_at_1")


def test_vllm_backend_without_vllm_is_a_validation_error(tmp_path):
    if vllm_available():
        pytest.skip("vllm is installed here")
    assert "evaluation.backend: vllm is not importable" in _problems(tmp_path, backend="vllm")


def test_a_file_gone_after_validation_fails_the_pre_generation_check(tmp_path):
    rows = _jsonl(tmp_path / "ood.jsonl", [{"question": "1+1?", "answer": "2"}])
    cfg = EvaluationSection(benchmarks=[Benchmark(name="ood", path=str(rows))], primary_metric="ood/pass_at_1")
    runs = write_benchmarks(cfg, tmp_path / "b")
    _jsonl(rows, [{"question": "1+1?", "solution": "2"}])  # the answer column went away
    with pytest.raises(BenchmarkError, match="ood: rows have no column 'answer'"):
        check_benchmarks_load(runs)
    rows.unlink()
    with pytest.raises(BenchmarkError, match="jsonl: file not found"):
        write_benchmarks(cfg, tmp_path / "b2")
