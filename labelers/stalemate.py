"""The moves that stalemate the opponent, computed with numba bitboards.

A training target beside the 20 SSL masks: for each canonical position (the side to
move is White, see :mod:`labelers.boards`), the policy indices
(:mod:`dataengine.policy`) of the legal moves after which the other side has no
legal move and is not in check. The trainer pushes the policy away from them (the
``stalemate`` loss): a network that plays its raw policy against a weak opponent
throws wins away by stalemating it, and nothing else in the data names those moves.

>>> import labelers
>>> from labelers.stalemate import stalemate_moves
>>> planes = labelers.planes_from_fens(["7k/8/6K1/8/8/8/8/5Q2 w - - 0 1"])
>>> out = stalemate_moves(planes, np.zeros(1, np.uint8), np.full(1, -1, np.int8))
>>> [int(i) for i in out[0] if i != NO_MOVE]  # Qf7 and Qc4
[370, 416]

The output is ``(N, MAX_STALEMATE_MOVES)`` uint16: the indices in ascending order,
``NO_MOVE`` (0xFFFF) after them. A position with more stalemating moves (rare) keeps
the lowest ``MAX_STALEMATE_MOVES``. ``tests/test_stalemate.py`` compares every
position of the sample data and of random games with python-chess.

A position where eight or more of their pieces and pawns can move and are not pinned
is answered at once (:func:`_free` says why no move can stalemate it), and so is each
move of ours that leaves one of those pieces untouched. Otherwise
the kernel generates our legal moves (castling and en passant included), plays each
and asks whether the other side, not in check, has any legal move: its king's moves
first, then every other piece's, each kept only if it leaves that king safe, so most
positions answer at the first move tried. The other side's castling needs no look: a
legal castling implies a legal king step onto the square next to the king.
"""

from __future__ import annotations

import chess
import numpy as np
from numba import njit

from labelers import tables
from labelers.boards import check_array, planes_from_board
from labelers.kernels import _bishop_attacks, _piece_attacks, _pinned, _rook_attacks, _tzcnt

# The tables below are frozen into the compiled code and numba's cache does not see
# labelers/tables.py: pin them, as labelers/kernels.py does.
_TABLES_SHA256 = "30389b8d4fbc7f16c014c57bc2c3dc0bf0373574bfca76b78f84e14a2389d3db"
tables.require_digest(_TABLES_SHA256, __file__, "the stalemate kernel")

__all__ = ["MAX_STALEMATE_MOVES", "NO_MOVE", "inputs_of_boards", "stalemate_moves"]

#: Stalemating moves kept per position (the stored column's width).
MAX_STALEMATE_MOVES = 8
NO_MOVE = 0xFFFF  # = dataengine.schema.NO_MOVE (labelers does not import dataengine)

_JIT = {"cache": True, "nogil": True}
_U64 = np.uint64
_ZERO = _U64(0)
_ONE = _U64(1)
_KNIGHT_ATTACKS = tables.KNIGHT_ATTACKS
_KING_ATTACKS = tables.KING_ATTACKS
BETWEEN = tables.BETWEEN
_BIT = np.array([1 << s for s in range(64)], dtype=np.uint64)

# plane indices of the canonical planes: ours 0-5, theirs 6-11 (N..K are also the kinds
# of labelers.kernels._piece_attacks)
_P, _N, _B, _R, _Q, _K = 0, 1, 2, 3, 4, 5
_THEM = 6


def _pawn_attacks(up: bool) -> np.ndarray:
    """Square -> the squares a pawn on it attacks, moving up (White) or down."""
    table = np.zeros(64, dtype=np.uint64)
    dr = 1 if up else -1
    for sq in range(64):
        f, r = sq & 7, sq >> 3
        for df in (-1, 1):
            if 0 <= f + df < 8 and 0 <= r + dr < 8:
                table[sq] |= np.uint64(1 << (8 * (r + dr) + f + df))
    return table


