"""sql_execution_reward: execution accuracy on hand-written cases, and every hostile query shape
bounded in time, scored 0, counted, and leaving the database file byte-for-byte unchanged."""

import hashlib
import sqlite3
import time

import pytest

from tasks.verifiers import build_reward
from tasks.verifiers.sql import extract_sql
from tasks.verifiers.sql_exec import SqlLimits, gold_orders, run_query

SCHEMA = """
CREATE TABLE owner(id INTEGER PRIMARY KEY, name TEXT, city TEXT);
CREATE TABLE pet(id INTEGER PRIMARY KEY, name TEXT, age INTEGER, weight REAL, owner_id INTEGER REFERENCES owner(id));
INSERT INTO owner VALUES (1, 'Ann', 'Oslo'), (2, 'Bob', 'Rome');
INSERT INTO pet VALUES (1, 'Rex', 3, 10.5, 1), (2, 'Tom', 5, 4.25, 1), (3, 'Kit', 5, 3.0, 2), (4, 'Max', 9, 30.0, 2);
"""


@pytest.fixture()
def db(tmp_path):
    path = tmp_path / "pets" / "pets.sqlite"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.commit()
    conn.close()
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _score(reward, db, gold, completion):
    return reward(completions=[completion], answer=[gold], db_path=[str(db)], family=["sql"])[0]


def _answer(sql):
    return f"<think>\nplan\n</think>\n<answer>{sql}</answer>"


@pytest.mark.parametrize("gold, pred", [
    ("SELECT COUNT(*) FROM pet WHERE age > 3", "SELECT count(id) FROM pet WHERE NOT age <= 3"),
    ("SELECT name FROM pet WHERE age = 5", "select p.name from pet as p where p.age in (5) order by name desc"),
    ("SELECT pet.name FROM pet JOIN owner ON pet.owner_id = owner.id WHERE owner.city = 'Rome'",
     "SELECT name FROM pet WHERE owner_id IN (SELECT id FROM owner WHERE city = 'Rome')"),
    ("SELECT AVG(weight) FROM pet", "SELECT SUM(weight) / COUNT(*) FROM pet"),
    ("SELECT MAX(age) FROM pet", "SELECT 9.0000000001"),  # within the 6-decimal rounding
    ("SELECT name FROM pet ORDER BY age DESC, name LIMIT 2", "SELECT name FROM pet ORDER BY age DESC, name LIMIT 2;"),
])
def test_equivalent_queries_written_differently_score_1(db, gold, pred):
    assert _score(build_reward("sql_execution_reward"), db, gold, _answer(pred)) == 1.0


@pytest.mark.parametrize("gold, pred", [
    ("SELECT COUNT(*) FROM pet WHERE age > 3", "SELECT COUNT(*) FROM pet WHERE age >= 3"),  # off by one
    ("SELECT name FROM pet WHERE age = 5", "SELECT DISTINCT age FROM pet WHERE age = 5"),
    ("SELECT name FROM pet WHERE age = 5", "SELECT name, age FROM pet WHERE age = 5"),  # extra column
    ("SELECT name FROM pet", "SELECT DISTINCT name FROM pet UNION ALL SELECT 'Rex'"),  # multiset, not set
    ("SELECT AVG(weight) FROM pet", "SELECT AVG(age) FROM pet"),
    ("SELECT name FROM pet ORDER BY age DESC LIMIT 2", "SELECT name FROM pet ORDER BY age LIMIT 2"),
    ("SELECT name, age FROM pet", "SELECT age, name FROM pet"),  # column order is strict by default
])
def test_near_misses_score_0(db, gold, pred):
    assert _score(build_reward("sql_execution_reward"), db, gold, _answer(pred)) == 0.0


def test_row_order_counts_only_when_the_gold_orders(db):
    reward = build_reward("sql_execution_reward")
    unordered, reversed_ = "SELECT name FROM pet", "SELECT name FROM pet ORDER BY id DESC"
    assert _score(reward, db, unordered, _answer(reversed_)) == 1.0
    assert _score(reward, db, "SELECT name FROM pet ORDER BY id", _answer(reversed_)) == 0.0
    assert gold_orders("SELECT * FROM (SELECT name FROM pet ORDER BY id LIMIT 2)") is False
    assert gold_orders("SELECT name FROM pet WHERE name = 'order by' ") is False
    assert gold_orders("select name from pet Order  By 1") is True


