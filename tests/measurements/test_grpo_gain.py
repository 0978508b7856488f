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
