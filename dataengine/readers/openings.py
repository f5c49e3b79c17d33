"""Opening lines (TSV with ``eco``, ``name``, ``pgn`` columns): every position of the line."""

from __future__ import annotations

import os
from collections.abc import Iterator

import chess

from dataengine.readers.base import (
    Skip,
    Unit,
    _alternating,
    _check_args,
    _clip,
    _Columns,
    _make_unit,
    _table,
)
from dataengine.readers.pgn import _BadMove, _play

_OPENING_COLUMNS = ("eco", "name", "pgn")


def read_openings(path: str, start: int = 0, end: int | None = None) -> Iterator[Unit | Skip]:
    """Yield a Unit per line of an opening TSV (columns ``eco``, ``name``, ``pgn`` by name).

    Positions: every board along the line with the next move as target (the
    board after the last move has no target and is left out).
    """
    _check_args(path, start, end)
    return _read_openings(os.fspath(path), start, end)


def _read_openings(path: str, start: int, end: int | None) -> Iterator[Unit | Skip]:
    for row in _table(path, start, end, _OPENING_COLUMNS, "\t"):
        yield row if isinstance(row, Skip) else _opening_unit(path, *row)


def _opening_unit(path: str, line: int, fields: list[str]) -> Unit | Skip:
    eco, name, movetext = fields
    cols = _Columns()
    try:
        _play(chess.Board(), movetext, cols)
    except _BadMove as exc:
        return Skip("illegal_move", path, line, _clip(f"{eco} {name!r}: {exc.detail}"))
    n = len(cols.move)
    if not n:
        return Skip("no_moves", path, line, _clip(f"{eco} {name!r}: no moves in {movetext!r}"))
    identity = f"opening:{eco}|{name}|{movetext}"
    return _make_unit("opening", identity, line, cols, _alternating(chess.WHITE, n), list(range(n)))
