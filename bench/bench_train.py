"""Trainer benchmark: steps/s and positions/s at batch 96 (default 6x64 model, SSL every
step), the share of step time spent waiting for data, and peak memory; on CUDA too when
a GPU is present. The original tool did 0.65 steps/s at batch 96 (62 positions/s).

    .venv/bin/python bench/bench_train.py [--steps 60]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import psutil
import torch
from common import bench_shards

from train.config import load_run_config
from train.trainer import train

SEED_POSITIONS_PER_S = 0.65 * 96


def run(shards: Path, device: str, steps: int, amp: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_run_config(None, {
            "shards": str(shards), "device": device, "steps": steps, "batch_size": 96,
            "progress_interval": steps // 2, "save_every": 0, "tensorboard": False,
            "checkpoint_out": str(Path(tmp) / "f.pt"), "run_dir": tmp, "use_amp": amp,
            "heartbeat_seconds": 0.0,
        })
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        summary = train(cfg)
    m = summary["last_metrics"]  # the second half of the run: warm-up excluded
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else psutil.Process().memory_info().rss / 2**20)
    return {"steps_s": m["steps_per_s"], "pos_s": m["positions_per_s"],
            "wait": m["data_wait_frac"], "peak_mb": peak}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    shards = bench_shards()
    rows = [("cpu", False)]
    if torch.cuda.is_available():
        rows += [("cuda", False), ("cuda", True)]
    print(f"\nTrainer, batch 96, default model, SSL every step ({args.steps} steps, "
          "figures from the second half)")
    print(f"{'device':<6} {'amp':<5} {'steps/s':>8} {'pos/s':>9} {'x seed':>7} "
          f"{'data wait':>10} {'peak MB':>8}")
    for device, amp in rows:
        r = run(shards, device, args.steps, amp)
        print(f"{device:<6} {str(amp):<5} {r['steps_s']:>8.2f} {r['pos_s']:>9,.0f} "
              f"{r['pos_s'] / SEED_POSITIONS_PER_S:>7.1f} {r['wait']:>10.1%} {r['peak_mb']:>8,.0f}")
    print("targets: data wait < 2%; on a GPU >= 100x the original tool's positions/s")


if __name__ == "__main__":
    main()
