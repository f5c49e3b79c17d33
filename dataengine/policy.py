"""AlphaZero 8x8x73 policy encoding of chess moves, in canonical orientation.

Every stored position is canonical (LABELS.md section 1): with Black to move
the board is stored as ``board.mirror()``, so the side to move is White and
moves "up" (towards rank 8). A move is encoded in that orientation: when Black
is to move its squares are mirrored with ``sq ^ 56`` (rank flip, file kept).
Squares are python-chess's, a1 = 0, b1 = 1, ..., h8 = 63.

    index = from_square * 73 + plane        (0 <= index < N_POLICY = 4672)

``from_square`` is the canonical origin square. ``plane`` is one of 73 move
kinds, relative to it (``df``/``dr`` = file/rank delta, "up" = towards rank 8,
"right" = towards the h-file):

=========  ==========================================  =====================
plane      move kind                                   (df, dr) per step
=========  ==========================================  =====================
0..6       queen-like N,  distance 1..7                (0, +1)
7..13      queen-like NE, distance 1..7                (+1, +1)
14..20     queen-like E,  distance 1..7                (+1, 0)
21..27     queen-like SE, distance 1..7                (+1, -1)
28..34     queen-like S,  distance 1..7                (0, -1)
35..41     queen-like SW, distance 1..7                (-1, -1)
42..48     queen-like W,  distance 1..7                (-1, 0)
49..55     queen-like NW, distance 1..7                (-1, +1)
56..63     knight: NNE, ENE, ESE, SSE, SSW, WSW, WNW,  (+1, +2), (+2, +1),
           NNW (clockwise from "up, one right")        (+2, -1), (+1, -2),
                                                       (-1, -2), (-2, -1),
                                                       (-2, +1), (-1, +2)
64..66     underpromotion capture-left: N, B, R        (-1, +1)
67..69     underpromotion straight:     N, B, R        (0, +1)
70..72     underpromotion capture-right: N, B, R       (+1, +1)
=========  ==========================================  =====================

So a queen-like plane is ``direction * 7 + (distance - 1)`` with directions
N, NE, E, SE, S, SW, W, NW = 0..7; a knight plane is ``56 + k`` in the order
above; an underpromotion plane is ``64 + 3 * side + piece`` with side
capture-left (towards the a-file) = 0, straight = 1, capture-right (towards
the h-file) = 2, and piece knight = 0, bishop = 1, rook = 2. "Left" and
"right" are canonical: a Black pawn's capture towards the h-file (e.g. g2xh1)
is mirrored to g7xh8, a capture-right.

Conventions:

* A queen promotion has no plane of its own: it is the queen-like move of its
  geometry (e7e8q is N distance 1, e7d8q is NW distance 1). Decoding makes a
  queen-like move a queen promotion when the moving piece is a pawn on the
  7th rank (canonical) reaching the 8th.
* Castling is the king's two-square move, python-chess's standard UCI
  (e1g1 = E distance 2, e1c1 = W distance 2; for Black, e8g8 is mirrored to
  e1g1). In Chess960 mode python-chess writes castling as king-takes-rook
  (e1h1), which is also a queen-like E/W move and round-trips the same way.
* En passant is the pawn's diagonal step (a NE/NW distance 1 plane).
* Some indices are never produced: moves that leave the board (a1 plane S),
  and underpromotion planes from squares off the canonical 7th rank. Decoding
  them raises ``ValueError``.
* ``NO_MOVE = 0xFFFF`` is the uint16 sentinel for "no target move".

Packed moves (the data engine's input to ``encode_moves``) are ABSOLUTE
python-chess moves as ints ``from | to << 6 | promotion << 12`` with
promotion a python-chess piece type (2 = knight .. 5 = queen, 0 = none), or
-1 for "no move".

API:

* ``move_to_index(move, turn)`` / ``index_to_move(index, board)``: one move,
  python-chess objects at the edges (the Python twins the kernels are tested
  against).
* ``encode_moves(packed, white_to_move)`` / ``decode_indices(indices,
  pawns_us)``: vectorised numba versions for millions of moves.
* ``legal_move_mask(board)``: bool (4672,) mask of the legal moves' indices.
"""

from __future__ import annotations

import operator

import chess
import numpy as np
from numba import njit

from dataengine.schema import NO_MOVE

__all__ = [
    "N_POLICY",
    "N_PLANES",
    "NO_MOVE",
    "QUEEN_DIRECTIONS",
    "KNIGHT_DELTAS",
    "UNDERPROMOTION_SIDES",
    "UNDERPROMOTION_PIECES",
    "move_to_index",
    "index_to_move",
    "encode_moves",
    "decode_indices",
    "legal_move_mask",
]

