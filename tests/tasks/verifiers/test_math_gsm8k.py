"""Real data: every GSM8K reference solution scores 1.0 against its own answer and 0.0 against
other problems' different answers (read from the shared data folder, never copied here)."""

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

from tasks.verifiers import build_reward
from tasks.verifiers.math import extract_final_answer, parse_number, score_math_answer

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "gsm8k"
if not DATA.exists():
    DATA = Path("/work/shared/data/gsm8k")


def _rows():
    rows = []
    for split in ("train", "test"):
        path = DATA / f"{split}.jsonl"
        if not path.exists():
            pytest.skip(f"GSM8K not found at {path}")
        with path.open() as f:
            rows += [json.loads(line) for line in f]
    return rows


@pytest.fixture(scope="module")
def gsm8k():
    rows = _rows()
    golds = [r["answer"].rsplit("####", 1)[1].strip() for r in rows]
    return rows, golds


def test_dataset_is_complete(gsm8k):
    rows, golds = gsm8k
    assert len(rows) == 7473 + 1319
    assert all(parse_number(g) is not None for g in golds)


def test_every_reference_solution_scores_one_against_its_own_answer(gsm8k):
    rows, golds = gsm8k
    failures = [i for i, (r, g) in enumerate(zip(rows, golds)) if score_math_answer(r["answer"], g) != 1.0]
    assert failures == []
    # the extracted final answer is exactly the #### value
    assert all(extract_final_answer(r["answer"]) == g for r, g in zip(rows, golds))


def test_reward_batch_on_full_dataset_through_trl_contract(gsm8k):
    rows, golds = gsm8k
    reward = build_reward("math_answer_reward")
    out = reward(prompts=[r["question"] for r in rows], completions=[r["answer"] for r in rows], answer=golds)
    assert out == [1.0] * len(rows)
    assert reward.stats["unparseable_gold"] == 0


def test_reference_solutions_score_zero_against_other_different_answers(gsm8k):
    rows, golds = gsm8k
    values = [parse_number(g)[0] for g in golds]
    # exhaustive over the distinct answer values: each solution's extracted value equals exactly one
    distinct = sorted(set(values))
    index = {v: k for k, v in enumerate(distinct)}
    for r, v in zip(rows, values):
        extracted = parse_number(extract_final_answer(r["answer"]))[0]
        assert index.get(extracted) == index[v]
    # and through the full checker against random other problems' different answers
    rng = random.Random(0)
    checked = 0
    for i, r in enumerate(rows):
        for _ in range(3):
            j = rng.randrange(len(rows))
            if Fraction(values[j]) == Fraction(values[i]):
                continue
            assert score_math_answer(r["answer"], golds[j]) == 0.0, (i, j)
            checked += 1
    assert checked > 20000


def test_reference_solution_formats_as_model_output(gsm8k):
    rows, golds = gsm8k
    for r, g in list(zip(rows, golds))[:500]:
        body = r["answer"].rsplit("####", 1)[0].strip()
        text = f"<think>\n{body}\n</think>\n<answer>{g}</answer>"
        assert score_math_answer(text, g) == 1.0
        assert score_math_answer(f"<think>\n{body}\n</think>\n\\boxed{{{g}}}", r["answer"]) == 1.0
