"""Exact and near-duplicate detection on prompt text, in two phases so memory stays small.

    hasher = MinHasher(recipe.data.dedup)
    bands = hasher.band_hashes(WordHashes.of(texts))   # per batch, in any process: (rows, b) uint64
    exact_of, near_of = earliest_duplicate(text_hashes, list(all_bands.T), usable)  # once, all rows

Exact: the hash of the normalised text (lowercase, whitespace collapsed). Near: MinHash over
word shingles, banded for LSH with the (b, r) that datasketch's `MinHashLSH` picks for the
threshold; two prompts are near duplicates when any band matches. Per row only one exact key
and b band keys (8 bytes each) are kept, never the text: ~90 bytes a row with the defaults.
A duplicate names the earliest earlier row it matches; the first copy of every cluster stays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tasks.data.ngrams import WordHashes, mix64
from tasks.recipe import DedupSection


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimising false positives + negatives (datasketch's choice)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


class MinHasher:
    """MinHash signatures of word shingles (universal multiply-shift hashing), as LSH band keys."""

    def __init__(self, cfg: DedupSection, seed: int = 1):
        self.shingle_words = cfg.shingle_words
        self.bands, self.rows = lsh_bands(cfg.near_duplicate_threshold, cfg.num_perm)
        rng = np.random.default_rng(seed)
        hi = np.iinfo(np.uint64).max
        self._a = rng.integers(1, hi, size=cfg.num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
        self._b = rng.integers(0, hi, size=cfg.num_perm, dtype=np.uint64, endpoint=True)

    def signatures(self, words: WordHashes, block: int = 8192) -> np.ndarray:
        """(rows, num_perm) uint32 minimum of each permuted shingle hash."""
        shingles, row = words.ngrams(self.shingle_words)
        starts = np.searchsorted(row, np.arange(len(words.offsets) - 1))  # every row has >= 1 shingle
        sig = np.empty((len(self._a), len(starts)), dtype=np.uint32)
        first = 0
        while first < len(starts):  # rows in blocks of ~`block` shingles: a (num_perm, block) temporary
            last = max(int(np.searchsorted(starts, starts[first] + block, side="right")), first + 1)
            end = starts[last] if last < len(starts) else len(shingles)
            # permutation-major, so each row's minimum is over a contiguous run (3x faster)
            permuted = self._a[:, None] * shingles[None, starts[first]:end]  # wraps modulo 2**64
            permuted += self._b[:, None]
            permuted >>= np.uint64(32)
            sig[:, first:last] = np.minimum.reduceat(permuted, starts[first:last] - starts[first], axis=1)
            first = last
        return sig.T

    def band_hashes(self, words: WordHashes) -> np.ndarray:
        """(rows, bands) uint64: one key per band of `rows` signature values."""
        sig = self.signatures(words)[:, : self.bands * self.rows].astype(np.uint64)
        sig = sig.reshape(len(sig), self.bands, self.rows)
        weights = np.cumprod(np.full(self.rows, np.uint64(0x100000001B3), dtype=np.uint64))
        with np.errstate(over="ignore"):
            keys = (sig * weights).sum(axis=2, dtype=np.uint64)
        return mix64(keys + np.arange(self.bands, dtype=np.uint64))


def _earliest_same(keys: np.ndarray) -> np.ndarray:
    """For each position, the first earlier position holding the same key, else -1."""
    if not len(keys):  # a batch whose every row was quarantined
        return np.full(0, -1, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    first = order[np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))]
    out = np.full(len(keys), -1, dtype=np.int64)
    out[order[~starts]] = first[~starts]
    return out


def earliest_duplicate(exact: np.ndarray, bands: Sequence[np.ndarray] | None,
                       usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exact_of, near_of): the earliest usable row each usable row duplicates, else -1.

    `exact` holds one text hash per row, `bands` one array of LSH keys per band or None (exact only),
    `usable` marks rows still in play (valid, not contaminated). Near duplicates are looked
    for among rows that are not exact duplicates; a row can point at a row that is itself a
    near duplicate of an earlier one (the first row of the cluster stays).
    """
    idx = np.flatnonzero(usable)
    exact_of = np.full(len(exact), -1, dtype=np.int64)
    near_of = np.full(len(exact), -1, dtype=np.int64)
    same = _earliest_same(exact[idx])
    exact_of[idx[same >= 0]] = idx[same[same >= 0]]
    if bands is None or not len(idx):
        return exact_of, near_of
    idx = idx[same < 0]
    best = np.full(len(idx), len(exact), dtype=np.int64)
    for band in bands:
        hit = _earliest_same(band[idx])
        best = np.where(hit >= 0, np.minimum(best, hit), best)
    found = best < len(exact)
    near_of[idx[found]] = idx[best[found]]
    return exact_of, near_of
