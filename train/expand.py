"""Compact record batches -> network inputs and training targets, on the batch's device.

This module is the one place that defines what the network sees. The loader
ships the stored columns almost as they are (about 250 bytes a position instead
of 19 x 64 floats) and the expansion happens here, with tensor ops only, on
whatever device the batch lives on: no Python loop over positions, no
python-chess.

Compact batch
-------------

A dict of torch tensors, one per ``dataengine.schema`` column (extra keys are
ignored), with a leading batch dimension B. :func:`from_numpy` converts a
``schema.Block`` exactly like this; :func:`check_batch` enforces it:

==============  ========  ====================  ===================================
key             shape     accepted dtypes       from the stored column
==============  ========  ====================  ===================================
planes          (B, 12)   int64                 uint64 bits viewed as int64 (*)
labels          (B, 20)   int64                 uint64 bits viewed as int64 (*)
castling        (B,)      uint8                 as stored (CASTLE_* bits)
ep_file         (B,)      int8                  as stored (-1 = none)
halfmove        (B,)      int32, int64          uint16 widened (``astype(np.int32)``)
move            (B,)      int32, int64          uint16 widened; NO_MOVE = 65535
result          (B,)      int8                  as stored
teacher_cp      (B,)      int16                 as stored
teacher_mate    (B,)      int16                 as stored
teacher_move    (B,)      int32, int64          uint16 widened; NO_MOVE = 65535
flags           (B,)      uint8                 as stored (HAS_* bits)
==============  ========  ====================  ===================================

(*) torch has no full uint64 arithmetic, so a mask travels as the int64 with
the same 64 bits (``torch.from_numpy(a.view(np.int64))``): bit 63 (h8) is the
sign bit. :func:`bits_to_squares` reads it correctly (an arithmetic right shift
by 63 followed by ``& 1`` is 1 exactly when the bit is set).

Network input: ``N_INPUT_PLANES`` = 19 planes of 8 x 8
-------------------------------------------------------

Everything is in canonical orientation (LABELS.md section 1): the side to move
is White ("us"). Square ``s`` (python-chess numbering, a1 = 0, h8 = 63) sits at
``[rank, file] = [s // 8, s % 8]``, i.e. ``x.view(B, C, 8, 8)`` of a (B, C, 64)
tensor: row 0 is rank 1, column 0 is the a-file.

=======  ===============================================================
plane    content
=======  ===============================================================
0..5     our P N B R Q K (1 on occupied squares)
6..11    their p n b r q k
12       we may castle king side (constant 0/1)
13       we may castle queen side
14       they may castle king side
15       they may castle queen side
16       en passant: 1 on the target square (rank 6, square 40 + ep_file)
         when a legal en-passant capture exists, else all 0
17       halfmove clock: constant ``min(halfmove / 100, 1)``
18       all ones (lets convolutions see the board edge)
=======  ===============================================================

Targets
-------

:func:`expand_targets` returns ``policy`` (B,) int64 with ``IGNORE_INDEX``
where there is no move, ``value`` (B,) float in [-1, 1] with ``value_mask``
(B,) bool, ``wdl`` (B,) int64 class (0 win, 1 draw, 2 loss, ``IGNORE_INDEX``
without a result), and the SSL targets, each square on the last axis (64):

==============  ===========  =======  =============================================
key             shape        dtype    meaning
==============  ===========  =======  =============================================
piece           (B, 64)      int64    0 empty, 1..6 our P N B R Q K, 7..12 theirs
threat          (B, 2, 64)   uint8    masks 0, 1 (us, them)
pin             (B, 2, 64)   uint8    masks 2, 3
fork            (B, 2, 64)   uint8    masks 4, 5
control         (B, 64)      int64    0 neither, 1 us (mask 6), 2 them (mask 7)
pawn_structure  (B, 8, 64)   uint8    masks 8..15 in order
king_safety     (B, 4, 64)   uint8    masks 16..19 in order
==============  ===========  =======  =============================================

The maps are 0/1 bytes, views into one (B, 20, 64) tensor: four times fewer
bytes than float32, and :mod:`train.losses` casts them where it needs floats.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

import labelers
from dataengine import policy, schema

__all__ = [
    "BATCH_DTYPES",
    "CLASS_TASKS",
    "IGNORE_INDEX",
    "MAP_TASKS",
    "INPUT_FORMAT_VERSION",
    "N_INPUT_PLANES",
    "SSL_TASKS",
    "TEACHER_CP_SCALE",
    "bits_to_squares",
    "check_batch",
    "expand",
    "expand_inputs",
    "expand_targets",
    "from_numpy",
    "value_from_teacher",
]

# bits_to_squares reads int64s as little-endian bytes (every platform torch supports)
assert sys.byteorder == "little", "train.expand assumes a little-endian machine"

#: Bumped whenever the meaning or order of the input planes changes; a
#: checkpoint trained on one version is meaningless on another.
INPUT_FORMAT_VERSION = 1

N_PIECE_PLANES = 12
PLANE_CASTLING = 12  # 4 planes: us K, us Q, them K, them Q
PLANE_EN_PASSANT = 16
PLANE_HALFMOVE = 17
PLANE_ONES = 18
N_INPUT_PLANES = 19

#: The halfmove plane saturates at this clock (the 50-move rule is 100 plies).
HALFMOVE_SCALE = 100.0

#: cross_entropy's default ignore_index: the policy / wdl target without a label.
IGNORE_INDEX = -100

#: Centipawns are read as an Elo difference: expected score = 1 / (1 + 10^(-cp/400)).
TEACHER_CP_SCALE = 400.0

#: SSL task -> indices of its masks in the 20-mask label record (``piece`` has none:
#: it comes from the planes).
SSL_MASKS: dict[str, tuple[int, ...]] = {t: m for t, m in labelers.TASKS.items() if m}
SSL_TASKS: tuple[str, ...] = (
    "piece", "threat", "pin", "fork", "control", "pawn_structure", "king_safety",
)  # fmt: skip
#: SSL tasks that are per-square classes (int64 targets, cross-entropy) ...
CLASS_TASKS: tuple[str, ...] = ("piece", "control")
#: ... and those that are binary maps (uint8 0/1 targets, binary cross-entropy).
MAP_TASKS: tuple[str, ...] = ("threat", "pin", "fork", "pawn_structure", "king_safety")

#: Column -> (per-record shape, accepted dtypes); the first dtype is what from_numpy makes.
BATCH_DTYPES: dict[str, tuple[tuple[int, ...], tuple[torch.dtype, ...]]] = {
    "planes": ((12,), (torch.int64,)),
    "labels": ((20,), (torch.int64,)),
    "castling": ((), (torch.uint8,)),
    "ep_file": ((), (torch.int8,)),
    "halfmove": ((), (torch.int32, torch.int64)),
    "move": ((), (torch.int64, torch.int32)),
    "result": ((), (torch.int8,)),
    "teacher_cp": ((), (torch.int16,)),
    "teacher_mate": ((), (torch.int16,)),
    "teacher_move": ((), (torch.int64, torch.int32)),
    "flags": ((), (torch.uint8,)),
}
_NUMPY_AS = {  # stored dtype -> how from_numpy turns it into a torch-friendly array
    "planes": lambda a: a.view(np.int64),
    "labels": lambda a: a.view(np.int64),
    "halfmove": lambda a: a.astype(np.int32),
    "move": lambda a: a.astype(np.int64),
    "teacher_move": lambda a: a.astype(np.int64),
}
_INPUT_KEYS = ("planes", "castling", "ep_file", "halfmove")


def from_numpy(block: schema.Block, device: torch.device | str | None = None) -> dict:
    """The compact torch batch of a ``schema.Block`` (columns of ``BATCH_DTYPES`` only).

    >>> block = schema.empty_columns(2)
    >>> batch = from_numpy(block)
    >>> batch["planes"].dtype, batch["move"].tolist()
    (torch.int64, [65535, 65535])
    """
    batch = {}
    for name in BATCH_DTYPES:
        a = np.ascontiguousarray(block[name])
        a = _NUMPY_AS.get(name, lambda x: x)(a)
        batch[name] = torch.from_numpy(np.ascontiguousarray(a)).to(device)
    return batch


def check_batch(batch: dict, keys=None) -> int:
    """Raise ``ValueError`` naming the column unless ``batch`` holds ``keys`` (default:
    all of ``BATCH_DTYPES``) with the documented dtypes and shapes; return B.

    Only metadata is read, so this never synchronises with the device.
    """
    n = None
    for name in BATCH_DTYPES if keys is None else keys:
        if name not in batch:
            raise ValueError(f"batch is missing column {name!r} (has {sorted(batch)})")
        shape, dtypes = BATCH_DTYPES[name]
        t = batch[name]
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"batch[{name!r}] must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in dtypes:
            wanted = " or ".join(str(d) for d in dtypes)
            raise ValueError(f"batch[{name!r}] must be {wanted}, got {t.dtype} (see from_numpy)")
        if t.dim() != 1 + len(shape) or tuple(t.shape[1:]) != shape:
            raise ValueError(f"batch[{name!r}] must have shape (B, {shape}), got {tuple(t.shape)}")
        if n is None:
            n = t.shape[0]
        elif t.shape[0] != n:
            raise ValueError(f"batch[{name!r}] has {t.shape[0]} rows, expected {n}")
    return int(n or 0)


# Every expansion below is one table lookup indexed by the bytes of 64-bit masks: byte k
# of a mask is rank k (squares 8k .. 8k + 7, little-endian), bit j of it is the j-file.
# The table maps a byte value to the 8 bytes 0/1 of its squares, packed in one int64, so
# a whole batch expands with one index_select of 8-byte rows (20x faster on a CPU than
# shifting each bit out, one kernel on a GPU); the result is viewed as bytes again.
_PACKED_BITS: dict[torch.device, torch.Tensor] = {}


def _packed_bits(device: torch.device) -> torch.Tensor:
    """(256,) int64 whose byte j is bit j of the index (built once per device)."""
    if device not in _PACKED_BITS:
        bits = (torch.arange(256)[:, None] >> torch.arange(8)) & 1
        _PACKED_BITS[device] = bits.to(torch.uint8).view(torch.int64).reshape(256).to(device)
    return _PACKED_BITS[device]


def _square_bytes(words: torch.Tensor) -> torch.Tensor:
    """int64 masks (B, n) -> (B, n, 8) int64 whose bytes are the 0/1 squares (B, n, 64)."""
    index = words.contiguous().view(torch.uint8).reshape(-1).int()
    return _packed_bits(words.device).index_select(0, index).view(*words.shape, 8)


def bits_to_squares(x: torch.Tensor) -> torch.Tensor:
    """Bool ``(..., 64)`` squares of int64 masks ``(...)``: ``out[..., s]`` is bit ``s``.

    The masks are uint64 bits held in int64 (bit 63, h8, is the sign bit); they are
    read as their 8 little-endian bytes, each looked up in a 256-entry table.

    >>> bits_to_squares(torch.tensor([1 | (-(2**63))])).nonzero()[:, 1].tolist()
    [0, 63]
    """
    if x.dtype != torch.int64:
        raise ValueError(f"masks must be int64 (uint64 bits viewed as int64), got {x.dtype}")
    squares = _square_bytes(x.reshape(-1, 1)).view(torch.uint8)
    return squares.view(torch.bool).reshape(*x.shape, 64)


def _plane_bytes(batch: dict) -> torch.Tensor:
    """(B, 19, 8) int64 whose bytes are the input planes as 0/1, the halfmove plane all 1.

    Every plane is first written as a 64-bit mask: the 12 piece masks, all-ones or zero
    for each castling right, the en-passant target square, all-ones for the halfmove
    and ones planes; then one table lookup.
    """
    planes = batch["planes"]
    b, device = planes.shape[0], planes.device
    words = torch.empty((b, N_INPUT_PLANES), dtype=torch.int64, device=device)
    words[:, :N_PIECE_PLANES] = planes
    rights = torch.arange(4, device=device, dtype=torch.int64)
    # 0 - (bit & 1) is 0 or -1: no square or every square
    words[:, PLANE_CASTLING : PLANE_CASTLING + 4] = -(
        (batch["castling"].long().unsqueeze(-1) >> rights) & 1)
    ep_file = batch["ep_file"].long()
    # without the ep_file >= 0 test, "none" (-1) would light square 39 (h5)
    words[:, PLANE_EN_PASSANT] = (ep_file >= 0).long() << (40 + ep_file.clamp_min(0))
    words[:, PLANE_HALFMOVE:] = -1
    return _square_bytes(words)


def _inputs_from(plane_bytes: torch.Tensor, halfmove: torch.Tensor,
                 dtype: torch.dtype) -> torch.Tensor:
    b = plane_bytes.shape[0]
    x = plane_bytes.view(torch.uint8).view(b, N_INPUT_PLANES, 8, 8).to(dtype)
    scale = (halfmove.to(torch.float32) / HALFMOVE_SCALE).clamp_(0.0, 1.0)
    x[:, PLANE_HALFMOVE].mul_(scale.to(dtype).view(b, 1, 1))
    return x


def expand_inputs(batch: dict, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The network input ``(B, N_INPUT_PLANES, 8, 8)`` of a compact batch (see module doc)."""
    check_batch(batch, _INPUT_KEYS)
    return _inputs_from(_plane_bytes(batch), batch["halfmove"], dtype)


