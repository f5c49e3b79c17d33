"""Compact record batches -> network inputs and training targets, on the batch's device.

This module is the one place that defines what the network sees. The loader
ships the stored columns almost as they are (312 bytes a position instead
of 19 x 64 floats) and the expansion happens here, with tensor ops only, on
whatever device the batch lives on: no Python loop over positions, no
python-chess. On a CPU device, :func:`expand` runs the same arithmetic as one
numba pass instead (:mod:`train.expand_kernel`, equal bit for bit and tested so),
because there every tensor op is a trip through memory.

Compact batch
-------------

The input is a compact batch (:mod:`train.batch`: the columns, their dtypes and
the row layout): a dict of torch tensors, one per stored column, made by
``train.batch.from_numpy`` of a ``schema.Block`` or by ``columns_of`` of rows. A
column may be a strided view of one row-packed buffer, which the expansion reads
in place. A mask travels as the int64 with the same 64 bits: :func:`bits_to_squares`
works on its 8 bytes, never on its sign.

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
without a result), ``stalemate`` (B, 8) int64, the policy indices of the moves that
stalemate the opponent (-1 after them; the ``stalemate`` loss pushes the policy
away from them), ``mate`` (B, 8) int64, those of the moves that checkmate it (the
``mate`` loss pulls the policy towards them), and the SSL targets, each square on the last axis (64):

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

import functools
import math
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

import labelers
from dataengine import policy, schema
from train import expand_kernel
from train.batch import EXPAND_COLUMNS, check_batch, columns_of, from_numpy
from train.expand_kernel import expand_positions, expand_squares

if TYPE_CHECKING:
    from train.loader import BatchLoader

__all__ = [
    "CLASS_TASKS",
    "IGNORE_INDEX",
    "MAP_TASKS",
    "INPUT_FORMAT_VERSION",
    "N_INPUT_PLANES",
    "SSL_TASKS",
    "TEACHER_CP_SCALE",
    "bits_to_squares",
    "check_batch",
    "Expansion",
    "expand",
    "expand_async",
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
assert expand_kernel.IGNORE_INDEX == IGNORE_INDEX

#: Centipawns are read as an Elo difference: expected score = 1 / (1 + 10^(-cp/400)).
TEACHER_CP_SCALE = 400.0
_CP_SCALE = math.log(10.0) / (2.0 * TEACHER_CP_SCALE)  # cp -> tanh argument

#: SSL task -> indices of its masks in the 20-mask label record (``piece`` has none:
#: it comes from the planes).
SSL_MASKS: dict[str, tuple[int, ...]] = {t: m for t, m in labelers.TASKS.items() if m}
assert SSL_MASKS["control"] == (expand_kernel.CONTROL_US, expand_kernel.CONTROL_THEM)
SSL_TASKS: tuple[str, ...] = (
    "piece", "threat", "pin", "fork", "control", "pawn_structure", "king_safety",
)  # fmt: skip
#: SSL tasks that are per-square classes (int64 targets, cross-entropy) ...
CLASS_TASKS: tuple[str, ...] = ("piece", "control")
#: ... and those that are binary maps (uint8 0/1 targets, binary cross-entropy).
MAP_TASKS: tuple[str, ...] = ("threat", "pin", "fork", "pawn_structure", "king_safety")

_INPUT_KEYS = ("planes", "castling", "ep_file", "halfmove")


# Every expansion below is one table lookup indexed by the bytes of 64-bit masks: byte k
# of a mask is rank k (squares 8k .. 8k + 7, little-endian), bit j of it is the j-file.
# The table maps a byte value to the 8 bytes 0/1 of its squares, packed in one int64, so
# a whole batch expands with one index_select of 8-byte rows (20x faster on a CPU than
# shifting each bit out, one kernel on a GPU); the result is viewed as bytes again.
#
# The 8 bytes of such an int64 are called its lanes below, one square each. Adding
# int64s of lanes adds square by square as long as no lane sum passes 255 (nothing
# carries into the next square), which the per-square class targets rely on.
#
# On a CPU most of the ops here work on a few thousand elements, so each costs about as
# much for the call as for the work: the code keeps the number of ops low, and the
# per-device tables below turn several small ops into one lookup.


class _Tables(NamedTuple):
    """The constant tensors of the expansion on one device (see ``_tables``)."""

    #: (256,) int64: entry v has lanes bit j of v, j = 0..7 (the table described above)
    bits: torch.Tensor
    #: (4 * 256,) int64: entry 256 k + v has lanes (bit j of v) << k; ``bits`` is k = 0
    shifted_bits: torch.Tensor
    #: (256, 4) int64: castling byte -> the masks of planes 12..15 (0 or every square)
    castling: torch.Tensor
    #: (256, 3) int64: ep_file byte (int8 read as uint8) -> the masks of planes 16..18
    #: (the en-passant square, then every square for the halfmove and ones planes)
    en_passant: torch.Tensor
    #: (101,) float32: halfmove clock 0..100 -> the halfmove plane's value
    halfmove: torch.Tensor
    #: (4, 12, 1) int64: -1 where the piece class p + 1 of plane p has bit k, else 0
    class_bits: torch.Tensor
    #: (4, 1) int32: 256 k, where the entries of ``shifted_bits`` shifted by k start
    class_offsets: torch.Tensor
    # 0-dim operands of the per-position ops: a Python number costs a tensor per call
    #: uint8 HAS_RESULT, HAS_TEACHER_EVAL, HAS_TEACHER_MOVE
    has_result: torch.Tensor
    has_teacher_eval: torch.Tensor
    has_teacher_move: torch.Tensor
    #: int64 NO_MOVE, IGNORE_INDEX, 1
    no_move: torch.Tensor
    ignore_index: torch.Tensor
    one: torch.Tensor
    #: (65536,) float32: entry cp + 32768 is tanh(cp ln(10) / (2 TEACHER_CP_SCALE)) for
    #: every int16 cp (see value_from_teacher): a lookup instead of a tanh per position,
    #: which on a CPU runs in torch's thread pool and stalls when the cores are busy
    teacher_value: torch.Tensor


def _build_tables(device: torch.device) -> _Tables:
    """The tables, each computed with the formula it replaces, on ``device`` itself (so
    the float division rounds as it would on the batch)."""
    byte = torch.arange(256, device=device)
    shift4 = torch.arange(4, device=device)
    bits = ((byte[:, None] >> torch.arange(8, device=device)) & 1).to(torch.uint8)
    # 0 - (bit & 1) is 0 or -1: no square or every square
    castling = -((byte[:, None] >> shift4) & 1)
    # without the ep_file >= 0 test, "none" (-1) would light square 39 (h5); as in torch,
    # a shift past bit 63 gives 0
    ep_file = byte.to(torch.uint8).view(torch.int8).long()
    en_passant = torch.full((256, 3), -1, dtype=torch.int64, device=device)
    en_passant[:, 0] = (ep_file >= 0).long() << (40 + ep_file.clamp_min(0))
    clock = torch.arange(101, dtype=torch.int32, device=device)
    piece_class = torch.arange(1, N_PIECE_PLANES + 1, device=device)
    shifted_bits = (bits.view(torch.int64).view(1, 256) << shift4.view(4, 1)).view(-1)
    return _Tables(
        bits=shifted_bits[:256],
        shifted_bits=shifted_bits,
        castling=castling,
        en_passant=en_passant,
        halfmove=(clock.to(torch.float32) / HALFMOVE_SCALE).clamp_(0.0, 1.0),
        class_bits=(-((piece_class >> shift4.view(4, 1)) & 1)).view(4, N_PIECE_PLANES, 1),
        class_offsets=(256 * shift4.view(4, 1)).int(),
        has_result=torch.tensor(schema.HAS_RESULT, dtype=torch.uint8, device=device),
        has_teacher_eval=torch.tensor(schema.HAS_TEACHER_EVAL, dtype=torch.uint8, device=device),
        has_teacher_move=torch.tensor(schema.HAS_TEACHER_MOVE, dtype=torch.uint8, device=device),
        no_move=torch.tensor(policy.NO_MOVE, device=device),
        ignore_index=torch.tensor(IGNORE_INDEX, device=device),
        one=torch.tensor(1, device=device),
        teacher_value=torch.tanh(torch.arange(-(2**15), 2**15, device=device).float()
                                 * torch.tensor(_CP_SCALE, dtype=torch.float32, device=device)),
    )


@functools.cache
def _tables(device: torch.device) -> _Tables:
    """The expansion's constant tensors on ``device``, built on first use."""
    return _build_tables(device)


