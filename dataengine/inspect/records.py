"""One record as plain values, in the REAL orientation (the side to move as in
the source game): what ``show`` prints and ``dump`` writes.

Shards store positions canonical (LABELS.md section 1): with Black to move the
board and its 20 masks are mirrored. Mirroring is a vertical flip, which on a
bitboard (bit i = square i, a1 = 0) is a byte swap; :func:`real_labels` undoes
it for a whole block at once. "us" in a mask name stays the side to move.
"""

from __future__ import annotations

import chess
import numpy as np

from dataengine import policy, schema, views
from labelers import MASK_NAMES

RESULT_TEXT = {1: "1-0", -1: "0-1", 0: "1/2-1/2"}

# _RANK_BYTE[rank][byte]: the square names of one rank's byte of a mask (a-file first)
_RANK_BYTE = [
    [[chess.square_name(chess.square(f, rank)) for f in range(8) if byte >> f & 1]
     for byte in range(256)]
    for rank in range(8)
]


def square_names(mask: int) -> list[str]:
    """The squares of a mask by name, a1 first (``views.square_names``, 4x faster)."""
    names: list[str] = []
    rank = 0
    while mask:
        names += _RANK_BYTE[rank][mask & 0xFF]
        mask >>= 8
        rank += 1
    return names


def real_labels(block: schema.Block) -> np.ndarray:
    """(n, 20) masks with mirrored records flipped back to the real orientation."""
    labels = block["labels"]
    mirrored = (block["flags"] & schema.MIRRORED) != 0
    return np.where(mirrored[:, None], labels.byteswap(), labels)


def parse_mask_names(text: str | None) -> list[str] | None:
    """``"threat_us,fork_them"`` -> names (None for None); ValueError names a bad one."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in MASK_NAMES]
    if unknown:
        raise ValueError(f"unknown mask {unknown[0]!r} (masks: {', '.join(MASK_NAMES)})")
    if not names:
        raise ValueError(f"no mask names in {text!r}")
    return names


def move_of(index: int, board: chess.Board) -> chess.Move | None:
    """The policy index as a move on ``board`` (None for NO_MOVE); ValueError if undecodable."""
    return None if index == schema.NO_MOVE else policy.index_to_move(index, board)


def record_json(
    block: schema.Block, i: int, masks: np.ndarray, input_path: str | None
) -> dict:
    """Record i as a JSON-ready dict. ``masks`` is its row of :func:`real_labels`.

    The FEN's fullmove number is derived from ``ply`` (shards do not store it), so
    it matches the source only for lines that start at the initial position.
    """
    board = views.real_board(block, i)
    try:
        move = move_of(int(block["move"][i]), board)
    except ValueError:
        move = None
    ev = views.eval_white(block, i)
    cp = mate = None
    if ev is not None:
        cp, mate = (None, ev[1]) if ev[1] else (ev[0], None)
    return {
        "fen": board.fen(),
        "move": move.uci() if move is not None else None,
        "result": RESULT_TEXT.get(views.result_white(block, i)),
        "eval_cp": cp,
        "eval_mate": mate,
        "bucket": name_of(schema.BUCKETS, block["bucket"][i]),
        "source": name_of(schema.SOURCES, block["source"][i]),
        "file": input_path,
        "game_id": f"{int(block['game_id'][i]):016x}",
        "ply": int(block["ply"][i]),
        "rating": int(block["rating"][i]) or None,
        "themes": str(block["themes"][i]).split(),
        "masks": {name: square_names(m) for name, m in zip(MASK_NAMES, masks.tolist(), strict=True)},
    }


def name_of(names: tuple[str, ...], index: np.integer) -> str:
    """``names[index]``, or a marker for an index out of range (verify reports those)."""
    i = int(index)
    return names[i] if i < len(names) else f"<{i} out of range>"


def popcount(a: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(a)
    return np.unpackbits(a[..., None].view(np.uint8), axis=-1).sum(-1)
