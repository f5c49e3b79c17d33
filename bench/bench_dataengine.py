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
- bytes per record all-in (target <= 24, aim 16),
- each row's rate against the labelers alone (`labelers.label_boards`, one thread, on
  the same positions), and the hours a build of 100 M games (~7 G positions, a month
  of Lichess) would take on one 16-core machine, from the share of a record's 1-worker
  time that 2 workers did not shrink (Amdahl, on the slopes),
- the full build at 1 and 2 workers on ``--copies`` copies of the PGN (no repeat cap) and
  on a quarter of them, each run ``--repeats`` times, interleaved (the fastest run of
  each is its row; the walls of all runs are printed below the table, since this
  machine's speed drifts by more than the gaps measured): the 2-worker speed-up on the
  larger input, and per record between the two sizes (the slope), which leaves out what
  a build pays once (the last task's tail, the merge's first pass; the pool's fork
  server, ~0.8 s, is started by the first 2-worker row, on one copy, and later builds
  of this process fork from it) and is what a build of Lichess size sees,
- peak RSS of a build (`python -m dataengine.build --workers 1` in a child process:
  the sum over its process tree, sampled with psutil every 20 ms) on 1x, 4x and 16x
  inputs of random legal games (``--memory-games`` each, 120 plies at most, seeded,
  cached under $TMPDIR/chess-ssl-bench-games), so that every position is new and the
  repeat cap and the merge see 16x the keys: the row must stay flat. The 1x input
  (~300k positions) already fills one piece of a part (`build.PIECE_RECORDS`) and, at
  the table's `spill_pairs`, one partition of the repeat cap: the bounded buffers are
  full from 1x on, so what grows after is what grows with the input.
Numba kernels are warmed up (compiled or loaded from cache) before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import chess.pgn
import numpy as np
import psutil
from bench_labelers import best_rate, boards_from_pgn
from common import REPO

import labelers
from dataengine import readers
from dataengine.build import build
from dataengine.config import BuildConfig
from dataengine.fileio import atomic_write
from dataengine.readers import fastpgn


def default_pgn() -> Path:
    """The shared 1,500 Stockfish games, or where ../shared is absent (a user's clone) the
    same file put together from the sample data's two parts of it (games 1-200 and
    201-1,500), once, under $TMPDIR."""
    shared = REPO.parent / "shared" / "data" / "games" / "sf_selfplay_1500.pgn"
    if shared.exists():
        return shared
    sample = REPO / "dataengine" / "sample_data"
    path = Path(tempfile.gettempdir()) / "chess-ssl-bench-games" / "sf_selfplay_1500.pgn"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, b"".join((sample / name).read_bytes() for name in
                                    ("sf_selfplay_200.pgn", "sf_selfplay_201_1500.pgn")))
    return path


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


def time_labelers(path: Path) -> tuple[int, float, float]:
    """The labelers alone, one thread, on the positions of `path` (bench_labelers'
    best_rate; no CPU seconds)."""
    planes = np.stack([labelers.planes_from_board(b) for b in boards_from_pgn(path)])
    labelers.label_boards(planes[:8], parallel=False)  # compile or cache load
    rate = best_rate(lambda: labelers.label_boards(planes, parallel=False), len(planes))
    return len(planes), len(planes) / rate, float("nan")


def random_game(seed: str, max_plies: int = 120) -> str:
    """A random legal game as PGN (uniform over legal moves, seeded by `seed`)."""
    rng, board, sans = random.Random(seed), chess.Board(), []
    while len(sans) < max_plies and board.outcome() is None:
        move = rng.choice(list(board.legal_moves))
        sans.append(board.san(move))
        board.push(move)
    moves = " ".join(f"{i // 2 + 1}. {san}" if i % 2 == 0 else san
                     for i, san in enumerate(sans))
    result = board.outcome().result() if board.outcome() else "*"
    return f'[Event "random {seed}"]\n[Result "{result}"]\n\n{moves} {result}\n\n'


