"""Benchmark of the numba labelers against the python-chess reference.

    .venv/bin/python bench/bench_labelers.py [PGN] [--reference-positions N]

Positions are every mainline position of the shared sample games (or of seeded
random play when the shared data is absent). Rows: ``label_boards`` on one
thread and on all of numba's threads, and ``labelers.reference`` on the first
``N`` of the same positions; the last column is the speed over the reference.
Then the same for ``labelers.stalemate`` and ``labelers.mates`` (the stored
stalemating and mating moves), on the games and on won endgames played out.
The kernels' first call (compilation, or loading numba's on-disk cache) is
timed and printed on its own, before anything else is timed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import chess
import chess.pgn
import numba
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import labelers  # noqa: E402
from dataengine.traps import mating_moves, stalemating_moves  # noqa: E402
from labelers import kernels, reference  # noqa: E402
from labelers.mates import mate_moves  # noqa: E402
from labelers.stalemate import inputs_of_boards, stalemate_moves  # noqa: E402

DEFAULT_PGN = REPO.parent / "shared" / "data" / "games" / "sf_selfplay_1500.pgn"
TRAPS_EPD = REPO / "dataengine" / "sample_data" / "trap_playouts_20000.epd"


class _MainlineBoards(chess.pgn.BaseVisitor):
    """Collects every mainline board (before each move, and the last) of one game."""

    def __init__(self, boards: list[chess.Board]) -> None:
        self.boards = boards
        self.last: chess.Board | None = None

    def begin_variation(self):
        return chess.pgn.SKIP

    def visit_move(self, board: chess.Board, move: chess.Move) -> None:
        self.boards.append(board.copy(stack=False))

    def visit_board(self, board: chess.Board) -> None:
        self.last = board

    def result(self) -> chess.Board | None:
        return self.last


def boards_from_pgn(path: Path) -> list[chess.Board]:
    boards: list[chess.Board] = []
    with open(path, encoding="utf-8") as f:
        while (last := chess.pgn.read_game(f, Visitor=lambda: _MainlineBoards(boards))) is not None:
            boards.append(last.copy(stack=False))
    return boards


def boards_from_random_play(n: int, seed: int = 1) -> list[chess.Board]:
    rng = random.Random(seed)
    boards: list[chess.Board] = []
    while len(boards) < n:
        board = chess.Board()
        for _ in range(rng.randrange(20, 200)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
            boards.append(board.copy(stack=False))
    return boards[:n]


def best_rate(fn, n: int, min_seconds: float = 1.0, min_repeats: int = 5) -> float:
    """Positions per second of ``fn()`` over ``n`` positions: the best of several runs."""
    best, spent, runs = float("inf"), 0.0, 0
    while runs < min_repeats or spent < min_seconds:
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
        best, spent, runs = min(best, elapsed), spent + elapsed, runs + 1
    return n / best


def _first_call(driver, planes: np.ndarray) -> tuple[float, str]:
    """Time the first call of a driver and say whether numba compiled or loaded it."""
    t0 = time.perf_counter()
    driver(planes, np.empty((len(planes), labelers.N_MASKS), np.uint64))
    elapsed = time.perf_counter() - t0
    how = "cache load" if sum(driver.stats.cache_hits.values()) else "compile"
    return elapsed, how


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pgn", nargs="?", type=Path, default=DEFAULT_PGN)
    parser.add_argument("--reference-positions", type=int, default=10_000)
    parser.add_argument("--random-positions", type=int, default=200_000)
    args = parser.parse_args(argv)

    if args.pgn.exists():
        source = str(args.pgn)
        boards = boards_from_pgn(args.pgn)
    else:
        source = f"random play (no {args.pgn})"
        boards = boards_from_random_play(args.random_positions)
    planes = np.stack([labelers.planes_from_board(b) for b in boards])
    n = len(planes)

    serial_s, serial_how = _first_call(kernels.label_serial, planes[:8])
    parallel_s, parallel_how = _first_call(kernels.label_parallel, planes[:8])

    threads = numba.get_num_threads()
    one_thread = best_rate(lambda: labelers.label_boards(planes, parallel=False), n)
    all_threads = best_rate(lambda: labelers.label_boards(planes, parallel=True), n)

    sample = [
        b if b.turn == chess.WHITE else b.mirror() for b in boards[: args.reference_positions]
    ]
    ref = best_rate(lambda: [reference.label_board(b) for b in sample], len(sample), 0.0, 1)

    load = os.getloadavg()[0]
    print(f"positions: {n:,} from {source}; reference timed on the first {len(sample):,}")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load:.1f} (wall-clock rates: load lowers them)"
    )
    print(
        f"first call: serial {serial_s:.2f} s ({serial_how}), parallel {parallel_s:.2f} s ({parallel_how})"
    )
    print()
    print(f"| {'labeller':<28} | {'threads':>7} | {'positions/s':>12} | {'x reference':>11} |")
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 14}|{'-' * 13}|")
    rows = [
        ("label_boards(parallel=False)", 1, one_thread),
        ("label_boards(parallel=True)", threads, all_threads),
        ("reference.label_board", 1, ref),
    ]
    for name, n_threads, rate in rows:
        print(f"| {name:<28} | {n_threads:>7} | {rate:>12,.0f} | {rate / ref:>11,.0f} |")
    sets = [("games", boards)]
    if TRAPS_EPD.exists():
        with open(TRAPS_EPD, encoding="utf-8") as f:
            sets.append(("endgames (trap playouts)",
                         [chess.Board.from_epd(line)[0] for line in f
                          if line.strip() and not line.startswith("#")]))
    for kernel, twin in ((stalemate_moves, stalemating_moves), (mate_moves, mating_moves)):
        print()
        moves_table(sets, kernel, twin, args.reference_positions)
    return 0


def moves_table(sets, kernel, twin, reference_positions: int) -> None:
    """`kernel` (labelers.stalemate or labelers.mates) on the games' positions (most
    answered by its bound or its check filter) and on won endgames played out
    (trap_playouts_20000.epd), one thread, against its python-chess `twin` on the
    first `reference_positions` of each."""
    print(f"| {kernel.__name__ + ' on':<28} | {'positions':>9} | {'with one':>8} | "
          f"{'positions/s':>12} | {'x reference':>11} |")
    print(f"|{'-' * 30}|{'-' * 11}|{'-' * 10}|{'-' * 14}|{'-' * 13}|")
    for name, these in sets:
        inputs = inputs_of_boards(these)
        kernel(*(a[:8] for a in inputs))  # compile or load the cache
        found = kernel(*inputs)
        rate = best_rate(lambda inputs=inputs: kernel(*inputs), len(these))
        sample = these[:reference_positions]
        ref = best_rate(lambda sample=sample: [twin(b) for b in sample], len(sample),
                        0.0, 1)
        with_one = int((found[:, 0] != 0xFFFF).sum())
        print(f"| {name:<28} | {len(these):>9,} | {with_one:>8,} | {rate:>12,.0f} | "
              f"{rate / ref:>11,.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