N_PLANES = 73
N_POLICY = 64 * N_PLANES  # 4672

# (name, file delta, rank delta) in plane order; the contract of the layout.
QUEEN_DIRECTIONS: tuple[tuple[str, int, int], ...] = (
    ("N", 0, 1),
    ("NE", 1, 1),
    ("E", 1, 0),
    ("SE", 1, -1),
    ("S", 0, -1),
    ("SW", -1, -1),
    ("W", -1, 0),
    ("NW", -1, 1),
)
KNIGHT_DELTAS: tuple[tuple[str, int, int], ...] = (
    ("NNE", 1, 2),
    ("ENE", 2, 1),
    ("ESE", 2, -1),
    ("SSE", 1, -2),
    ("SSW", -1, -2),
    ("WSW", -2, -1),
    ("WNW", -2, 1),
    ("NNW", -1, 2),
)
# (name, file delta) of the underpromotion move; the rank delta is always +1.
UNDERPROMOTION_SIDES: tuple[tuple[str, int], ...] = (
    ("capture-left", -1),
    ("straight", 0),
    ("capture-right", 1),
)
UNDERPROMOTION_PIECES: tuple[chess.PieceType, ...] = (chess.KNIGHT, chess.BISHOP, chess.ROOK)

_QUEEN_PLANE0 = 0
_KNIGHT_PLANE0 = 56
_UNDERPROMOTION_PLANE0 = 64
_MAX_PACKED = 6 << 12  # promotion field 0..5


def _build_plane_of() -> np.ndarray:
    """[from * 64 + to] -> queen-like or knight plane of that geometry, or -1."""
    plane_of = np.full(64 * 64, -1, dtype=np.int16)
    for frm in range(64):
        f, r = frm & 7, frm >> 3
        for d, (_, df, dr) in enumerate(QUEEN_DIRECTIONS):
            for dist in range(1, 8):
                tf, tr = f + df * dist, r + dr * dist
                if 0 <= tf < 8 and 0 <= tr < 8:
                    plane_of[frm * 64 + tr * 8 + tf] = _QUEEN_PLANE0 + d * 7 + dist - 1
        for k, (_, df, dr) in enumerate(KNIGHT_DELTAS):
            tf, tr = f + df, r + dr
            if 0 <= tf < 8 and 0 <= tr < 8:
                plane_of[frm * 64 + tr * 8 + tf] = _KNIGHT_PLANE0 + k
    return plane_of


def _build_to_of(plane_of: np.ndarray) -> np.ndarray:
    """[index] -> canonical target square, or -1 for an index no move produces."""
    to_of = np.full(N_POLICY, -1, dtype=np.int16)
    for frm in range(64):
        for to in range(64):
            plane = plane_of[frm * 64 + to]
            if plane >= 0:
                to_of[frm * N_PLANES + plane] = to
        if frm >> 3 == 6:
            for side, (_, df) in enumerate(UNDERPROMOTION_SIDES):
                tf = (frm & 7) + df
                if 0 <= tf < 8:
                    for piece in range(len(UNDERPROMOTION_PIECES)):
                        plane = _UNDERPROMOTION_PLANE0 + 3 * side + piece
                        to_of[frm * N_PLANES + plane] = 56 + tf
    return to_of


_PLANE_OF = _build_plane_of()
_TO_OF = _build_to_of(_PLANE_OF)
# Python-list twin of the table: list indexing is several times faster than
# numpy scalar indexing on the one-move path.
_PLANE_OF_LIST: list[int] = _PLANE_OF.tolist()


def _build_decoded() -> list[tuple[int, int, chess.PieceType | None, bool] | None]:
    """[index] -> (canonical from, canonical to, underpromotion piece or None,
    whether a pawn making this move promotes to a queen), or None."""
    decoded: list[tuple[int, int, chess.PieceType | None, bool] | None] = []
    for index in range(N_POLICY):
        to = int(_TO_OF[index])
        frm, plane = divmod(index, N_PLANES)
        if to < 0:
            decoded.append(None)
        elif plane >= _UNDERPROMOTION_PLANE0:
            piece = UNDERPROMOTION_PIECES[(plane - _UNDERPROMOTION_PLANE0) % 3]
            decoded.append((frm, to, piece, False))
        else:
            queen_step = plane < _KNIGHT_PLANE0 and frm >> 3 == 6 and to >> 3 == 7
            decoded.append((frm, to, None, queen_step))
    return decoded


_DECODED = _build_decoded()


# --------------------------------------------------------------------------
# one move, python-chess at the edges


