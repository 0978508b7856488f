"""Running an untrusted SQL query against a row's SQLite database, read-only and on a budget.

    result = run_query(db_path, "SELECT name FROM singer", SqlLimits())
    result.status   # "ok" | "error" | "budget"; result.rows, result.ordered, result.why

Safe by construction, in this process (docs/verifiers.md says why not the sandbox):
- the database is opened through a ``file:...?mode=ro&immutable=1`` URI: SQLite cannot write,
  lock or create a journal for it, whatever the statement;
- an authorizer allows only reading: SELECT, reading columns, recursive CTEs and the functions
  of `_FUNCTIONS` (aggregates, window, text, date and math functions). Everything else (ATTACH,
  every PRAGMA, INSERT, UPDATE, DELETE, CREATE, DROP, transactions, ``load_extension``, and
  ``printf``/``format``, whose one call with a huge precision runs for a minute inside a single
  VM step where no budget can stop it) is refused before the statement runs;
- one statement per query (sqlite3 refuses a second), ``SQLITE_LIMIT_LENGTH`` bounds any single
  string or blob (``max_value_bytes``) and LIKE/GLOB patterns are at most 500 characters, so no
  single function call runs long; temporary tables and sorts stay in memory;
- a progress handler, every ``_TICK`` VM instructions, stops the query past ``max_vm_steps``,
  ``timeout_s`` of wall clock, or ``max_memory_mb`` more resident memory than at its start,
  so ``WITH RECURSIVE`` without end and cartesian blow-ups end within the budget;
- at most ``max_rows`` result rows and ``max_result_bytes`` of values are fetched.
A query over any budget is ``status="budget"`` with ``why`` naming it; bad SQL is ``"error"``.

Embedded rows carry their database as SQL text (``db_sql``): `database_file` builds it once into
a cache file keyed by the text's digest and every query then opens that file read-only.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

__all__ = ["QueryResult", "SqlLimits", "database_file", "gold_orders", "normalise_rows", "run_query"]

_TICK = 100  # VM instructions between progress-handler calls
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
#: the functions a query may call (an allow-list: a new SQLite function is refused until added)
_FUNCTIONS = frozenset("""
    count sum avg min max total group_concat string_agg
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
    abs round sign coalesce ifnull nullif iif typeof length lower upper substr substring trim ltrim rtrim
    replace instr like glob char unicode quote concat concat_ws
    date time datetime julianday strftime unixepoch
    ceil ceiling floor mod pow power sqrt exp ln log log2 log10 pi
    """.split())


@dataclass(frozen=True)
class SqlLimits:
    """The budget of one query (the reward's parameters of the same names)."""

    timeout_s: float = 1.0
    max_vm_steps: int = 5_000_000
    max_rows: int = 10_000
    max_result_bytes: int = 4 << 20
    max_value_bytes: int = 100_000
    max_memory_mb: int = 256
    max_sql_chars: int = 4000


@dataclass
class QueryResult:
    status: str  # "ok" | "error" | "budget"
    rows: list[tuple] = field(default_factory=list)
    columns: int = 0
    why: str = ""


def _authorize(action: int, arg1, arg2, db_name, trigger) -> int:
    if action not in _ALLOWED:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() not in _FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Budget:
    """The progress handler: non-zero (interrupt) once any budget is spent; `why` says which."""

    def __init__(self, limits: SqlLimits):
        self.limits, self.steps, self.why = limits, 0, ""
        self.deadline = time.monotonic() + limits.timeout_s
        self.has_proc = os.path.exists("/proc/self/statm")
        self.base = _resident_bytes() if self.has_proc else 0

    def __call__(self) -> int:
        self.steps += _TICK
        if self.steps > self.limits.max_vm_steps:
            self.why = f"more than {self.limits.max_vm_steps} VM steps"
        elif time.monotonic() > self.deadline:
            self.why = f"over {self.limits.timeout_s} s"
        elif self.has_proc and self.steps % (_TICK * 50) == 0 and \
                _resident_bytes() - self.base > self.limits.max_memory_mb << 20:
            self.why = f"over {self.limits.max_memory_mb} MB of memory"
        return 1 if self.why else 0


def _connect(path: Path, limits: SqlLimits) -> sqlite3.Connection:
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA temp_store = MEMORY")  # trusted setup, before the authorizer
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, max(limits.max_sql_chars * 4, 1000))
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 500)
    conn.setlimit(sqlite3.SQLITE_LIMIT_WORKER_THREADS, 0)
    conn.set_authorizer(_authorize)
    return conn


