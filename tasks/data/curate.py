"""Data curation: raw sources -> the eval / cold-start SFT / GRPO splits, nothing lost silently.

    stats = curate(recipe.data, out_dir, model_path=recipe.model.name_or_path)

Steps:
1. Read every source into canonical rows (tasks.data.sources), streamed into an Arrow file.
2. Per batch, in `num_proc` processes (`datasets.map`): validate (unreadable, bad encoding,
   empty prompt, missing or unparseable gold answer, prompt over the token/char budget),
   hash the normalised text, compute MinHash LSH band keys, check benchmark n-grams.
3. Over compact per-row keys: exact, then near duplicates (tasks.data.dedup).
4. Shuffle the kept rows (seeded); the first `eval_size` are the held-out split; the rest is
   decontaminated against it too.
5. The cold-start SFT set (tasks.data.cold_start); every other row is a GRPO prompt.

Outputs in `out_dir`: eval.jsonl, sft.jsonl (with `completion`), grpo.jsonl and
quarantine.jsonl, where every rejected row has a `reason` "<category>: <detail>". Returned
stats: rows per split, `quarantine/<category>` counts, `decontamination/<benchmark>/hits`.
Memory holds ~100 bytes of keys per row, never all the rows (see measurements/curation_speed.py).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.data.cold_start import ColdStartPicker, format_completion
from tasks.data.decontaminate import BenchmarkIndex, benchmark_sources, describe
from tasks.data.dedup import MinHasher, earliest_duplicate
from tasks.data.ngrams import WordHashes
from tasks.data.sources import comparison_text, hf_fingerprint, iter_source_rows, prompt_messages, read_jsonl
from tasks.data.sql import gold_problem
from tasks.environments import environment_row_problem
from tasks.layout import QUARANTINE, SPLITS, file_digest, split_file
from tasks.modeling import pretrained_path
from tasks.progress import ProgressHook
from tasks.recipe import DataSection, Recipe, Source, stable_hash
from tasks.stages import StageHooks, StageSpec, stage_name
from tasks.tracking import log_jsonl_dataset
from tasks.verifiers.code_tests import tests_problem
from tasks.verifiers.math import gold_is_parseable

__all__ = ["curate", "data_key", "format_completion", "log_splits", "prompt_messages", "read_split"]

log = logging.getLogger(__name__)

HELDOUT = "heldout"
_ROWS = pa.schema([(k, pa.string()) for k in
                   ("id", "source", "family", "question", "messages", "metadata", "answer", "reasoning", "_invalid")])
_JSON_COLUMNS = ("messages", "metadata")
_CHUNK = 5000
_PARALLEL_FROM = 5000  # rows; below this, starting worker processes costs more than it saves


# ---------------------------------------------------------------- 1. canonical rows -> Arrow
def _write_rows(sources: list[Source], seed: int, path: Path) -> int:
    """Stream every source's canonical rows into an Arrow IPC file; returns the row count."""
    n = 0
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, _ROWS) as writer:
        for i, src in enumerate(sources):
            batch = []
            for row in iter_source_rows(src, i, seed):
                batch.append({k: (json.dumps(row[k], ensure_ascii=False) if row[k] else None) if k in _JSON_COLUMNS
                              else row[k] for k in _ROWS.names})
                if len(batch) == _CHUNK:
                    writer.write_table(pa.Table.from_pylist(batch, schema=_ROWS))
                    n, batch = n + len(batch), []
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=_ROWS))
                n += len(batch)
    return n


def _take_rows(batches: list[pa.RecordBatch], starts: np.ndarray, indices: np.ndarray) -> list[dict]:
    """Rows at `indices` (in that order) from a table's record batches. `Table.take` would
    concatenate each column whole first, i.e. copy the table into memory."""
    order = np.argsort(indices, kind="stable")
    ordered = indices[order]
    batch_of = np.searchsorted(starts, ordered, side="right") - 1
    out: list[dict] = [None] * len(indices)  # type: ignore[list-item]
    for b in np.unique(batch_of):
        sel = np.flatnonzero(batch_of == b)
        for pos, row in zip(order[sel], batches[b].take(pa.array(ordered[sel] - starts[b])).to_pylist()):
            out[pos] = _output_row(row)
    return out


def _output_row(row: dict) -> dict:
    """A canonical row as written to the split files (JSON columns decoded, internals dropped)."""
    out = {k: (json.loads(row[k]) if k in _JSON_COLUMNS and row[k] else row[k]) for k in _ROWS.names if k != "_invalid"}
    if out["messages"] is None:
        del out["messages"]
    out["metadata"] = out["metadata"] or {}
    return out


