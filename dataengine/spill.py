"""The build's repeat cap without every record's position key in memory.

The cap keeps the first ``max_repeats`` records of each position in input order
(`dataengine.records.repeat_keep_mask` over all keys at once). Over a month of Lichess
games (~7 G positions) the keys alone are 56 GB, so `keep_mask` works on disk:

1. every part's keys are read in input order and each (key, global index) pair is
   appended to one of P partition files, by a hash of the key: equal keys share a
   partition, and inside one the pairs stay in input order;
2. each partition (about ``budget`` pairs) is capped on its own with
   `repeat_keep_mask`, and its decisions are written at their global indices into a
   memory-mapped bool array of all records.

A partition holds every copy of its keys in input order, so its mask is the whole
mask restricted to it: the result equals the in-memory cap exactly (tests compare
them) for any P. Memory is at most ``budget`` keys of a part plus one partition,
whatever the input (the build's ``spill_pairs``). With one partition (inputs of up to
``budget`` records) the keys are capped in memory at once, without partition files.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dataengine.records import repeat_keep_mask

KEEP_NAME = "keep.bool"
"""`keep_mask`'s file in the work directory (readable from any process)."""
BUDGET = 1 << 24
"""(key, index) pairs in one partition, about 400 MB with the sort's own arrays."""
PAIR = np.dtype([("key", "<u8"), ("index", "<i8")])
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: top bits depend on every bit


def partition_bits(records: int, budget: int = BUDGET) -> int:
    """log2 of the number of partitions for `records` pairs: the fewest (a power of two)
    that keep a partition near `budget` pairs."""
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget!r}")
    bits = 0
    while (records >> bits) > budget:
        bits += 1
    return bits


def partition_of(keys: np.ndarray, bits: int) -> np.ndarray:
    """The partition (0 .. 2**bits - 1) of each key."""
    if bits == 0:
        return np.zeros(len(keys), dtype=np.int64)
    return ((keys.astype(np.uint64) * _MIX) >> np.uint64(64 - bits)).astype(np.int64)


def keep_mask(key_files: Sequence[Path], max_repeats: int, work: Path,
              budget: int = BUDGET) -> np.ndarray:
    """For the records of `key_files` (little-endian uint64 keys, in input order), True
    for the first `max_repeats` copies of each key: a read-only memory map of
    ``work/KEEP_NAME`` (spill files under ``work/spill`` are removed when done)."""
    sizes = [Path(f).stat().st_size // 8 for f in key_files]
    total = sum(sizes)
    if total == 0:
        return np.zeros(0, dtype=bool)
    bits = partition_bits(total, budget)
    out = Path(work) / KEEP_NAME
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    if bits == 0:  # one partition: every key in memory at once, no spill files
        keys = np.concatenate([np.fromfile(f, dtype="<u8") for f in key_files])
        keep = np.memmap(tmp, dtype=bool, mode="w+", shape=(total,))
        keep[:] = repeat_keep_mask(keys, max_repeats)
    else:
        spill = Path(work) / "spill"
        paths = _write_partitions(key_files, sizes, bits, budget, spill)
        keep = np.memmap(tmp, dtype=bool, mode="w+", shape=(total,))
        for path in paths:
            pairs = np.fromfile(path, dtype=PAIR)
            keep[pairs["index"]] = repeat_keep_mask(pairs["key"], max_repeats)
            path.unlink()
        shutil.rmtree(spill, ignore_errors=True)
    keep.flush()
    del keep
    tmp.replace(out)
    return np.memmap(out, dtype=bool, mode="r", shape=(total,))


def _write_partitions(key_files: Sequence[Path], sizes: list[int], bits: int, budget: int,
                      spill: Path) -> list[Path]:
    """Every part's (key, global index) pairs, in input order, appended to the partition
    file of their key's hash under `spill` (made afresh); returns the files."""
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    paths = [spill / f"{p:05d}.pairs" for p in range(1 << bits)]
    handles = [open(p, "wb") for p in paths]
    try:
        offset = 0
        for f, size in zip(key_files, sizes, strict=True):
            with open(f, "rb") as src:
                for start in range(0, size, budget):  # a part's keys a slice at a time
                    keys = np.fromfile(src, dtype="<u8", count=min(budget, size - start))
                    part = partition_of(keys, bits)
                    order = np.argsort(part, kind="stable")  # input order in a partition
                    cuts = np.searchsorted(part[order], np.arange((1 << bits) + 1))
                    pairs = np.empty(len(keys), dtype=PAIR)
                    pairs["key"], pairs["index"] = keys[order], order + offset
                    for p in np.flatnonzero(np.diff(cuts)):
                        pairs[cuts[p]:cuts[p + 1]].tofile(handles[p])
                    offset += len(keys)
    finally:
        for h in handles:
            h.close()
    return paths
