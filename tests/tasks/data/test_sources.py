import json

import pandas as pd
import pytest

from tasks.data.curate import curate, read_split
from tasks.data.sources import iter_source_rows, prompt_messages
from tasks.recipe import DataSection, RecipeError, Source
from tasks.recipe_checks import validate_recipe
from tests.conftest import GSM8K


def _gsm8k(n):
    with (GSM8K / "train.jsonl").open() as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def test_parquet_and_csv_sources_map_columns_into_the_canonical_schema(tmp_path):
    raw = _gsm8k(30)
    df = pd.DataFrame({"problem": [r["question"] for r in raw], "solution": [r["answer"] for r in raw],
                       "level": ["easy"] * 30})
    df.to_parquet(tmp_path / "g.parquet")
    df.to_csv(tmp_path / "g.csv", index=False)
    reference = list(iter_source_rows(Source(kind="jsonl", name=str(GSM8K / "train.jsonl"), n=30,
                                             answer_format="gsm8k"), 0, 0))
    for kind in ("parquet", "csv"):
        src = Source(kind=kind, name=str(tmp_path / f"g.{kind}"), answer_format="gsm8k",
                     columns={"question": "problem", "answer": "solution"})
        rows = list(iter_source_rows(src, 0, 0))
        assert [(r["question"], r["answer"], r["reasoning"]) for r in rows] == \
            [(r["question"], r["answer"], r["reasoning"]) for r in reference]
        assert rows[0]["metadata"] == {"level": "easy"} and rows[0]["source"] == f"{tmp_path.name}/g"


def test_chat_sources_keep_their_turns_up_to_the_last_user_turn(tmp_path):
    row = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Compute 2+3."},
                        {"role": "assistant", "content": "5"}], "answer": "5", "family": "math"}
    (tmp_path / "chat.jsonl").write_text(json.dumps(row) + "\n")
    [r] = iter_source_rows(Source(kind="jsonl", name=str(tmp_path / "chat.jsonl")), 0, 0)
    assert r["question"] == "Compute 2+3." and r["messages"] == row["messages"][:2]
    assert r["metadata"] == {"completion_messages": row["messages"][2:]}
    assert prompt_messages(r, "ignored: the row has its own system turn") == row["messages"][:2]
    assert prompt_messages({"question": "Q"}, "S") == [{"role": "system", "content": "S"},
                                                        {"role": "user", "content": "Q"}]


def test_every_validation_reason_is_recorded(tmp_path):
    lines = [
        json.dumps({"id": "ok", "question": "Compute 1+1.", "answer": "#### 2"}),
        '{"id": "surrogate", "question": "Compute \\ud800.", "answer": "#### 1"}',
        json.dumps({"id": "replaced", "question": "Compute \ufffd.", "answer": "#### 1"}),
        json.dumps({"id": "no-hashes", "question": "Compute 2+2.", "answer": "it is 4"}),
        json.dumps({"id": "garbled", "question": "Compute 3+3.", "answer": "#### \\frac{1"}),
        json.dumps({"id": "long", "question": "x " * 60, "answer": "#### 1"}),
        json.dumps({"id": "empty", "question": "  ", "answer": "#### 1"}),
        json.dumps({"id": "no-answer", "question": "Compute 4+4."}),
        "[1, 2]",
    ]
    (tmp_path / "raw.jsonl").write_text("\n".join(lines) + "\n")
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(tmp_path / "raw.jsonl"), answer_format="gsm8k")],
                      eval_size=1, sft_size=0, max_prompt_chars=100)
    stats = curate(cfg, tmp_path / "out")
    reasons = {r["id"]: r["reason"] for r in read_split(tmp_path / "out", "quarantine")}
    assert reasons == {
        "surrogate": "bad encoding: unpaired surrogate in question",
        "replaced": "bad encoding: replacement characters in question",
        "no-hashes": "unextractable gold answer: no '#### <answer>' line",
        "garbled": "unparseable gold answer: the math verifier cannot read '\\\\frac{1'",
        "long": "prompt too long: 120 chars > max_prompt_chars 100",
        "empty": "missing or empty question",
        "no-answer": "missing gold answer",
        "jsonl0-8": "unreadable: line 9 is not a JSON object",
    }
    assert stats["rows/eval"] == 1 and stats["rows/quarantined"] == 8
    assert stats["quarantine/bad_encoding"] == 2


