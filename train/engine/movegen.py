"""Chess positions for the search, as numba bitboards in canonical orientation.

A position is ``bb`` (12,) uint64, the canonical planes of :mod:`labelers.boards`
(ours P N B R Q K, then theirs; the side to move is White, a Black position is
mirrored), and three small ints: ``castling`` (the schema's CASTLE_* bits: 1 our
king side, 2 our queen side, 4 theirs, 8 theirs), ``ep`` (the square a pawn of ours
captures en passant, 40..47, or -1) and ``halfmove`` (the clock of the 50-move rule).
This is what the shards store and the network reads, so a searched position is seen
exactly as the same position in training.

A move is packed in an int: ``from | to << 6 | promotion << 12`` (canonical
squares; promotion 0, or the plane kind 1..4 = N B R Q). The kernels:

* :func:`legal_moves` writes the legal moves and their policy indices
  (:mod:`dataengine.policy`) and returns how many, and whether an en-passant
  capture is among them (the input planes show the ep square only then);
* :func:`make_move` plays a move and returns the opponent's position, mirrored;
* :func:`position_key` hashes a position for repetitions (``ep`` must already be
  cleared when no legal en-passant capture exists, as python-chess's
  transposition key does);
* :func:`insufficient_material` is python-chess's rule, side by side.

python-chess is used only at the edge, :func:`state_of_board` and
:func:`move_to_chess`; ``tests/test_engine_movegen.py`` compares the legal moves,
the positions after each move, the keys and the draws with python-chess's on
random games and the sample data.
"""

from __future__ import annotations

import chess
import numpy as np
from numba import njit

from dataengine.records import canonical_castling
from labelers.boards import planes_from_board
from labelers.kernels import bswap, piece_attacks, tzcnt
from labelers.stalemate import attacked, castlings, policy_index

__all__ = [
    "MAX_MOVES",
    "insufficient_material",
    "legal_moves",
    "make_move",
    "move_to_chess",
    "position_key",
    "state_of_board",
]

_JIT = {"cache": True, "nogil": True}

#: More than the legal moves of any position (218).
MAX_MOVES = 256

_U64 = np.uint64
_ZERO = _U64(0)
_ONE = _U64(1)
_BIT = np.array([1 << s for s in range(64)], dtype=np.uint64)
_P, _N, _B, _R, _Q, _K = 0, 1, 2, 3, 4, 5
_THEM = 6
_DARK = _U64(0xAA55AA55AA55AA55)
_LIGHT = _U64(0x55AA55AA55AA55AA)
_NOT_A = _U64(0xFEFEFEFEFEFEFEFE)
_NOT_H = _U64(0x7F7F7F7F7F7F7F7F)


def _up_attacks() -> np.ndarray:
    """Square -> the squares a pawn of ours (moving up) on it attacks."""
    table = np.zeros(64, dtype=np.uint64)
    for sq in range(64):
        f, r = sq & 7, sq >> 3
        for df in (-1, 1):
            if 0 <= f + df < 8 and r + 1 < 8:
                table[sq] |= np.uint64(1 << (8 * (r + 1) + f + df))
    return table


_UP_ATTACKS = _up_attacks()
# splitmix64 constants of the position key
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)


@njit(**_JIT)
def _mix(x):
    x = x + _GOLDEN
    x = (x ^ (x >> _U64(30))) * _MIX1
    x = (x ^ (x >> _U64(27))) * _MIX2
    return x ^ (x >> _U64(31))


@njit(**_JIT)
def position_key(bb, castling, ep):
    """A 64-bit key of the pieces, castling rights and en-passant square (not the clock):
    equal for positions python-chess counts as repetitions of each other."""
    h = _mix(_U64(castling) | (_U64(ep + 1) << _U64(8)))
    for i in range(12):
        h = _mix(h ^ bb[i] ^ (_U64(i) * _GOLDEN))
    return h


@njit(**_JIT)
def _kind_at(bb, first, sq):
    """The kind (0..5) of the piece of side ``first`` (0 ours, 6 theirs) on ``sq``, or -1."""
    bit = _BIT[sq]
    for k in range(6):
        if bb[first + k] & bit:
            return k
    return -1


