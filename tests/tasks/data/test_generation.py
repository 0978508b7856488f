"""judge: samples scored by the data verifier; a verifier that runs code tags the stage's run."""

import mlflow

from tasks.data.generation import judge


def test_judging_with_code_reward_tags_the_stage_run_with_its_isolation(tmp_path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("judge")  # not the process's active experiment, which lives in another store
    try:
        rows = [{"question": "Write double(x).", "metadata": {"tests": [{"type": "assert", "code": "assert double(2) == 4"}]}}]
        samples = [["```python\ndef double(x):\n    return 2 * x\n```", "```python\ndef double(x):\n    return x\n```"]]
        with mlflow.start_run(experiment_id=exp) as run:
            assert judge("code_reward", rows, [[{"role": "user", "content": rows[0]["question"]}]], samples) == [[True, False]]
        assert mlflow.get_run(run.info.run_id).data.tags["sandbox.isolation"] == "bwrap"
        with mlflow.start_run(experiment_id=exp) as run:  # a verifier that runs no code adds no tag
            judge("math_answer_reward", [{"question": "1+1?", "answer": "2"}], [[]], [["<answer>2</answer>"]])
        assert "sandbox.isolation" not in mlflow.get_run(run.info.run_id).data.tags
    finally:
        mlflow.set_tracking_uri(previous)
