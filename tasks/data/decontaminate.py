"""Decontamination: word n-gram overlap with evaluation benchmarks (open-r1's method).

    index = BenchmarkIndex.from_sources(benchmark_sources(recipe), ngram=8)
    hits = index.find(texts)      # per text: [] or [(benchmark, benchmark row id, n-gram), ...]

A text is contaminated by a benchmark when it shares any one word n-gram with one of its
prompts, after lowercasing and splitting on whitespace (open-r1 `scripts/decontaminate.py`,
after s1). A text shorter than n words matches only an identical short prompt. Lookups are
vectorised (sorted uint64 n-gram hashes + searchsorted), so the index of a benchmark of
thousands of prompts is a few hundred kilobytes and a batch costs microseconds per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tasks.data.ngrams import WordHashes
from tasks.data.sources import iter_source_rows
from tasks.recipe import Source

Hit = tuple[str, str, str]  # (benchmark, benchmark row id, the shared n-gram)


@dataclass
class _Benchmark:
    name: str
    hashes: np.ndarray   # sorted unique n-gram hashes
    row_ids: list[str]   # id of the first benchmark row holding each hash


@dataclass
class BenchmarkIndex:
    ngram: int
    benchmarks: list[_Benchmark] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.benchmarks]

    def add(self, name: str, texts: list[str], ids: list[str]) -> None:
        hashes, rows = WordHashes.of(texts).ngrams(self.ngram)
        unique, first = np.unique(hashes, return_index=True)
        self.benchmarks.append(_Benchmark(name, unique, [ids[rows[i]] for i in first]))

    @classmethod
    def from_sources(cls, sources: dict[str, Source], ngram: int) -> BenchmarkIndex:
        """Index the prompts (canonical `question`) of every benchmark source, by name."""
        index = cls(ngram)
        for i, (name, src) in enumerate(sources.items()):
            rows = [r for r in iter_source_rows(src, i, seed=0) if r["question"]]
            if not rows:
                raise ValueError(f"benchmark {name} ({src.name}) has no prompts: map its prompt column with "
                                 f"`columns: {{question: <column>}}`")
            index.add(name, [r["question"] for r in rows], [r["id"] for r in rows])
        return index

    def find(self, texts: list[str]) -> list[list[Hit]]:
        """For each text, every benchmark it shares an n-gram with (first shared n-gram each)."""
        out: list[list[Hit]] = [[] for _ in texts]
        if not self.benchmarks or not texts:
            return out
        words = WordHashes.of(texts)
        hashes, rows = words.ngrams(self.ngram)
        for bench in self.benchmarks:
            pos = np.minimum(np.searchsorted(bench.hashes, hashes), len(bench.hashes) - 1)
            matched = np.flatnonzero(bench.hashes[pos] == hashes)
            if not len(matched):
                continue
            # first matching n-gram per row: matched is ordered by row, then by position
            rows_hit, first = np.unique(rows[matched], return_index=True)
            for r, m in zip(rows_hit, matched[first]):
                window = m - np.searchsorted(rows, r)
                shared = " ".join(str(texts[r]).lower().split()[window: window + self.ngram])
                out[r].append((bench.name, bench.row_ids[pos[m]], shared))
        return out


def describe(hits: list[Hit], ngram: int) -> str:
    """Quarantine reason for a contaminated row."""
    name, row_id, shared = hits[0]
    more = f" (and {', '.join(h[0] for h in hits[1:])})" if len(hits) > 1 else ""
    return f"contaminated: shares the word {ngram}-gram {shared!r} with {name} row {row_id}{more}"


def benchmark_sources(recipe) -> dict[str, Source]:
    """Every benchmark to decontaminate against, by name: `data.decontamination.benchmarks` and
    the local files of the evaluation benchmarks (a project jsonl `path`; for an lm-eval task
    with `data_files`, every split but `train`, which only feeds few-shot examples). Hub-only
    benchmarks are not read (no network here); the held-out split is checked by curation itself."""
    out = {src.label: src for src in recipe.data.decontamination.benchmarks}
    for bench in recipe.evaluation.benchmarks:
        files = {"": bench.path} if bench.path else {f"/{k}": v for k, v in bench.data_files.items() if k != "train"}
        column = bench.columns.get("question", "question")
        for suffix, path in files.items():
            out[bench.name + suffix] = Source(kind="jsonl", name=path, columns={"question": column})
    return out
