"""Comparing pipeline runs read back from a real MLflow store (sqlite in tmp)."""

from __future__ import annotations

import mlflow
import pytest

from tasks.eval.compare import compare_url, comparison_table, differing_params, format_table, pipeline_runs, plot_runs


def _pipeline_run(name: str, lr: str, score: float, rewards: list[float] | None, reuse: str | None = None) -> str:
    """A parent run as pipeline_flow logs it, with a GRPO child run (or a `stage_run` tag to an
    earlier run's, as when the stage came from the cache). Returns the GRPO run id."""
    with mlflow.start_run(run_name=f"pipeline-{name}", tags={"stage": "pipeline"}):
        mlflow.log_params({"recipe.name": name, "recipe.seed": "0", "recipe.grpo.stages.0.trainer.learning_rate": lr})
        mlflow.log_metrics({"base/heldout/pass_at_1": 0.1, "grpo-stage-1/heldout/pass_at_1": score})
        grpo = reuse
        if rewards is not None:
            with mlflow.start_run(run_name="grpo-stage-1", nested=True, tags={"stage": "grpo-stage-1"}) as child:
                for step, r in enumerate(rewards, 1):
                    mlflow.log_metric("reward", r, step=step)
                grpo = child.info.run_id
        mlflow.set_tag("stage_run.grpo-stage-1", grpo)
    return grpo


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("compare")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("cmp")
    first = _pipeline_run("a", "1e-4", 0.2, [0.1, 0.3, 0.5])
    _pipeline_run("b", "2e-4", 0.4, [0.2, 0.6])
    _pipeline_run("c", "1e-4", 0.2, None, reuse=first)  # all stages cached: no children
    yield tmp_path
    mlflow.set_tracking_uri(previous)


def test_reads_the_newest_pipeline_runs_with_their_reward_curves(store):
    runs = pipeline_runs("cmp", last=3)
    assert [r.params["recipe.name"] for r in runs] == ["c", "b", "a"]
    assert runs[1].rewards == {"grpo-stage-1": [(1, 0.2), (2, 0.6)]}
    assert runs[0].rewards == runs[2].rewards  # the cached run shows the curve of the run that trained it
    assert [r.params["recipe.name"] for r in pipeline_runs("cmp", last=2)] == ["c", "b"]


def test_table_shows_only_differing_recipe_params_and_every_metric(store):
    runs = pipeline_runs("cmp", last=3)
    assert differing_params(runs) == ["recipe.grpo.stages.0.trainer.learning_rate", "recipe.name"]
    header, rows = comparison_table(runs)
    assert header[1].startswith("pipeline-c ")
    by_name = {r[0]: r[1:] for r in rows}
    assert "recipe.seed" not in by_name
    assert by_name["recipe.grpo.stages.0.trainer.learning_rate"] == ["1e-4", "2e-4", "1e-4"]
    assert by_name["grpo-stage-1/heldout/pass_at_1"] == ["0.2", "0.4", "0.2"]
    assert by_name["grpo-stage-1/reward (last)"] == ["0.5", "0.6", "0.5"]
    lines = format_table(header, rows).splitlines()
    first = max(len(r[0]) for r in rows)  # values start in one column, right of the longest name
    assert all(line[first:first + 2] == "  " and line[first + 2] != " " for line in lines if line[0] != "-")


def test_plot_and_compare_link(store, tmp_path):
    runs = pipeline_runs("cmp", last=3)
    png = plot_runs(runs, tmp_path / "out" / "compare.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    url = compare_url(runs[0].experiment_id, [r.run_id for r in runs])
    assert url.startswith("http://127.0.0.1:5000/#/compare-runs?runs=") and all(r.run_id in url for r in runs)


def test_unknown_experiment_names_the_ones_that_exist(store):
    with pytest.raises(ValueError, match="no MLflow experiment 'nope'; found: .*cmp"):
        pipeline_runs("nope")


def test_rlvr_compare_prints_the_table_and_writes_the_plot(store, tmp_path, capsys):
    from tasks.ops.cli import main
    from tests.conftest import CONFIGS

    out = tmp_path / "cmp.png"
    code = main(["compare", "--recipe", str(CONFIGS / "tiny.yaml"), "--set", f"tracking.runs_dir={store}",
                 "--experiment", "cmp", "--last", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "recipe.name" in printed and "pipeline-b" in printed and "pipeline-a" not in printed
    assert "MLflow compare view: http" in printed


def test_a_failed_run_leaves_gaps_in_the_chart_not_zero_bars(store, tmp_path):
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tasks.eval.compare import PipelineRun
    from tasks.eval.report import grouped_bars

    failed = PipelineRun("f" * 32, "1", "tiny seed 0", 0, "FAILED", {}, {})
    assert failed.label == "tiny seed 0 ffffffff (FAILED)"
    fig, ax = plt.subplots()
    grouped_bars(ax, ["grpo/heldout"], {"done": [0.5], failed.label: [math.nan]})
    assert [t.get_text() for t in ax.texts] == ["0.500", ""]  # no "0.000" over the failed run
    assert math.isnan(ax.patches[1].get_height())
    plt.close(fig)
