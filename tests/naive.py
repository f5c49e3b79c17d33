"""Slow, obvious python-chess twins of what the data engine stores, for the tests.

Written from the issue text, independently of dataengine.readers: every
position an input should yield, in input order, with its move, result and eval.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import chess
import chess.pgn


def shared_data() -> Path | None:
    """../shared/data beside the repository (or $CHESS_SSL_SHARED_DATA), if present."""
    env = os.environ.get("CHESS_SSL_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return path if path.is_dir() else None


REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "dataengine" / "sample_data"
#: The part of the sample data the tests build from (the first 200 games, the first 300
#: puzzles, one opening file): `make shards` reads all of SAMPLE, which takes longer.
SAMPLE_FILES = [SAMPLE / "sf_selfplay_200.pgn", SAMPLE / "lichess_puzzles_300.csv",
                SAMPLE / "openings_a.tsv"]
SAMPLE_INPUTS = [str(p) for p in SAMPLE_FILES]


@dataclass
class Expected:
    board: chess.Board  # the real board (real side to move)
    move: chess.Move | None
    result: int | None  # White's view
    eval: tuple[int, int] | None  # (cp, mate) White's view
    ply: int


def _result(text: str) -> int | None:
    return {"1-0": 1, "0-1": -1, "1/2-1/2": 0}.get(text)


def _score(node) -> tuple[int, int] | None:
    pov = node.eval()
    if pov is None:
        return None
    white = pov.white()
    return (0, white.mate()) if white.is_mate() else (white.score(), 0)


def _text(line: bytes) -> str:
    """A line of a PGN file: UTF-8, else cp1252, else Latin-1 (which decodes anything)."""
    for codec in ("utf-8", "cp1252"):
        try:
            return line.decode(codec)
        except UnicodeDecodeError:
            pass
    return line.decode("latin-1")


def pgn_positions(path: Path):
    """Every mainline position of every game; a game ends at its last board, or just
    before its first illegal move (python-chess ends the mainline there) or null move.
    A game left without moves yields nothing."""
    with open(path, "rb") as f:
        text = "".join(_text(line) for line in f)
    handle = io.StringIO(text)
    while (game := chess.pgn.read_game(handle)) is not None:
        result = _result(game.headers.get("Result", "*"))
        board = game.board()
        ply, score, out = 0, None, []
        for child in game.mainline():
            if not child.move:  # a null move ("--", "Z0"): the game is cut there
                break
            out.append(Expected(board.copy(stack=False), child.move, result, score, ply))
            board.push(child.move)
            score = _score(child)
            ply += 1
        if out:
            yield from out
            yield Expected(board.copy(stack=False), None, result, score, ply)


def puzzle_positions(path: Path):
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            board = chess.Board(row["FEN"])
            moves = [chess.Move.from_uci(m) for m in row["Moves"].split()]
            for ply, move in enumerate(moves):
                if ply % 2 == 1:
                    yield Expected(board.copy(stack=False), move, None, None, ply)
                board.push(move)


def opening_positions(path: Path):
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            board = chess.Board()
            for san in row["pgn"].split():
                if san.endswith("."):
                    continue
                move = board.parse_san(san)
                yield Expected(board.copy(stack=False), move, None, None, board.ply())
                board.push(move)


def positions(path: Path):
    name = path.name
    if ".pgn" in name:
        return pgn_positions(path)
    if ".csv" in name:
        return puzzle_positions(path)
    if ".tsv" in name:
        return opening_positions(path)
    raise ValueError(f"no naive reader for {path}")
