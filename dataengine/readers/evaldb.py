"""The Lichess evaluation database (``lichess_db_eval.jsonl``, usually ``.zst``): one JSON
object per line, a position and the engine analyses of it::

    {"fen": "<4-field FEN>", "evals": [{"pvs": [{"cp": 31, "line": "e2e4 e7e5 ..."},
                                                {"mate": -3, "line": "..."}],
                                        "knodes": 206765, "depth": 36}, ...]}

Each line becomes one position, as an EPD line with ``bm`` and ``ce``/``dm`` and no
result would (source ``"fen"``: the schema has no other source for single positions).
The teacher eval and the target move come from the first pv of the DEEPEST analysis
(the first one listed among equally deep ones): ``cp``/``mate`` are White's view in the
database, as ``Unit.eval_cp``/``Unit.eval_mate`` are; the target is the first UCI move
of its ``line``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

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


def read_evals(path: str, start: int = 0, end: int | None = None) -> Iterator[Unit | Skip]:
    """Yield a Unit per line of a Lichess evaluation database (blank lines are ignored)."""
    _check_args(path, start, end)
    return _read_evals(os.fspath(path), start, end)


def _read_evals(path: str, start: int, end: int | None) -> Iterator[Unit | Skip]:
    return _line_units(path, start, end, _eval_unit)


def _is_int(value: object) -> bool:
    return type(value) is int


def _eval_unit(path: str, line: int, text: str) -> Unit | Skip:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return Skip("bad_json", path, line, _clip(f"not JSON ({exc}): {text!r}"))
    if not isinstance(obj, dict):
        return Skip("bad_json", path, line, _clip(f"not a JSON object: {text!r}"))
    fen = obj.get("fen")
    if not isinstance(fen, str) or len(fen.split()) not in (4, 6):
        return Skip("bad_fen", path, line, _clip(f"no 4-field FEN: {text!r}"))
    parts = fen.split()
    board = _board_or_skip(" ".join(parts if len(parts) == 6 else [*parts, "0", "1"]),
                           path, line, "")
    if isinstance(board, Skip):
        return board
    evals = obj.get("evals")
    analyses = [e for e in evals if isinstance(e, dict) and isinstance(e.get("pvs"), list)
                and e["pvs"] and isinstance(e["pvs"][0], dict)] if isinstance(evals, list) else []
    if not analyses:
        return Skip("no_evals", path, line, _clip(f"no analysis with a pv: {text!r}"))
    deepest = max(analyses, key=lambda e: e.get("depth") if _is_int(e.get("depth")) else -1)
    pv = deepest["pvs"][0]
    cp, mate = pv.get("cp"), pv.get("mate")
    if _is_int(mate) and mate != 0 and cp is None:
        score = (0, mate)
    elif _is_int(cp) and mate is None:
        score = (cp, 0)
    else:
        return Skip("no_evals", path, line,
                    _clip(f"deepest pv has no usable cp/mate: {json.dumps(pv)[:150]}"))
    moves = pv.get("line")
    first = moves.split()[0] if isinstance(moves, str) and moves.split() else ""
    try:
        move = board.parse_uci(first)  # also king-takes-rook castling, as e1g1
    except ValueError:
        move = None
    if not move:
        return Skip("bad_move", path, line,
                    _clip(f"first move {first!r} of the deepest pv is not legal in {fen!r}"))
    cols = _Columns()
    cols.add(board)
    cols.move.append(_pack(move))
    return _make_unit("fen", "fen:" + " ".join(parts[:4]), line, cols, [board.turn], [0],
                      evals={0: score})
