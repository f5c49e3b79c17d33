"""Boards to canonical piece planes (LABELS.md section 1).

A position's 12 planes are ``[P, N, B, R, Q, K]`` for the side to move, then the
same six for the opponent, in canonical orientation: when Black is to move the
board is mirrored as python-chess ``Board.mirror()`` does (flipped vertically,
colours swapped), so the side to move is always White.

:func:`planes_from_board` and :func:`planes_from_fens` are the python-chess edge;
:func:`canonical_planes` does the same for millions of positions at once from the
bitboards python-chess keeps (``board.pawns``, ..., ``board.occupied_co``).
"""

from __future__ import annotations

from collections.abc import Iterable

import chess
import numpy as np

from . import kernels

N_RAW_COLUMNS = 8
_PIECE_COLUMNS = ("pawns", "knights", "bishops", "rooks", "queens", "kings")


def check_array(name: str, array: object, dtype: type, ndim: int, width: int | None = None) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``array`` is a C-contiguous
    ``dtype`` ndarray with ``ndim`` dimensions (and ``width`` columns if given)."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype != dtype:
        raise ValueError(f"{name} must be {np.dtype(dtype)}, got {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    if width is not None and array.shape[1] != width:
        raise ValueError(f"{name} must have {width} columns, got shape {array.shape}")
    if not array.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous, got strides {array.strides} for shape {array.shape}"
            " (use np.ascontiguousarray)"
        )


def parse_fen(fen: str, *, require_valid: bool = False) -> chess.Board:
    """``chess.Board(fen)``, raising ``ValueError`` quoting the FEN when it does not
    parse or, with ``require_valid``, when the position is not ``Board.is_valid()``."""
    try:
        board = chess.Board(fen)
    except ValueError as err:
        raise ValueError(f"invalid FEN {fen!r}: {err}") from err
    if require_valid and not board.is_valid():
        raise ValueError(f"invalid position {fen!r}: {board.status()!r}")
    return board


def planes_from_board(board: chess.Board) -> np.ndarray:
    """The 12 canonical piece planes of ``board``: a ``(12,)`` uint64 array.

    >>> import chess
    >>> planes = planes_from_board(chess.Board())
    >>> hex(int(planes[0])), hex(int(planes[11]))  # our pawns, their king
    ('0xff00', '0x1000000000000000')

    With Black to move the board is mirrored, so Black's pawns come first, on rank 2:

    >>> board = chess.Board()
    >>> board.push_san("e4")
    Move.from_uci('e2e4')
    >>> hex(int(planes_from_board(board)[0]))
    '0xff00'
    """
    if board.turn == chess.BLACK:
        board = board.mirror()
    us = board.occupied_co[chess.WHITE]
    them = board.occupied_co[chess.BLACK]
    masks = [getattr(board, column) for column in _PIECE_COLUMNS]
    return np.array([m & us for m in masks] + [m & them for m in masks], dtype=np.uint64)


def planes_from_fens(fens: Iterable[str], *, require_valid: bool = False) -> np.ndarray:
    """Canonical planes of each FEN: an ``(N, 12)`` uint64 array.

    Raises ``ValueError`` quoting a FEN that does not parse or, with
    ``require_valid``, one whose position is not ``chess.Board.is_valid()``.

    >>> planes_from_fens(["8/8/8/8/8/8/8/K6k w - - 0 1"]).tolist()
    [[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 128]]
    """
    rows = [planes_from_board(parse_fen(fen, require_valid=require_valid)) for fen in fens]
    if not rows:
        return np.empty((0, kernels.N_PLANES), dtype=np.uint64)
    return np.stack(rows)


def canonical_planes(raw: np.ndarray, white_to_move: np.ndarray) -> np.ndarray:
    """Canonical ``(N, 12)`` planes from python-chess's own bitboards, vectorised.

    ``raw`` is ``(N, 8)`` uint64, C-contiguous, columns ``[pawns, knights,
    bishops, rooks, queens, kings, occupied_white, occupied_black]`` in absolute
    orientation (``board.pawns``, ..., ``board.occupied_co[chess.WHITE]``,
    ``board.occupied_co[chess.BLACK]``); ``white_to_move`` is ``(N,)`` bool.
    Rows with Black to move are flipped vertically and their colours swapped,
    exactly as :func:`planes_from_board` does.

    >>> import chess
    >>> b = chess.Board()
    >>> raw = np.array([[b.pawns, b.knights, b.bishops, b.rooks, b.queens, b.kings,
    ...                  b.occupied_co[chess.WHITE], b.occupied_co[chess.BLACK]]], dtype=np.uint64)
    >>> bool((canonical_planes(raw, np.array([True]))[0] == planes_from_board(b)).all())
    True
    """
    check_array("raw", raw, np.uint64, 2, N_RAW_COLUMNS)
    check_array("white_to_move", white_to_move, np.bool_, 1)
    if white_to_move.shape[0] != raw.shape[0]:
        raise ValueError(
            f"white_to_move must have one entry per row of raw ({raw.shape[0]}),"
            f" got shape {white_to_move.shape}"
        )
    out = np.empty((raw.shape[0], kernels.N_PLANES), dtype=np.uint64)
    if raw.shape[0]:
        kernels.canonical_planes(raw, white_to_move, out)
    return out