def test_token_budget_counts_the_chat_formatted_prompt_with_the_model_tokenizer(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)

    def n_tokens(question):
        text = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                       tokenize=False)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    rows = [{"id": f"r{k}", "question": "Compute " + "+".join(["1"] * k) + ".", "answer": str(k)} for k in (2, 30)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    budget = n_tokens(rows[0]["question"]) + 5
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(tmp_path / "rows.jsonl"))], eval_size=1, sft_size=0,
                      max_prompt_tokens=budget)
    curate(cfg, tmp_path / "out", model_path=str(tiny_model_dir))
    [q] = read_split(tmp_path / "out", "quarantine")
    assert q["id"] == "r30"
    assert q["reason"] == f"prompt too long: {n_tokens(rows[1]['question'])} tokens > max_prompt_tokens {budget}"
    with pytest.raises(RecipeError, match="model.name_or_path"):
        validate_recipe({"data": {"max_prompt_tokens": 512}})


BAD_TYPES = {  # canonical column -> values of every JSON type it cannot hold
    "id": [{"a": 1}, [1], True, 1.5],
    "source": [3, ["s"], {"s": 1}, False],
    "family": [3, ["math"], {"f": 1}],
    "question": [5, 2.5, ["Compute 1+1."], {"text": "q"}, True],
    "messages": ["Compute 1+1.", 7, {"role": "user"}],
    "answer": [{"value": 2}, [2], True],
    "reasoning": [["step 1", "step 2"], 3, {"r": 1}, False],
}


def _expected(value) -> str:
    return repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."


def test_rows_of_any_bad_type_are_quarantined_never_crash_curation(tmp_path):
    good = {"question": "Compute 1+1.", "answer": "#### 2"}
    rows, expected = [{"id": "ok", **good}], {}
    for col, values in BAD_TYPES.items():
        for j, value in enumerate(values):
            row_id = f"{col}-{j}"
            rows.append({"id": row_id, **good, col: value} if col != "id" else {**good, "id": value})
            key = row_id if col != "id" else f"jsonl0-{len(rows) - 1}"
            expected[key] = f"bad type: {col} is {type(value).__name__} {_expected(value)}, expected"
    (tmp_path / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(tmp_path / "raw.jsonl"), answer_format="gsm8k")],
                      eval_size=1, sft_size=0)
    stats = curate(cfg, tmp_path / "out")
    reasons = {r["id"]: r["reason"] for r in read_split(tmp_path / "out", "quarantine")}
    assert len(reasons) == len(expected) == stats["rows/quarantined"]
    for key, start in expected.items():
        assert reasons[key].startswith(start), (key, reasons[key])
    assert reasons["question-0"] == "bad type: question is int 5, expected text"
    assert reasons["reasoning-0"] == "bad type: reasoning is list ['step 1', 'step 2'], expected text"
    assert stats["rows/eval"] == 1  # the good row survives; nothing was lost


def test_typed_columns_of_parquet_are_quarantined_or_kept_as_text(tmp_path):
    import datetime

    df = pd.DataFrame({"question": [1, 2], "answer": ["#### 1", "#### 2"],
                       "blob": [b"\x00\xff", b"ok"], "when": [datetime.datetime(2026, 1, 1)] * 2})
    df.to_parquet(tmp_path / "t.parquet")
    cfg = DataSection(sources=[Source(kind="parquet", name=str(tmp_path / "t.parquet"), answer_format="gsm8k")],
                      eval_size=1, sft_size=0)
    curate(cfg, tmp_path / "out")
    bad = read_split(tmp_path / "out", "quarantine")
    assert [r["reason"] for r in bad] == ["bad type: question is int 1, expected text",
                                         "bad type: question is int 2, expected text"]
    assert bad[0]["metadata"]["blob"] == "\x00\ufffd" and bad[0]["metadata"]["when"].startswith("2026-01-01")


def test_hf_sources_are_keyed_by_their_data_so_new_upstream_rows_recurate(tmp_path):
    """A `kind: hf` source (here a dataset saved to disk, no network): its data stage key
    follows the data, so a scheduled retraining after an upstream update re-curates."""
    from datasets import Dataset

    from tasks.data.curate import data_key
    from tasks.recipe_checks import load_recipe
    from tests.conftest import CONFIGS

    rows = [{"question": f"Compute {i}+1.", "answer": f"#### {i + 1}"} for i in range(12)]
    path = tmp_path / "hub-copy"
    Dataset.from_list(rows).save_to_disk(str(path))
    src = f"data.sources=[{{kind: hf, name: '{path}', answer_format: gsm8k}}]"
    recipe = load_recipe(CONFIGS / "tiny.yaml", [src, "data.eval_size=2", "data.sft_size=4"])
    first = data_key(recipe)
    assert data_key(recipe) == first  # stable while the data is unchanged
    [r] = list(iter_source_rows(recipe.data.sources[0], 0, 0))[:1]
    assert r["question"] == "Compute 0+1." and r["answer"] == "1"
    Dataset.from_list(rows + [{"question": "Compute 9+9.", "answer": "#### 18"}]).save_to_disk(str(tmp_path / "v2"))
    import shutil

    shutil.rmtree(path)
    shutil.copytree(tmp_path / "v2", path)
    assert data_key(recipe) != first
