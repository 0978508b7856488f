"""Vectorised word hashing shared by dedup and decontamination.

    words = WordHashes.of(texts)                # texts lowercased, split on whitespace
    h, row = words.ngrams(8)                    # one uint64 per word 8-gram, with its row

Text is normalised the way open-r1's decontamination does it (lowercase, split on any
whitespace). Every hash is computed in numpy/pyarrow from the UTF-8 bytes, so it is the
same in every process and run (Python's `hash` is salted per process) and costs a few
microseconds per row instead of one Python call per n-gram.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_BYTE_MULT = np.uint64(0x100000001B3)        # FNV-1a 64-bit prime
_WORD_MULT = np.uint64(0x9E3779B97F4A7C15)   # golden-ratio odd constant


def _powers(base: np.uint64, n: int) -> np.ndarray:
    """base**0 .. base**(n-1) modulo 2**64."""
    out = np.full(max(n, 1), base, dtype=np.uint64)
    out[0] = 1
    return np.cumprod(out)


def _segment_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum of values[offsets[i]:offsets[i+1]] per segment (uint64, wrapping); 0 when empty."""
    out = np.zeros(len(offsets) - 1, dtype=np.uint64)
    nonempty = np.diff(offsets) > 0
    if nonempty.any():
        out[nonempty] = np.add.reduceat(values, offsets[:-1][nonempty])
    return out


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads polynomial hashes over all 64 bits."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _string_hashes(strings: pa.StringArray) -> np.ndarray:
    """One uint64 per string, from its UTF-8 bytes (polynomial hash, then mixed)."""
    n = len(strings)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    strings = pa.array(strings, type=pa.large_string()) if strings.type != pa.large_string() else strings
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64, count=n + 1, offset=strings.offset * 8)
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].astype(np.uint64)
    offsets = offsets - offsets[0]
    lengths = np.diff(offsets)
    pos = np.arange(len(data)) - np.repeat(offsets[:-1], lengths)
    weighted = (data + np.uint64(1)) * _powers(_BYTE_MULT, int(lengths.max()))[pos]
    return mix64(_segment_sums(weighted, offsets) ^ lengths.astype(np.uint64))


@dataclass
class WordHashes:
    """The words of a batch of texts as hashes: `hashes[offsets[i]:offsets[i+1]]` is row i."""

    hashes: np.ndarray   # uint64, one per word
    offsets: np.ndarray  # int64, len(rows) + 1

    @classmethod
    def of(cls, texts) -> WordHashes:
        arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, type=pa.string())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        lists = pc.utf8_split_whitespace(pc.utf8_lower(arr.fill_null("")))
        flat, parents = lists.flatten(), np.asarray(lists.value_parent_indices())
        words = np.asarray(pc.greater(pc.utf8_length(flat), 0), dtype=bool)  # split leaves "" at the ends
        flat, parents = flat.filter(pa.array(words)), parents[words]
        offsets = np.zeros(len(arr) + 1, dtype=np.int64)
        np.cumsum(np.bincount(parents, minlength=len(arr)), out=offsets[1:])
        if not len(flat):
            return cls(np.zeros(0, dtype=np.uint64), offsets)
        encoded = pc.dictionary_encode(flat)  # hash each distinct word once
        unique = _string_hashes(encoded.dictionary)
        return cls(unique[np.asarray(encoded.indices, dtype=np.int64)], offsets)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def ngrams(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(hash, row) of every word n-gram; a row with fewer than n words (even none) gives
        one hash of all its words, so short texts still match identical short texts."""
        lengths = self.lengths
        counts = np.maximum(lengths - n + 1, 1)
        rows = np.repeat(np.arange(len(lengths)), counts)
        window = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)  # index within its row
        first = np.repeat(self.offsets[:-1], counts) + window
        ends = self.offsets[1:][rows]
        words = np.append(self.hashes, np.uint64(0))  # a safe index for masked positions
        h = np.zeros(len(rows), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k, p in enumerate(_powers(_WORD_MULT, n)):
                idx = first + k
                valid = idx < ends
                h += np.where(valid, words[np.where(valid, idx, len(words) - 1)], np.uint64(0)) * p
        return mix64(h ^ np.minimum(lengths[rows], n).astype(np.uint64)), rows

    def text_hashes(self) -> np.ndarray:
        """One hash per row of its whole normalised text (the exact-duplicate key)."""
        lengths = self.lengths
        pos = np.arange(len(self.hashes)) - np.repeat(self.offsets[:-1], lengths)
        weighted = self.hashes * _powers(_WORD_MULT, int(lengths.max(initial=1)))[pos]
        return mix64(_segment_sums(weighted, self.offsets) ^ lengths.astype(np.uint64))
