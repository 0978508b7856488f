"""Raw sources -> canonical rows, streamed.

    for row in iter_source_rows(src, index=0, seed=0): ...

Canonical row: {id, source, family, question, messages?, metadata, answer, reasoning}.
`question` is the prompt text (the last user turn for chat sources, which also keep the
turns up to it in `messages`); `answer` is the gold answer extracted from the source's
answer column; `reasoning` a worked solution when the source has one (cold-start traces);
every other source column goes into `metadata`. A row that cannot be read or decoded
carries `_invalid` (the reason); it is quarantined later, never dropped here.

Kinds: synthetic (tasks.data.synthetic), jsonl, parquet, csv (local files, read in batches) and
hf (`datasets.load_dataset(name, config, split=...)`, needs hub access).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tasks.data.formats import from_format
from tasks.data.sql import SQL_FORMATS, spider_row
from tasks.data.synthetic import generate
from tasks.layout import file_digest
from tasks.recipe import Source
from tasks.verifiers.math import extract_final_answer

CANONICAL = ("id", "source", "family", "question", "messages", "answer", "reasoning")
_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)
_CALCULATOR = re.compile(r"<<[^>]*>>")
_BATCH = 5000


def read_jsonl(path: Path) -> Iterator[dict]:
    """Rows of a JSONL file (or of a JSON array, as Spider and BIRD ship); a line (an item) that
    is not a JSON object yields {"_invalid": why}."""
    with Path(path).open(encoding="utf-8", errors="replace") as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if head.startswith("["):
            yield from _json_array(f)
            return
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield {"_invalid": f"unreadable: line {i + 1}: {e}"}
                continue
            yield row if isinstance(row, dict) else {"_invalid": f"unreadable: line {i + 1} is not a JSON object"}


def _json_array(f) -> Iterator[dict]:
    try:
        items = json.load(f)
    except json.JSONDecodeError as e:
        yield {"_invalid": f"unreadable: {e}"}
        return
    for i, row in enumerate(items):
        yield row if isinstance(row, dict) else {"_invalid": f"unreadable: item {i + 1} is not a JSON object"}


def comparison_text(row: dict) -> str:
    """The text curation compares for duplicates and contamination: the question, or for a SQL
    row its database id and natural-language question (rows on one database share the schema
    that fills most of their prompt)."""
    meta = row.get("metadata")
    meta = json.loads(meta) if isinstance(meta, str) else meta or {}
    if meta.get("nl_question") and meta.get("db_id"):
        return f"{meta['db_id']} {meta['nl_question']}"
    return row.get("question") or ""


def prompt_messages(row: dict, system_prompt: str | None = None) -> list[dict]:
    """The chat prompt of a canonical row: its own turns (chat sources) or its question."""
    turns = row.get("messages") or [{"role": "user", "content": row["question"]}]
    has_system = turns[0].get("role") == "system"
    return ([{"role": "system", "content": system_prompt}] if system_prompt and not has_system else []) + turns


def write_jsonl(path: Path, rows) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _read_parquet(path: str) -> Iterator[dict]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH):
        yield from batch.to_pylist()


def _read_csv(path: str) -> Iterator[dict]:
    import pandas as pd

    # Every cell as text (an id "007" stays "007"); empty cells become None.
    for chunk in pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=_BATCH, encoding_errors="replace"):
        for row in chunk.to_dict("records"):
            yield {k: (v if v != "" else None) for k, v in row.items()}


def _on_disk(src: Source) -> bool:
    """An hf source given as a directory written by `Dataset.save_to_disk`."""
    return (Path(src.name) / "state.json").is_file()


def _load_hf(src: Source):
    from datasets import load_dataset, load_from_disk

    if _on_disk(src):
        return load_from_disk(src.name)
    return load_dataset(src.name, src.config, split=src.split, streaming=src.streaming, revision=src.revision)


def _read_hf(src: Source) -> Iterator[dict]:
    yield from _load_hf(src)  # a hub id needs hub access (or its cache, offline)


def hf_fingerprint(src: Source) -> str:
    """What identifies an hf source's data, for the data stage's cache key, so new upstream data
    re-curates: the files of a saved directory, a pinned revision, else the loaded dataset's
    fingerprint (datasets derives it from the revision it resolved) or, streamed, the hub's
    current commit."""
    if _on_disk(src):
        files = sorted(p for p in Path(src.name).rglob("*") if p.is_file())
        return "disk:" + ",".join(f"{p.name}={file_digest(p)}" for p in files)
    if src.revision:
        return f"revision:{src.revision}"
    if src.streaming:
        from huggingface_hub import HfApi

        return "sha:" + HfApi().dataset_info(src.name).sha
    return "fingerprint:" + _load_hf(src)._fingerprint


def _raw_rows(src: Source, index: int, seed: int) -> Iterator[dict]:
    if src.kind == "synthetic":
        return iter(generate(src.name, n=src.n, seed=seed + index, **src.params))
    if src.kind == "jsonl":
        return read_jsonl(Path(src.name))
    if src.kind == "parquet":
        return _read_parquet(src.name)
    if src.kind == "csv":
        return _read_csv(src.name)
    return _read_hf(src)


def split_answer(text: str, answer_format: str) -> tuple[str | None, str | None, str | None]:
    """(gold answer, worked reasoning, why no answer) from a source's answer field."""
    if answer_format == "gsm8k":
        m = _GSM8K_ANSWER.search(text)
        if not m:
            return None, None, "unextractable gold answer: no '#### <answer>' line"
        reasoning = _CALCULATOR.sub("", text[: m.start()]).strip()  # drop calculator annotations
        return m.group(1).replace(",", "").strip(), reasoning, None
    if answer_format == "boxed":
        answer = extract_final_answer(text)
        if answer is None:
            return None, None, "unextractable gold answer: no \\boxed{} in the solution"
        return answer, text.strip(), None  # a MATH-style solution is itself a worked trace
    return text.strip(), None, None


