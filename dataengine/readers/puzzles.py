"""Lichess puzzle CSV: the position after the opponent's setup move, then the solution
line."""

from __future__ import annotations

import os
from collections.abc import Iterator

import chess

from dataengine.readers.base import (
    Skip,
    Unit,
    _board_or_skip,
    _check_args,
    _clip,
    _Columns,
    _make_unit,
    _pack,
    _table,
)

_PUZZLE_COLUMNS = ("PuzzleId", "FEN", "Moves", "Rating", "Themes")


def read_puzzles(path: str, start: int = 0, end: int | None = None) -> Iterator[Unit | Skip]:
    """Yield a Unit per row of a Lichess puzzle CSV (columns found by header name).

    The FEN is the position before the opponent's setup move ``Moves[0]``; the
    positions are the solver's turns (``Moves[1]``, ``Moves[3]``, ... as
    targets) with ply counted from the FEN (the first is ply 1).
    """
    _check_args(path, start, end)
    return _read_puzzles(os.fspath(path), start, end)


def _read_puzzles(path: str, start: int, end: int | None) -> Iterator[Unit | Skip]:
    for row in _table(path, start, end, _PUZZLE_COLUMNS, ","):
        yield row if isinstance(row, Skip) else _puzzle_unit(path, *row)


def puzzle_start(puzzle_id: str, fen: str, moves_text: str, rating_text: str, path: str,
                 line: int) -> tuple[int, chess.Board, list[str]] | Skip:
    """A puzzle row's rating, starting board and UCI moves (at least two), or the Skip
    (``bad_rating``, ``bad_fen``, ``invalid_position``, ``no_moves``) that ends it; the
    build's reader and the puzzle benchmark (``train.puzzles``) both start here."""
    what = f"puzzle {puzzle_id!r}: "
    try:
        rating = int(rating_text)
    except ValueError:
        return Skip("bad_rating", path, line, _clip(f"{what}rating {rating_text!r}"))
    board = _board_or_skip(fen, path, line, what)
    if isinstance(board, Skip):
        return board
    ucis = moves_text.split()
    if len(ucis) < 2:
        return Skip("no_moves", path, line, _clip(f"{what}moves {moves_text!r}"))
    return rating, board, ucis


def _puzzle_unit(path: str, line: int, fields: list[str]) -> Unit | Skip:
    puzzle_id, fen, moves_text, rating_text, themes = fields
    what = f"puzzle {puzzle_id!r}: "
    start = puzzle_start(puzzle_id, fen, moves_text, rating_text, path, line)
    if isinstance(start, Skip):
        return start
    rating, board, ucis = start
    solver = not board.turn
    cols = _Columns()
    for ply, uci in enumerate(ucis):
        try:
            move = board.parse_uci(uci)
        except chess.IllegalMoveError as exc:
            return Skip("illegal_move", path, line, _clip(f"{what}{exc}"))
        except ValueError as exc:
            return Skip("bad_move", path, line, _clip(f"{what}{exc}"))
        if not move:
            return Skip("bad_move", path, line, _clip(f"{what}null move {uci!r}"))
        if ply % 2:
            cols.add(board)
            cols.move.append(_pack(move))
        board.push(move)
    n = len(cols.move)
    return _make_unit(
        "puzzle", "puzzle:" + puzzle_id, line, cols, [solver] * n, list(range(1, 2 * n, 2)),
        rating=rating, themes=themes,
    )  # fmt: skip