#: A pawn of ours (moving up) on sq attacks _UP_ATTACKS[sq]; theirs, _DOWN_ATTACKS[sq].
#: So our pawns attacking sq are _DOWN_ATTACKS[sq] & pawns, and theirs _UP_ATTACKS[sq].
_UP_ATTACKS = _pawn_attacks(True)
_DOWN_ATTACKS = _pawn_attacks(False)

_DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))
_KNIGHT_STEPS = ((1, 2), (2, 1), (2, -1), (1, -2), (-1, -2), (-2, -1), (-2, 1), (-1, 2))


def _plane_table() -> np.ndarray:
    """(from, to) -> the policy plane of that queen-like or knight move (-1: neither),
    as dataengine.policy lays them out."""
    table = np.full((64, 64), -1, dtype=np.int16)
    for sq in range(64):
        f, r = sq & 7, sq >> 3
        for d, (df, dr) in enumerate(_DIRECTIONS):
            for dist in range(1, 8):
                tf, tr = f + df * dist, r + dr * dist
                if 0 <= tf < 8 and 0 <= tr < 8:
                    table[sq, 8 * tr + tf] = 7 * d + dist - 1
        for k, (df, dr) in enumerate(_KNIGHT_STEPS):
            if 0 <= f + df < 8 and 0 <= r + dr < 8:
                table[sq, 8 * (r + dr) + f + df] = 56 + k
    return table


_PLANE = _plane_table()


def _ray_table() -> np.ndarray:
    """(a, b) -> the squares from a (excluded) through b to the board's edge when they
    share a rank, file or diagonal, else 0."""
    table = np.zeros((64, 64), dtype=np.uint64)
    for sq in range(64):
        f, r = sq & 7, sq >> 3
        for df, dr in _DIRECTIONS:
            ray = []
            tf, tr = f + df, r + dr
            while 0 <= tf < 8 and 0 <= tr < 8:
                ray.append(8 * tr + tf)
                tf, tr = tf + df, tr + dr
            bits = sum(1 << t for t in ray)
            for t in ray:
                table[sq, t] = np.uint64(bits)
    return table


_RAY = _ray_table()


@njit(**_JIT)
def _attacked(sq, bb, occ, by, removed):
    """Whether the pieces of side `by` (0 ours, 6 theirs) other than `removed` attack
    `sq` with occupancy `occ`."""
    a = _KNIGHT_ATTACKS[sq] & bb[by + _N]
    a |= _KING_ATTACKS[sq] & bb[by + _K]
    a |= (_DOWN_ATTACKS[sq] if by == 0 else _UP_ATTACKS[sq]) & bb[by + _P]
    a |= _rook_attacks(sq, occ) & (bb[by + _R] | bb[by + _Q])
    a |= _bishop_attacks(sq, occ) & (bb[by + _B] | bb[by + _Q])
    return (a & ~removed) != _ZERO


@njit(**_JIT)
def _them_safe(bb, occ, ksq, frm, to, captured):
    """Whether their move `frm` -> `to` (taking our piece on `captured`, if any) leaves
    their king (on `ksq`, not in check) safe."""
    cap = _BIT[captured] if captured >= 0 else _ZERO
    occ2 = (occ & ~_BIT[frm] & ~cap) | _BIT[to]
    return not _attacked(to if frm == ksq else ksq, bb, occ2, 0, cap)


