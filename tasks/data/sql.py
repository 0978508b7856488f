"""Text-to-SQL rows: the Spider/BIRD layout, the prompt with the schema, the embedded generator.

A SQL row's prompt (`question`) is the database's CREATE statements (optionally a few sample
rows each) followed by the natural-language question; its `answer` is the gold query; its
metadata carries `db_id`, `nl_question` (question and BIRD's `evidence`: what curation compares
for duplicates and contamination, since rows on one database share the schema) and the
database: `db_path` (a SQLite file) or `db_sql` (its SQL text, embedded rows).

Spider/BIRD (`format: spider`): rows with `db_id`, `question`, `query` (Spider) or `SQL`
(BIRD), optional `evidence`; databases at `<database_dir>/<db_id>/<db_id>.sqlite` (the
source's `database_dir`, default: the `database` folder beside the file). Spider and BIRD ship
JSON arrays (`train_spider.json`); `read_jsonl` reads those too. They have no worked reasoning,
so a row's cold-start trace is its gold query after an empty think block.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from urllib.parse import quote

from tasks.verifiers.sql import SqlExecutionReward

__all__ = ["SQL_FORMATS", "generate_sql_rows", "gold_problem", "render_schema", "spider_row"]

SQL_FORMATS = ("spider", "bird")


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1", uri=True)


def render_schema(db_path: Path, sample_rows: int = 0) -> str:
    """The database's CREATE TABLE statements, each followed by up to `sample_rows` of its rows
    as SQL comments."""
    conn = _read_only(db_path)
    try:
        tables = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL "
                              "AND name NOT LIKE 'sqlite_%' ORDER BY rowid").fetchall()
        parts = []
        for name, create in tables:
            parts.append(" ".join(create.split()) + ";")
            if sample_rows:
                quoted = '"' + name.replace('"', '""') + '"'
                for r in conn.execute(f"SELECT * FROM {quoted} LIMIT {int(sample_rows)}"):  # noqa: S608 - trusted name
                    parts.append("-- " + ", ".join(map(repr, r)))
        return "\n".join(parts)
    finally:
        conn.close()


def prompt_text(schema: str, nl_question: str) -> str:
    return f"{schema}\n{nl_question}"


def spider_row(raw: dict, database_dir: Path, sample_rows: int = 0) -> dict:
    """One Spider/BIRD row as canonical columns (module docstring); `_invalid` when its database
    is missing or unreadable."""
    db_id, nl = raw.get("db_id"), raw.get("question")
    gold = raw.get("query") if raw.get("query") is not None else raw.get("SQL")
    if raw.get("evidence"):
        nl = f"{nl}\nHint: {raw['evidence']}"
    keep = {k: v for k, v in raw.items() if k not in ("question", "query", "SQL")}
    row = {**keep, "family": raw.get("family") or "sql", "answer": gold, "nl_question": nl,
           "reasoning": raw.get("reasoning", "")}  # no worked trace: the cold-start trace is the gold query
    if not isinstance(db_id, str) or not db_id:
        return {**row, "_invalid": "missing database: no db_id"}
    path = Path(database_dir) / db_id / f"{db_id}.sqlite"
    if not path.is_file():
        return {**row, "_invalid": f"missing database: {path} not found"}
    try:
        schema = render_schema(path, sample_rows)
    except sqlite3.Error as e:
        return {**row, "_invalid": f"missing database: {path} unreadable ({e})"}
    return {**row, "question": prompt_text(schema, nl) if nl else None, "db_path": str(path.resolve())}


def gold_problem(meta: dict, gold: str | None) -> str | None:
    """Why a SQL row's gold query cannot judge completions ("<category>: <detail>"), or None:
    no database, the gold query fails on it (budget included) or returns no rows."""
    reward = SqlExecutionReward()
    db = reward.database(meta.get("db_path"), meta.get("db_sql"))
    if db is None:
        return "missing database: the row has no db_path file or db_sql"
    result = reward.gold(db, gold or "")
    if result.status != "ok":
        return f"bad gold query: {result.why}"
    if not result.rows:
        return "bad gold query: it returns no rows"
    return None


# ---------------------------------------------------------------- the embedded generator
#: table -> its two numeric columns
_TABLES = {"pet": ("age", "weight"), "city": ("population", "area"), "shop": ("sales", "staff"),
           "book": ("pages", "price"), "team": ("wins", "losses"), "car": ("speed", "price"),
           "song": ("length", "plays"), "student": ("age", "score")}
_NAMES = ["Ann", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kim", "Lu", "Max", "Ned"]
_COLORS = ["red", "blue", "green"]
_AGGS = {"Total": "SUM", "Maximum": "MAX", "Minimum": "MIN", "Average": "AVG"}


def _database(rng: random.Random, n_tables: int, max_rows: int) -> tuple[list[dict], str, str]:
    """Random tables (the first is the parent of the others), their CREATE text and full SQL."""
    tables = []
    for i, name in enumerate(rng.sample(sorted(_TABLES), n_tables)):
        parent = tables[0] if i else None
        cols = ["id INTEGER PRIMARY KEY", "name TEXT", "color TEXT"] + [f"{c} INTEGER" for c in _TABLES[name]]
        if parent:
            cols.append(f"{parent['name']}_id INTEGER REFERENCES {parent['name']}(id)")
        n = rng.randint(4, max_rows)
        rows = []
        for j, person in enumerate(rng.sample(_NAMES, n)):
            nums = [rng.randint(1, 99) for _ in _TABLES[name]]
            fk = [rng.randint(1, len(parent["rows"]))] if parent else []
            rows.append([j + 1, person, rng.choice(_COLORS), *nums, *fk])
        for k in range(len(_TABLES[name])):  # distinct values: ORDER BY ... LIMIT has one answer
            for r, v in zip(rows, rng.sample(range(1, 100), n)):
                r[3 + k] = v
        tables.append({"name": name, "nums": _TABLES[name], "rows": rows, "parent": parent,
                       "create": f"CREATE TABLE {name}({', '.join(cols)});"})
    schema = "\n".join(t["create"] for t in tables)
    inserts = [f"INSERT INTO {t['name']} VALUES " + ", ".join(
        "(" + ", ".join(repr(v) for v in r) + ")" for r in t["rows"]) + ";" for t in tables]
    return tables, schema, "\n".join([schema, *inserts])


def _question(rng: random.Random, tables: list[dict]) -> tuple[str, str, str]:
    """(question, gold query, reasoning) from one template over the tables."""
    t = rng.choice(tables)
    name, col = t["name"], rng.choice(t["nums"])
    values = sorted(r[3 + t["nums"].index(col)] for r in t["rows"])
    kinds = ["filter", "count", "aggregate", "group", "order"] + (["join", "join_group"] if t["parent"] else [])
    kind = rng.choice(kinds)
    if kind == "filter":
        k = rng.choice(values[:-1])
        return (f"Names of {name} with {col} above {k}.", f"SELECT name FROM {name} WHERE {col} > {k}",
                f"{name}: {col} > {k}")
    if kind == "count":
        k = rng.choice(values[1:])
        return (f"How many {name} have {col} below {k}?", f"SELECT COUNT(*) FROM {name} WHERE {col} < {k}",
                f"{name}: count {col} < {k}")
    if kind == "aggregate":
        word, fn = rng.choice(sorted(_AGGS.items()))
        return f"{word} {col} of all {name}.", f"SELECT {fn}({col}) FROM {name}", f"{name}: {fn} {col}"
    if kind == "group":
        if rng.random() < 0.5:
            return (f"Count {name} per color.", f"SELECT color, COUNT(*) FROM {name} GROUP BY color",
                    f"{name}: count by color")
        return (f"Total {col} of {name} per color.", f"SELECT color, SUM({col}) FROM {name} GROUP BY color",
                f"{name}: sum {col} by color")
    if kind == "order":
        n = rng.randint(1, 3)
        high = rng.random() < 0.5
        order = f"{col} DESC" if high else col
        return (f"Top {n} {name} by {'highest' if high else 'lowest'} {col}.",
                f"SELECT name FROM {name} ORDER BY {order} LIMIT {n}", f"{name}: order {order}, {n}")
    p = t["parent"]["name"]
    join = f"FROM {name} JOIN {p} ON {name}.{p}_id = {p}.id"
    if kind == "join":
        owner = t["parent"]["rows"][rng.choice(t["rows"])[-1] - 1][1]
        return (f"Names of {name} whose {p} is {owner}.", f"SELECT {name}.name {join} WHERE {p}.name = '{owner}'",
                f"{name} join {p}: {p}.name = {owner}")
    return (f"How many {name} per {p}?", f"SELECT {p}.name, COUNT(*) {join} GROUP BY {p}.name",
            f"{name} join {p}: count by {p}")


def generate_sql_rows(n: int, seed: int, max_tables: int = 3, max_rows: int = 8) -> list[dict]:
    """`n` rows, each on its own random database of 1..`max_tables` tables of 4..`max_rows` rows
    (`id`, `name`, `color`, two numbers, and a key to the first table), with a question from one
    of the templates filter, count, aggregate, group by, order by + limit, join, join + group by."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tables, schema, db_sql = _database(rng, rng.randint(1, max_tables), max_rows)
        nl, gold, plan = _question(rng, tables)
        rows.append({"id": f"sql-{seed}-{i}", "question": prompt_text(schema, nl), "answer": gold,
                     "reasoning": plan, "family": "sql", "source": "synthetic:sql",
                     "metadata": {"db_id": f"sql-{seed}-{i}", "nl_question": nl, "db_sql": db_sql}})
    return rows