def _has_surrogates(value: Any) -> bool:
    """Unpaired UTF-16 surrogates (from JSON escapes like \\ud800) cannot be written as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


#: canonical column -> the raw types it may hold (None: absent). Anything else is quarantined.
_COLUMN_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str, int), "source": (str,), "family": (str,), "question": (str,), "messages": (list,),
    "answer": (str, int, float), "reasoning": (str,)}
_TYPE_NAMES = {str: "text", int: "an integer", float: "a number", list: "a list of chat turns"}


def _bad_types(r: dict) -> list[str]:
    """Canonical columns whose raw value has a type no row can use (a bool is not a number);
    each is cleared in `r` so the row can still be written, to quarantine."""
    bad = []
    for col, types in _COLUMN_TYPES.items():
        v = r.get(col)
        if v is not None and (isinstance(v, bool) or not isinstance(v, types)):
            shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
            bad.append(f"{col} is {type(v).__name__} {shown}, expected "
                       + " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in types)))
            r[col] = None
    return bad


def _clean(value: Any) -> Any:
    """JSON-safe value: surrogates replaced, numpy scalars and arrays as Python values, bytes
    decoded, anything else JSON has no type for (dates, decimals, ...) as its text."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value if value is None or isinstance(value, bool | int | float) else str(value)


def _prompt_from_messages(messages: Any) -> tuple[list[dict] | None, str | None, list]:
    """(turns up to the last user turn, that turn's text, the turns after it)."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
        return None, None, []
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        return None, None, []
    content = messages[last_user].get("content")
    return messages[: last_user + 1], content if isinstance(content, str) else None, messages[last_user + 1:]


def canonical_row(raw: dict, src: Source, default_id: str, label: str | None = None) -> dict:
    """One raw row in the canonical schema (see the module docstring)."""
    rename = {v: k for k, v in src.columns.items()}
    if src.format in SQL_FORMATS:
        native = spider_row(raw, src.database_path, src.schema_sample_rows)
    else:
        native = from_format(raw, src.format)
    r = {rename.get(k, k): v for k, v in native.items()}
    invalid = r.pop("_invalid", None)
    bad = [k for k, v in r.items() if _has_surrogates(v)]
    if bad and not invalid:
        invalid = f"bad encoding: unpaired surrogate in {', '.join(bad)}"
    r = _clean(r)
    types = _bad_types(r)
    if types and not invalid:
        invalid = f"bad type: {'; '.join(types)}"
    messages, question = None, r.get("question")
    metadata = {k: v for k, v in r.items() if k not in CANONICAL and k != "metadata"}
    if isinstance(r.get("metadata"), dict):
        metadata.update(r["metadata"])
    elif r.get("metadata") is not None:
        metadata["metadata"] = r["metadata"]
    if question is None and r.get("messages") is not None:
        messages, question, after = _prompt_from_messages(r["messages"])
        if after:
            metadata["completion_messages"] = after
    answer, reasoning, why = None, None, None
    if r.get("answer") is not None:
        answer, reasoning, why = split_answer(str(r["answer"]), src.answer_format)
    return {
        "id": str(r["id"]) if r.get("id") is not None else default_id,
        "source": str(r.get("source") or label or src.label),
        "family": str(r.get("family") or src.family),
        "question": question,
        "messages": messages,
        "metadata": metadata,
        "answer": answer,
        "reasoning": r.get("reasoning", reasoning),
        "_invalid": invalid or why,
    }


def iter_source_rows(src: Source, index: int, seed: int) -> Iterator[dict]:
    """Canonical rows of one source: at most `n`, then each kept with probability `weight`
    (seeded, so the same rows every run without holding the source in memory)."""
    rng = np.random.default_rng([seed, index])
    label = src.label
    for i, raw in enumerate(_raw_rows(src, index, seed)):
        if src.n is not None and i >= src.n:
            break
        if src.weight < 1 and rng.random() >= src.weight:
            continue
        yield canonical_row(raw, src, f"{src.kind}{index}-{i}", label)