def _canonical_index(frm: int, to: int, promotion: int) -> int:
    """Index of a canonical (from, to, promotion 0/2..5) move, or -1 if none."""
    if promotion == 0:
        plane = _PLANE_OF_LIST[frm << 6 | to]
    else:
        df = (to & 7) - (frm & 7)
        if frm >> 3 != 6 or to >> 3 != 7 or not -1 <= df <= 1:
            return -1
        if promotion == chess.QUEEN:
            plane = _PLANE_OF_LIST[frm << 6 | to]
        elif chess.KNIGHT <= promotion <= chess.ROOK:
            plane = _UNDERPROMOTION_PLANE0 + 3 * (df + 1) + promotion - chess.KNIGHT
        else:
            return -1
    if plane < 0:
        return -1
    return frm * N_PLANES + plane


def move_to_index(move: chess.Move, turn: chess.Color) -> int:
    """Policy index of an absolute python-chess ``move`` played with ``turn`` to move.

    The move is mirrored into canonical orientation when ``turn`` is Black.
    Raises ``ValueError`` for a move without an encoding: a null move, a drop,
    a geometry that is neither queen-like nor a knight jump, or a promotion
    that is not from the 7th to the 8th rank (canonical) by one file at most,
    or to a king or pawn. Legality is not checked (there is no board).

    >>> move_to_index(chess.Move.from_uci("e2e4"), chess.WHITE)  # from 12, N dist 2
    877
    >>> move_to_index(chess.Move.from_uci("e7e5"), chess.BLACK)  # mirrored to e2e4
    877
    """
    if turn.__class__ is not bool and not isinstance(turn, np.bool_):
        raise ValueError(f"turn must be chess.WHITE or chess.BLACK, got {turn!r}")
    frm, to = move.from_square, move.to_square
    if not turn:
        frm ^= 56
        to ^= 56
    if move.promotion is None and move.drop is None:  # the common case, inlined
        plane = _PLANE_OF_LIST[frm << 6 | to]
        index = frm * N_PLANES + plane if plane >= 0 else -1
    elif move.drop is None:
        index = _canonical_index(frm, to, move.promotion)
    else:
        index = -1
    if index < 0:
        side = "white" if turn else "black"
        raise ValueError(f"move {move.uci()!r} ({side} to move) has no policy encoding")
    return index


def index_to_move(index: int, board: chess.Board) -> chess.Move:
    """Absolute python-chess move of policy ``index`` on ``board`` (its side to move).

    Inverse of ``move_to_index(move, board.turn)``: the canonical move is
    un-mirrored when Black is to move, and a queen-like move of a pawn from
    the 7th to the 8th rank (canonical) becomes a queen promotion. The result
    is not checked for legality. Raises ``ValueError`` for an index outside
    ``[0, N_POLICY)`` or one that no move produces (e.g. a1 plane S).

    >>> index_to_move(877, chess.Board())
    Move.from_uci('e2e4')
    """
    index = operator.index(index)
    if not 0 <= index < N_POLICY:
        raise ValueError(f"policy index {index!r} out of range [0, {N_POLICY})")
    decoded = _DECODED[index]
    if decoded is None:
        raise ValueError(
            f"policy index {index!r} encodes no move (it leaves the board "
            "or underpromotes off the 7th rank)"
        )
    frm, to, promotion, queen_step = decoded
    turn = board.turn
    if not turn:
        frm ^= 56
        to ^= 56
    if queen_step and board.pawns & board.occupied_co[turn] & chess.BB_SQUARES[frm]:
        promotion = chess.QUEEN
    return chess.Move(frm, to, promotion)


def legal_move_mask(board: chess.Board) -> np.ndarray:
    """Bool (N_POLICY,) mask, True at the canonical index of every legal move of ``board``."""
    flip = 0 if board.turn else 56
    indices = []
    for move in board.generate_legal_moves():
        index = _canonical_index(
            move.from_square ^ flip, move.to_square ^ flip, move.promotion or 0
        )
        if index < 0:  # only reachable for variants or corrupt boards
            raise ValueError(f"legal move {move.uci()!r} of {board.fen()!r} has no policy encoding")
        indices.append(index)
    mask = np.zeros(N_POLICY, dtype=np.bool_)
    mask[indices] = True
    return mask


# --------------------------------------------------------------------------
# vectorised kernels


@njit(cache=True)
def _encode_kernel(packed, white_to_move, plane_of, out):
    """Fill ``out`` with the indices of ``packed``; return the first bad position or -1."""
    for i in range(packed.shape[0]):
        p = np.int64(packed[i])
        if p == -1:
            out[i] = NO_MOVE
            continue
        if p < 0 or p >= _MAX_PACKED:
            return i
        frm = p & 63
        to = (p >> 6) & 63
        promotion = p >> 12
        if not white_to_move[i]:
            frm ^= 56
            to ^= 56
        if promotion == 0:
            plane = np.int64(plane_of[frm * 64 + to])
        else:
            df = (to & 7) - (frm & 7)
            if (frm >> 3) != 6 or (to >> 3) != 7 or df < -1 or df > 1 or promotion == 1:
                return i
            if promotion == 5:
                plane = np.int64(plane_of[frm * 64 + to])
            else:
                plane = _UNDERPROMOTION_PLANE0 + 3 * (df + 1) + promotion - 2
        if plane < 0:
            return i
        out[i] = frm * N_PLANES + plane
    return -1


