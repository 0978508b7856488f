import json
import random

import numpy as np

from tasks.data.curate import curate, read_split
from tasks.data.dedup import MinHasher, earliest_duplicate
from tasks.data.ngrams import WordHashes
from tasks.recipe import DataSection, DedupSection, Source
from tests.conftest import GSM8K


def _gsm8k_questions(n):
    with (GSM8K / "train.jsonl").open() as f:
        return [json.loads(line)["question"] for _, line in zip(range(n), f)]


def test_text_hashes_ignore_case_and_whitespace_and_not_batch_context():
    a = WordHashes.of(["Compute 1+2.", "  compute\t1+2. ", "Compute 1-2."]).text_hashes()
    assert a[0] == a[1] != a[2]
    alone = WordHashes.of(["Compute 1-2."]).text_hashes()
    assert alone[0] == a[2]  # a hash does not depend on the other rows of its batch


def _variant(words, k, rng):
    """`words` with k positions replaced by fresh words."""
    out = list(words)
    for i in rng.sample(range(len(out)), k):
        out[i] = f"new{rng.random()}"
    return out


def test_minhash_lsh_catches_close_pairs_and_spares_distant_ones():
    # Single-word shingles over 100 distinct words: k replacements give Jaccard (100-k)/(100+k).
    rng = random.Random(0)
    hasher = MinHasher(DedupSection(near_duplicate_threshold=0.8, shingle_words=1))
    found = {}
    for k, jaccard in ((3, 0.94), (30, 0.54)):
        hits = 0
        for t in range(60):
            base = [f"w{t}-{i}" for i in range(100)]
            bands = hasher.band_hashes(WordHashes.of([" ".join(base), " ".join(_variant(base, k, rng))]))
            hits += bool((bands[0] == bands[1]).any())
        found[jaccard] = hits / 60
    assert found[0.94] >= 0.95 and found[0.54] <= 0.05


def test_earliest_duplicate_points_at_the_first_usable_copy():
    exact = np.array([7, 7, 8, 7, 9], dtype=np.uint64)
    usable = np.array([False, True, True, True, True])  # row 0 is invalid: never an anchor
    bands = np.array([[1, 2], [3, 4], [5, 6], [3, 4], [9, 6]], dtype=np.uint64)
    exact_of, near_of = earliest_duplicate(exact, list(bands.T), usable)
    assert exact_of.tolist() == [-1, -1, -1, 1, -1]
    assert near_of.tolist() == [-1, -1, -1, -1, 2]  # row 4 shares band 1 with row 2


def test_curate_quarantines_near_duplicates_of_real_problems(tmp_path):
    questions = _gsm8k_questions(300)
    rows = [{"id": f"q{i}", "question": q, "answer": "1"} for i, q in enumerate(questions)]
    rows.append({"id": "near", "question": questions[5] + " Show your work.", "answer": "1"})
    rows.append({"id": "exact", "question": questions[7].upper(), "answer": "1"})
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(src))], eval_size=10, sft_size=0)
    stats = curate(cfg, tmp_path / "out")
    reasons = {r["id"]: r["reason"] for r in read_split(tmp_path / "out", "quarantine")}
    assert reasons["near"].startswith("near duplicate: of q5")
    assert reasons["exact"] == "exact duplicate: of q7"
    # distinct GSM8K problems are not near duplicates of one another at the default threshold
    assert stats["quarantine/near_duplicate"] == 1 and stats["quarantine/exact_duplicate"] == 1

    off = cfg.model_copy(update={"dedup": DedupSection(near_duplicate_threshold=None)})
    stats = curate(off, tmp_path / "exact-only")
    assert "quarantine/near_duplicate" not in stats and stats["rows/quarantined"] == 1