@njit(**_JIT)
def _them_can_move(bb, ep):
    """Whether the side not to move (planes 6-11, moving down), not in check, has a legal
    move; `ep`: the square behind our pawn that just moved two squares, else -1."""
    ours = bb[0] | bb[1] | bb[2] | bb[3] | bb[4] | bb[5]
    theirs = bb[6] | bb[7] | bb[8] | bb[9] | bb[10] | bb[11]
    occ = ours | theirs
    ksq = _tzcnt(bb[_THEM + _K])
    targets = _KING_ATTACKS[ksq] & ~theirs
    while targets:
        to = _tzcnt(targets)
        targets &= targets - _ONE
        if _them_safe(bb, occ, ksq, ksq, to, to if ours & _BIT[to] else -1):
            return True
    for kind in range(_N, _K):
        pieces = bb[_THEM + kind]
        while pieces:
            frm = _tzcnt(pieces)
            pieces &= pieces - _ONE
            reach = _piece_attacks(kind, frm, occ)
            reach &= ~theirs
            while reach:
                to = _tzcnt(reach)
                reach &= reach - _ONE
                if _them_safe(bb, occ, ksq, frm, to, to if ours & _BIT[to] else -1):
                    return True
    pawns = bb[_THEM + _P]
    while pawns:
        frm = _tzcnt(pawns)
        pawns &= pawns - _ONE
        one = frm - 8  # a pawn is never on the first rank: one >= 0
        if not occ & _BIT[one]:
            if _them_safe(bb, occ, ksq, frm, one, -1):
                return True
            if frm >= 48 and not occ & _BIT[one - 8]:
                if _them_safe(bb, occ, ksq, frm, one - 8, -1):
                    return True
        takes = _DOWN_ATTACKS[frm] & ours
        while takes:
            to = _tzcnt(takes)
            takes &= takes - _ONE
            if _them_safe(bb, occ, ksq, frm, to, to):
                return True
        if ep >= 0 and _DOWN_ATTACKS[frm] & _BIT[ep]:
            if _them_safe(bb, occ, ksq, frm, ep, ep + 8):
                return True
    return False


@njit(**_JIT)
def _stalemates(bb, after, frm, to, kind, promo, captured, rook_from, rook_to):
    """Play our move on a copy (`after`) of `bb`; True when it is legal and leaves the
    other side stalemated. `promo`: the piece a pawn becomes (its kind, or `kind`);
    `captured`: the square of the piece it takes (-1 none); a castling moves the rook
    `rook_from` -> `rook_to` (else -1)."""
    for i in range(12):
        after[i] = bb[i]
    if captured >= 0:
        for i in range(_THEM, _THEM + 6):
            after[i] &= ~_BIT[captured]
    after[kind] &= ~_BIT[frm]
    after[promo] |= _BIT[to]
    if rook_from >= 0:
        after[_R] ^= _BIT[rook_from] | _BIT[rook_to]
    occ = _ZERO
    for i in range(12):
        occ |= after[i]
    if _attacked(_tzcnt(after[_K]), after, occ, _THEM, _ZERO):
        return False  # illegal: our king is left in check
    if _attacked(_tzcnt(after[_THEM + _K]), after, occ, 0, _ZERO):
        return False  # check: mate or not, no stalemate
    ep = to - 8 if kind == _P and to - frm == 16 else -1
    return not _them_can_move(after, ep)


@njit(**_JIT)
def _index(frm, to, kind, promo):
    """The policy index of a canonical move of a `kind` piece (a pawn becoming `promo`),
    as dataengine.policy lays them out: underpromotions have planes 64-72, every other
    move its queen-like or knight plane."""
    if kind == _P and (promo == _N or promo == _B or promo == _R):
        side = (to & 7) - (frm & 7) + 1
        return frm * 73 + 64 + 3 * side + (promo - _N)
    return frm * 73 + _PLANE[frm, to]


@njit(**_JIT)
def _popcount(x):
    n = 0
    while x:
        x &= x - _ONE
        n += 1
    return n


@njit(**_JIT)
def _free(bb, occ, theirs):
    """Their pieces and pawns that can move now and are not pinned: each knight or
    slider with a square to go to, each pawn whose square in front is empty.

    After a move of ours that does not give check, such a piece still has a legal move
    unless our move took it, pinned it (a new pin runs on the line from their king
    through a square our move changed: from, to, and the rook's two squares when
    castling or the taken pawn's en passant, so four at most), or, for a pawn, landed
    in front of it (the king's and the rook's squares when castling: two at most). A
    knight keeps its squares (our pieces on them can be taken), a slider keeps at least
    one (its ray now stops at our piece, which it can take). So with eight or more,
    nothing we play stalemates them (`_position`'s first bound), and a move that leaves
    one of them alone does not either (`_leaves_one_free`)."""
    pinned = _pinned(bb[_THEM + _K], theirs, occ, bb[_R] | bb[_Q], bb[_B] | bb[_Q])
    pawns = bb[_THEM + _P] & ~pinned
    free = pawns & ~(occ << _U64(8))  # the square below a pawn of theirs is empty
    for kind in range(_N, _K):
        pieces = bb[_THEM + kind] & ~pinned
        while pieces:
            frm = _tzcnt(pieces)
            pieces &= pieces - _ONE
            if _piece_attacks(kind, frm, occ) & ~theirs:
                free |= _BIT[frm]
    return free


