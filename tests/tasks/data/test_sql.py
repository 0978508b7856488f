"""Text-to-SQL rows: the Spider/BIRD layout read from a fixture written in that layout (schema
in the prompt, gold query as answer, unusable rows quarantined with the reason), and the
embedded generator (seeded; every row's reference passes the verifier on its own database)."""

import hashlib
import json

from tasks.data.cold_start import format_completion
from tasks.data.curate import curate, validation_reason
from tasks.data.sources import iter_source_rows
from tasks.data.synthetic import generate
from tasks.recipe import DataSection, Source
from tasks.verifiers import build_reward
from tasks.verifiers.rows import reward_columns


def _spider(spider_dir, **kw):
    src = Source(kind="jsonl", name=str(spider_dir / "train_spider.json"), format="spider", **kw)
    rows = list(iter_source_rows(src, 0, 0))
    return rows, [validation_reason(r, DataSection()) for r in rows]


def _passes(rows):
    reward = build_reward("sql_execution_reward")
    return reward(completions=[format_completion("plan", r["answer"]) for r in rows], **reward_columns(rows))


def test_spider_rows_carry_the_schema_the_gold_query_and_their_database(spider_dir):
    rows, why = _spider(spider_dir)
    first = rows[0]
    assert first["family"] == "sql" and first["answer"] == "SELECT count(*) FROM singer"
    assert first["question"].startswith("CREATE TABLE stadium (Stadium_ID INTEGER PRIMARY KEY")
    assert first["question"].endswith("\nHow many singers do we have?")
    assert first["metadata"]["db_id"] == "concert_singer" and first["metadata"]["db_path"].endswith(
        "database/concert_singer/concert_singer.sqlite")
    good = [r for r, w in zip(rows, why) if w is None]
    assert len(good) == 22 and _passes(good) == [1.0] * 22


def test_spider_rows_whose_gold_fails_or_is_empty_or_lacks_a_database_are_quarantined_with_the_reason(spider_dir):
    rows, why = _spider(spider_dir)
    reasons = {r["metadata"]["nl_question"]: w for r, w in zip(rows, why) if w}
    assert reasons["Show names of singers whose age is above 100."] == "bad gold query: it returns no rows"
    assert reasons["What is the total number of singer ratings?"].startswith("bad gold query: OperationalError")
    assert reasons["How many flights are there?"].startswith("missing database: ")
    assert len(reasons) == 3


def test_sample_rows_and_a_database_dir_elsewhere(spider_dir, tmp_path):
    moved = tmp_path / "dbs"
    (spider_dir / "database").rename(moved)
    rows, why = _spider(spider_dir, database_dir=str(moved), schema_sample_rows=2)
    assert why[0] is None and "\n-- 1, 'Joe Sharp', 'Netherlands', 52, 'F'\n" in rows[0]["question"]


def test_bird_rows_read_sql_and_evidence(spider_dir):
    src = Source(kind="jsonl", name=str(spider_dir / "bird_dev.json"), format="bird")
    rows = list(iter_source_rows(src, 0, 0))
    assert [validation_reason(r, DataSection()) for r in rows] == [None, None]
    assert rows[0]["answer"] == "SELECT COUNT(*) FROM Pets WHERE weight > 10"
    assert rows[0]["question"].endswith("How many heavy pets are there?\nHint: heavy refers to weight > 10")
    assert rows[0]["metadata"]["difficulty"] == "simple" and _passes(rows) == [1.0, 1.0]


def test_curation_compares_questions_not_schemas_and_writes_no_database(spider_dir, tmp_path):
    dbs = sorted((spider_dir / "database").rglob("*.sqlite"))
    before = [hashlib.sha256(p.read_bytes()).hexdigest() for p in dbs]
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(spider_dir / "train_spider.json"), format="spider")],
                      eval_size=4, sft_size=8, verifier="sql_execution_reward")
    stats = curate(cfg, tmp_path / "data")
    # 22 usable rows sharing two schemas: no near duplicates, no held-out contamination
    assert stats["rows/quarantined"] == 3 and stats["rows/eval"] == 4 and stats["rows/sft"] == 8
    quarantine = [json.loads(line) for line in (tmp_path / "data" / "quarantine.jsonl").read_text().splitlines()]
    assert sorted(r["reason"].split(":")[0] for r in quarantine) == ["bad gold query", "bad gold query",
                                                                     "missing database"]
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in dbs] == before
    assert sorted(p.name for p in (spider_dir / "database").rglob("*")) == sorted(
        [*(p.name for p in dbs), *(p.parent.name for p in dbs)])  # no journal or WAL file appeared


def test_the_generator_is_seeded_and_every_reference_passes_on_its_own_database():
    rows = generate("sql", n=200, seed=3)
    assert rows == generate("sql", n=200, seed=3)
    assert _passes(rows) == [1.0] * 200
    assert all(validation_reason(r, DataSection()) is None for r in rows)
    kinds = {r["answer"].split(" FROM")[0].split("(")[0] for r in rows}
    assert {"SELECT name", "SELECT COUNT", "SELECT color, COUNT", "SELECT SUM"} <= kinds
    assert any(" JOIN " in r["answer"] for r in rows) and any("ORDER BY" in r["answer"] for r in rows)
    assert all(len(r["metadata"]["nl_question"].split()) <= 8 for r in rows)
