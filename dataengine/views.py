"""python-chess views of stored records, for tests, inspection and evaluation.

These sit at the edge (slow, one record at a time); the trainer never calls them.
"""

from __future__ import annotations

import chess
import numpy as np

from dataengine import policy, schema


def canonical_board(block: schema.Block, i: int) -> chess.Board:
    """Record i as a python-chess board in canonical orientation (White to move)."""
    board = chess.Board(None)
    p = [int(x) for x in block["planes"][i]]
    board.pawns, board.knights, board.bishops = p[0] | p[6], p[1] | p[7], p[2] | p[8]
    board.rooks, board.queens, board.kings = p[3] | p[9], p[4] | p[10], p[5] | p[11]
    board.occupied_co[chess.WHITE] = p[0] | p[1] | p[2] | p[3] | p[4] | p[5]
    board.occupied_co[chess.BLACK] = p[6] | p[7] | p[8] | p[9] | p[10] | p[11]
    board.occupied = board.occupied_co[chess.WHITE] | board.occupied_co[chess.BLACK]
    castling = int(block["castling"][i])
    rights = 0
    for bit, square in (
        (schema.CASTLE_US_KING, chess.H1), (schema.CASTLE_US_QUEEN, chess.A1),
        (schema.CASTLE_THEM_KING, chess.H8), (schema.CASTLE_THEM_QUEEN, chess.A8),
    ):
        if castling & bit:
            rights |= chess.BB_SQUARES[square]
    board.castling_rights = rights
    ep = int(block["ep_file"][i])
    board.ep_square = chess.square(ep, 5) if ep >= 0 else None
    board.halfmove_clock = int(block["halfmove"][i])
    board.fullmove_number = int(block["ply"][i]) // 2 + 1
    board.turn = chess.WHITE
    return board


def is_mirrored(block: schema.Block, i: int) -> bool:
    return bool(block["flags"][i] & schema.MIRRORED)


def real_board(block: schema.Block, i: int) -> chess.Board:
    """Record i with its real side to move restored (un-mirrored when Black was to move)."""
    board = canonical_board(block, i)
    return board.mirror() if is_mirrored(block, i) else board


def _move(index: int, board: chess.Board) -> chess.Move | None:
    return None if index == schema.NO_MOVE else policy.index_to_move(index, board)


def target_move(block: schema.Block, i: int) -> chess.Move | None:
    """The record's target move on its real board (None when it has none)."""
    return _move(int(block["move"][i]), real_board(block, i))


def teacher_move(block: schema.Block, i: int) -> chess.Move | None:
    return _move(int(block["teacher_move"][i]), real_board(block, i))


def result_white(block: schema.Block, i: int) -> int | None:
    """Game result from White's view (1, 0, -1), None when unknown."""
    if not block["flags"][i] & schema.HAS_RESULT:
        return None
    r = int(block["result"][i])
    return -r if is_mirrored(block, i) else r


def eval_white(block: schema.Block, i: int) -> tuple[int, int] | None:
    """Teacher eval (centipawns, mate moves) from White's view, None when absent."""
    if not block["flags"][i] & schema.HAS_TEACHER_EVAL:
        return None
    sign = -1 if is_mirrored(block, i) else 1
    return sign * int(block["teacher_cp"][i]), sign * int(block["teacher_mate"][i])


def square_names(mask: int | np.uint64) -> list[str]:
    return [chess.square_name(s) for s in chess.scan_forward(int(mask))]
