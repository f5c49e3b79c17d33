"""Numba kernels: the 20 label masks of canonical positions, and canonical planes.

Pure functions over ``np.uint64`` arrays and scalars (LABELS.md is the
contract). The public, checked entry points are in ``labelers/__init__.py`` and
``labelers/boards.py``; nothing here validates its input.

How the masks are computed, per position, with no per-square loops:

- Below the row level every helper takes and returns scalars only (tables are
  frozen globals), so no reference counting runs per position and LLVM can
  inline freely.
- Attacks are generated once per piece (knight/king tables, kindergarten
  sliders) and set-wise for pawns (two shifts per colour). Each piece's set is
  OR-ed into a per-type union and added into a *bit-sliced counter*: five
  bitboards holding, for every square at once, the binary digits of
  ``|A_c(t)|``. A square has at most 16 attackers of one colour (8 ray
  neighbours, 8 knight squares), so five digits are exact. ``control`` is then
  a bit-sliced ``>`` of the two counters.
- ``threat`` compares against cumulative unions (attacked by pawns, by
  pawns-or-minors, ...), so "cheapest attacker < value" is a few ANDs.
- ``fork`` first rejects a whole piece type when the union of its attacks holds
  fewer than two targets, and only then recomputes per-piece attacks.
- ``pin`` walks the enemy sliders that see the king on an empty board and keeps
  the one own piece standing alone between.
- Pawn structure, king zone and shield are set-wise shifts and fills.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import config, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import tables
from .tables import (
    A_FILE,
    ANTI_EX,
    B_FILE,
    BETWEEN,
    BISHOP_RAYS,
    DIAG_C7_H2,
    DIAG_EX,
    FILE_ATTACKS,
    FILL_UP,
    KING_ATTACKS,
    KNIGHT_ATTACKS,
    RANK_EX,
    ROOK_RAYS,
)

# The only place numba options are set. Serial and parallel drivers are distinct
# functions: one function compiled both ways shares a cache entry and may load
# the wrong one.
_JIT = {"cache": True, "nogil": True}
_JIT_PARALLEL = {**_JIT, "parallel": True}
# Inlined at numba's level: where arrays are passed (each array argument costs an
# atomic reference-count update per call), and the per-colour attack pass.
_JIT_INLINE = {**_JIT, "inline": "always"}

# The tables are globals, frozen into the compiled code: as arguments they would
# cost a reference-count update per array per call (that made the kernels several
# times slower). The cache does not see tables.py, so this file pins the tables'
# digest; after changing a table, update it here.
_TABLES_SHA256 = "30389b8d4fbc7f16c014c57bc2c3dc0bf0373574bfca76b78f84e14a2389d3db"
tables.require_digest(_TABLES_SHA256, __file__, "these kernels")

N_MASKS = 20
N_PLANES = 12

_U64 = np.uint64
_ZERO = _U64(0)
_ONE = _U64(1)
_NOT_A = _U64(0xFEFEFEFEFEFEFEFE)
_NOT_H = _U64(0x7F7F7F7F7F7F7F7F)
_B_FILE = _U64(B_FILE)
_A_FILE = _U64(A_FILE)
_DIAG_C7_H2 = _U64(DIAG_C7_H2)

_KNIGHT, _BISHOP, _ROOK, _QUEEN, _KING = 1, 2, 3, 4, 5


# --- bit intrinsics ------------------------------------------------------------

if config.DISABLE_JIT:  # pure-Python twins, for coverage runs with NUMBA_DISABLE_JIT=1

    def _tzcnt(x):
        return (int(x) & -int(x)).bit_length() - 1

    def _bswap(x):
        return _U64(int.from_bytes(int(x).to_bytes(8, "little"), "big"))

else:

    @intrinsic
    def _tzcnt(typingctx, x):
        """Index of the lowest set bit of a non-zero uint64 (LLVM ``cttz``)."""
        sig = types.int64(types.uint64)

        def codegen(context, builder, signature, args):
            i64 = ir.IntType(64)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(i64, [i64, ir.IntType(1)]), "llvm.cttz.i64"
            )
            return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 1)])

        return sig, codegen

    @intrinsic
    def _bswap(typingctx, x):
        """Reverse the bytes of a uint64: flips a bitboard vertically (LLVM ``bswap``)."""
        sig = types.uint64(types.uint64)

        def codegen(context, builder, signature, args):
            i64 = ir.IntType(64)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(i64, [i64]), "llvm.bswap.i64"
            )
            return builder.call(fn, [args[0]])

        return sig, codegen


# --- attacks -------------------------------------------------------------------


@njit(**_JIT)
def _line_attacks(occ, line_ex, file):
    """Kindergarten attacks along a rank or diagonal (``line_ex`` excludes the slider)."""
    return line_ex & FILL_UP[file, ((line_ex & occ) * _B_FILE) >> 58]


@njit(**_JIT)
def _rook_attacks(sq, occ):
    file = sq & 7
    index = (((occ >> file) & _A_FILE) * _DIAG_C7_H2) >> 58
    along_file = FILE_ATTACKS[sq >> 3, index] << file
    return along_file | _line_attacks(occ, RANK_EX[sq], file)


@njit(**_JIT)
def _bishop_attacks(sq, occ):
    file = sq & 7
    return _line_attacks(occ, DIAG_EX[sq], file) | _line_attacks(occ, ANTI_EX[sq], file)


@njit(**_JIT)
def _piece_attacks(kind, sq, occ):
    """``attacks(sq)`` for a non-pawn piece of the given kind."""
    if kind == _KNIGHT:
        return KNIGHT_ATTACKS[sq]
    if kind == _BISHOP:
        return _bishop_attacks(sq, occ)
    if kind == _ROOK:
        return _rook_attacks(sq, occ)
    if kind == _QUEEN:
        return _rook_attacks(sq, occ) | _bishop_attacks(sq, occ)
    return KING_ATTACKS[sq]


@njit(**_JIT)
def _add(c0, c1, c2, c3, c4, x):
    """Add 1 on every square of ``x`` to the bit-sliced counter ``c0..c4``."""
    carry = c0 & x
    c0 ^= x
    next_carry = c1 & carry
    c1 ^= carry
    carry = c2 & next_carry
    c2 ^= next_carry
    next_carry = c3 & carry
    c3 ^= carry
    c4 ^= next_carry
    return c0, c1, c2, c3, c4


@njit(**_JIT)
def _count_attacks(pieces, kind, occ, c0, c1, c2, c3, c4):
    """The union of ``attacks`` over ``pieces``, and each set added to the counter."""
    union = _ZERO
    while pieces:
        sq = _tzcnt(pieces)
        pieces &= pieces - _ONE
        a = _piece_attacks(kind, sq, occ)
        union |= a
        c0, c1, c2, c3, c4 = _add(c0, c1, c2, c3, c4, a)
    return union, c0, c1, c2, c3, c4


@njit(**_JIT_INLINE)
def _side_attacks(pawn_west, pawn_east, knights, bishops, rooks, queens, kings, occ):
    """One colour's attack unions by piece type, and its bit-sliced attacker count.

    ``pawn_west``/``pawn_east`` are that colour's pawn captures in each direction:
    two sets, since a square can be attacked by two pawns.
    """
    c0 = pawn_west ^ pawn_east
    c1 = pawn_west & pawn_east
    c2 = c3 = c4 = _ZERO
    att_n, c0, c1, c2, c3, c4 = _count_attacks(knights, _KNIGHT, occ, c0, c1, c2, c3, c4)
    att_b, c0, c1, c2, c3, c4 = _count_attacks(bishops, _BISHOP, occ, c0, c1, c2, c3, c4)
    att_r, c0, c1, c2, c3, c4 = _count_attacks(rooks, _ROOK, occ, c0, c1, c2, c3, c4)
    att_q, c0, c1, c2, c3, c4 = _count_attacks(queens, _QUEEN, occ, c0, c1, c2, c3, c4)
    att_k, c0, c1, c2, c3, c4 = _count_attacks(kings, _KING, occ, c0, c1, c2, c3, c4)
    return att_n, att_b, att_r, att_q, att_k, c0, c1, c2, c3, c4


# --- per-mask helpers ----------------------------------------------------------


@njit(**_JIT)
def _more(a0, a1, a2, a3, a4, b0, b1, b2, b3, b4):
    """Squares where bit-sliced count ``a`` > count ``b``, and where ``b`` > ``a``."""
    a_more = a4 & ~b4
    b_more = b4 & ~a4
    same = ~(a4 ^ b4)
    a_more |= same & a3 & ~b3
    b_more |= same & b3 & ~a3
    same &= ~(a3 ^ b3)
    a_more |= same & a2 & ~b2
    b_more |= same & b2 & ~a2
    same &= ~(a2 ^ b2)
    a_more |= same & a1 & ~b1
    b_more |= same & b1 & ~a1
    same &= ~(a1 ^ b1)
    a_more |= same & a0 & ~b0
    b_more |= same & b0 & ~a0
    return a_more, b_more


@njit(**_JIT)
def _threatened(
    own, kings, minors, rooks, queens, defended, by_pawns, by_minors, by_rooks, attacked
):
    """Non-king pieces attacked and undefended, or attacked by something cheaper.

    ``by_pawns``/``by_minors``/``by_rooks`` are cumulative: squares attacked by
    an enemy piece worth at most a pawn, a minor, a rook.
    """
    cheaper = (minors & by_pawns) | (rooks & by_minors) | (queens & by_rooks)
    return own & ~kings & attacked & (~defended | cheaper)


@njit(**_JIT)
def _pinned(kings, own, occ, enemy_orthogonal, enemy_diagonal):
    """Own pieces alone between their king and an enemy slider on its line."""
    if not kings:
        return _ZERO
    king = _tzcnt(kings)
    snipers = (ROOK_RAYS[king] & enemy_orthogonal) | (BISHOP_RAYS[king] & enemy_diagonal)
    pinned = _ZERO
    while snipers:
        sniper = _tzcnt(snipers)
        snipers &= snipers - _ONE
        blockers = BETWEEN[king, sniper] & occ
        if blockers and not blockers & (blockers - _ONE):
            pinned |= blockers & own
    return pinned


@njit(**_JIT)
def _forkers(pieces, kind, reach, targets, occ):
    """Pieces of one kind with two or more ``targets`` in their attacks.

    ``reach`` is the union of their attacks: under two targets in it, none forks.
    """
    hit = reach & targets
    if not hit & (hit - _ONE):
        return _ZERO
    forks = _ZERO
    while pieces:
        sq = _tzcnt(pieces)
        pieces &= pieces - _ONE
        hit = _piece_attacks(kind, sq, occ) & targets
        if hit & (hit - _ONE):
            forks |= _ONE << sq
    return forks


@njit(**_JIT)
def _north_fill(x):
    x |= x << 8
    x |= x << 16
    return x | (x << 32)


@njit(**_JIT)
def _south_fill(x):
    x |= x >> 8
    x |= x >> 16
    return x | (x >> 32)


@njit(**_JIT)
def _beside(x):
    """Squares one file left or right of ``x``."""
    return ((x & _NOT_H) << 1) | ((x & _NOT_A) >> 1)


@njit(**_JIT)
def _pawn_structure(own, enemy_front, forward):
    """passed, isolated, doubled, connected for ``own`` pawns.

    ``enemy_front``: the squares each enemy pawn has in front of it on its file
    (from the enemy's view), i.e. where an ``own`` pawn has it strictly ahead.
    ``forward``: 1 for us (ahead = up), 0 for them (ahead = down).
    """
    passed = own & ~(enemy_front | _beside(enemy_front))
    isolated = own & ~_beside(_north_fill(_south_fill(own)))
    doubled = own & (_north_fill(own << 8) | _south_fill(own >> 8))
    neighbours = _beside(own)
    supporters = neighbours << 8 if forward else neighbours >> 8
    connected = own & (neighbours | supporters)
    return passed, isolated, doubled, connected


# --- per position --------------------------------------------------------------


@njit(**_JIT)
def _label_position(p0, n0, b0, r0, q0, k0, p1, n1, b1, r1, q1, k1):
    """The 20 masks (LABELS.md order) of one canonical position: us = White = 0."""
    us = p0 | n0 | b0 | r0 | q0 | k0
    them = p1 | n1 | b1 | r1 | q1 | k1
    occ = us | them

    # Attacks. Our pawns capture upwards, theirs downwards.
    pw0 = (p0 & _NOT_A) << 7
    pe0 = (p0 & _NOT_H) << 9
    pw1 = (p1 & _NOT_A) >> 9
    pe1 = (p1 & _NOT_H) >> 7
    an0, ab0, ar0, aq0, ak0, u0, u1, u2, u3, u4 = _side_attacks(pw0, pe0, n0, b0, r0, q0, k0, occ)
    an1, ab1, ar1, aq1, ak1, v0, v1, v2, v3, v4 = _side_attacks(pw1, pe1, n1, b1, r1, q1, k1, occ)
    ap0 = pw0 | pe0
    ap1 = pw1 | pe1
    upto_minor0 = ap0 | an0 | ab0  # attacked by a piece worth at most a minor's 3
    upto_minor1 = ap1 | an1 | ab1
    upto_rook0 = upto_minor0 | ar0
    upto_rook1 = upto_minor1 | ar1
    all0 = upto_rook0 | aq0 | ak0
    all1 = upto_rook1 | aq1 | ak1

    threat0 = _threatened(us, k0, n0 | b0, r0, q0, all0, ap1, upto_minor1, upto_rook1, all1)
    threat1 = _threatened(them, k1, n1 | b1, r1, q1, all1, ap0, upto_minor0, upto_rook0, all0)

    pin0 = _pinned(k0, us & ~k0, occ, r1 | q1, b1 | q1)
    pin1 = _pinned(k1, them & ~k1, occ, r0 | q0, b0 | q0)

    # Fork targets, by forker value: the enemy king, pieces worth more, and
    # pieces their own side does not attack.
    king_t1 = k1 | (them & ~all1)
    rook_t1 = king_t1 | q1
    minor_t1 = rook_t1 | r1
    pawn_t1 = minor_t1 | n1 | b1
    king_t0 = k0 | (us & ~all0)
    rook_t0 = king_t0 | q0
    minor_t0 = rook_t0 | r0
    pawn_t0 = minor_t0 | n0 | b0
    # A pawn forks when both its capture squares hold targets (edge pawns have one).
    fork0 = p0 & _NOT_A & _NOT_H & (pawn_t1 >> 7) & (pawn_t1 >> 9)
    fork0 |= _forkers(n0, _KNIGHT, an0, minor_t1, occ)
    fork0 |= _forkers(b0, _BISHOP, ab0, minor_t1, occ)
    fork0 |= _forkers(r0, _ROOK, ar0, rook_t1, occ)
    fork0 |= _forkers(q0, _QUEEN, aq0, king_t1, occ)
    fork0 |= _forkers(k0, _KING, ak0, king_t1, occ)
    fork1 = p1 & _NOT_A & _NOT_H & (pawn_t0 << 7) & (pawn_t0 << 9)
    fork1 |= _forkers(n1, _KNIGHT, an1, minor_t0, occ)
    fork1 |= _forkers(b1, _BISHOP, ab1, minor_t0, occ)
    fork1 |= _forkers(r1, _ROOK, ar1, rook_t0, occ)
    fork1 |= _forkers(q1, _QUEEN, aq1, king_t0, occ)
    fork1 |= _forkers(k1, _KING, ak1, king_t0, occ)

    control0, control1 = _more(u0, u1, u2, u3, u4, v0, v1, v2, v3, v4)

    # Pawn structure; "ahead" is up for us, down for them.
    passed0, isolated0, doubled0, connected0 = _pawn_structure(p0, _south_fill(p1 >> 8), 1)
    passed1, isolated1, doubled1, connected1 = _pawn_structure(p1, _north_fill(p0 << 8), 0)

    kingzone0 = (k0 | ak0) & all1
    kingzone1 = (k1 | ak1) & all0

    beside_king0 = k0 | _beside(k0)
    beside_king1 = k1 | _beside(k1)
    shield0 = p0 & ((beside_king0 << 8) | (beside_king0 << 16))
    shield1 = p1 & ((beside_king1 >> 8) | (beside_king1 >> 16))

    return (
        threat0, threat1, pin0, pin1, fork0, fork1, control0, control1,
        passed0, passed1, isolated0, isolated1, doubled0, doubled1, connected0, connected1,
        kingzone0, kingzone1, shield0, shield1,
    )  # fmt: skip


@njit(**_JIT_INLINE)
def _label_row(planes, out, i):
    """``out[i] = masks of planes[i]``."""
    # Constant indices: a loop over the returned tuple would compile to a jump table.
    (
        out[i, 0], out[i, 1], out[i, 2], out[i, 3], out[i, 4], out[i, 5], out[i, 6],
        out[i, 7], out[i, 8], out[i, 9], out[i, 10], out[i, 11], out[i, 12], out[i, 13],
        out[i, 14], out[i, 15], out[i, 16], out[i, 17], out[i, 18], out[i, 19],
    ) = _label_position(
        planes[i, 0], planes[i, 1], planes[i, 2], planes[i, 3], planes[i, 4], planes[i, 5],
        planes[i, 6], planes[i, 7], planes[i, 8], planes[i, 9], planes[i, 10], planes[i, 11],
    )  # fmt: skip


# --- drivers -------------------------------------------------------------------


@njit(**_JIT)
def label_serial(planes, out):
    """Label every row of ``planes`` (N, 12) into ``out`` (N, 20), one thread."""
    for i in range(planes.shape[0]):
        _label_row(planes, out, i)


@njit(**_JIT_PARALLEL)
def label_parallel(planes, out):
    """Label every row of ``planes`` (N, 12) into ``out`` (N, 20), on numba's threads."""
    for i in prange(planes.shape[0]):
        _label_row(planes, out, i)


@njit(**_JIT)
def canonical_planes(raw, white_to_move, out):
    """python-chess columns (N, 8) -> canonical planes (N, 12); see boards.canonical_planes."""
    for i in range(raw.shape[0]):
        white = raw[i, 6]
        black = raw[i, 7]
        if white_to_move[i]:
            for j in range(6):
                out[i, j] = raw[i, j] & white
                out[i, 6 + j] = raw[i, j] & black
        else:
            for j in range(6):
                out[i, j] = _bswap(raw[i, j] & black)
                out[i, 6 + j] = _bswap(raw[i, j] & white)


# --- public names for other numba modules (the search's move generator) ----------
tzcnt = _tzcnt
bswap = _bswap
piece_attacks = _piece_attacks
