import pytest

from tasks.evaluate import pass_at_k, process_results, write_heldout_benchmark
from tasks.recipe import EvaluationSection


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - (7 * 6) / (10 * 9))


def test_process_results_scores_every_sample_with_the_verifier():
    doc = {"question": "Compute 1+2.", "answer": "3"}
    samples = ["<think>\n1+2=3\n</think>\n<answer>3</answer>", "<think>\n1+2=4\n</think>\n<answer>4</answer>",
               "garbage", "<think>\n1+2=3\n</think>\n<answer>3</answer>"]
    out = process_results(doc, [samples])
    assert out == {"pass_at_1": 0.5, "pass_at_4": 1.0, "no_answer": 0.25}


def test_missing_heldout_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="held-out split not found"):
        write_heldout_benchmark(tmp_path / "eval.jsonl", tmp_path / "bench", EvaluationSection())


def test_benchmark_yaml_loads_in_lm_eval(tmp_path):
    from lm_eval.tasks import TaskManager

    (tmp_path / "eval.jsonl").write_text('{"question": "Compute 1+2.", "answer": "3"}\n')
    bench = write_heldout_benchmark(tmp_path / "eval.jsonl", tmp_path / "bench", EvaluationSection(samples=3))
    tm = TaskManager(include_path=str(bench), include_defaults=False)
    task = tm.load_task_or_group(["heldout"])["heldout"]
    assert task.config.repeats == 3 and callable(task.config.process_results)
    assert task.config.generation_kwargs["temperature"] == 0.6