def test_column_order_any_and_partial_credit_only_when_asked(db):
    swapped = _answer("SELECT age, name FROM pet")
    assert _score(build_reward("sql_execution_reward", {"column_order": "any"}), db, "SELECT name, age FROM pet",
                  swapped) == 1.0
    half = _answer("SELECT name FROM pet WHERE age = 5 UNION ALL SELECT 'Zed'")
    assert _score(build_reward("sql_execution_reward"), db, "SELECT name FROM pet WHERE age > 3", half) == 0.0
    partial = _score(build_reward("sql_execution_reward", {"partial_credit": True}), db,
                     "SELECT name FROM pet WHERE age > 3", half)
    assert partial == pytest.approx(2 * 2 / (3 + 3))


def test_extraction_sql_block_or_answer_tags_after_the_reasoning():
    assert extract_sql("<think>\n```sql\nSELECT 1\n```\n</think>\n```sql\nSELECT 2\n```") == "SELECT 2"
    assert extract_sql("<think>x</think><answer>```sql\nSELECT 3\n```</answer>") == "SELECT 3"
    assert extract_sql("<think>x</think><answer> SELECT 4 </answer>") == "SELECT 4"
    assert extract_sql("<think>never closed <answer>SELECT 5</answer>") is None
    assert extract_sql("no query here") is None


@pytest.mark.parametrize("pred", [
    "SELECT", "SELECT * FROM nowhere", "SELECT nope FROM pet", "", "SELECT 1; SELECT 2",
    "SELECT name FROM pet WHERE", "SELECT x'zz'",
])
def test_bad_sql_scores_0_and_never_raises(db, pred):
    reward = build_reward("sql_execution_reward")
    assert _score(reward, db, "SELECT name FROM pet", _answer(pred)) == 0.0


HOSTILE = {
    "endless recursive CTE": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c",
    "cartesian blow-up": "SELECT COUNT(*) FROM pet a, pet b, pet c, pet d, pet e, pet f, pet g, pet h, pet i, pet j, "
                         "pet k, pet l, pet m, pet n, pet o",
    "sorted cartesian blow-up": "SELECT a.name FROM pet a, pet b, pet c, pet d, pet e, pet f, pet g, pet h, pet i, "
                                "pet j ORDER BY a.name || j.name",
    "huge result": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 50000) SELECT x FROM c",
    "huge value": "WITH RECURSIVE c(s) AS (SELECT 'xxxxxxxxxx' UNION ALL SELECT s || s FROM c) SELECT length(s) FROM c",
    "huge result bytes": "WITH RECURSIVE c(s, n) AS (SELECT 'x', 0 UNION ALL SELECT s || s, n + 1 FROM c "
                         "WHERE n < 16) SELECT c.s FROM c, c AS d, c AS e",
}


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_hostile_queries_end_within_budget_score_0_and_are_counted(db, shape):
    reward = build_reward("sql_execution_reward", {"timeout_s": 1.0})
    before = _digest(db)
    logged = {}
    start = time.monotonic()
    scores = reward(completions=[_answer(HOSTILE[shape])], answer=["SELECT name FROM pet"], db_path=[str(db)],
                    family=["sql"], log_metric=lambda k, v: logged.__setitem__(k, v))
    assert scores == [0.0]
    assert time.monotonic() - start < 3.0  # the 1 s budget plus the gold query and setup, on a loaded machine
    assert reward.stats["budget_exceeded"] == 1 and logged["sql/budget_exceeded"] == 1
    assert _digest(db) == before