def expand(batch: dict, dtype: torch.dtype = torch.float32, *, teacher_mix: float = 0.0,
           policy_from_teacher: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(expand_inputs(batch, dtype), expand_targets(batch, ...))``, sharing the work the
    two have in common (the piece planes): what the trainer calls."""
    _check_teacher_mix(teacher_mix)
    check_batch(batch)
    plane_bytes = _plane_bytes(batch)
    x = _inputs_from(plane_bytes, batch["halfmove"], dtype)
    return x, _targets(batch, plane_bytes, teacher_mix, policy_from_teacher)


def value_from_teacher(cp: torch.Tensor, mate: torch.Tensor) -> torch.Tensor:
    """Teacher eval (side to move's view) -> expected score in [-1, 1], float32.

    The centipawns are read as an Elo difference: with ``p = 1 / (1 + 10^(-cp/400))``
    the win expectancy, the value is ``2p - 1 = tanh(cp * ln(10) / 800)``
    (+100 cp -> 0.29, +400 cp -> 0.82). A mate score (``mate != 0``) is +-1 by
    its sign, whatever ``cp`` says.

    >>> v = value_from_teacher(torch.tensor([0, 400, -400, 0]), torch.tensor([0, 0, 0, -3]))
    >>> [round(x, 4) for x in v.tolist()]
    [0.0, 0.8182, -0.8182, -1.0]
    """
    v = torch.tanh(cp.to(torch.float32) * (math.log(10.0) / (2.0 * TEACHER_CP_SCALE)))
    return torch.where(mate != 0, torch.sign(mate.to(torch.float32)), v)


def expand_targets(
    batch: dict, *, teacher_mix: float = 0.0, policy_from_teacher: bool = False
) -> dict[str, torch.Tensor]:
    """Training targets of a compact batch (see the module doc for keys, shapes, dtypes).

    ``value`` blends the game result and the teacher eval: each position
    weighs the result by ``(1 - teacher_mix)`` if it has one (HAS_RESULT) and
    :func:`value_from_teacher` by ``teacher_mix`` if it has one
    (HAS_TEACHER_EVAL), and takes the weighted mean; ``value_mask`` is False where
    both weights are 0. So ``teacher_mix=0`` trains on results only, ``1`` on
    teacher evals only, and anything between uses whichever a position has,
    blended where it has both.

    ``policy`` is the record's ``move``; with ``policy_from_teacher`` it is the
    ``teacher_move`` where HAS_TEACHER_MOVE, else ``move``. NO_MOVE becomes
    ``IGNORE_INDEX``. ``wdl`` always comes from the game result.
    """
    _check_teacher_mix(teacher_mix)
    check_batch(batch)
    return _targets(batch, _square_bytes(batch["planes"]), teacher_mix, policy_from_teacher)


# piece class of plane p (our P..K = 1..6, their p..k = 7..12), as a (12, 1) multiplier
_PIECE_CLASS = torch.arange(1, N_PIECE_PLANES + 1, dtype=torch.int64).view(N_PIECE_PLANES, 1)


def _check_teacher_mix(teacher_mix: float) -> None:
    if not 0.0 <= teacher_mix <= 1.0:
        raise ValueError(f"teacher_mix must be in [0, 1], got {teacher_mix!r}")


def _targets(batch: dict, plane_bytes: torch.Tensor, teacher_mix: float,
             policy_from_teacher: bool) -> dict[str, torch.Tensor]:
    flags = batch["flags"].to(torch.int32)
    has_result = (flags & schema.HAS_RESULT) != 0
    has_teacher = (flags & schema.HAS_TEACHER_EVAL) != 0

    move = batch["move"].to(torch.int64)
    if policy_from_teacher:
        use_teacher = ((flags & schema.HAS_TEACHER_MOVE) != 0) & (
            batch["teacher_move"] != policy.NO_MOVE
        )
        move = torch.where(use_teacher, batch["teacher_move"].to(torch.int64), move)
    targets = {"policy": torch.where(move == policy.NO_MOVE, IGNORE_INDEX, move)}

    result = batch["result"].to(torch.float32)
    w_result = has_result.to(torch.float32) * (1.0 - teacher_mix)
    w_teacher = has_teacher.to(torch.float32) * teacher_mix
    teacher = value_from_teacher(batch["teacher_cp"], batch["teacher_mate"])
    total = w_result + w_teacher
    targets["value"] = (w_result * result + w_teacher * teacher) / total.clamp_min(1e-12)
    targets["value_mask"] = total > 0
    wdl = 1 - batch["result"].to(torch.int64)  # +1 -> 0 win, 0 -> 1 draw, -1 -> 2 loss
    targets["wdl"] = torch.where(has_result, wdl, IGNORE_INDEX)

    # Per-square classes, 8 squares to an int64 of 0/1 bytes: a square's class is the sum
    # of its planes' values, the planes of a group being disjoint (at most one piece a
    # square; control us and them exclusive), so no byte carries into the next.
    b = plane_bytes.shape[0]
    pieces = plane_bytes[:, :N_PIECE_PLANES] * _PIECE_CLASS.to(plane_bytes.device)
    targets["piece"] = pieces.sum(dim=1).view(torch.uint8).view(b, 64).long()
    masks = _square_bytes(batch["labels"])  # (B, 20, 8)
    us, them = SSL_MASKS["control"]
    control = masks[:, us] + 2 * masks[:, them]
    targets["control"] = control.view(torch.uint8).view(b, 64).long()
    # the binary maps stay 0/1 bytes, views of one (B, 20, 64): losses cast them
    masks = masks.view(torch.uint8).view(b, 20, 64)
    for task in MAP_TASKS:
        first, last = SSL_MASKS[task][0], SSL_MASKS[task][-1] + 1
        targets[task] = masks[:, first:last]
    return targets
