"""Stalemate traps: won endgames where one legal move stalemates, with Stockfish's move.

    python -m dataengine.traps --out traps.epd [--positions 20000] [--seed 0] [--nodes 1000]

A network that plays its best policy move against a weak side wins the material and
then, too often, stalemates the bare king: in 100 games against `random` a 10,000-step
network stalemated 21 to 23 times (README). Engine games, against each other or
against a random mover, seldom reach these positions (the engine mates first), so
the data hardly shows them. This writes random legal positions of that kind: the
strong side (king and 1-3 queens or rooks, sometimes a minor piece and pawns) to
move against a king with at most two pawns, kept only when at least one of the
strong side's legal moves stalemates and the game is not over, and labels each with
Stockfish's best move (EPD ``bm`` with ``ce``/``dm``, ``id "trap s<seed> <n>"``),
ready for `make shards INPUT=...`.

Position n depends only on (seed, n): the same seed gives the same file.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import chess

from dataengine.fileio import atomic_write
from dataengine.progress import progress
from dataengine.teacher import TeacherError, find_stockfish
from dataengine.teacher.engine import analyse_all, answer_epd

#: The strong side's pieces besides its king; one set is drawn per position.
MATERIAL = (
    (chess.QUEEN,), (chess.QUEEN,), (chess.ROOK,), (chess.QUEEN, chess.QUEEN),
    (chess.QUEEN, chess.ROOK), (chess.ROOK, chess.ROOK), (chess.QUEEN, chess.QUEEN,
                                                          chess.QUEEN),
    (chess.QUEEN, chess.BISHOP), (chess.QUEEN, chess.KNIGHT), (chess.ROOK, chess.BISHOP),
)
MIXED_MATERIAL = (
    (chess.QUEEN, chess.KNIGHT), (chess.QUEEN, chess.BISHOP), (chess.ROOK, chess.KNIGHT),
    (chess.ROOK, chess.BISHOP), (chess.BISHOP, chess.KNIGHT, chess.KNIGHT),
    (chess.BISHOP, chess.BISHOP, chess.KNIGHT), (chess.QUEEN, chess.BISHOP, chess.KNIGHT),
    (chess.ROOK, chess.BISHOP, chess.KNIGHT), (chess.ROOK, chess.ROOK, chess.BISHOP),
    (chess.KNIGHT, chess.KNIGHT, chess.BISHOP, chess.BISHOP), (chess.QUEEN,), (chess.ROOK,),
)
"""The ``mixed`` family's sets: minor pieces with or without a heavy one."""
FAMILIES = ("heavy", "mixed")
TIMEOUT_S = 60.0
"""A search that has not answered in this long is killed and tried once more."""


def stalemating_moves(board: chess.Board) -> list[chess.Move]:
    """The legal moves of the side to move after which the other side is stalemated."""
    return _moves_after_which(board, chess.Board.is_stalemate)


def mating_moves(board: chess.Board) -> list[chess.Move]:
    """The legal moves of the side to move after which the other side is checkmated
    (python-chess: the twin of labelers.mates)."""
    return _moves_after_which(board, chess.Board.is_checkmate)


def _moves_after_which(board: chess.Board, holds) -> list[chess.Move]:
    out = []
    for move in board.legal_moves:
        board.push(move)
        if holds(board):
            out.append(move)
        board.pop()
    return out


def _place(board: chess.Board, rng: random.Random, piece: chess.Piece) -> None:
    """Put `piece` on a random empty square (pawns on ranks 2-7)."""
    squares = [s for s in chess.SQUARES if board.piece_at(s) is None
               and (piece.piece_type != chess.PAWN or 1 <= chess.square_rank(s) <= 6)]
    board.set_piece_at(rng.choice(squares), piece)


def candidate(rng: random.Random, family: str = "heavy") -> chess.Board:
    """One random position of the family (not yet checked): ``heavy``, the strong side's
    king and 1-3 queens or rooks (sometimes a minor piece) and 0-3 pawns against a king
    with 0-2 pawns; ``mixed``, minor pieces with or without a queen or rook and 0-4
    pawns against a king with 1-4 pawns, each blocked with probability 0.6 by a piece or
    pawn of the strong side on the square in front of it (the stalemates a network
    played most: the weak side's pawns cannot move)."""
    if family == "mixed":
        return _mixed_candidate(rng)
    strong = rng.choice((chess.WHITE, chess.BLACK))
    board = chess.Board(None)
    board.turn = strong
    _place(board, rng, chess.Piece(chess.KING, strong))
    _place(board, rng, chess.Piece(chess.KING, not strong))
    for piece_type in rng.choice(MATERIAL):
        _place(board, rng, chess.Piece(piece_type, strong))
    for _ in range(rng.choice((0, 0, 1, 2, 3))):
        _place(board, rng, chess.Piece(chess.PAWN, strong))
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        _place(board, rng, chess.Piece(chess.PAWN, not strong))
    board.halfmove_clock = rng.randrange(0, 40)
    board.fullmove_number = rng.randrange(40, 90)
    return board