@pytest.mark.parametrize("pred", [
    "DROP TABLE pet", "DELETE FROM pet", "UPDATE pet SET age = 0", "INSERT INTO pet(name) VALUES ('x')",
    "CREATE TABLE t(x)", "CREATE TEMP TABLE t AS SELECT * FROM pet", "ATTACH DATABASE '{other}' AS o",
    "PRAGMA journal_mode = WAL", "PRAGMA writable_schema = 1", "VACUUM", "VACUUM INTO '{other}'",
    "SELECT load_extension('/tmp/evil')", "SELECT printf('%.*c', 1000000000, 'x')", "SELECT zeroblob(99999999)", "BEGIN IMMEDIATE", "ANALYZE",
    "WITH x AS (SELECT 1) DELETE FROM pet", "REPLACE INTO pet(id, name) VALUES (1, 'x')",
])
def test_writes_attach_pragmas_and_extensions_are_refused_and_nothing_is_written(db, tmp_path, pred):
    other = tmp_path / "other.sqlite"
    before, files = _digest(db), sorted(p.name for p in db.parent.iterdir())
    reward = build_reward("sql_execution_reward")
    assert _score(reward, db, "SELECT name FROM pet", _answer(pred.format(other=other))) == 0.0
    assert reward.stats["errors"] == 1
    assert _digest(db) == before and sorted(p.name for p in db.parent.iterdir()) == files  # no journal, no WAL
    assert not other.exists()


def test_the_gold_result_is_computed_once_per_row(db):
    reward = build_reward("sql_execution_reward")
    gold = "SELECT name FROM pet WHERE age > 4 -- cached"
    for _ in range(3):
        _score(reward, db, gold, _answer("SELECT 1"))
    from tasks.verifiers.sql import _gold_result

    assert _gold_result.cache_info().currsize >= 1
    hits = _gold_result.cache_info().hits
    _score(reward, db, gold, _answer("SELECT 1"))
    assert _gold_result.cache_info().hits == hits + 1


def test_unusable_gold_and_rows_without_a_database_are_not_scored(db):
    reward = build_reward("sql_execution_reward")
    assert _score(reward, db, "SELECT name FROM pet WHERE age > 100", _answer("SELECT 1")) is None  # empty gold
    assert _score(reward, db, "SELECT nope FROM pet", _answer("SELECT 1")) is None
    assert reward(completions=["x"], answer=["SELECT 1"], family=["sql"]) == [None]
    assert reward(completions=["x"], answer=["SELECT 1"], family=["math"], db_path=[str(db)]) == [None]
    assert reward.stats["gold_unusable"] == 2


def test_embedded_databases_from_sql_text_are_built_once_and_read_only(tmp_path, monkeypatch):
    monkeypatch.setenv("RLVR_SQL_DB_CACHE", str(tmp_path / "cache"))
    reward = build_reward("sql_execution_reward")
    cols = {"answer": ["SELECT COUNT(*) FROM pet"] * 2, "db_sql": [SCHEMA] * 2, "family": ["sql"] * 2}
    assert reward(completions=[_answer("SELECT 4"), _answer("DELETE FROM pet")], **cols) == [1.0, 0.0]
    (built,) = list((tmp_path / "cache").iterdir())
    digest = _digest(built)
    assert reward(completions=[_answer("SELECT COUNT(*) FROM pet")] * 2, **cols) == [1.0, 1.0]
    assert _digest(built) == digest and len(list((tmp_path / "cache").iterdir())) == 1


@pytest.mark.parametrize("op, wildcard", [("LIKE", "%"), ("GLOB", "*")])
def test_backtracking_patterns_on_the_longest_strings_end_fast(db, op, wildcard):
    sql = (f"WITH RECURSIVE c(s, n) AS (SELECT 'a', 0 UNION ALL SELECT s || s, n + 1 FROM c WHERE n < 16) "
           f"SELECT COUNT(*) FROM c WHERE s {op} replace(substr(s, 1, 240), 'a', '{wildcard}a') || 'b'")
    start = time.monotonic()
    assert run_query(db, sql, SqlLimits()).rows == [(0,)]
    assert time.monotonic() - start < 1.0


def test_run_query_reports_why_a_budget_ran_out(db):
    steps = run_query(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c",
                      SqlLimits(max_vm_steps=10_000, timeout_s=10))
    assert steps.status == "budget" and "VM steps" in steps.why
    rows = run_query(db, "SELECT * FROM pet", SqlLimits(max_rows=2))
    assert rows.status == "budget" and "result rows" in rows.why


@pytest.mark.parametrize("params", [{"timeout_s": 0.0}, {"max_rows": 0}, {"column_order": "loose"},
                                    {"float_decimals": 20}])
def test_bad_parameters_are_refused(params):
    with pytest.raises(ValueError):
        build_reward("sql_execution_reward", params)
