import json

from measurements.grpo_gain import reasoning_split


def test_reasoning_split_counts_skipped_reasoning_and_scores_the_rest(tmp_path):
    docs = [
        {"target": "5", "completions": ["<think>\n2+3=5\n</think>\n<answer>5</answer>",
                                        "<think>\n\n</think>\n<answer>5</answer>",
                                        "<think>\n2+3=6\n</think>\n<answer>6</answer>"]},
        {"target": "-1", "completions": ["<think>\n\n</think>\n<answer>1</answer>",
                                         "<think>\n2-3=-1\n</think>\n<answer>-1</answer>",
                                         "<think>\n2-3=-1\n</think>\n<answer>-1</answer>"]},
    ]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    split = reasoning_split(str(tmp_path))
    assert split == {"skips_reasoning": 2 / 6, "reasoned_accuracy": 3 / 4}


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