@njit(**_JIT)
def _safe_after(bb, occ, ksq, frm, to, captured_sq):
    """Whether our king (on ``ksq`` after the move) is not attacked once a piece of ours
    went from ``frm`` to ``to``, capturing on ``captured_sq`` (-1: nothing)."""
    removed = _BIT[captured_sq] if captured_sq >= 0 else _ZERO
    after = (occ & ~_BIT[frm] & ~removed) | _BIT[to]
    return not attacked(ksq, bb, after, _THEM, removed)


@njit(**_JIT)
def legal_moves(bb, castling, ep, moves, indices):
    """Our legal moves into ``moves`` (packed) and ``indices`` (policy), in a fixed order;
    returns ``(count, whether an en-passant capture is legal)``."""
    ours = bb[0] | bb[1] | bb[2] | bb[3] | bb[4] | bb[5]
    theirs = bb[6] | bb[7] | bb[8] | bb[9] | bb[10] | bb[11]
    occ = ours | theirs
    ksq = tzcnt(bb[_K])
    n = 0
    for kind in range(_N, _K + 1):
        pieces = bb[kind]
        while pieces:
            frm = tzcnt(pieces)
            pieces &= pieces - _ONE
            reach = piece_attacks(kind, frm, occ) & ~ours
            while reach:
                to = tzcnt(reach)
                reach &= reach - _ONE
                captured = to if theirs & _BIT[to] else -1
                if _safe_after(bb, occ, to if kind == _K else ksq, frm, to, captured):
                    moves[n] = frm | to << 6
                    indices[n] = policy_index(frm, to, kind, kind)
                    n += 1
    can = castlings(bb, castling, occ)
    if can & 1 and _safe_after(bb, occ & ~_BIT[7] | _BIT[5], 6, 4, 6, -1):
        moves[n] = 4 | 6 << 6
        indices[n] = policy_index(4, 6, _K, _K)
        n += 1
    if can & 2 and _safe_after(bb, occ & ~_BIT[0] | _BIT[3], 2, 4, 2, -1):
        moves[n] = 4 | 2 << 6
        indices[n] = policy_index(4, 2, _K, _K)
        n += 1
    ep_legal = False
    pawns = bb[_P]
    while pawns:
        frm = tzcnt(pawns)
        pawns &= pawns - _ONE
        tos = _UP_ATTACKS[frm] & theirs
        if not occ & _BIT[frm + 8]:
            tos |= _BIT[frm + 8]
            if frm < 16 and not occ & _BIT[frm + 16]:
                tos |= _BIT[frm + 16]
        if ep >= 0 and _UP_ATTACKS[frm] & _BIT[ep]:
            if _safe_after(bb, occ, ksq, frm, ep, ep - 8):
                moves[n] = frm | ep << 6
                indices[n] = policy_index(frm, ep, _P, _P)
                n += 1
                ep_legal = True
        while tos:
            to = tzcnt(tos)
            tos &= tos - _ONE
            captured = to if theirs & _BIT[to] else -1
            if not _safe_after(bb, occ, ksq, frm, to, captured):
                continue
            if to >= 56:
                for promo in range(_Q, _P, -1):  # queen first
                    moves[n] = frm | to << 6 | promo << 12
                    indices[n] = policy_index(frm, to, _P, promo)
                    n += 1
            else:
                moves[n] = frm | to << 6
                indices[n] = policy_index(frm, to, _P, _P)
                n += 1
    return n, ep_legal


@njit(**_JIT)
def in_check(bb):
    """Whether our king is attacked."""
    occ = _ZERO
    for i in range(12):
        occ |= bb[i]
    return attacked(tzcnt(bb[_K]), bb, occ, _THEM, _ZERO)


