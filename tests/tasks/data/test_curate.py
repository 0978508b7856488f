import json

from tasks.data.curate import curate, read_split
from tasks.data.sources import iter_source_rows
from tasks.recipe import DataSection, Source
from tests.conftest import GSM8K


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_quarantine_keeps_every_rejected_row_with_a_reason(tmp_path):
    src = tmp_path / "raw.jsonl"
    _write(src, [
        {"question": "Compute 1+1.", "answer": "2"},
        {"question": "compute  1+1.", "answer": "2"},          # duplicate after normalisation
        {"question": "", "answer": "3"},                        # empty prompt
        {"question": "Compute 2+2."},                           # no answer
        {"question": "x" * 50, "answer": "1"},                  # too long
        "{not json",                                            # unreadable
        {"question": "Compute 3+3.", "answer": "6"},
    ])
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(src))], eval_size=1, sft_size=0,
                      max_prompt_chars=40)
    stats = curate(cfg, tmp_path)
    q = read_split(tmp_path, "quarantine")
    reasons = sorted(r["reason"].split(":")[0].split(" (")[0] for r in q)
    assert len(q) == 5 and stats["rows/quarantined"] == 5
    assert any(r.startswith("exact duplicate") for r in reasons)
    assert "missing or empty question" in reasons and "unreadable" in reasons
    kept = sum(stats[f"rows/{s}"] for s in ("eval", "sft", "grpo"))
    assert kept + len(q) == 7  # nothing lost


def test_code_rows_with_tests_that_cannot_be_judged_are_quarantined_with_the_reason(tmp_path):
    src = tmp_path / "code.jsonl"
    good = [{"type": "assert", "code": "assert double(2) == 4"}, {"type": "io", "input": "3\n", "output": "6\n"}]
    _write(src, [
        {"id": "good", "question": "Write double(x).", "tests": good},
        {"id": "good2", "question": "Write double(x) again.", "tests": good},
        {"id": "strings", "question": "Write f(x).", "tests": [["assert f(1) == 1"]]},
        {"id": "none", "question": "Write g(x)."},
        {"id": "trivial", "question": "Write h(x).", "tests": [{"type": "assert", "code": "assert 1 == 1"}]},
    ])
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(src), family="code")], eval_size=1, sft_size=0)
    curate(cfg, tmp_path)
    reasons = {r["id"]: r["reason"] for r in read_split(tmp_path, "quarantine")}
    assert reasons == {"strings": "bad tests: tests[0]: a list, not a test dict such as "
                                  '{"type": "assert", "code": "assert f(1) == 2"} or '
                                  '{"type": "io", "input": "1\\n", "output": "2\\n"}',
                       "none": "bad tests: no tests",
                       "trivial": "bad tests: tests[0]: test code never refers to the solution "
                                  "(no name it does not define itself)"}
    kept = read_split(tmp_path, "grpo") + read_split(tmp_path, "eval")
    assert sorted(r["id"] for r in kept) == ["good", "good2"] and all(r["metadata"]["tests"] == good for r in kept)


def test_splits_are_disjoint_deterministic_and_cold_start_verified(tmp_path):
    cfg = DataSection(sources=[Source(n=300, params={"max_value": 9})], eval_size=50, sft_size=100)
    curate(cfg, tmp_path / "a")
    curate(cfg, tmp_path / "b")
    splits = {s: read_split(tmp_path / "a", s) for s in ("eval", "sft", "grpo")}
    assert splits == {s: read_split(tmp_path / "b", s) for s in splits}
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert len(ids) == len(set(ids))
    assert len(splits["eval"]) == 50 and len(splits["sft"]) == 100
    assert all(r["completion"].endswith(f"<answer>{r['answer']}</answer>") for r in splits["sft"])


def test_gsm8k_source_extracts_answers_and_reasoning():
    src = Source(kind="jsonl", name=str(GSM8K / "train.jsonl"), answer_format="gsm8k", n=50)
    rows = list(iter_source_rows(src, 0, 0))
    assert rows[0]["answer"] == "72" and "<<" not in rows[0]["reasoning"]
    assert all(r["answer"] and "####" not in r["reasoning"] for r in rows)


def test_gsm8k_train_curates_into_verified_cold_start_traces(tmp_path):
    cfg = DataSection(sources=[
        Source(kind="jsonl", name=str(GSM8K / "train.jsonl"), answer_format="gsm8k", n=400),
    ], eval_size=20, sft_size=50)
    stats = curate(cfg, tmp_path)
    assert stats["rows/sft"] == 50 and stats["rows/eval"] == 20
    # GSM8K traces state the answer in prose: every kept cold-start trace passed the verifier
    assert all(r["completion"].endswith(f"<answer>{r['answer']}</answer>") for r in read_split(tmp_path, "sft"))