def _byte_index(words: torch.Tensor) -> torch.Tensor:
    """The bytes of int64 ``words`` (any shape and strides), in order, as a flat int32
    index. A column view of a row-packed batch is read in place, without a copy."""
    if words.stride(-1) != 1:  # a dtype view needs a unit last stride
        words = words.contiguous()
    index = words.view(torch.uint8).to(torch.int32, memory_format=torch.contiguous_format)
    return index.view(-1)


def _square_bytes(words: torch.Tensor, tables: _Tables) -> torch.Tensor:
    """int64 masks (...) -> (numel * 8,) int64 whose bytes are the 0/1 squares, mask by
    mask (view as uint8 and reshape to (..., 64))."""
    return tables.bits.index_select(0, _byte_index(words))


def bits_to_squares(x: torch.Tensor) -> torch.Tensor:
    """Bool ``(..., 64)`` squares of int64 masks ``(...)``: ``out[..., s]`` is bit ``s``.

    The masks are uint64 bits held in int64 (bit 63, h8, is the sign bit); they are
    read as their 8 little-endian bytes, each looked up in a 256-entry table.

    >>> bits_to_squares(torch.tensor([1 | (-(2**63))])).nonzero()[:, 1].tolist()
    [0, 63]
    """
    if x.dtype != torch.int64:
        raise ValueError(f"masks must be int64 (uint64 bits viewed as int64), got {x.dtype}")
    squares = _square_bytes(x.reshape(-1), _tables(x.device)).view(torch.bool)
    return squares.view(*x.shape, 64)


