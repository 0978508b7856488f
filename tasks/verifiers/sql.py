"""SQL reward: run the completion's final query and the row's gold query on the row's database.

Execution accuracy as Spider and BIRD score it: the two result sets must match, as multisets
of rows, in row order only when the gold query orders its outermost SELECT. The query runs
read-only and on a budget (``tasks.verifiers.sql_exec``); the gold result is computed once per
(database, gold query) and cached.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from pathlib import Path

from tasks.verifiers._base import Reward, column, log_metric
from tasks.verifiers.math import answer_region
from tasks.verifiers.sql_exec import QueryResult, SqlLimits, database_file, gold_orders, normalise_rows, run_query

__all__ = ["SqlExecutionReward", "extract_sql", "results_match"]

_FENCE = re.compile(r"```[ \t]*(sql|sqlite)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_MAX_PERMUTED_COLUMNS = 6


def extract_sql(text: str, prefilled_think: bool = False) -> str | None:
    """The final query: the last ```sql (or bare ```) block after the reasoning, else the last
    ``<answer>`` block's text (a fence inside it is unwrapped); ``None`` when there is neither."""
    region = answer_region(text or "", prefilled_think=prefilled_think)
    if not region:
        return None
    blocks = [body for _, body in _FENCE.findall(region)]
    if not blocks:
        blocks = _ANSWER.findall(region)
    sql = blocks[-1].strip() if blocks else ""
    return sql or None


def _multiset_f1(pred: list[tuple], gold: list[tuple]) -> float:
    common = sum((Counter(pred) & Counter(gold)).values())
    return 0.0 if not common else 2 * common / (len(pred) + len(gold))


def results_match(pred: QueryResult, gold: QueryResult, *, ordered: bool, decimals: int = 6,
                  column_order: str = "strict", partial: bool = False) -> float:
    """1.0 when `pred`'s rows equal `gold`'s (module docstring; floats rounded to `decimals`
    places; ``column_order="any"``: some permutation of the predicted columns matches, up to 6
    columns), else 0.0, or with `partial` the multiset F1 of the rows (same column count)."""
    if pred.columns != gold.columns:
        return 0.0
    g = normalise_rows(gold.rows, decimals)
    p = normalise_rows(pred.rows, decimals)
    perms = [tuple(range(pred.columns))]
    if column_order == "any" and 1 < pred.columns <= _MAX_PERMUTED_COLUMNS:
        perms = list(itertools.permutations(range(pred.columns)))
    best = 0.0
    for perm in perms:
        rows = [tuple(r[i] for i in perm) for r in p]
        if (rows == g) if ordered else (Counter(rows) == Counter(g)):
            return 1.0
        if partial:
            best = max(best, _multiset_f1(rows, g))
    return best


@functools.lru_cache(maxsize=8192)
def _gold_result(db: str, db_version: tuple, gold: str, limits: SqlLimits) -> QueryResult:
    return run_query(db, gold, limits)


def _version(path: Path) -> tuple:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