def _random_file(args: tuple[Path, int, int]) -> Path:
    path, index, games = args
    if not path.exists():
        atomic_write(path, "".join(random_game(f"{index} {g}") for g in range(games)).encode())
    return path


def random_inputs(files: int, games: int) -> list[Path]:
    """`files` PGN files of `games` random games each (file i from seed i), made once."""
    cache = Path(tempfile.gettempdir()) / "chess-ssl-bench-games"
    cache.mkdir(exist_ok=True)
    todo = [(cache / f"random_{i}_{games}.pgn", i, games) for i in range(files)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(_random_file, todo))


MEMORY_SPILL_PAIRS = 1 << 18
"""The memory table's `spill_pairs`: the repeat cap's partitions of the default 16 M
pairs would grow with every input the bench can make in a minute; at 262,144 they are
bounded from the 4x input on, as the default bounds them from ~16 M positions on."""


def peak_rss_build(inputs: list[Path]) -> tuple[int, float, float]:
    """(positions read, wall s, peak RSS MiB of the build's process tree)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(f"data:\n  spill_pairs: {MEMORY_SPILL_PAIRS}\n")
        cmd = [sys.executable, "-m", "dataengine.build", *map(str, inputs), "--out",
               f"{tmp}/out", "--workers", "1", "--quiet", "--config", str(config)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.02)
        if proc.returncode:
            raise SystemExit(f"the build failed ({proc.returncode}): {' '.join(cmd)}")
        dt = time.perf_counter() - t0
        manifest = json.loads(Path(tmp, "out", "manifest.json").read_text())
    return manifest["positions_read"], dt, peak / 2**20


def memory_table(games: int, factors: tuple[int, ...] = (1, 4, 16)) -> None:
    files = random_inputs(max(factors), games)
    print(f"\nPeak RSS of a build (1 worker, spill_pairs {MEMORY_SPILL_PAIRS:,}) on random "
          f"legal games, {games:,} games per 1x")
    print(f"{'input':<8} {'games':>8} {'positions':>11} {'wall s':>8} {'peak RSS MiB':>13} "
          f"{'vs 1x':>7}")
    peak_rss_build(files[:1])  # warm-up: the child's numba cache, the files in page cache
    base = None
    for k in factors:
        n, dt, mib = peak_rss_build(files[:k])
        base = base or mib
        print(f"{f'{k}x':<8} {k * games:>8,} {n:>11,} {dt:>8.1f} {mib:>13,.0f} "
              f"{mib / base:>6.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pgn", nargs="?", type=Path, default=None,
                    help="PGN to time (default: the 1,500 Stockfish games, from ../shared or the "
                    "sample data)")
    ap.add_argument("--copies", type=int, default=32,
                    help="copies of the PGN for the 1- and 2-worker build rows (default 32)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs of each copies build row, interleaved; the fastest is shown "
                    "(default 3)")
    ap.add_argument("--memory-games", type=int, default=2500,
                    help="random games per 1x input of the peak-RSS table (0: no table)")
    args = ap.parse_args()
    path = args.pgn or default_pgn()
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
    n_lb, t_lb, c_lb = time_labelers(path)
    small = max(1, args.copies // 4)  # the same builds on a quarter of the copies: the
    with tempfile.TemporaryDirectory() as tmp:  # slope between them leaves out fixed costs
        for count in (small, args.copies):
            copies = Path(tmp) / f"copies{count}"
            copies.mkdir()
            for i in range(count):
                os.symlink(path.resolve(), copies / f"copy{i:03d}.pgn")
        # interleaved, `--repeats` times; each row the fastest of its runs (the machine's
        # drift only ever adds time), the spread of the runs printed below
        runs: dict[tuple[int, int], list[tuple[int, float, float, float]]] = {}
        for _ in range(args.repeats):
            for count in (small, args.copies):
                for workers in (1, 2):
                    runs.setdefault((count, workers), []).append(
                        time_build(Path(tmp) / f"copies{count}", workers))
        best = {k: min(v, key=lambda r: r[1]) for k, v in runs.items()}
        n_s1, t_s1, c_s1, _ = best[small, 1]
        n_s2, t_s2, _, _ = best[small, 2]
        n_c1, t_c1, c_c1, _ = best[args.copies, 1]
        n_c2, t_c2, _, _ = best[args.copies, 2]
    games = sum(1 for line in open(path, "rb") if line.startswith(b"[Event "))
    rows = [
        ("python-chess read_game (mainline)", n_pc, t_pc, c_pc),
        ("dataengine.readers.read_pgn", n_rd, t_rd, c_rd),
        ("read_pgn fast=False (python-chess)", n_rs, t_rs, c_rs),
        ("fastpgn split + decode_games", n_fp, t_fp, c_fp),
        ("full build, 1 worker", n_b1, t_b1, c_b1),
        ("full build, 2 workers", n_b2, t_b2, float("nan")),
        (f"full build x{small}, 1 worker", n_s1, t_s1, c_s1),
        (f"full build x{small}, 2 workers", n_s2, t_s2, float("nan")),
        (f"full build x{args.copies}, 1 worker", n_c1, t_c1, c_c1),
        (f"full build x{args.copies}, 2 workers", n_c2, t_c2, float("nan")),
        ("labelers alone (1 thread)", n_lb, t_lb, c_lb),
    ]
    label_rate = n_lb / t_lb
    print(f"\nData engine on {path.name} ({games:,} games, {os.cpu_count()} CPUs, load "
          f"average {os.getloadavg()[0]:.1f})")
    print(f"{'stage':<36} {'positions':>10} {'wall s':>7} {'pos/s':>9} {'CPU s':>7} "
          f"{'/labelers':>9}")
    for name, n, t, c in rows:
        print(f"{name:<36} {n:>10,} {t:>7.2f} {n / t:>9,.0f} {c:>7.2f} "
              f"{n / t / label_rate:>9.3f}")
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
    for (count, workers), got in runs.items():
        walls = " ".join(f"{r[1]:.2f}" for r in sorted(got, key=lambda r: r[1]))
        label = f"x{count}, {workers} worker{'s' if workers > 1 else ''}: wall s of the runs"
        print(f"{label:<36} {walls:>10}")
    rate_1, speedup_2 = n_c1 / t_c1, t_c1 / t_c2
    median = {k: float(np.median([r[1] for r in v])) for k, v in runs.items()}
    print(f"{f'full build x{args.copies}, 2 workers vs 1':<36} {speedup_2:>10.2f}x   "
          f"(target >= 1.8x; {median[args.copies, 1] / median[args.copies, 2]:.2f}x from "
          "the runs' medians)")
    print(f"{f'full build x{args.copies}, 1 worker, pos/s':<36} {rate_1:>10,.0f}    "
          "(target >= 300,000)")
    # per record beyond the smaller input (the slope between the two sizes, which leaves
    # out what a build pays once: process start-up, numba cache loads, the last task's
    # tail); then Amdahl from the slopes: per record, serial + parallel / w
    slope_1 = (t_c1 - t_s1) / (n_c1 - n_s1)
    slope_2 = (t_c2 - t_s2) / (n_c2 - n_s2)
    print(f"{f'2 workers vs 1, per record x{small} -> x{args.copies}':<36} "
          f"{slope_1 / slope_2:>10.2f}x   (the slopes: {1 / slope_1:,.0f} / {1 / slope_2:,.0f} "
          "pos/s)")
    parallel = max(0.0, 2 * (slope_1 - slope_2))
    serial = max(0.0, slope_1 - parallel)
    hours = (serial + parallel / 16) * 7e9 / 3600
    print(f"{'100 M games (7 G pos), 16 cores, h':<36} {hours:>10.1f}    (Amdahl from the "
          f"slopes: {serial / slope_1:.0%} of a record's 1-worker time does not shrink with "
          "workers)")
    if args.memory_games:
        memory_table(args.memory_games)


if __name__ == "__main__":
    main()
