"""FEN and EPD lines: one position each; EPD ``bm`` and ``ce`` opcodes are kept."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import chess

from dataengine.readers.base import (
    Skip,
    Unit,
    _board_or_skip,
    _check_args,
    _clip,
    _Columns,
    _line_units,
    _make_unit,
    _pack,
)

_COUNTERS_RE = re.compile(r"(\d+)(?:\s+(\d+))?(?:\s+|$)")


def read_positions(path: str, start: int = 0, end: int | None = None) -> Iterator[Unit | Skip]:
    """Yield a Unit per FEN (4-6 fields) or EPD line; blank and ``#`` lines are ignored.

    EPD ``bm`` (first move) is the target; ``ce`` (side to move's view) and
    ``dm`` (mate in n for the side to move) become White's-view evals; ``id``
    names the unit.
    """
    _check_args(path, start, end)
    return _read_positions(os.fspath(path), start, end)


def _read_positions(path: str, start: int, end: int | None) -> Iterator[Unit | Skip]:
    return _line_units(path, start, end, _position_unit, comment="#")


def _position_unit(path: str, line: int, text: str) -> Unit | Skip:
    parts = text.split(None, 4)
    if len(parts) < 4:
        return Skip("bad_fen", path, line, _clip(f"not a FEN or EPD line: {text!r}"))
    placement = " ".join(parts[:4])
    rest = parts[4] if len(parts) > 4 else ""
    counters = _COUNTERS_RE.match(rest)
    halfmove, fullmove = (counters.group(1), counters.group(2) or "1") if counters else ("0", "1")
    operations = rest[counters.end() :] if counters else rest
    board = _board_or_skip(f"{placement} {halfmove} {fullmove}", path, line, "")
    if isinstance(board, Skip):
        return board
    ops: dict = {}
    if operations.strip():
        try:
            ops = epd_operations(board, placement, operations)
        except (chess.IllegalMoveError, chess.InvalidMoveError, chess.AmbiguousMoveError) as exc:
            return Skip("bad_move", path, line, _clip(f"{exc} in {text!r}"))
        except ValueError as exc:
            return Skip("bad_fen", path, line, _clip(f"bad EPD operations ({exc}): {text!r}"))
        if "hmvc" in ops:
            board.halfmove_clock = int(ops["hmvc"])
    target = -1
    best = ops.get("bm")
    if best is not None:
        if not isinstance(best, list) or not best:
            return Skip("bad_move", path, line, _clip(f"bm without a move: {text!r}"))
        if not best[0] or not board.is_legal(best[0]):
            return Skip("bad_move", path, line, _clip(f"bm {best[0]} is not legal: {text!r}"))
        target = _pack(best[0])
    evals = None
    sign = 1 if board.turn else -1
    for opcode in ("dm", "ce"):
        value = ops.get(opcode)
        if value is None:
            continue
        if type(value) is not int or (opcode == "dm" and value == 0):
            return Skip("bad_fen", path, line, _clip(f"{opcode} {value!r} is not usable: {text!r}"))
        evals = {0: (0, sign * value) if opcode == "dm" else (sign * value, 0)}
        break
    cols = _Columns()
    cols.add(board)
    cols.move.append(target)
    identity = "fen:" + (str(ops["id"]) if "id" in ops else " ".join(text.split()))
    return _make_unit("fen", identity, line, cols, [board.turn], [0], evals=evals)


def epd_operations(board: chess.Board, placement: str, operations: str) -> dict:
    """What ``chess.Board(None).set_epd(f"{placement} {operations}")`` returns, raising
    what it raises, for `board`, the position of `placement` (already parsed and valid).

    set_epd parses the placement twice more (for the moves' board and for the board it
    sets), which was two thirds of reading an EPD line; here the operations are parsed
    on a copy of `board` and only the counters that set_epd would apply are checked.
    tests/test_readers.py compares the two on every EPD line of the sample data."""
    epd = f"{placement} {operations}".strip().rstrip(";")
    parts = epd.split(None, 4)
    if len(parts) <= 4:
        return {}
    ops = board._parse_epd_ops(parts[4], lambda: board.copy(stack=False))
    hmvc, fmvn = ops.get("hmvc", 0), ops.get("fmvn", 1)
    fen = " ".join([*parts[:4], str(hmvc), str(fmvn)])
    if type(hmvc) is not int or type(fmvn) is not int:
        chess.Board(None).set_fen(fen)  # set_epd's own checks of odd counters
    elif hmvc < 0:
        raise ValueError(f"half-move clock cannot be negative: {fen!r}")
    elif fmvn < 0:
        raise ValueError(f"fullmove number cannot be negative: {fen!r}")
    return ops