@njit(cache=True)
def _decode_kernel(indices, pawns_us, to_of, from_out, to_out, promotion_out):
    """Fill the canonical (from, to, promotion) of ``indices``; return the first bad position."""
    one = np.uint64(1)
    for i in range(indices.shape[0]):
        index = np.int64(indices[i])
        if index == NO_MOVE:
            from_out[i] = -1
            to_out[i] = -1
            promotion_out[i] = 0
            continue
        if index >= N_POLICY:
            return i
        to = np.int64(to_of[index])
        if to < 0:
            return i
        frm = index // N_PLANES
        plane = index - frm * N_PLANES
        promotion = 0
        if plane >= _UNDERPROMOTION_PLANE0:
            promotion = 2 + (plane - _UNDERPROMOTION_PLANE0) % 3
        elif (
            plane < _KNIGHT_PLANE0
            and (frm >> 3) == 6
            and (to >> 3) == 7
            and (pawns_us[i] >> np.uint64(frm)) & one
        ):
            promotion = 5
        from_out[i] = frm
        to_out[i] = to
        promotion_out[i] = promotion
    return -1


def _check_1d(name: str, array: object, dtypes: tuple[type, ...]) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.dtype not in [np.dtype(d) for d in dtypes]:
        wanted = " or ".join(np.dtype(d).name for d in dtypes)
        raise ValueError(f"{name} must have dtype {wanted}, got {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return np.ascontiguousarray(array)


def encode_moves(packed: np.ndarray, white_to_move: np.ndarray) -> np.ndarray:
    """Canonical policy indices (uint16) of absolute packed moves.

    ``packed``: 1-D int32/int64, ``from | to << 6 | promotion << 12`` in
    absolute python-chess squares (promotion 2..5 or 0), or -1 for no move
    (-> ``NO_MOVE``). ``white_to_move``: 1-D bool of the same length, the
    side to move of each move's position. Raises ``ValueError`` naming the
    first array position whose value cannot be encoded (same rules as
    ``move_to_index``).
    """
    packed = _check_1d("packed", packed, (np.int32, np.int64))
    white_to_move = _check_1d("white_to_move", white_to_move, (np.bool_,))
    if white_to_move.shape != packed.shape:
        raise ValueError(
            f"white_to_move has shape {white_to_move.shape}, packed has {packed.shape}"
        )
    out = np.empty(packed.shape[0], dtype=np.uint16)
    bad = _encode_kernel(packed, white_to_move, _PLANE_OF, out)
    if bad >= 0:
        value = int(packed[bad])
        side = "white" if white_to_move[bad] else "black"
        raise ValueError(
            f"packed[{bad}] = {value} (from {value & 63}, to {(value >> 6) & 63}, "
            f"promotion {value >> 12}, {side} to move) has no policy encoding"
        )
    return out


def decode_indices(
    indices: np.ndarray, pawns_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical ``(from_sq, to_sq, promotion)`` int64 arrays of policy indices.

    ``indices``: 1-D uint16. ``pawns_us``: 1-D uint64 of the same length, the
    canonical mask of the side to move's pawns in each index's position (it
    decides queen promotions). promotion is 5 (queen) for a queen-like move
    of a pawn from the 7th rank to the 8th, 2..4 on underpromotion planes,
    else 0. ``NO_MOVE`` gives from = to = -1, promotion 0. Raises
    ``ValueError`` naming the first position holding an index no move
    produces.
    """
    indices = _check_1d("indices", indices, (np.uint16,))
    pawns_us = _check_1d("pawns_us", pawns_us, (np.uint64,))
    if pawns_us.shape != indices.shape:
        raise ValueError(f"pawns_us has shape {pawns_us.shape}, indices has {indices.shape}")
    n = indices.shape[0]
    from_sq = np.empty(n, dtype=np.int64)
    to_sq = np.empty(n, dtype=np.int64)
    promotion = np.empty(n, dtype=np.int64)
    bad = _decode_kernel(indices, pawns_us, _TO_OF, from_sq, to_sq, promotion)
    if bad >= 0:
        raise ValueError(f"indices[{bad}] = {int(indices[bad])} is not a valid policy index")
    return from_sq, to_sq, promotion
