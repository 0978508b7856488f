import re

import pytest

from tasks.data.synthetic import generate


def test_arithmetic_answers_are_correct_and_seeded():
    rows = generate("arithmetic", n=200, seed=3, max_operands=4, max_value=20)
    assert rows == generate("arithmetic", n=200, seed=3, max_operands=4, max_value=20)
    assert rows != generate("arithmetic", n=200, seed=4, max_operands=4, max_value=20)
    for r in rows:
        expr = r["question"].removeprefix("Compute ").removesuffix(".")
        total, num, sign = 0, "", 1
        for ch in expr + "+":  # left-to-right +/- without eval
            if ch.isdigit():
                num += ch
            else:
                total += sign * int(num)
                num, sign = "", (1 if ch == "+" else -1)
        assert str(total) == r["answer"]
        if r["reasoning"]:
            assert r["reasoning"].splitlines()[-1].endswith(f"={r['answer']}")


def test_terse_fraction_drops_steps():
    rows = generate("arithmetic", n=400, seed=0, terse_fraction=0.5)
    terse = sum(r["reasoning"] == "" for r in rows)
    assert 120 < terse < 280


def test_unknown_generator_lists_valid():
    with pytest.raises(ValueError, match="arithmetic"):
        generate("nope", n=1, seed=0)


@pytest.mark.parametrize("name, verifier", [("countdown", "equation_reward"), ("code", "code_reward")])
def test_family_generators_are_seeded_and_their_references_pass_their_verifier(name, verifier):
    from tasks.data.cold_start import format_completion
    from tasks.verifiers import build_reward
    from tasks.verifiers.rows import reward_columns

    rows = generate(name, n=40, seed=1)
    assert rows == generate(name, n=40, seed=1) and rows != generate(name, n=40, seed=2)
    assert {r["family"] for r in rows} == {name}
    # at most 8 words: only an identical question (an exact duplicate) shares a held-out 8-gram
    assert all(len(r["question"].split()) <= 8 for r in rows)
    texts = [format_completion(r["reasoning"], r["answer"]) for r in rows]
    assert build_reward(verifier)(completions=texts, **reward_columns(rows)) == [1.0] * len(rows)
    wrong = [format_completion("", "```python\nprint(0)\n```" if name == "code" else "1+1")] * len(rows)
    assert set(build_reward(verifier)(completions=wrong, **reward_columns(rows))) <= {0.0, 1 / 3, 2 / 3}


def test_code_rows_mix_assert_and_stdin_tests():
    kinds = {t["type"] for r in generate("code", n=60, seed=0) for t in r["metadata"]["tests"]}
    assert kinds == {"assert", "io"}


def test_code_reasoning_restates_the_rule_with_its_constant_and_the_code_returns_it():
    for r in generate("code", n=200, seed=0, max_value=99):
        assert set(re.findall(r"\d+", r["question"])) <= set(re.findall(r"\d+", r["reasoning"]))
        assert f"return {r['reasoning']}\n" in r["answer"] or f"print({r['reasoning']})\n" in r["answer"]
        expected = [t.get("output") or t["code"].split("==")[1] for t in r["metadata"]["tests"]]
        assert len(set(expected)) > 1  # no constant program passes every test


def test_shop_rows_are_seeded_hold_their_values_in_metadata_and_pass_tool_answer_reward():
    from tasks.data.cold_start import format_completion
    from tasks.verifiers import build_reward
    from tasks.verifiers.rows import reward_columns

    rows = generate("shop", n=60, seed=1, no_call_fraction=0.25)
    assert rows == generate("shop", n=60, seed=1, no_call_fraction=0.25) and rows != generate("shop", n=60, seed=2)
    for r in rows:  # the question names the items; their prices and stock are only in the table
        assert set(r["metadata"]["ask"]["items"]) <= set(r["metadata"]["catalog"])
        assert all(item in r["question"] for item in r["metadata"]["ask"]["items"])
        assert "price" not in r["question"]
    guesses = [r for r in rows if "calls" not in r["metadata"]]
    assert 5 <= len(guesses) <= 25 and all(r["reasoning"] == "" for r in guesses)
    from datasets import Dataset

    Dataset.from_dict(reward_columns(rows))  # guess rows and lookup rows share GRPO's Arrow table
    texts = [format_completion(r["reasoning"], r["answer"]) for r in rows]
    assert build_reward("tool_answer_reward")(completions=texts, **reward_columns(rows)) == [1.0] * len(rows)
