"""Loader benchmark: device-ready positions/s for 0, 1 and 2 DataLoader workers, batch 96
and 1024, on the CPU device.

"Device-ready" is what the trainer's step gets from `train.expand.device_batches`: the
network's float input planes and every target (train.expand) on the device, here made
by the fused CPU kernel. "Compact" is
the batches of compact records alone (`iter(loader)`). Main-process torch threads: 1, and
all cores. The main table starts at step 0 of the stockfish curriculum; a second one
starts at each phase.

    .venv/bin/python bench/bench_loader.py [--seconds S]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import torch
from common import bench_shards

from train.batch import columns_of
from train.curriculum import load_curriculum
from train.expand import device_batches, expand
from train.loader import BatchLoader, LoaderConfig

STEPS = 100_000


def measure(shards, workers: int, batch_size: int, device_ready: bool, seconds: float,
            start: int = 0) -> float:
    loader = BatchLoader(shards, load_curriculum("stockfish"), steps=STEPS,
                         batch_size=batch_size, seed=0, cfg=LoaderConfig(workers=workers))
    loader.load_state_dict({"step": start})
    it = device_batches(loader, "cpu") if device_ready else iter(loader)
    for _ in itertools.islice(it, 40):  # warm-up: workers start, first windows decoded
        pass
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for batch in itertools.islice(it, 20):
            n += len(batch[1]) if device_ready else len(batch[1]["planes"])
    return n / (time.perf_counter() - t0)


def expand_alone(shards, seconds: float, fused: bool) -> float:
    """Positions/s of train.expand.expand on one chunk held in memory (no loading)."""
    loader = BatchLoader(shards, load_curriculum("stockfish"), steps=100_000, batch_size=1024,
                         seed=0, cfg=LoaderConfig(workers=0))
    _, _, rows = next(loader.chunks())
    batch = columns_of(rows)
    for _ in range(10):
        expand(batch, fused=fused)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        expand(batch, fused=fused)
        n += len(rows)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = ap.parse_args()
    shards = bench_shards()
    cores = os.cpu_count() or 1
    print(f"\nLoader on {shards} (CPU device, {cores} cores, chunks of "
          f"{LoaderConfig().chunk_positions} positions)")
    print(f"{'workers':>7} {'batch':>6} {'threads':>7} {'compact pos/s':>14} "
          f"{'device-ready pos/s':>19}")
    for workers in (0, 1, 2):
        for batch_size in (96, 1024):
            for threads in sorted({1, cores}):
                torch.set_num_threads(threads)
                compact = measure(shards, workers, batch_size, False, args.seconds)
                ready = measure(shards, workers, batch_size, True, args.seconds)
                print(f"{workers:>7} {batch_size:>6} {threads:>7} {compact:>14,.0f} "
                      f"{ready:>19,.0f}")
    torch.set_num_threads(1)
    # The mix changes with the curriculum phase, and so does the work: a stream of few
    # records goes through many epochs (a shuffle each) in a phase that draws on it.
    schedule = BatchLoader(shards, load_curriculum("stockfish"), steps=STEPS, batch_size=96,
                           seed=0, cfg=LoaderConfig(workers=0)).schedule
    print(f"\nDevice-ready positions/s by phase of the stockfish curriculum ({STEPS:,} steps, "
          "1 worker, 1 thread), from the phase's first step")
    print(f"{'phase':>12} {'first step':>10} {'batch 96':>10} {'batch 1024':>10}")
    for name, first in zip([p.name for p in load_curriculum("stockfish").phases],
                           [0, *schedule.bounds[:-1]], strict=True):
        rates = [measure(shards, 1, b, True, args.seconds, int(first)) for b in (96, 1024)]
        print(f"{name:>12} {int(first):>10,} {rates[0]:>10,.0f} {rates[1]:>10,.0f}")
    print()
    for fused, how in ((True, "fused CPU kernel, the default"), (False, "tensor ops")):
        rate = expand_alone(shards, args.seconds, fused)
        print(f"expand alone (one chunk in memory, 1 thread, {how}): {rate:,.0f} positions/s")
    print("target: >= 1,000,000 device-ready positions/s")


if __name__ == "__main__":
    main()