@njit(**_JIT)
def make_move(bb, castling, ep, halfmove, move, out):
    """Play our ``move``: the opponent's position (mirrored: they are "us" now) into
    ``out`` (12,); returns ``(castling, ep, halfmove)`` of it. ``ep`` is set after any
    double pawn push next to one of their pawns; :func:`legal_moves` of the new position
    says whether the capture is legal."""
    frm = move & 63
    to = (move >> 6) & 63
    promo = move >> 12
    kind = _kind_at(bb, 0, frm)
    captured = _kind_at(bb, _THEM, to)
    b = bb.copy()
    b[kind] ^= _BIT[frm] | _BIT[to]
    if promo:
        b[_P] ^= _BIT[to]
        b[promo] |= _BIT[to]
    if captured >= 0:
        b[_THEM + captured] ^= _BIT[to]
    if kind == _P and to == ep:
        b[_THEM + _P] ^= _BIT[to - 8]
    if kind == _K and to - frm == 2 and frm == 4:
        b[_R] ^= _BIT[7] | _BIT[5]
    elif kind == _K and frm - to == 2 and frm == 4:
        b[_R] ^= _BIT[0] | _BIT[3]
    rights = castling
    if kind == _K:
        rights &= ~3
    if frm == 7 or to == 7:
        rights &= ~1
    if frm == 0 or to == 0:
        rights &= ~2
    if to == 63:
        rights &= ~4
    if to == 56:
        rights &= ~8
    new_ep = -1
    if kind == _P and to - frm == 16:
        beside = ((_BIT[to] << _ONE) & _NOT_A) | ((_BIT[to] >> _ONE) & _NOT_H)
        if beside & bb[_THEM + _P]:
            new_ep = (frm + 8) ^ 56  # their target square, mirrored: rank 6
    clock = 0 if kind == _P or captured >= 0 else halfmove + 1
    for i in range(6):
        out[i] = bswap(b[_THEM + i])
        out[_THEM + i] = bswap(b[i])
    return (rights >> 2) | ((rights & 3) << 2), new_ep, clock


@njit(**_JIT)
def _side_insufficient(own, other, bb):
    """python-chess ``has_insufficient_material`` for the side whose pieces are ``own``."""
    pawns = bb[0] | bb[6]
    knights = bb[1] | bb[7]
    bishops = bb[2] | bb[8]
    heavy = bb[0] | bb[3] | bb[4] | bb[6] | bb[9] | bb[10]
    kings_queens = bb[4] | bb[5] | bb[10] | bb[11]
    if own & heavy:
        return False
    if own & knights:
        count = 0
        x = own
        while x:
            x &= x - _ONE
            count += 1
        return count <= 2 and not (other & ~kings_queens)
    if own & bishops:
        same_colour = not (bishops & _DARK) or not (bishops & _LIGHT)
        return same_colour and not pawns and not knights
    return True


@njit(**_JIT)
def insufficient_material(bb):
    """Neither side can ever mate (python-chess ``is_insufficient_material``)."""
    ours = bb[0] | bb[1] | bb[2] | bb[3] | bb[4] | bb[5]
    theirs = bb[6] | bb[7] | bb[8] | bb[9] | bb[10] | bb[11]
    return _side_insufficient(ours, theirs, bb) and _side_insufficient(theirs, ours, bb)


# ----------------------------------------------------------------------------- edges


def state_of_board(board: chess.Board) -> tuple[np.ndarray, int, int, int]:
    """``(bb, castling, ep, halfmove)`` of a python-chess board: its canonical planes,
    CASTLE_* bits, the en-passant square in canonical orientation when a legal en-passant
    capture exists (else -1) and the halfmove clock."""
    bb = planes_from_board(board)
    white = board.turn == chess.WHITE
    castling = int(canonical_castling(np.array([board.clean_castling_rights()], np.uint64),
                                      np.array([white]))[0])
    ep = -1
    if board.ep_square is not None and board.has_legal_en_passant():
        ep = board.ep_square if white else board.ep_square ^ 56
    return bb, castling, ep, board.halfmove_clock


_PROMOTION = {0: None, 1: chess.KNIGHT, 2: chess.BISHOP, 3: chess.ROOK, 4: chess.QUEEN}
_KIND_OF_PROMOTION = {None: 0, chess.KNIGHT: 1, chess.BISHOP: 2, chess.ROOK: 3, chess.QUEEN: 4}


def move_to_chess(move: int, turn: chess.Color) -> chess.Move:
    """The python-chess move of a packed canonical move played by ``turn``."""
    frm, to, promo = move & 63, (move >> 6) & 63, move >> 12
    if turn == chess.BLACK:
        frm, to = frm ^ 56, to ^ 56
    return chess.Move(frm, to, _PROMOTION[promo])


def move_of_chess(move: chess.Move, turn: chess.Color) -> int:
    """The packed canonical move of a python-chess move played by ``turn``."""
    frm, to = move.from_square, move.to_square
    if turn == chess.BLACK:
        frm, to = frm ^ 56, to ^ 56
    return frm | to << 6 | _KIND_OF_PROMOTION[move.promotion] << 12
