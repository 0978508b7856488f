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
