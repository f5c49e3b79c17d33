"""Loader benchmark: device-ready positions/s (compact batch -> expanded input planes and
SSL targets on the CPU device) for 0, 1 and 2 DataLoader workers, batch 96 and 1024.

    .venv/bin/python bench/bench_loader.py
"""

from __future__ import annotations

import itertools
import time

import torch
from common import bench_shards

from train.curriculum import load_curriculum
from train.expand import expand_inputs, expand_targets
from train.loader import BatchLoader, LoaderConfig


def measure(shards, workers: int, batch_size: int, expand: bool, seconds: float = 4.0):
    loader = BatchLoader(shards, load_curriculum("stockfish"), steps=100_000,
                         batch_size=batch_size, seed=0, cfg=LoaderConfig(workers=workers))
    it = iter(loader)
    for _ in range(10):  # warm-up: worker start, first windows decoded
        next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _, batch in itertools.islice(it, 20):
            if expand:
                expand_inputs(batch)
                expand_targets(batch)
            n += len(batch["planes"])
    return n / (time.perf_counter() - t0)


def main() -> None:
    shards = bench_shards()
    torch.set_num_threads(1)
    print(f"\nLoader on {shards} (CPU device)")
    print(f"{'workers':>7} {'batch':>6} {'compact pos/s':>14} {'device-ready pos/s':>19}")
    for workers in (0, 1, 2):
        for batch_size in (96, 1024):
            compact = measure(shards, workers, batch_size, expand=False)
            ready = measure(shards, workers, batch_size, expand=True)
            print(f"{workers:>7} {batch_size:>6} {compact:>14,.0f} {ready:>19,.0f}")
    print("target: >= 1,000,000 device-ready positions/s")


if __name__ == "__main__":
    main()