# ---------------------------------------------------------------- 2. per-batch checks
def validation_reason(row: dict, cfg: DataSection, prompt_tokens: int | None = None) -> str | None:
    """Why a canonical row cannot be used ("<category>: <detail>"), or None."""
    if row.get("_invalid"):
        return row["_invalid"]
    q = row.get("question")
    if not isinstance(q, str) or not q.strip():
        return "missing or empty question"
    if "\ufffd" in q:
        return "bad encoding: replacement characters in question"
    if row.get("family") == "code":  # judged by its tests, not by a gold answer
        meta = row.get("metadata")
        if problem := tests_problem((json.loads(meta) if isinstance(meta, str) else meta or {}).get("tests")):
            return f"bad tests: {problem}"
    elif row.get("family") == "countdown":  # judged by its numbers and target, not by a gold answer
        meta = row.get("metadata")
        meta = json.loads(meta) if isinstance(meta, str) else meta or {}
        if not isinstance(meta.get("numbers"), list) or not isinstance(meta.get("target"), (int, float)):
            return "missing countdown numbers/target: map them with columns: {numbers: nums}"
    elif row.get("family") == "sql":  # judged by running the gold query on the row's database
        meta = row.get("metadata")
        if not row.get("answer"):
            return "missing gold answer"
        if problem := gold_problem(json.loads(meta) if isinstance(meta, str) else meta or {}, row["answer"]):
            return problem
    elif not row.get("answer"):
        return "missing gold answer"
    if cfg.environment and (problem := environment_row_problem(cfg.environment, cfg.environment_params, row)):
        return problem
    if row.get("family") == "math" and not gold_is_parseable(row["answer"]):
        return f"unparseable gold answer: the math verifier cannot read {row['answer'][:80]!r}"
    if prompt_tokens is not None and prompt_tokens > cfg.max_prompt_tokens:
        return f"prompt too long: {prompt_tokens} tokens > max_prompt_tokens {cfg.max_prompt_tokens}"
    if prompt_tokens is None and len(q) > cfg.max_prompt_chars:
        return f"prompt too long: {len(q)} chars > max_prompt_chars {cfg.max_prompt_chars}"
    return None


def _prompt_tokens(rows: list[dict], tokenizer, system_prompt: str | None) -> list[int | None]:
    """Tokens of each row's chat-formatted prompt, as the trainer will see it."""
    ok = [i for i, r in enumerate(rows) if not r.get("_invalid") and r.get("question")]
    texts = []
    for i in ok:
        msgs = prompt_messages({**rows[i], "messages": json.loads(rows[i]["messages"] or "null")}, system_prompt)
        texts.append(tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
                     if tokenizer.chat_template else rows[i]["question"])
    counts: list[int | None] = [None] * len(rows)
    for i, ids in zip(ok, tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []):
        counts[i] = len(ids)
    return counts


def _annotate(batch: pa.Table, cfg: DataSection, hasher: MinHasher | None, index: BenchmarkIndex,
              tokenizer) -> pa.Table:
    """Per row: reason (validation or contamination), text hash, LSH band keys, benchmarks hit."""
    rows = batch.to_pylist()
    tokens = _prompt_tokens(rows, tokenizer, cfg.system_prompt) if tokenizer else [None] * len(rows)
    reasons = [validation_reason(r, cfg, t) for r, t in zip(rows, tokens)]
    questions = [comparison_text(r) if reason is None else "" for r, reason in zip(rows, reasons)]
    hit_lists = index.find(questions)
    for i, hits in enumerate(hit_lists):
        if hits:
            reasons[i] = describe(hits, index.ngram)
    words = WordHashes.of(questions)
    columns = {"reason": pa.array(reasons, pa.string()), "text_hash": pa.array(words.text_hashes()),
               "benchmarks_hit": pa.array([[h[0] for h in hits] for hits in hit_lists], pa.list_(pa.string()))}
    if hasher is not None:
        bands = hasher.band_hashes(words)
        columns["bands"] = pa.FixedSizeListArray.from_arrays(pa.array(bands.ravel()), bands.shape[1])
    return pa.table(columns)


