"""The CPU fast path of :func:`train.expand.expand`: one numba pass over the positions.

On a GPU the tensor ops of ``train.expand`` are a few kernels each; on a CPU each op
writes its whole result to memory before the next reads it back, and a chunk of
4,096 positions does not fit in the caches. This kernel writes every square of the
input planes and of the per-square targets once, straight from the bitboards, with no
intermediate arrays: what ``train.expand`` computes with tables and lookups, in the
same order and with the same integer arithmetic, so the two agree bit for bit
(tests/test_expand.py checks both against python-chess and against each other).

:func:`expand_squares` makes the square-by-square outputs, :func:`expand_positions`
the per-position targets (policy, value, wdl).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dataengine.schema import HAS_RESULT, HAS_TEACHER_EVAL, HAS_TEACHER_MOVE, NO_MOVE

#: cross_entropy's ignore_index (train.expand.IGNORE_INDEX, which checks they agree)
IGNORE_INDEX = -100

# The only place numba options are set; fastmath stays off (0/1 and class values are
# exact, and the halfmove plane is copied from a table computed by torch).
_JIT = {"cache": True, "nogil": True}


# (256, 8) uint8: bit j of byte value v (square 8k + j of the byte k of a mask)
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
#: Byte value -> its 8 squares, bit j of the byte in byte j of the uint64 (little-endian):
#: the maps are written 8 squares a store (3.5x faster than a byte each).
BYTE_SQUARES = _BYTE_BITS.view(np.uint64).reshape(256)
#: Byte value -> its 8 squares as float32 0/1, for ``x``. A global, so numba freezes it
#: into the code: as an argument, the 8-value copies ran 30% slower.
BYTE_FLOATS = _BYTE_BITS.astype(np.float32)
#: The label masks of control (us, them), literals so that numba's cache, which sees only
#: this file, stays right (train.expand checks them against labelers.TASKS)
CONTROL_US, CONTROL_THEM = 6, 7


@njit(**_JIT)
def expand_squares(planes, labels, castling, ep_file, halfmove, halfmove_table,
                   x, maps, piece, control):
    """Fill the per-square outputs of B positions in place.

    In: ``planes`` (B, 12) and ``labels`` (B, 20) int64 masks (uint64 bits), ``castling``
    uint8 (CASTLE_* bits), ``ep_file`` int8 (-1 = none), ``halfmove`` integer (B,),
    ``halfmove_table`` float (101,): the halfmove plane's value of clock 0..100.
    Any strides. Out: ``x`` (B, 19, 64) float,
    ``maps`` (B, 20, 8) uint64 (the (B, 20, 64) uint8 0/1 maps), ``piece`` and
    ``control`` (B, 64) integer.

    Planes 0..11 are the piece masks, 12..15 bit k of ``castling`` (every square),
    16 the en-passant square 40 + ep_file (only when ep_file >= 0 and 40 + ep_file < 64,
    as the torch table's shift), 17 the halfmove value of ``min(max(clock, 0), 100)``,
    18 ones. ``maps`` are the label masks; ``control`` is ``maps[CONTROL_US] + 2 *
    maps[CONTROL_THEM]``; ``piece`` has bit k set where the sum (wrapping, as torch's) of
    the piece masks of the classes p + 1 with bit k has it.
    """
    n = planes.shape[0]
    for i in range(n):
        xi = x[i]
        for p in range(12):
            w = planes[i, p]
            row = xi[p]
            for k in range(8):
                byte = (w >> (8 * k)) & 255
                for j in range(8):
                    row[8 * k + j] = BYTE_FLOATS[byte, j]
        c = np.int64(castling[i])
        for k in range(4):
            v = (c >> k) & 1
            row = xi[12 + k]
            for s in range(64):
                row[s] = v
        ep = np.int64(ep_file[i])
        row = xi[16]
        for s in range(64):
            row[s] = 0
        if ep >= 0 and 40 + ep < 64:
            row[40 + ep] = 1
        clock = min(max(np.int64(halfmove[i]), 0), 100)
        v = halfmove_table[clock]
        row = xi[17]
        for s in range(64):
            row[s] = v
        row = xi[18]
        for s in range(64):
            row[s] = 1

        for m in range(20):
            w = labels[i, m]
            row = maps[i, m]
            for k in range(8):
                row[k] = BYTE_SQUARES[(w >> (8 * k)) & 255]
        us, them = labels[i, CONTROL_US], labels[i, CONTROL_THEM]
        ci = control[i]
        for s in range(64):
            ci[s] = ((us >> s) & 1) + 2 * ((them >> s) & 1)

        # class bit k of a square: the piece planes p whose class p + 1 has bit k,
        # added (disjoint on valid data, wrapping like torch's int64 sum otherwise)
        bit0 = bit1 = bit2 = bit3 = np.int64(0)
        for p in range(12):
            w = planes[i, p]
            c = p + 1
            if c & 1:
                bit0 += w
            if c & 2:
                bit1 += w
            if c & 4:
                bit2 += w
            if c & 8:
                bit3 += w
        pi = piece[i]
        for s in range(64):
            pi[s] = (((bit0 >> s) & 1) | (((bit1 >> s) & 1) << 1)
                     | (((bit2 >> s) & 1) << 2) | (((bit3 >> s) & 1) << 3))


@njit(**_JIT)
def expand_positions(flags, move, teacher_move, result, teacher_cp, teacher_mate,
                     teacher_value, teacher_mix, policy_from_teacher,
                     policy, value, value_mask, wdl):
    """Fill the per-position targets of B positions in place, with the float32
    operations of ``train.expand._policy_value`` in the same order (so the same bits).

    In: the stored columns (any integer dtypes, any strides), ``teacher_value`` the
    (65,536,) float32 table of ``train.expand`` (entry cp + 32768), ``teacher_mix`` and
    ``policy_from_teacher`` as in ``train.expand.expand_targets``. Out (B,): ``policy``
    and ``wdl`` int64, ``value`` float32, ``value_mask`` bool.
    """
    w_result = np.float32(1.0 - teacher_mix)  # torch casts the Python scalar to float32
    w_teacher = np.float32(teacher_mix)
    tiny = np.float32(1e-12)
    for i in range(flags.shape[0]):
        f = np.int64(flags[i])
        m = np.int64(move[i])
        if policy_from_teacher and f & HAS_TEACHER_MOVE and teacher_move[i] != NO_MOVE:
            m = np.int64(teacher_move[i])
        policy[i] = IGNORE_INDEX if m == NO_MOVE else m

        has_result = f & HAS_RESULT != 0
        wr = np.float32(1.0 if has_result else 0.0) * w_result
        wt = np.float32(1.0 if f & HAS_TEACHER_EVAL != 0 else 0.0) * w_teacher
        mate = np.int64(teacher_mate[i])
        if mate != 0:
            teacher = np.float32(1.0) if mate > 0 else np.float32(-1.0)
        else:
            cp = min(max(np.int64(teacher_cp[i]), -(2**15)), 2**15 - 1)
            teacher = teacher_value[cp + 2**15]
        r = np.int64(result[i])
        total = wr + wt
        value[i] = (wr * np.float32(r) + wt * teacher) / max(total, tiny)
        value_mask[i] = total != 0
        wdl[i] = 1 - r if has_result else IGNORE_INDEX
