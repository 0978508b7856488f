import json
import subprocess
import sys

from tests.conftest import CONFIGS, REPO


def _rlvr(*args):
    return subprocess.run([sys.executable, "-m", "tasks.ops.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_validate_prints_resolved_recipe_with_overrides():
    res = _rlvr("validate", str(CONFIGS / "tiny.yaml"), "--set", "seed=7")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["seed"] == 7


def test_bad_recipe_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("# bad\nsft:\n  trainer: {learning_rate: 0.1}\ngrpo: {stagez: []}\n")
    res = _rlvr("run", str(bad))
    assert res.returncode == 2
    assert "grpo.stagez" in res.stderr and "did you mean 'stages'" in res.stderr


def test_verify_scores_a_completions_file(tmp_path):
    comps = tmp_path / "c.jsonl"
    comps.write_text(json.dumps({"id": "a", "answer": "3",
                                 "completion": "<think>\n1+2=3\n</think>\n<answer>3</answer>"}) + "\n")
    res = _rlvr("verify", str(CONFIGS / "tiny.yaml"), "--completions", str(comps))
    assert res.returncode == 0, res.stderr
    assert "math_answer_reward: mean 1.0000 over 1/1 rows" in res.stdout
    assert "format_reward: mean 1.0000" in res.stdout


def test_verify_audit_reports_rates_and_the_disagreeing_completions(tmp_path):
    rows = [{"id": "a", "answer": "1000", "completion": "<think>\n600+400=1000\n</think>\nThe answer is 1,000."},
            {"id": "b", "answer": "7", "completion": "<think>\n3+4=7\n</think>\n<answer>7</answer>"},
            {"id": "c", "answer": "7", "completion": "<think>\n3+3=6\n</think>\n<answer>6</answer>"}]
    comps = tmp_path / "c.jsonl"
    comps.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = _rlvr("verify", str(CONFIGS / "tiny.yaml"), "--completions", str(comps), "--audit")
    assert res.returncode == 0, res.stderr
    assert "false negatives: 50.0% (95% Wilson 9.5%-90.5%) of 2 checked" in res.stdout
    assert "false positives: 0.0% (95% Wilson 0.0%-79.3%) of 1 checked" in res.stdout
    assert "[false_negative] math_answer_reward via exact_number: gold '1000', answer '1,000'" in res.stdout
def test_verify_scores_sql_completions_joined_with_curated_rows(tmp_path):
    from tasks.data.synthetic import generate

    rows = generate("sql", n=2, seed=0)  # the row's database travels in its metadata (db_sql)
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    comps = [{"id": rows[0]["id"], "completion": f"<think>\n</think>\n<answer>{rows[0]['answer']}</answer>"},
             {"id": rows[1]["id"], "completion": "<think>\n</think>\n<answer>SELECT 1 FROM nowhere</answer>"}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(c) + "\n" for c in comps))
    res = _rlvr("verify", str(CONFIGS / "tiny-sql.yaml"), "--completions", str(tmp_path / "c.jsonl"),
                "--data", str(tmp_path / "rows.jsonl"))
    assert res.returncode == 0, res.stderr
    assert "sql_execution_reward: mean 0.5000 over 2/2 rows" in res.stdout
