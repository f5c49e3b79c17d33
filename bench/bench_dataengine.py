"""Benchmark of the data engine: parsing alone vs the full build, and bytes per record.

    .venv/bin/python bench/bench_dataengine.py [PGN]

Rows:
- python-chess `read_game` over the mainline (the library's own PGN parse),
- `dataengine.readers.read_pgn` alone (our parse, what the build pays per position),
- the full build (parse + canonicalise + label + encode + dedup + compress + write)
  on 1 and 2 worker processes,
- the build/parse ratio (target <= 1.3: labelling, encoding and compression nearly free),
- bytes per record all-in (target <= 24, aim 16).
Numba kernels are warmed up (compiled or loaded from cache) before anything is timed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import chess.pgn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataengine import readers  # noqa: E402
from dataengine.build import build  # noqa: E402
from dataengine.config import BuildConfig  # noqa: E402


def default_pgn() -> Path:
    shared = REPO.parent / "shared" / "data" / "games" / "sf_selfplay_1500.pgn"
    return shared if shared.exists() else REPO / "dataengine" / "sample_data" / "sf_selfplay_200.pgn"


def time_python_chess(path: Path) -> tuple[int, float]:
    t0, n = time.perf_counter(), 0
    with open(path, encoding="utf-8") as f:
        while (game := chess.pgn.read_game(f)) is not None:
            board = game.board()
            for move in game.mainline_moves():
                board.push(move)
                n += 1
            n += 1  # the final position, as the build stores it
    return n, time.perf_counter() - t0


def time_reader(path: Path) -> tuple[int, float]:
    t0, n = time.perf_counter(), 0
    for unit in readers.read_pgn(str(path)):
        if isinstance(unit, readers.Unit):
            n += len(unit.turn)
    return n, time.perf_counter() - t0


def time_build(path: Path, workers: int) -> tuple[int, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BuildConfig(max_repeats=1 << 30)
        t0 = time.perf_counter()
        manifest = build([str(path)], Path(tmp) / "out", workers=workers, cfg=cfg, quiet=True)
        dt = time.perf_counter() - t0
    return manifest["positions_read"], dt, manifest["bytes_per_record"]


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default_pgn()
    # warm-up: numba compile or cache load, and the file in the page cache
    with tempfile.TemporaryDirectory() as tmp:
        build([str(REPO / "dataengine" / "sample_data" / "openings_a.tsv")], Path(tmp),
              quiet=True)
    time_reader(path)

    n_pc, t_pc = time_python_chess(path)
    n_rd, t_rd = time_reader(path)
    n_b1, t_b1, bpr = time_build(path, 1)
    n_b2, t_b2, _ = time_build(path, 2)
    rows = [
        ("python-chess read_game (mainline)", n_pc, t_pc),
        ("dataengine.readers.read_pgn", n_rd, t_rd),
        ("full build, 1 worker", n_b1, t_b1),
        ("full build, 2 workers", n_b2, t_b2),
    ]
    print(f"\nData engine on {path.name}")
    print(f"{'stage':<36} {'positions':>10} {'seconds':>8} {'pos/s':>10}")
    for name, n, t in rows:
        print(f"{name:<36} {n:>10,} {t:>8.2f} {n / t:>10,.0f}")
    print(f"{'build / parse time (1 worker)':<36} {'':>10} {'':>8} {t_b1 / t_rd:>10.2f}x"
          "   (target <= 1.3x)")
    print(f"{'build / python-chess read_game':<36} {'':>10} {'':>8} {t_b1 / t_pc:>10.2f}x")
    print(f"{'bytes per record, all-in':<36} {'':>10} {'':>8} {bpr:>10.2f}   (target <= 24)")


if __name__ == "__main__":
    main()
