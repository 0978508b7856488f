"""Data curation: raw sources -> canonical rows -> quarantine, dedup, splits, cold-start set.

    stats = curate(recipe.data, out_dir)   # writes grpo.jsonl, sft.jsonl, eval.jsonl, quarantine.jsonl

Canonical row: {id, question, answer, task, source, reasoning?, metadata}. Every row that is
not kept lands in quarantine.jsonl with a `reason`; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter
from pathlib import Path

from tasks.recipe import DataSection, Source
from tasks.synthetic import generate

log = logging.getLogger(__name__)

SPLITS = ("grpo", "sft", "eval")
_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)


def format_completion(reasoning: str, answer: str) -> str:
    """The reasoning + final-answer format every stage and verifier agrees on."""
    return f"<think>\n{reasoning}\n</think>\n<answer>{answer}</answer>"


def prompt_messages(row: dict, system_prompt: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": row["question"]}]


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    rows.append({"_invalid": f"line {i + 1}: {e}"})
    return rows


def _split_answer(text: str, answer_format: str) -> tuple[str | None, str | None]:
    """(gold answer, worked reasoning) from a source's answer field."""
    if answer_format == "gsm8k":
        m = _GSM8K_ANSWER.search(text)
        if not m:
            return None, None
        reasoning = re.sub(r"<<[^>]*>>", "", text[: m.start()]).strip()  # drop calculator annotations
        return m.group(1).replace(",", "").strip(), reasoning
    if answer_format == "boxed":
        from tasks.verifiers.math import extract_final_answer

        return extract_final_answer(text), None
    return text.strip(), None


def load_source(src: Source, index: int, seed: int) -> list[dict]:
    """Rows of one source in the canonical schema (rows that cannot be read carry `_invalid`)."""
    if src.kind == "synthetic":
        raw = generate(src.name, n=src.n, seed=seed + index, **src.params)
    elif src.kind == "jsonl":
        raw = _read_jsonl(Path(src.name))
    else:
        from datasets import load_dataset  # needs hub access; never used in tests

        raw = list(load_dataset(src.name, split=src.split))
    rename = {v: k for k, v in src.columns.items()}
    rows = []
    for i, r in enumerate(raw[: src.n] if src.n else raw):
        r = {rename.get(k, k): v for k, v in r.items()}
        row = {"id": str(r.get("id", f"{src.kind}{index}-{i}")), "source": r.get("source", f"{src.kind}:{src.name}"),
               "task": r.get("task", "math"), "question": r.get("question"), "metadata": {}}
        if "_invalid" in r:
            row["_invalid"] = r["_invalid"]
        answer, reasoning = (None, None) if r.get("answer") is None else _split_answer(str(r["answer"]), src.answer_format)
        row["answer"] = answer
        row["reasoning"] = r.get("reasoning", reasoning)
        rows.append(row)
    if src.weight < 1:
        rows = random.Random(seed + index).sample(rows, round(len(rows) * src.weight))
    return rows


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def quarantine_reason(row: dict, max_prompt_chars: int) -> str | None:
    """Why a canonical row cannot be used, or None."""
    if "_invalid" in row:
        return f"unreadable: {row['_invalid']}"
    q = row.get("question")
    if not isinstance(q, str) or not q.strip():
        return "missing or empty question"
    if "\ufffd" in q:
        return "bad encoding (replacement characters in question)"
    if not row.get("answer"):
        return "missing gold answer or answer not extractable"
    if len(q) > max_prompt_chars:
        return f"prompt longer than max_prompt_chars ({len(q)} > {max_prompt_chars})"
    return None


def curate(cfg: DataSection, out_dir: Path, tokenizer=None) -> dict:
    """Build the splits in `out_dir`; returns counts (kept per split, quarantined per reason)."""
    from tasks.verifiers.math import score_math_answer

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for i, src in enumerate(cfg.sources) for r in load_source(src, i, cfg.seed)]
    kept, quarantined, seen = [], [], {}
    for row in rows:
        reason = quarantine_reason(row, cfg.max_prompt_chars)
        if reason is None:
            h = hashlib.sha256(_normalise(row["question"]).encode()).hexdigest()
            if h in seen:
                reason = f"exact duplicate of {seen[h]}"
            else:
                seen[h] = row["id"]
        if reason:
            quarantined.append({**row, "reason": reason})
        else:
            kept.append(row)

    random.Random(cfg.seed).shuffle(kept)
    eval_rows = kept[: cfg.eval_size]
    sft_rows, rest = [], []
    for row in kept[cfg.eval_size:]:
        wants_sft = len(sft_rows) < cfg.sft_size and row.get("reasoning") is not None
        if wants_sft:  # cold-start traces must pass the verifier they will later be judged by
            completion = format_completion(row["reasoning"], row["answer"])
            if score_math_answer(completion, row["answer"]) == 1.0:
                sft_rows.append({**row, "completion": completion})
                continue
            quarantined.append({**row, "reason": "cold-start trace fails the math verifier"})
            continue
        rest.append(row)

    splits = {"eval": eval_rows, "sft": sft_rows, "grpo": rest}
    for name, split in splits.items():
        _write_jsonl(out_dir / f"{name}.jsonl", split)
    _write_jsonl(out_dir / "quarantine.jsonl", quarantined)
    stats = {f"rows/{k}": len(v) for k, v in splits.items()}
    stats["rows/quarantined"] = len(quarantined)
    for reason, n in Counter(r["reason"].split(":")[0] for r in quarantined).items():
        stats[f"quarantine/{reason}"] = n
    if len(eval_rows) < cfg.eval_size:
        log.warning("only %d rows for eval (asked %d)", len(eval_rows), cfg.eval_size)
    return stats


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_split(data_dir: str | Path, split: str) -> list[dict]:
    return _read_jsonl(Path(data_dir) / f"{split}.jsonl")


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def data_key(recipe) -> str:
    """Cache key of the data stage: its settings plus the bytes of every local source file."""
    from tasks.recipe import stable_hash

    # A vanished file still gets a key, so the stage itself fails (and says so in its MLflow run).
    files = [file_digest(s.name) if Path(s.name).is_file() else f"missing:{s.name}"
             for s in recipe.data.sources if s.kind == "jsonl"]
    return stable_hash([recipe.digest("seed", "data"), files])


def log_splits(data_dir: Path) -> None:
    """Each split as an MLflow dataset (digest, row count, a sample table) plus the files."""
    import mlflow
    import pandas as pd

    for split in (*SPLITS, "quarantine"):
        path = Path(data_dir) / f"{split}.jsonl"
        rows = read_split(data_dir, split)
        if not rows:
            continue
        df = pd.DataFrame(rows).astype(str)
        ds = mlflow.data.from_pandas(df, source=str(path), name=split, digest=file_digest(path))
        if split != "quarantine":
            mlflow.log_input(ds, context="eval" if split == "eval" else "training")
        mlflow.log_table(df.head(50), artifact_file=f"samples/{split}.json")
    mlflow.log_artifacts(str(data_dir), artifact_path="data")