def _inputs(batch: dict, tables: _Tables, dtype: torch.dtype) -> torch.Tensor:
    """The input planes: a (B, 19) int64 mask per plane looked up, then the halfmove
    plane (looked up as every square) overwritten with the clock."""
    planes = batch["planes"]
    b = planes.shape[0]
    castling = tables.castling.index_select(0, batch["castling"].int())
    # ep_file -1 ("none") reads as 255
    rest = tables.en_passant.index_select(0, batch["ep_file"].view(torch.uint8).int())
    words = torch.cat([planes, castling, rest], dim=1)
    x = _square_bytes(words, tables).view(torch.uint8).view(b, N_INPUT_PLANES, 8, 8).to(dtype)
    # min(clock / 100, 1), looked up: clamping the clock to 0..100 first changes nothing
    scale = tables.halfmove.index_select(0, batch["halfmove"].clamp(0, 100))
    x.select(1, PLANE_HALFMOVE).copy_(scale.view(b, 1, 1))  # converted to dtype
    return x


def expand_inputs(batch: dict, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The network input ``(B, N_INPUT_PLANES, 8, 8)`` of a compact batch (see module doc)."""
    check_batch(batch, _INPUT_KEYS)
    return _inputs(batch, _tables(batch["planes"].device), dtype)


def expand(batch: dict, dtype: torch.dtype = torch.float32, *, teacher_mix: float = 0.0,
           policy_from_teacher: bool = False,
           fused: bool | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(expand_inputs(batch, dtype), expand_targets(batch, ...))``, checking the batch
    once: what the trainer calls.

    ``fused`` (default: on a CPU batch with a float32 or float64 ``dtype``) makes the
    inputs and targets with two numba passes over the positions
    (:mod:`train.expand_kernel`) instead of tensor ops: the same values bit for bit, in
    0.50 instead of 1.04 us a position (chunks of 4,096 on this project's 2-core CPU),
    because no intermediate array goes through memory. Other devices always use the
    tensor ops.
    """
    return expand_async(batch, dtype, teacher_mix=teacher_mix,
                        policy_from_teacher=policy_from_teacher, fused=fused,
                        background=False).result()


class Expansion:
    """An expansion under way (see :func:`expand_async`): ``result()`` waits for it."""

    def __init__(self, x: torch.Tensor, targets: dict[str, torch.Tensor],
                 done: Future | None = None):
        self._x, self._targets, self._done = x, targets, done

    def result(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self._done is not None:
            self._done.result()  # re-raises what the kernel raised
            self._done = None
        return self._x, self._targets


def expand_async(batch: dict, dtype: torch.dtype = torch.float32, *,
                 teacher_mix: float = 0.0, policy_from_teacher: bool = False,
                 fused: bool | None = None, background: bool = True) -> Expansion:
    """:func:`expand`, with the fused CPU kernels running in a background thread (numba
    releases the GIL) while the caller goes on; ``.result()`` gives what ``expand``
    returns. The batch's tensors must stay unchanged until then. The batch is checked
    before this returns; without the fused kernels (or with ``background=False``)
    everything is done before it returns."""
    _check_teacher_mix(teacher_mix)
    check_batch(batch)
    tables = _tables(batch["planes"].device)
    can_fuse = batch["planes"].device.type == "cpu" and dtype in _FUSED_DTYPES
    if fused is None:
        fused = can_fuse
    elif fused and not can_fuse:
        raise ValueError(f"fused expansion needs a CPU batch and a dtype in {_FUSED_DTYPES}, "
                         f"got {batch['planes'].device} and {dtype}")
    if not fused:
        x = _inputs(batch, tables, dtype)
        return Expansion(x, _targets(batch, tables, teacher_mix, policy_from_teacher))

    b = batch["planes"].shape[0]
    x = torch.empty((b, N_INPUT_PLANES, 8, 8), dtype=dtype)
    maps = torch.empty((b, 20, 64), dtype=torch.uint8)
    targets = {
        "policy": torch.empty(b, dtype=torch.int64),
        "value": torch.empty(b, dtype=torch.float32),
        "value_mask": torch.empty(b, dtype=torch.bool),
        "wdl": torch.empty(b, dtype=torch.int64),
        "piece": torch.empty((b, 64), dtype=torch.int64),
        "control": torch.empty((b, 64), dtype=torch.int64),
        "stalemate": batch["stalemate_moves"].long(),  # a copy: done before this returns
        "mate": batch["mate_moves"].long(),
    }
    col = {k: v.numpy() for k, v in batch.items() if k in EXPAND_COLUMNS}
    out = {k: v.numpy() for k, v in targets.items()}
    targets |= _map_targets(maps)
    squares = (col["planes"], col["labels"], col["castling"], col["ep_file"], col["halfmove"],
               tables.halfmove.numpy(), x.view(b, N_INPUT_PLANES, 64).numpy(),
               maps.view(torch.int64).numpy().view(np.uint64), out["piece"], out["control"])
    positions = (col["flags"], col["move"], col["teacher_move"], col["result"],
                 col["teacher_cp"], col["teacher_mate"], tables.teacher_value.numpy(),
                 float(teacher_mix), bool(policy_from_teacher),
                 out["policy"], out["value"], out["value_mask"], out["wdl"])

    def run() -> None:
        expand_squares(*squares)
        expand_positions(*positions)

    if not background:
        run()
        return Expansion(x, targets)
    return Expansion(x, targets, _kernel_thread().submit(run))


def device_batches(loader: BatchLoader, device: torch.device | str,
                   dtype: torch.dtype = torch.float32, *, teacher_mix: float = 0.0,
                   policy_from_teacher: bool = False):
    """(step, x, targets) from the loader's current step on: each of its chunks crosses
    to `device` in one copy (pinned for CUDA) and is expanded there in one go; x and
    the targets are views into the chunk's tensors, handed out batch by batch
    (`BatchLoader.hand_out`, which moves the loader's state).

    Chunk k is expanded while chunk k + 1 is read and the batches of chunk k - 1 are
    handed out (on a CPU, in a background thread when
    `BatchLoader.expand_in_background` says so)."""
    device = torch.device(device)
    background = loader.expand_in_background(device)
    pending = None
    for start, n, rows in loader.chunks():
        if device.type == "cuda":
            rows = rows.pin_memory()
        rows = rows.to(device, non_blocking=device.type == "cuda")  # from pinned memory
        # with workers, the rows are a ring slot that stays ours until the chunk after
        # next is asked for: the background expansion is done by then
        job = (start, n, expand_async(columns_of(rows), dtype, teacher_mix=teacher_mix,
                                      policy_from_teacher=policy_from_teacher,
                                      background=background))
        if pending is not None:
            yield from _hand_out(loader, *pending)
        pending = job
    if pending is not None:  # chunks() is endless; for a source that ends
        yield from _hand_out(loader, *pending)


def _hand_out(loader: BatchLoader, start: int, n: int, expansion: Expansion):
    x, targets = expansion.result()
    for step, batch in loader.hand_out(start, n, {"x": x, **targets}):
        yield step, batch.pop("x"), batch


#: The input dtypes the fused CPU expansion writes (numba has no half floats).
_FUSED_DTYPES = (torch.float32, torch.float64)


@functools.cache
def _kernel_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="expand")


def value_from_teacher(cp: torch.Tensor, mate: torch.Tensor) -> torch.Tensor:
    """Teacher eval (side to move's view) -> expected score in [-1, 1], float32.

    The centipawns are read as an Elo difference: with ``p = 1 / (1 + 10^(-cp/400))``
    the win expectancy, the value is ``2p - 1 = tanh(cp * ln(10) / 800)``
    (+100 cp -> 0.29, +400 cp -> 0.82). A mate score (``mate != 0``) is +-1 by
    its sign, whatever ``cp`` says. ``cp`` is an integer tensor (int16 as stored).

    >>> v = value_from_teacher(torch.tensor([0, 400, -400, 0]), torch.tensor([0, 0, 0, -3]))
    >>> [round(x, 4) for x in v.tolist()]
    [0.0, 0.8182, -0.8182, -1.0]
    """
    # looked up (see _Tables.teacher_value); beyond the int16 range tanh is +-1.0 anyway
    index = cp.to(torch.int32).clamp_(-(2**15), 2**15 - 1).add_(2**15)
    v = _tables(cp.device).teacher_value.index_select(0, index.view(-1)).view(cp.shape)
    return torch.where(mate.bool(), torch.sign(mate.to(torch.float32)), v)


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
    return _targets(batch, _tables(batch["planes"].device), teacher_mix, policy_from_teacher)


def _check_teacher_mix(teacher_mix: float) -> None:
    if not 0.0 <= teacher_mix <= 1.0:
        raise ValueError(f"teacher_mix must be in [0, 1], got {teacher_mix!r}")


def _targets(batch: dict, tables: _Tables, teacher_mix: float,
             policy_from_teacher: bool) -> dict[str, torch.Tensor]:
    targets = _policy_value(batch, tables, teacher_mix, policy_from_teacher)
    targets["stalemate"] = batch["stalemate_moves"].long()
    targets["mate"] = batch["mate_moves"].long()
    b = batch["labels"].shape[0]
    # the maps stay 0/1 bytes, views of one (B, 20, 64): losses cast them
    masks = _square_bytes(batch["labels"], tables).view(torch.uint8).view(b, 20, 64)
    targets["piece"] = _piece_classes(batch["planes"], tables)
    us, them = SSL_MASKS["control"]  # exclusive: 0 neither, 1 us, 2 them
    targets["control"] = torch.add(masks[:, us], masks[:, them], alpha=2).long()
    return targets | _map_targets(masks)


def _map_targets(masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """The MAP_TASKS targets: views of the (B, 20, 64) 0/1 masks, each task's run."""
    return {task: masks[:, SSL_MASKS[task][0] : SSL_MASKS[task][-1] + 1] for task in MAP_TASKS}


def _policy_value(batch: dict, tables: _Tables, teacher_mix: float,
                  policy_from_teacher: bool) -> dict[str, torch.Tensor]:
    """``policy``, ``value``, ``value_mask`` and ``wdl`` (see :func:`expand_targets`)."""
    flags = batch["flags"]
    has_result = (flags & tables.has_result).bool()
    has_teacher = (flags & tables.has_teacher_eval).bool()

    move = batch["move"].to(torch.int64)
    if policy_from_teacher:
        teacher_move = batch["teacher_move"].to(torch.int64)
        use_teacher = (flags & tables.has_teacher_move).bool() & (teacher_move != tables.no_move)
        move = torch.where(use_teacher, teacher_move, move)
    targets = {"policy": torch.where(move == tables.no_move, tables.ignore_index, move)}

    result = batch["result"]  # int8: the product below converts it to float32 exactly
    w_result = has_result.to(torch.float32) * (1.0 - teacher_mix)
    w_teacher = has_teacher.to(torch.float32) * teacher_mix
    teacher = value_from_teacher(batch["teacher_cp"], batch["teacher_mate"])
    total = w_result + w_teacher
    targets["value"] = (w_result * result + w_teacher * teacher) / total.clamp_min(1e-12)
    targets["value_mask"] = total.bool()  # total > 0: the weights are >= 0
    wdl = tables.one - result.to(torch.int64)  # +1 -> 0 win, 0 -> 1 draw, -1 -> 2 loss
    targets["wdl"] = torch.where(has_result, wdl, tables.ignore_index)
    return targets


def _piece_classes(planes: torch.Tensor, tables: _Tables) -> torch.Tensor:
    """(B, 64) int64 piece classes 0..12 of the 12 piece masks (B, 12).

    The class is built from its 4 bits. Bit k of a square's class is set when the square
    holds a piece of a plane p whose class p + 1 has bit k, so each bit has a mask: the
    OR of those planes, computed as their sum (the planes are disjoint, at most one piece
    a square, so nothing carries). The bytes of the 4 bit masks are looked up in the
    table shifted by k, giving lanes 0 or 2^k, and the 4 lane words add up to the class
    in every lane (at most 12: no carry either).
    """
    b = planes.shape[0]
    # the planes transposed to (12, B), so that every op below runs over contiguous rows
    # (through a trailing unit dim: a 2-D transposing copy takes a slower path on a CPU)
    by_plane = planes.unsqueeze(-1).transpose(0, 1).contiguous().view(N_PIECE_PLANES, b)
    class_masks = (tables.class_bits & by_plane).sum(1)  # (4, 12, B) -> (4, B)
    index = class_masks.view(torch.uint8).int() + tables.class_offsets  # (4, B * 8)
    lanes = tables.shifted_bits.index_select(0, index.view(-1)).view(4, b * 8)
    return lanes.sum(0).view(torch.uint8).view(b, 64).long()