def _mixed_candidate(rng: random.Random) -> chess.Board:
    strong = rng.choice((chess.WHITE, chess.BLACK))
    board = chess.Board(None)
    board.turn = strong
    _place(board, rng, chess.Piece(chess.KING, strong))
    _place(board, rng, chess.Piece(chess.KING, not strong))
    pieces = list(rng.choice(MIXED_MATERIAL))
    pieces += [chess.PAWN] * rng.choice((0, 1, 2, 3, 4))
    forward = -8 if strong == chess.WHITE else 8  # the weak side's pawns move this way
    for _ in range(rng.choice((1, 2, 3, 4))):
        squares = [s for s in chess.SQUARES if board.piece_at(s) is None
                   and 1 <= chess.square_rank(s) <= 6]
        square = rng.choice(squares)
        board.set_piece_at(square, chess.Piece(chess.PAWN, not strong))
        front = square + forward
        if pieces and rng.random() < 0.6 and board.piece_at(front) is None and (
                1 <= chess.square_rank(front) <= 6 or pieces[-1] != chess.PAWN):
            board.set_piece_at(front, chess.Piece(pieces.pop(), strong))
    for piece_type in pieces:
        _place(board, rng, chess.Piece(piece_type, strong))
    board.halfmove_clock = rng.randrange(0, 40)
    board.fullmove_number = rng.randrange(40, 90)
    return board


def is_trap(board: chess.Board) -> bool:
    """A legal position, game not over, where some legal move stalemates."""
    return (board.is_valid() and board.outcome() is None
            and bool(stalemating_moves(board)))


def _tag(family: str) -> str:
    """The family's prefix of random seeds and ids (none for ``heavy``, the first family,
    whose positions and ids stay as they were)."""
    return "trap" if family == "heavy" else f"trap {family}"


def trap(seed: int, n: int, tries: int = 1000, family: str = "heavy") -> chess.Board | None:
    """Position n of `seed`: the first trap among `tries` candidates drawn from (seed, n)."""
    rng = random.Random(f"{_tag(family)} {seed} {n}")
    for _ in range(tries):
        board = candidate(rng, family)
        if is_trap(board):
            return board
    return None


def _trap_fen(args: tuple[int, int, str]) -> str | None:
    board = trap(args[0], args[1], family=args[2])
    return board.fen() if board is not None else None


def traps(out: str | Path, *, positions: int = 20000, seed: int = 0, nodes: int = 1000,
          workers: int = 2, engine: str | None = None, quiet: bool = False,
          family: str = "heavy") -> dict:
    """Draw, label and write `positions` traps of `family`; returns counts and seconds."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if positions < 1 or workers < 1 or nodes < 1:
        raise ValueError(f"positions, workers and nodes must be >= 1, got {positions}, "
                         f"{workers}, {nodes}")
    out = Path(out)
    if out.suffix != ".epd":
        raise ValueError(f"the output is EPD: name --out *.epd, not {out.name!r}")
    engine_path = find_stockfish(engine)
    t0 = time.perf_counter()
    boards: dict[str, tuple[str, chess.Board]] = {}  # epd -> (id, board), first n wins
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        drawn = pool.map(_trap_fen, [(seed, n, family) for n in range(positions)],
                         chunksize=256)
        drawn = [chess.Board(fen) if fen else None for fen in progress(
            drawn, total=positions, desc="draw", unit="pos", disable=quiet,
            dynamic_ncols=True)]
    for n, board in enumerate(drawn):
        if board is not None:
            boards.setdefault(board.epd(), (f"{_tag(family)} s{seed} {n}", board))
    t_draw = time.perf_counter() - t0
    answers, failed = analyse_all([(k, b.fen()) for k, (_, b) in boards.items()],
                                  engine_path, nodes, workers, timeout_s=TIMEOUT_S,
                                  quiet=quiet)
    lines = [answer_epd(board, answers[key], gid) for key, (gid, board) in boards.items()
             if key in answers]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, ("\n".join(lines) + "\n").encode())
    return {"asked": positions, "distinct": len(boards), "written": len(lines),
            "failed": len(failed), "seconds_draw": round(t_draw, 1),
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dataengine.traps",
        description="Write won endgames where one legal move stalemates, with Stockfish's "
                    "best move, as EPD (training data against stalemating a bare king).")
    ap.add_argument("--out", required=True, help="EPD file to write (replaced atomically)")
    ap.add_argument("--positions", type=int, default=20000,
                    help="positions to draw (default 20000; repeats are written once)")
    ap.add_argument("--seed", type=int, default=0, help="position n depends on (seed, n)")
    ap.add_argument("--family", choices=FAMILIES, default="heavy",
                    help="heavy: queens or rooks against a king with <= 2 pawns (default); "
                         "mixed: minor pieces against a king whose pawns are often blocked")
    ap.add_argument("--nodes", type=int, default=1000,
                    help="Stockfish nodes per position (default 1000)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="Stockfish processes (default: all cores)")
    ap.add_argument("--engine", default=None,
                    help="Stockfish binary (default: stockfish on PATH or /usr/games/stockfish)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    args = ap.parse_args(argv)
    try:
        summary = traps(args.out, positions=args.positions, seed=args.seed, nodes=args.nodes,
                        workers=args.workers, engine=args.engine, quiet=args.quiet,
                        family=args.family)
    except (ValueError, TeacherError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"{summary['written']:,} positions written to {args.out} "
              f"({summary['distinct']:,} distinct of {summary['asked']:,} drawn, "
              f"{summary['failed']} without an answer) in {summary['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
