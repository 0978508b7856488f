import mlflow
import pytest

from tasks.stages import StageSpec, read_output, run_stage
from tasks.tracking import configure_tracking, flatten, safe_metric_name


def test_safe_metric_name_rewrites_never_drops():
    assert safe_metric_name("exact_match,strict-match") == "exact_match/strict-match"
    assert safe_metric_name("rewards/math_answer_reward/mean") == "rewards/math_answer_reward/mean"
    assert safe_metric_name("pass@1") == "pass/1"


def test_flatten_nested_sections():
    assert flatten({"a": {"b": 1, "c": [{"d": 2}]}, "e": [1, 2]}) == {"a.b": "1", "a.c.0.d": "2", "e": "[1, 2]"}


def test_failed_stage_is_marked_failed_with_what_it_logged(tiny_recipe):
    configure_tracking(tiny_recipe.tracking)

    def body(out_dir, hooks):
        mlflow.log_metric("progress", 0.5)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_stage(tiny_recipe, StageSpec("demo", "k1", body, params={"x": 1}))
    runs = mlflow.search_runs(filter_string="tags.stage = 'demo'")
    assert list(runs["status"]) == ["FAILED"]
    assert runs["metrics.progress"][0] == 0.5 and runs["params.x"][0] == "1"


def test_retry_continues_the_same_run_and_a_finished_stage_is_reused(tiny_recipe):
    configure_tracking(tiny_recipe.tracking)
    calls = []

    def flaky(out_dir, hooks):
        calls.append(out_dir)
        if len(calls) == 1:
            (out_dir / "checkpoint").write_text("half")
            raise RuntimeError("killed")
        assert (out_dir / "checkpoint").read_text() == "half"  # the retry sees what the first left
        return {"score": 1.0}

    with pytest.raises(RuntimeError):
        run_stage(tiny_recipe, StageSpec("demo2", "k2", flaky))
    out = run_stage(tiny_recipe, StageSpec("demo2", "k2", flaky))
    runs = mlflow.search_runs(filter_string="tags.stage = 'demo2'")
    assert len(runs) == 1 and runs["status"][0] == "FINISHED" and out.run_id == runs["run_id"][0]
    again = run_stage(tiny_recipe, StageSpec("demo2", "k2", flaky))
    assert again.cached and again.run_id == out.run_id and len(calls) == 2
    assert read_output(out.path).metrics == {"score": 1.0}