def _load_tokenizer(cfg: DataSection, model_path: str | None):
    if not cfg.max_prompt_tokens:
        return None
    if not model_path:
        raise ValueError("data.max_prompt_tokens needs model.name_or_path (its tokenizer counts the tokens)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


# ---------------------------------------------------------------- the flow of one curation
class _Writers:
    """The four output files, written as rows are decided; counts what went where."""

    def __init__(self, out_dir: Path):
        self.files = {name: split_file(out_dir, name).open("w", encoding="utf-8") for name in (*SPLITS, QUARANTINE)}
        self.counts: Counter = Counter()
        self.reasons: Counter = Counter()

    def write(self, split: str, rows: list[dict]) -> None:
        for r in rows:
            self.files[split].write(json.dumps(r, ensure_ascii=False) + "\n")
            if split == "quarantine":
                self.reasons[r["reason"].split(":")[0].strip().replace(" ", "_")] += 1
        self.counts[split] += len(rows)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def curate(cfg: DataSection, out_dir: Path, *, model_path: str | None = None,
           benchmarks: dict[str, Source] | None = None, progress: ProgressHook | None = None) -> dict[str, float]:
    """Build the splits in `out_dir` (module docstring); returns counts for MLflow metrics.

    `benchmarks` (name -> source; the flow passes `benchmark_sources(recipe)`, which adds the
    evaluation section's files) default to `cfg.decontamination.benchmarks`. `progress(step,
    3)` is called at the start (0) and as each phase ends: sources read; rows validated, hashed and checked
    against benchmarks; duplicates dropped, splits and cold-start set written."""
    from datasets import Dataset

    report = progress or (lambda step, total: None)

    out_dir = Path(out_dir)
    work = out_dir / ".work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        picker = ColdStartPicker(cfg, model_path)  # an unreachable teacher endpoint fails here, first
        report(0, 3)
        n = _write_rows(cfg.sources, cfg.seed, work / "rows.arrow")
        report(1, 3)
        rows = Dataset.from_file(str(work / "rows.arrow"))
        if benchmarks is None:
            benchmarks = {src.label: src for src in cfg.decontamination.benchmarks}
        index = BenchmarkIndex.from_sources(benchmarks, cfg.decontamination.ngram)
        near = cfg.dedup.near_duplicate_threshold
        hasher = MinHasher(cfg.dedup) if near else None
        parallel = n > _PARALLEL_FROM and cfg.num_proc > 1
        notes = rows.with_format("arrow").map(
            _annotate, batched=True, batch_size=2000, num_proc=cfg.num_proc if parallel else None,
            remove_columns=rows.column_names, load_from_cache_file=False,
            fn_kwargs={"cfg": cfg, "hasher": hasher, "index": index, "tokenizer": _load_tokenizer(cfg, model_path)},
            cache_file_name=str(work / "notes.arrow"), new_fingerprint=stable_hash([str(work), n]),
            desc="validate, hash, decontaminate")
        report(2, 3)
        writers = _Writers(out_dir)
        try:
            stats = _decide(cfg, rows.data.table, notes.data.table, index, writers, picker)
        finally:
            writers.close()
        report(3, 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stats.update({f"rows/{k}": float(writers.counts[k]) for k in SPLITS}, **{
        "rows/input": float(n), "rows/quarantined": float(writers.counts["quarantine"])})
    stats.update({f"quarantine/{k}": float(v) for k, v in writers.reasons.items()})
    (out_dir / "report.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    if writers.counts["eval"] < cfg.eval_size:
        log.warning("only %d rows for eval (asked %d)", writers.counts["eval"], cfg.eval_size)
    return stats


def _decide(cfg: DataSection, rows: pa.Table, notes: pa.Table, index: BenchmarkIndex, writers: _Writers,
            picker: ColdStartPicker) -> dict[str, float]:
    """Dedup over the per-row keys, quarantine, split, decontaminate against the held-out split.

    Only compact arrays cover all rows (keys, flags); rows are read in chunks."""
    reasons = notes.column("reason")
    usable = pc.is_null(reasons).to_numpy(zero_copy_only=False)
    bands = None
    if "bands" in notes.column_names:
        flat = np.asarray(notes.column("bands").combine_chunks().flatten())
        width = notes.column("bands").type.list_size
        bands = [flat[j::width] for j in range(width)]  # strided views, one band column each
    exact_of, near_of = earliest_duplicate(np.asarray(notes.column("text_hash")), bands, usable)
    ids = rows.column("id")
    for start in range(0, len(usable), _CHUNK):
        quarantined = []
        chunk = rows.slice(start, _CHUNK).to_pylist()
        for i, (row, reason) in enumerate(zip(chunk, reasons.slice(start, _CHUNK).to_pylist()), start):
            if exact_of[i] >= 0:
                reason = f"exact duplicate: of {ids[int(exact_of[i])].as_py()}"
            elif near_of[i] >= 0:
                reason = (f"near duplicate: of {ids[int(near_of[i])].as_py()} (MinHash Jaccard estimate "
                          f">= {cfg.dedup.near_duplicate_threshold})")
            if reason:
                quarantined.append({**_output_row(row), "reason": reason})
        writers.write("quarantine", quarantined)
    kept = np.flatnonzero(usable & (exact_of < 0) & (near_of < 0))
    hit_names = pc.list_flatten(notes.column("benchmarks_hit")).to_pylist()  # one entry per hit, few
    hits = Counter(hit_names)

    random.Random(cfg.seed).shuffle(kept)  # the permutation a list of the same length gets
    batches = rows.to_batches()
    starts = np.cumsum([0] + [len(b) for b in batches])
    eval_rows = _take_rows(batches, starts, kept[: cfg.eval_size])
    writers.write("eval", eval_rows)
    heldout = BenchmarkIndex(cfg.decontamination.ngram)
    if eval_rows:
        heldout.add(HELDOUT, [comparison_text(r) for r in eval_rows], [r["id"] for r in eval_rows])
    rest = kept[cfg.eval_size:]
    for start in range(0, len(rest), _CHUNK):
        chunk = _take_rows(batches, starts, rest[start: start + _CHUNK])
        clean = []
        for row, found in zip(chunk, heldout.find([comparison_text(r) for r in chunk])):
            if found:
                hits[HELDOUT] += 1
                writers.write("quarantine", [{**row, "reason": describe(found, heldout.ngram)}])
            else:
                clean.append(row)
        sft, grpo, rejected = picker.take(clean, cfg.sft_size - writers.counts["sft"])
        writers.write("sft", sft)
        writers.write("grpo", grpo)
        writers.write("quarantine", rejected)
    stats = {f"decontamination/{name}/hits": float(hits[name]) for name in [*index.names, HELDOUT]}
    return {**stats, **picker.metrics()}


# ---------------------------------------------------------------- reading and logging the splits
def read_split(data_dir: str | Path, split: str) -> list[dict]:
    return list(read_jsonl(split_file(data_dir, split)))




def data_key(recipe) -> str:
    """Cache key of the data stage: its settings, the bytes of every local source and benchmark
    file, and the model whose tokenizer or answers curation uses."""
    data = recipe.data
    benchmarks = benchmark_sources(recipe)
    # A vanished file still gets a key, so the stage itself fails (and says so in its MLflow run).
    files = [file_digest(s.name) if Path(s.name).is_file() else f"missing:{s.name}"
             for s in [*data.sources, *benchmarks.values()] if s.kind in ("jsonl", "parquet", "csv")]
    files += [hf_fingerprint(s) for s in [*data.sources, *benchmarks.values()] if s.kind == "hf"]
    uses_model = data.max_prompt_tokens or (data.cold_start.mode == "rejection_sampling"
                                            and data.cold_start.teacher == "policy")
    settings = data.model_dump(mode="json", exclude={"difficulty"})  # the pass-rate filter runs in GRPO
    return stable_hash([recipe.seed, settings, files, {k: b.model_dump(mode="json") for k, b in benchmarks.items()},
                        (recipe.model.name_or_path or recipe.model.gguf) if uses_model else None])


def curate_spec(recipe: Recipe) -> StageSpec:
    """Curation as a stage: the recipe's sources in, the splits and the quarantine out."""
    def body(out_dir: Path, hooks: StageHooks) -> dict[str, float]:
        stats = curate(recipe.data, out_dir, model_path=pretrained_path(recipe),
                       benchmarks=benchmark_sources(recipe), progress=hooks.progress)
        log_splits(out_dir)
        return stats

    return StageSpec(stage_name("data"), data_key(recipe), body, params={"data": recipe.data.model_dump(mode="json")})


def log_splits(data_dir: Path) -> None:
    """Each split as an MLflow dataset (digest, row count, a sample table), a sample of the
    quarantine, and the files."""
    import mlflow
    import pandas as pd

    for split in SPLITS:
        if split_file(data_dir, split).stat().st_size:
            log_jsonl_dataset(split_file(data_dir, split), split)
    sample = [r for r, _ in zip(read_jsonl(split_file(data_dir, QUARANTINE)), range(50))]
    if sample:
        mlflow.log_table(pd.DataFrame(sample).astype(str), artifact_file="samples/quarantine.json")
    mlflow.log_artifacts(str(data_dir), artifact_path="data")