class SqlExecutionReward(Reward):
    """1.0 when the completion's final SQL returns the same result as the row's gold query on the
    row's database, else 0.0; ``None`` for a row without a database or gold query, or whose gold
    query fails or returns no rows (counted as ``sql/gold_unusable``).

    Scoring rule (Spider/BIRD execution accuracy): the final query is the last ```sql block after
    the reasoning, else the last ``<answer>`` block. Results are compared as multisets of rows;
    in order only when the gold query's outermost SELECT has ORDER BY. Floats are rounded to
    ``float_decimals`` places before comparing (2 and 2.0 are equal); text is compared exactly.
    Column order: ``"strict"`` (BIRD: the columns in the gold's order) or ``"any"`` (Spider's
    test-suite: any permutation). ``partial_credit=True``: the multiset F1 of the rows instead
    of 0 for a near miss. A query that errors scores 0; one over its budget scores 0 and is
    counted as ``sql/budget_exceeded`` (why: ``stats``).
    Budget, per query: ``timeout_s`` wall clock, ``max_vm_steps`` SQLite VM instructions,
    ``max_rows`` result rows, ``max_memory_mb`` memory growth, ``max_value_bytes`` per value,
    ``max_sql_chars``. Params also: ``db_path_column`` (a SQLite file), ``db_sql_column``
    (the database as SQL text, built once into a cache file), ``gold_column``,
    ``prefilled_think``.
    """

    name = "sql_execution_reward"
    FAMILIES = ("sql",)
    COLUMNS = ("gold_column",)
    PARAMS = {"timeout_s": 1.0, "max_vm_steps": 5_000_000, "max_rows": 10_000, "max_memory_mb": 256,
              "max_value_bytes": 100_000, "max_sql_chars": 4000, "float_decimals": 6, "column_order": "strict",
              "partial_credit": False, "prefilled_think": False, "db_path_column": "db_path",
              "db_sql_column": "db_sql", "gold_column": "answer"}

    def _validate(self) -> None:
        p = self.params
        if not 0 < p["timeout_s"] <= 60:
            self._fail("timeout_s must be in (0, 60]")
        for k in ("max_vm_steps", "max_rows", "max_memory_mb", "max_value_bytes", "max_sql_chars"):
            if p[k] <= 0:
                self._fail(f"{k} must be > 0")
        if not 0 <= p["float_decimals"] <= 15:
            self._fail("float_decimals must be in [0, 15]")
        if p["column_order"] not in ("strict", "any"):
            self._fail("column_order must be 'strict' (BIRD) or 'any' (Spider test-suite)")
        self.stats = {"queries": 0, "matched": 0, "errors": 0, "budget_exceeded": 0, "gold_unusable": 0,
                      "budget_reasons": Counter()}

    def limits(self) -> SqlLimits:
        p = self.params
        return SqlLimits(timeout_s=p["timeout_s"], max_vm_steps=p["max_vm_steps"], max_rows=p["max_rows"],
                         max_memory_mb=p["max_memory_mb"], max_value_bytes=p["max_value_bytes"],
                         max_sql_chars=p["max_sql_chars"])

    def database(self, db_path, db_sql) -> Path | None:
        """The row's database file: its path, or the file built from its SQL text."""
        if isinstance(db_path, str) and db_path:
            return Path(db_path) if Path(db_path).is_file() else None
        if isinstance(db_sql, str) and db_sql:
            return database_file(db_sql)
        return None

    def gold(self, db: Path, gold_sql: str) -> QueryResult:
        """The gold query's result on `db`, computed once (cached by file, version and query)."""
        return _gold_result(str(db), _version(db), gold_sql, self.limits())

    def score_one(self, text: str, db: Path | None, gold_sql) -> float | None:
        if db is None or not isinstance(gold_sql, str) or not gold_sql.strip():
            return None
        gold = self.gold(db, gold_sql)
        if gold.status != "ok" or not gold.rows:
            self.stats["gold_unusable"] += 1
            return None
        sql = extract_sql(text, self.params["prefilled_think"])
        if sql is None:
            return 0.0
        self.stats["queries"] += 1
        pred = run_query(db, sql, self.limits())
        if pred.status != "ok":
            self.stats["errors" if pred.status == "error" else "budget_exceeded"] += 1
            if pred.status == "budget":
                self.stats["budget_reasons"][pred.why.split(" ")[-1]] += 1
            return 0.0
        score = results_match(pred, gold, ordered=gold_orders(gold_sql), decimals=self.params["float_decimals"],
                              column_order=self.params["column_order"], partial=self.params["partial_credit"])
        self.stats["matched"] += score == 1.0
        return score

    def score_batch(self, texts, prompts, kwargs):
        p, n = self.params, len(texts)
        before = {k: self.stats[k] for k in ("queries", "errors", "budget_exceeded", "gold_unusable")}
        paths, scripts = column(kwargs, p["db_path_column"], n), column(kwargs, p["db_sql_column"], n)
        golds = column(kwargs, p["gold_column"], n)
        out = [self.score_one(t, self.database(dp, ds), g) for t, dp, ds, g in zip(texts, paths, scripts, golds)]
        for k, v in before.items():
            if self.stats[k] > v or k == "budget_exceeded":
                log_metric(kwargs, f"sql/{k}", self.stats[k] - v)
        return out
