"""The moves that checkmate the opponent, computed with numba bitboards.

A training target beside :mod:`labelers.stalemate`'s: for each canonical position
(the side to move is White, see :mod:`labelers.boards`), the policy indices
(:mod:`dataengine.policy`) of the legal moves after which the other side is in
check and has no legal move. The trainer pulls the policy towards them (the
``mate`` loss) and the held-out evaluation reports how often the highest logit is
one: a raw policy that plays its best move against a weak opponent missed 187 of
268 mates in one in 100 games of a 10,000-step network, and drew 14 of those
games by repetition or stalemate (README).

>>> import labelers
>>> from labelers.mates import mate_moves
>>> planes = labelers.planes_from_fens(["6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1"])
>>> out = mate_moves(planes, np.zeros(1, np.uint8), np.full(1, -1, np.int8))
>>> [int(i) for i in out[0] if i != NO_MOVE]  # Ra8#
[6]

The output is ``(N, MAX_MATE_MOVES)`` uint16: the indices in ascending order,
``NO_MOVE`` (0xFFFF) after them; a position with more mating moves (rare) keeps the
lowest ``MAX_MATE_MOVES``. ``tests/test_mates.py`` compares every position of the
sample data and of random games with python-chess.

Only moves that can give check are played: a move of a piece alone between their
king and a slider of ours (a discovered check), a move whose piece attacks their king
from its target square given the occupancy before the move, a promotion whose new
piece does so with its pawn's square empty, castling and en passant. That set holds
every checking move: a piece that moves along a line to their king was not checking
before, so its old square is not between its new one and the king (a pawn that
promotes is the exception, hence the empty square). Each candidate is played on a
copy of the bitboards and kept when it is legal, gives check and leaves the other
side without a legal move (:func:`labelers.stalemate._them_can_move`, whose
king-safety test holds in check).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from labelers import tables
from labelers.kernels import _bishop_attacks, _piece_attacks, _pinned, _rook_attacks, _tzcnt
from labelers.stalemate import (
    _BIT,
    _DOWN_ATTACKS,
    _JIT,
    _UP_ATTACKS,
    NO_MOVE,
    _attacked,
    _castlings,
    _index,
    _them_can_move,
    inputs_of_boards,
    run_moves_kernel,
)

# The tables are frozen into the compiled code and numba's cache does not see
# labelers/tables.py: pin them, as labelers/kernels.py does.
_TABLES_SHA256 = "30389b8d4fbc7f16c014c57bc2c3dc0bf0373574bfca76b78f84e14a2389d3db"
tables.require_digest(_TABLES_SHA256, __file__, "the mate kernel")

__all__ = ["MAX_MATE_MOVES", "NO_MOVE", "inputs_of_boards", "mate_moves"]

#: Mating moves kept per position (the stored column's width).
MAX_MATE_MOVES = 8

_U64 = np.uint64
_ZERO = _U64(0)
_ONE = _U64(1)
_KNIGHT_ATTACKS = tables.KNIGHT_ATTACKS
_ROOK_RAYS = tables.ROOK_RAYS
_BISHOP_RAYS = tables.BISHOP_RAYS
_P, _N, _B, _R, _Q, _K = 0, 1, 2, 3, 4, 5
_THEM = 6


@njit(**_JIT)
def _mates(bb, after, frm, to, kind, promo, captured, rook_from, rook_to):
    """Play our move on a copy (`after`) of `bb`; True when it is legal, gives check and
    leaves the other side without a legal move. Arguments as
    :func:`labelers.stalemate._stalemates`'."""
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
    if not _attacked(_tzcnt(after[_THEM + _K]), after, occ, 0, _ZERO):
        return False  # no check: no mate
    ep = to - 8 if kind == _P and to - frm == 16 else -1
    if _them_can_move(after, ep):  # (asked first: most checks have an answer)
        return False
    return not _attacked(_tzcnt(after[_K]), after, occ, _THEM, _ZERO)  # ours left safe


@njit(**_JIT)
def _empty_board_reach(kind, sq):
    """The squares a piece of `kind` (knight to queen) on `sq` attacks on an empty board."""
    if kind == _N:
        return _KNIGHT_ATTACKS[sq]
    if kind == _B:
        return _BISHOP_RAYS[sq]
    if kind == _R:
        return _ROOK_RAYS[sq]
    return _ROOK_RAYS[sq] | _BISHOP_RAYS[sq]


