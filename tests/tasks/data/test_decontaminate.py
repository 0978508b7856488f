import json

import pytest

from tasks.data.curate import curate, read_split
from tasks.data.decontaminate import BenchmarkIndex, benchmark_sources
from tasks.recipe import DataSection, Recipe, RecipeError, Source
from tasks.recipe_checks import validate_recipe
from tests.conftest import GSM8K


def _gsm8k_test(n):
    with (GSM8K / "test.jsonl").open() as f:
        return [json.loads(line)["question"] for _, line in zip(range(n), f)]


def test_one_shared_8gram_contaminates_seven_words_do_not():
    index = BenchmarkIndex(ngram=8)
    index.add("bench", ["The quick brown fox jumps over the lazy dog near the river bank."], ["b0"])
    hits = index.find([
        "Yesterday THE quick  brown fox jumps over the lazy dog again.",  # 8 shared words (case, spacing)
        "The quick brown fox jumps over the cat.",                        # only 7 in a row
        "Compute 1+2.",
    ])
    assert hits[0] == [("bench", "b0", "the quick brown fox jumps over the lazy")]
    assert hits[1] == [] and hits[2] == []


def test_short_prompts_match_only_identical_short_prompts():
    index = BenchmarkIndex(ngram=8)
    index.add("bench", ["Compute 1+2.", "What is two plus three?"], ["b0", "b1"])
    hits = index.find(["compute  1+2.", "Compute 1+3.", "What is two plus three"])
    assert [h[0][:2] if h else None for h in hits] == [("bench", "b0"), None, None]


def test_curate_quarantines_contaminated_rows_per_benchmark(tmp_path):
    bench_a, bench_b = _gsm8k_test(20), ["An unrelated benchmark prompt about seven red apples on a wooden table."]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"question": q, "answer": "0"}) + "\n" for q in bench_a))
    (tmp_path / "b.jsonl").write_text(json.dumps({"problem": bench_b[0]}) + "\n")
    rows = [{"id": f"clean{i}", "question": f"Compute {i}+{i}.", "answer": str(2 * i)} for i in range(30)]
    rows += [{"id": "leak-a", "question": "Rephrased: " + bench_a[3], "answer": "1"},
             {"id": "leak-b", "question": "Count: " + bench_b[0].lower(), "answer": "7"}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(tmp_path / "rows.jsonl"))], eval_size=5, sft_size=0,
                      decontamination={"benchmarks": [str(tmp_path / "a.jsonl"),
                                                      {"kind": "jsonl", "name": str(tmp_path / "b.jsonl"),
                                                       "columns": {"question": "problem"}}]})
    stats = curate(cfg, tmp_path / "out")
    q = {r["id"]: r["reason"] for r in read_split(tmp_path / "out", "quarantine")}
    assert set(q) == {"leak-a", "leak-b"}
    assert q["leak-a"].startswith("contaminated:") and "row jsonl0-3" in q["leak-a"]
    per_benchmark = {k: v for k, v in stats.items() if k.startswith("decontamination/")}
    assert per_benchmark == {f"decontamination/{tmp_path.name}/a/hits": 1, f"decontamination/{tmp_path.name}/b/hits": 1,
                             "decontamination/heldout/hits": 0}
    assert stats["rows/eval"] + stats["rows/grpo"] + stats["rows/quarantined"] == len(rows)


def test_training_rows_are_decontaminated_against_the_heldout_split(tmp_path):
    shared = "a farmer has twelve cows and buys seven more cows at the market"
    rows = [{"id": f"r{i}", "question": f"Variant {i}: {shared} on day {i}. How many cows?", "answer": str(19)}
            for i in range(12)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(tmp_path / "rows.jsonl"))], eval_size=2, sft_size=0,
                      dedup={"near_duplicate_threshold": None})
    stats = curate(cfg, tmp_path / "out")
    # every training row shares 8-grams with the held-out rows: none may be trained on
    assert stats["rows/eval"] == 2 and stats["rows/grpo"] == 0 and stats["decontamination/heldout/hits"] == 10
    reasons = [r["reason"] for r in read_split(tmp_path / "out", "quarantine")]
    assert all(r.startswith("contaminated:") and "heldout row r" in r for r in reasons)


def test_evaluation_benchmarks_local_files_are_decontaminated_against(tmp_path):
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"problem": "p", "answer": "1"}) + "\n")
    recipe = Recipe.model_validate({"evaluation": {"benchmarks": [
        {"name": "heldout"},
        {"name": "gsm8k_local", "lm_eval": "gsm8k",
         "data_files": {"train": str(GSM8K / "train.jsonl"), "test": str(GSM8K / "test.jsonl")}},
        {"name": "mine", "path": str(mine), "columns": {"question": "problem"}}]}})
    sources = benchmark_sources(recipe)
    # the few-shot `train` file is not an evaluation set; the held-out split is checked by curate itself
    assert {k: (s.name, s.columns["question"]) for k, s in sources.items()} == {
        "gsm8k_local/test": (str(GSM8K / "test.jsonl"), "question"), "mine": (str(mine), "problem")}


def test_benchmark_paths_are_checked_before_compute(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(RecipeError, match=f"data.decontamination.benchmarks.0.name: file not found: {missing}"):
        validate_recipe({"data": {"decontamination": {"benchmarks": [str(missing)]}}})
    with pytest.raises(RecipeError, match="must end in one of"):
        validate_recipe({"data": {"decontamination": {"benchmarks": ["bench.txt"]}}})
