"""Benchmark of the data engine: parsing alone vs the full build, and bytes per record.

    .venv/bin/python bench/bench_dataengine.py [PGN]

Rows:
- python-chess `read_game` over the mainline (the library's own PGN parse),
- `dataengine.readers.read_pgn` alone (our parse, what the build pays per position): as
  the build reads, movetext through the numba decoder (`fastpgn`) and python-chess for
  the games it rejects, and with ``fast=False`` (python-chess for every game),
- `dataengine.readers.fastpgn` alone: the file split into games' movetext bytes in
  Python, then `decode_games` (best of 3 runs),
- the full build (parse + canonicalise + label + encode + dedup + compress + write)
  on 1 and 2 worker processes,
- the build/parse ratios: against python-chess parsing (the issue's target: <= 1.3x) and
  against our own reader alone (what labelling, encoding and compression add),
- bytes per record all-in (target <= 24, aim 16).
Numba kernels are warmed up (compiled or loaded from cache) before anything is timed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import chess.pgn
from common import REPO

from dataengine import readers
from dataengine.build import build
from dataengine.config import BuildConfig
from dataengine.readers import fastpgn


def default_pgn() -> Path:
    shared = REPO.parent / "shared" / "data" / "games" / "sf_selfplay_1500.pgn"
    return shared if shared.exists() else REPO / "dataengine" / "sample_data" / "sf_selfplay_200.pgn"


def time_python_chess(path: Path) -> tuple[int, float, float]:
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    with open(path, encoding="utf-8") as f:
        while (game := chess.pgn.read_game(f)) is not None:
            board = game.board()
            for move in game.mainline_moves():
                board.push(move)
                n += 1
            n += 1  # the final position, as the build stores it
    return n, time.perf_counter() - t0, time.process_time() - c0


def time_reader(path: Path, fast: bool = True) -> tuple[int, float, float]:
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    for unit in readers.read_pgn(str(path), fast=fast):
        if isinstance(unit, readers.Unit):
            n += len(unit.turn)
    return n, time.perf_counter() - t0, time.process_time() - c0


def _movetexts(path: Path) -> tuple[list[bytes], list[fastpgn.Start | None]]:
    """Each game's movetext bytes and start (FEN tag) of a PGN laid out as tag lines then
    movetext lines (a lighter split than read_pgn's, enough for the bench files)."""
    lines: list[list[bytes]] = []
    starts: list[fastpgn.Start | None] = []
    in_tags = False
    with open(path, "rb") as f:
        for line in f:
            if line[:1] == b"[":
                if not in_tags:
                    lines.append([])
                    starts.append(None)
                    in_tags = True
                if line.startswith(b'[FEN "'):
                    fen = line[6:line.rindex(b'"')].decode()
                    starts[-1] = fastpgn.start_from_board(chess.Board(fen))
            elif not line.isspace():
                in_tags = False
                lines[-1].append(line)
    return [b"".join(game) for game in lines], starts


def time_fastpgn(path: Path) -> tuple[int, float, float, float, int, int]:
    """Positions, wall and CPU seconds, wall seconds of decode_games alone, games
    accepted, games in the file; the best of 3 runs (one run is ~0.1 s, where the
    first touch of fresh output memory and other processes weigh much more than in
    the other rows' seconds)."""
    return min((_time_fastpgn_once(path) for _ in range(3)), key=lambda r: r[1])


def _time_fastpgn_once(path: Path) -> tuple[int, float, float, float, int, int]:
    t0, c0 = time.perf_counter(), time.process_time()
    texts, starts = _movetexts(path)
    t1 = time.perf_counter()
    batch = fastpgn.decode_games(texts, starts)
    t2, c2 = time.perf_counter(), time.process_time()
    accepted = int((batch.status == fastpgn.OK).sum())
    return len(batch.move), t2 - t0, c2 - c0, t2 - t1, accepted, len(texts)


def time_build(path: Path, workers: int) -> tuple[int, float, float, float]:
    """Wall and CPU seconds (CPU of this process and its threads; with workers > 1 the
    parse runs in child processes, so CPU is only meaningful for 1 worker)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BuildConfig(max_repeats=1 << 30)
        t0, c0 = time.perf_counter(), time.process_time()
        manifest = build([str(path)], Path(tmp) / "out", workers=workers, cfg=cfg, quiet=True)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return manifest["positions_read"], dt, dc, manifest["bytes_per_record"]


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default_pgn()
    # warm-up: numba compile or cache load, and the file in the page cache
    with tempfile.TemporaryDirectory() as tmp:
        build([str(REPO / "dataengine" / "sample_data" / "openings_a.tsv")], Path(tmp),
              quiet=True)
    time_reader(path)
    fastpgn.decode_games([b"1. e4 e5 *"])  # numba compile or cache load

    n_pc, t_pc, c_pc = time_python_chess(path)
    n_rd, t_rd, c_rd = time_reader(path)
    n_rs, t_rs, c_rs = time_reader(path, fast=False)
    n_fp, t_fp, c_fp, t_fp_decode, fp_ok, fp_games = time_fastpgn(path)
    n_b1, t_b1, c_b1, bpr = time_build(path, 1)
    n_b2, t_b2, _, _ = time_build(path, 2)
    rows = [
        ("python-chess read_game (mainline)", n_pc, t_pc, c_pc),
        ("dataengine.readers.read_pgn", n_rd, t_rd, c_rd),
        ("read_pgn fast=False (python-chess)", n_rs, t_rs, c_rs),
        ("fastpgn split + decode_games", n_fp, t_fp, c_fp),
        ("full build, 1 worker", n_b1, t_b1, c_b1),
        ("full build, 2 workers", n_b2, t_b2, float("nan")),
    ]
    print(f"\nData engine on {path.name}")
    print(f"{'stage':<36} {'positions':>10} {'wall s':>7} {'pos/s':>9} {'CPU s':>7}")
    for name, n, t, c in rows:
        print(f"{name:<36} {n:>10,} {t:>7.2f} {n / t:>9,.0f} {c:>7.2f}")
    print(f"{'fastpgn games accepted':<36} {fp_ok:>10,} of {fp_games:,}   (the rest: "
          "python-chess)")
    print(f"{'fastpgn decode_games alone, pos/s':<36} {n_fp / t_fp_decode:>10,.0f}    "
          "(without the Python split)")
    print(f"{'read_pgn vs fast=False, wall':<36} {t_rs / t_rd:>10.1f}x faster")
    print(f"{'fastpgn alone vs read_pgn, wall':<36} {t_rd / t_fp:>10.1f}x faster")
    print(f"{'build / python-chess parse, wall':<36} {t_b1 / t_pc:>10.2f}x   (target <= 1.3x)")
    print(f"{'build / python-chess parse, CPU':<36} {c_b1 / c_pc:>10.2f}x")
    print(f"{'build / our parse alone, wall':<36} {t_b1 / t_rd:>10.2f}x")
    print(f"{'build / our parse alone, CPU':<36} {c_b1 / c_rd:>10.2f}x   (labelling, encoding, "
          "compression on top)")
    print(f"{'bytes per record, all-in':<36} {bpr:>10.2f}    (target <= 24, aim 16)")


if __name__ == "__main__":
    main()