@njit(**_JIT)
def _checking_squares(kind, ksq, occ):
    """The squares from which a piece of ours of `kind` (not the king) attacks `ksq`."""
    if kind == _P:
        return _DOWN_ATTACKS[ksq]  # our pawns attacking sq stand on _DOWN_ATTACKS[sq]
    return _piece_attacks(kind, ksq, occ)


@njit(**_JIT)
def _position(bb, castling, ep_file, after, found):
    """The mating moves of one position into `found`; returns how many."""
    ours = bb[0] | bb[1] | bb[2] | bb[3] | bb[4] | bb[5]
    theirs = bb[6] | bb[7] | bb[8] | bb[9] | bb[10] | bb[11]
    occ = ours | theirs
    ksq = _tzcnt(bb[_THEM + _K])
    # ours alone between their king and a slider of ours: every move of one uncovers check
    discover = _pinned(bb[_THEM + _K], ours, occ, bb[_R] | bb[_Q], bb[_B] | bb[_Q])
    count = 0
    rook_checks = _rook_attacks(ksq, occ) & ~ours
    bishop_checks = _bishop_attacks(ksq, occ) & ~ours
    for kind in range(_N, _K + 1):
        if kind == _N:
            direct = _KNIGHT_ATTACKS[ksq] & ~ours
        elif kind == _B:
            direct = bishop_checks
        elif kind == _R:
            direct = rook_checks
        elif kind == _Q:
            direct = rook_checks | bishop_checks
        else:
            direct = _ZERO  # a king gives no check of its own
        pieces = bb[kind] if direct else bb[kind] & discover
        while pieces:
            frm = _tzcnt(pieces)
            pieces &= pieces - _ONE
            if discover & _BIT[frm]:
                reach = _piece_attacks(kind, frm, occ) & ~ours
            elif _empty_board_reach(kind, frm) & direct:  # else no checking square in line
                reach = _piece_attacks(kind, frm, occ) & direct
            else:
                continue
            while reach:
                to = _tzcnt(reach)
                reach &= reach - _ONE
                captured = to if theirs & _BIT[to] else -1
                if _mates(bb, after, frm, to, kind, kind, captured, -1, -1):
                    found[count] = _index(frm, to, kind, kind)
                    count += 1
    can = _castlings(bb, castling, occ)  # (the rook may give check)
    if can & 1 and _mates(bb, after, 4, 6, _K, _K, -1, 7, 5):
        found[count] = _index(4, 6, _K, _K)
        count += 1
    if can & 2 and _mates(bb, after, 4, 2, _K, _K, -1, 0, 3):
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
            if _mates(bb, after, frm, ep, _P, _P, ep - 8, -1, -1):
                found[count] = _index(frm, ep, _P, _P)
                count += 1
        uncovers = (discover & _BIT[frm]) != _ZERO
        while tos:
            to = _tzcnt(tos)
            tos &= tos - _ONE
            captured = to if theirs & _BIT[to] else -1
            if to < 56:
                if uncovers or _DOWN_ATTACKS[ksq] & _BIT[to]:
                    if _mates(bb, after, frm, to, _P, _P, captured, -1, -1):
                        found[count] = _index(frm, to, _P, _P)
                        count += 1
                continue
            for promo in range(_N, _Q + 1):
                # the new piece may check along the line through the square it leaves
                if uncovers or _checking_squares(promo, ksq, occ & ~_BIT[frm]) & _BIT[to]:
                    if _mates(bb, after, frm, to, _P, promo, captured, -1, -1):
                        found[count] = _index(frm, to, _P, promo)
                        count += 1
    return count


@njit(**_JIT)
def _mate_kernel(planes, castling, ep_file, out):
    after = np.empty(12, dtype=np.uint64)
    found = np.empty(256, dtype=np.int64)  # a position has at most 218 legal moves
    for i in range(planes.shape[0]):
        count = _position(planes[i], castling[i], ep_file[i], after, found)
        kept = np.sort(found[:count])
        for j in range(out.shape[1]):
            out[i, j] = kept[j] if j < count else NO_MOVE


def mate_moves(planes: np.ndarray, castling: np.ndarray, ep_file: np.ndarray) -> np.ndarray:
    """``(N, MAX_MATE_MOVES)`` uint16: each canonical position's mating moves as ascending
    policy indices, NO_MOVE after them. Arguments as
    :func:`labelers.stalemate.stalemate_moves`' (planes ``(N, 12)`` uint64, castling
    ``(N,)`` uint8 CASTLE_* bits, ep_file ``(N,)`` int8); positions are trusted to be
    valid, with one king a side."""
    return run_moves_kernel(_mate_kernel, MAX_MATE_MOVES, planes, castling, ep_file)
