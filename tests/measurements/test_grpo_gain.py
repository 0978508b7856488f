import json

from measurements.grpo_gain import reasoning_split


def test_reasoning_split_counts_skipped_reasoning_and_scores_the_rest(tmp_path):
    docs = [
        {"benchmark": "heldout", "doc_id": 0, "target": "5", "completions": ["<think>\n2+3=5\n</think>\n<answer>5</answer>",
                                        "<think>\n\n</think>\n<answer>5</answer>",
                                        "<think>\n2+3=6\n</think>\n<answer>6</answer>"]},
        {"benchmark": "heldout", "doc_id": 1, "target": "-1", "completions": ["<think>\n\n</think>\n<answer>1</answer>",
                                         "<think>\n2-3=-1\n</think>\n<answer>-1</answer>",
                                         "<think>\n2-3=-1\n</think>\n<answer>-1</answer>"]},
    ]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"id": "a", "family": "math", "answer": "5"}, {"id": "b", "family": "math", "answer": "-1"}]
    (data / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    split = reasoning_split(str(tmp_path), str(data), "math_answer_reward")
    assert split == {"skips_reasoning": 2 / 6, "reasoned_accuracy": 3 / 4}


def test_reasoning_split_scores_other_families_against_their_rows(tmp_path):
    doc = {"benchmark": "heldout", "doc_id": 0, "target": "(1+2)*3",
           "completions": ["<think>\n1+2=3\n</think>\n<answer>3*(2+1)</answer>", "<think>\n\n</think>\n<answer>9</answer>"]}
    (tmp_path / "samples.jsonl").write_text(json.dumps(doc) + "\n")
    row = {"id": "c", "family": "countdown", "answer": "(1+2)*3", "metadata": {"numbers": [1, 2, 3], "target": 9}}
    (tmp_path / "eval.jsonl").write_text(json.dumps(row) + "\n")
    split = reasoning_split(str(tmp_path), str(tmp_path), "equation_reward")
    assert split == {"skips_reasoning": 0.5, "reasoned_accuracy": 1.0}


def test_the_readme_table_is_rewritten_from_results(tmp_path):
    from measurements.grpo_gain import README_BEGIN, README_END, markdown_table, write_readme_table

    result = {"seed": 0, "sft": 0.5964, "grpo": 0.8236, "gain": 0.2272, "wall_s": 280,
              "sft_skips_reasoning": 0.291, "grpo_skips_reasoning": 0.009,
              "sft_reasoned_accuracy": 0.814, "grpo_reasoned_accuracy": 0.83}
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n{README_BEGIN}\nold numbers\n{README_END}\nafter\n")
    write_readme_table(readme, markdown_table([result], "heldout/pass_at_1", "commit `abc`"))
    text = readme.read_text()
    assert "old numbers" not in text and text.endswith("after\n")
    assert "| 0 | 0.5964 | 0.8236 | +22.72 |" in text and "Produced by commit `abc`" in text


def test_a_control_run_adds_its_pass_at_1_and_the_margin_over_it():
    from measurements.grpo_gain import markdown_table

    result = {"seed": 1, "sft": 0.40, "grpo": 0.55, "gain": 0.15, "control": 0.42, "wall_s": 300,
              "sft_skips_reasoning": 0.0, "grpo_skips_reasoning": 0.0,
              "sft_reasoned_accuracy": 0.40, "grpo_reasoned_accuracy": 0.55}
    table = markdown_table([result], "heldout/pass_at_1", "commit `abc`")
    assert "random-reward control" in table.splitlines()[0]
    assert "| 1 | 0.4000 | 0.5500 | +15.00 | 0.4200 | +13.00 |" in table
    assert "mean margin over the random-reward control **+13.00 points**" in table