@njit(**_JIT)
def _leaves_one_free(free, ksq, frm, to):
    """Whether our move `frm` -> `to` (not castling, not en passant) leaves a piece of
    `free` (see `_free`) untouched: not taken (on `to`), not on the line from their king
    (on `ksq`) through `frm` (a pin uncovered) or between it and `to` (a pin made), not a
    pawn with `to` in front of it."""
    touched = _RAY[ksq, frm] | BETWEEN[ksq, to] | _BIT[to]
    if to < 56:
        touched |= _BIT[to + 8]
    return (free & ~touched) != _ZERO


@njit(**_JIT)
def _castlings(bb, castling, occ):
    """Our castlings that may be legal: bit 0 kingside, bit 1 queenside. Each needs its
    right, the king on e1 and the rook on its corner, the squares between them empty, and
    the king's square and the one it crosses not attacked; the landing square is left to
    the caller, which plays the move and tests our king (`_stalemates`, mates' `_mates`)."""
    can = 0
    if castling & 3 and bb[_K] & _BIT[4] and not _attacked(4, bb, occ, _THEM, _ZERO):
        if castling & 1 and bb[_R] & _BIT[7] and not occ & (_BIT[5] | _BIT[6]):
            if not _attacked(5, bb, occ, _THEM, _ZERO):
                can |= 1
        if castling & 2 and bb[_R] & _BIT[0] and not occ & (_BIT[1] | _BIT[2] | _BIT[3]):
            if not _attacked(3, bb, occ, _THEM, _ZERO):
                can |= 2
    return can


@njit(**_JIT)
def _position(bb, castling, ep_file, after, found):
    """The stalemating moves of one position into `found`; returns how many."""
    ours = bb[0] | bb[1] | bb[2] | bb[3] | bb[4] | bb[5]
    theirs = bb[6] | bb[7] | bb[8] | bb[9] | bb[10] | bb[11]
    occ = ours | theirs
    count = 0
    free = _free(bb, occ, theirs)
    if _popcount(free) >= 8:
        return 0
    ksq = _tzcnt(bb[_THEM + _K])
    for kind in range(_N, _K + 1):
        pieces = bb[kind]
        while pieces:
            frm = _tzcnt(pieces)
            pieces &= pieces - _ONE
            reach = _piece_attacks(kind, frm, occ)
            reach &= ~ours
            while reach:
                to = _tzcnt(reach)
                reach &= reach - _ONE
                if _leaves_one_free(free, ksq, frm, to):
                    continue
                captured = to if theirs & _BIT[to] else -1
                if _stalemates(bb, after, frm, to, kind, kind, captured, -1, -1):
                    found[count] = _index(frm, to, kind, kind)
                    count += 1
    can = _castlings(bb, castling, occ)
    if can & 1 and _stalemates(bb, after, 4, 6, _K, _K, -1, 7, 5):
        found[count] = _index(4, 6, _K, _K)
        count += 1
    if can & 2 and _stalemates(bb, after, 4, 2, _K, _K, -1, 0, 3):
        found[count] = _index(4, 2, _K, _K)
        count += 1
    pawns = bb[_P]
    ep = 40 + ep_file if ep_file >= 0 else -1
    while pawns:
        frm = _tzcnt(pawns)
        pawns &= pawns - _ONE
        tos = _UP_ATTACKS[frm] & theirs
        if not occ & _BIT[frm + 8]:  # a pawn is never on the last rank: frm + 8 < 64
            tos |= _BIT[frm + 8]
            if frm < 16 and not occ & _BIT[frm + 16]:
                tos |= _BIT[frm + 16]
        if ep >= 0 and _UP_ATTACKS[frm] & _BIT[ep]:
            if _stalemates(bb, after, frm, ep, _P, _P, ep - 8, -1, -1):
                found[count] = _index(frm, ep, _P, _P)
                count += 1
        while tos:
            to = _tzcnt(tos)
            tos &= tos - _ONE
            if _leaves_one_free(free, ksq, frm, to):
                continue
            captured = to if theirs & _BIT[to] else -1
            last = _Q if to >= 56 else _P
            for promo in range(_P if last == _P else _N, last + 1):
                if _stalemates(bb, after, frm, to, _P, promo, captured, -1, -1):
                    found[count] = _index(frm, to, _P, promo)
                    count += 1
    return count