def _size(value) -> int:
    return len(value) if isinstance(value, (str, bytes)) else 8


def run_query(db_path: str | Path, sql: str, limits: SqlLimits) -> QueryResult:
    """Run one statement on the database at `db_path` under `limits` (module docstring); never raises
    for anything the query does."""
    sql = (sql or "").strip().rstrip(";").strip()
    if not sql:
        return QueryResult("error", why="empty query")
    if len(sql) > limits.max_sql_chars:
        return QueryResult("error", why=f"query over {limits.max_sql_chars} characters")
    budget = _Budget(limits)
    try:
        conn = _connect(Path(db_path), limits)
    except sqlite3.Error as e:
        return QueryResult("error", why=f"cannot open the database: {e}")
    try:
        conn.set_progress_handler(budget, _TICK)
        cur = conn.execute(sql)
        rows, size = [], 0
        while batch := cur.fetchmany(256):
            rows += batch
            size += sum(_size(v) for r in batch for v in r)
            if len(rows) > limits.max_rows:
                return QueryResult("budget", why=f"more than {limits.max_rows} result rows")
            if size > limits.max_result_bytes:
                return QueryResult("budget", why=f"more than {limits.max_result_bytes} bytes of results")
        return QueryResult("ok", rows=rows, columns=len(cur.description or ()))
    except (sqlite3.Error, sqlite3.Warning, OverflowError, ValueError, MemoryError, RecursionError) as e:
        if budget.why:
            return QueryResult("budget", why=budget.why)
        if isinstance(e, sqlite3.DataError) or "too big" in str(e):
            return QueryResult("budget", why=f"a value over {limits.max_value_bytes} bytes")
        return QueryResult("error", why=f"{type(e).__name__}: {e}")
    finally:
        conn.close()


# ---------------------------------------------------------------- comparing results
def _strip_literals(sql: str) -> str:
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S)


def gold_orders(sql: str) -> bool:
    """Whether the outermost query of `sql` has an ORDER BY (then row order counts), ignoring
    ORDER BYs inside parentheses (subqueries, window functions) and inside literals."""
    text, depth, top = _strip_literals(sql), 0, []
    for ch in text:
        depth += ch == "("
        top.append(ch if depth == 0 else " ")
        depth -= ch == ")" and depth > 0
    return re.search(r"\border\s+by\b", "".join(top), re.I) is not None


def _value(v, decimals: int):
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        r = round(v, decimals) + 0.0  # -0.0 -> 0.0
        return int(r) if r.is_integer() and abs(r) < 2**53 else r
    return v


def normalise_rows(rows: list[tuple], decimals: int) -> list[tuple]:
    """Rows with every float rounded to `decimals` places (2.0 and 2 then compare equal)."""
    return [tuple(_value(v, decimals) for v in r) for r in rows]


# ---------------------------------------------------------------- embedded databases
def _cache_dir() -> Path:
    d = Path(os.environ.get("RLVR_SQL_DB_CACHE") or Path(tempfile.gettempdir()) / f"rlvr-sql-dbs-{os.getuid()}")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def database_file(db_sql: str) -> Path:
    """The SQLite file built from the trusted script `db_sql` (CREATE and INSERT statements from
    the row's generator), written once per distinct script into the cache directory; queries
    open it read-only."""
    path = _cache_dir() / f"{hashlib.sha256(db_sql.encode()).hexdigest()[:32]}.sqlite"
    if not path.exists():
        conn = sqlite3.connect(":memory:")  # built in memory and written in one go: no journal, no fsync
        try:
            conn.executescript(db_sql)
            image = conn.serialize()
        finally:
            conn.close()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(image)
        os.replace(tmp, path)
    return path