@njit(**_JIT)
def _stalemate_kernel(planes, castling, ep_file, out):
    after = np.empty(12, dtype=np.uint64)
    found = np.empty(256, dtype=np.int64)  # a position has at most 218 legal moves
    for i in range(planes.shape[0]):
        count = _position(planes[i], castling[i], ep_file[i], after, found)
        kept = np.sort(found[:count])
        for j in range(out.shape[1]):
            out[i, j] = kept[j] if j < count else NO_MOVE


def stalemate_moves(planes: np.ndarray, castling: np.ndarray, ep_file: np.ndarray) -> np.ndarray:
    """``(N, MAX_STALEMATE_MOVES)`` uint16: each canonical position's stalemating moves as
    ascending policy indices, NO_MOVE after them.

    ``planes``: ``(N, 12)`` uint64 canonical planes; ``castling``: ``(N,)`` uint8
    CASTLE_* bits (bit 0 ours kingside, bit 1 ours queenside; the rest unread);
    ``ep_file``: ``(N,)`` int8, the file of a legal en-passant capture, -1 none (the
    schema's columns). Positions are trusted to be valid, with one king a side."""
    return run_moves_kernel(_stalemate_kernel, MAX_STALEMATE_MOVES, planes, castling, ep_file)


def run_moves_kernel(kernel, width: int, planes: np.ndarray, castling: np.ndarray,
                     ep_file: np.ndarray) -> np.ndarray:
    """The inputs checked and `kernel(planes, castling, ep_file, out)` run into a new
    ``(N, width)`` uint16 `out` (this module's and labelers.mates')."""
    check_array("planes", planes, np.uint64, 2, 12)
    n = planes.shape[0]
    castling = np.ascontiguousarray(castling, dtype=np.uint8)
    ep_file = np.ascontiguousarray(ep_file, dtype=np.int8)
    if castling.shape != (n,) or ep_file.shape != (n,):
        raise ValueError(f"castling and ep_file must have shape ({n},), got "
                         f"{castling.shape} and {ep_file.shape}")
    out = np.empty((n, width), dtype=np.uint16)
    if n:
        kernel(planes, castling, ep_file, out)
    return out


def inputs_of_boards(boards) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(planes, castling, ep_file) of python-chess boards for :func:`stalemate_moves`, each
    in canonical orientation (mirrored when Black is to move); castling as the schema's
    CASTLE_* bits (ours kingside, ours queenside, theirs kingside, theirs queenside)."""
    boards = [b if b.turn == chess.WHITE else b.mirror() for b in boards]
    planes = np.zeros((len(boards), 12), dtype=np.uint64)
    castling = np.zeros(len(boards), dtype=np.uint8)
    ep_file = np.full(len(boards), -1, dtype=np.int8)
    for i, board in enumerate(boards):
        planes[i] = planes_from_board(board)
        castling[i] = (board.has_kingside_castling_rights(chess.WHITE)
                       | board.has_queenside_castling_rights(chess.WHITE) << 1
                       | board.has_kingside_castling_rights(chess.BLACK) << 2
                       | board.has_queenside_castling_rights(chess.BLACK) << 3)
        if board.has_legal_en_passant():
            ep_file[i] = chess.square_file(board.ep_square)
    return planes, castling, ep_file


# public names for other numba modules (the search's move generator)
attacked = _attacked
castlings = _castlings
policy_index = _index
