"""The compact batch: the columns a training batch carries, their dtypes, and the row
layout in which a batch travels from the loader's workers to the device.

The one definition that the loader (which packs records into rows), the expansion
(which reads the columns, :mod:`train.expand`) and the evaluators (which make
batches of boards or of the validation split) all import.

Columns
-------

A compact batch is a dict of torch tensors with a leading batch dimension B, one
per column below (extra keys are ignored). :func:`from_numpy` makes one of a
``schema.Block``, :func:`columns_of` of rows; :func:`check_batch` enforces it:

================  ========  ==================  ===========  ==============================
key               shape     dtype (made)        accepted     from the stored column
================  ========  ==================  ===========  ==============================
planes            (B, 12)   int64               int64        uint64 bits viewed as int64 (*)
labels            (B, 20)   int64               int64        uint64 bits viewed as int64 (*)
halfmove          (B,)      int32               also int64   uint16 widened
move              (B,)      int32               also int64   uint16 widened; NO_MOVE = 65535
teacher_move      (B,)      int32               also int64   uint16 widened; NO_MOVE = 65535
teacher_cp        (B,)      int16               int16        as stored
teacher_mate      (B,)      int16               int16        as stored
stalemate_moves   (B, 8)    int16               int16        uint16 bits viewed as int16: NO_MOVE
                                                             reads -1, an index itself
mate_moves        (B, 8)    int16               int16        as stalemate_moves
castling          (B,)      uint8               uint8        as stored (CASTLE_* bits)
ep_file           (B,)      int8                int8         as stored (-1 = none)
result            (B,)      int8                int8         as stored
flags             (B,)      uint8               uint8        as stored (HAS_* bits)
bucket            (B,)      uint8               uint8        as stored (curriculum bucket)
================  ========  ==================  ===========  ==============================

(*) torch has no full uint64 arithmetic, so a mask travels as the int64 with
the same 64 bits: bit 63 (h8) is the sign bit; the expansion reads the 8 bytes of
the int64, never its sign. ``bucket`` rides along for the loader; the expansion
does not need it (:data:`EXPAND_COLUMNS`).

Rows
----

A batch crosses process boundaries and the host-device link as one (n, ROW_BYTES)
uint8 array, a row per record, each column at a fixed byte offset
(:data:`ROW_LAYOUT`) that is a multiple of its item size: the columns are
zero-copy, strided views of the rows on any device, which the expansion reads in
place. Columns are ordered widest first so that every offset is aligned.
"""

from __future__ import annotations

import numpy as np
import torch

from dataengine import schema

__all__ = ["BATCH_COLUMNS", "EXPAND_COLUMNS", "ROW_BYTES", "ROW_LAYOUT", "check_batch",
           "columns_of", "from_numpy", "to_rows"]

#: Column -> the torch dtype it is made as (widest first: the row layout's order).
BATCH_COLUMNS: dict[str, torch.dtype] = {
    "planes": torch.int64,  # uint64 bit patterns
    "labels": torch.int64,  # uint64 bit patterns
    "halfmove": torch.int32,
    "move": torch.int32,
    "teacher_move": torch.int32,
    "teacher_cp": torch.int16,
    "teacher_mate": torch.int16,
    "stalemate_moves": torch.int16,  # uint16 bit patterns: NO_MOVE reads -1
    "mate_moves": torch.int16,  # the same
    "castling": torch.uint8,
    "ep_file": torch.int8,
    "result": torch.int8,
    "flags": torch.uint8,
    "bucket": torch.uint8,
}
#: int32 columns that check_batch also accepts as int64 (batches made by hand).
_WIDER_OK = {"halfmove", "move", "teacher_move"}
#: The columns the expansion reads.
EXPAND_COLUMNS: tuple[str, ...] = tuple(c for c in BATCH_COLUMNS if c != "bucket")

_NUMPY_OF = {torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16,
             torch.int8: np.int8, torch.uint8: np.uint8}


def _width(name: str) -> int:
    return int(np.prod(schema.COLUMN_BY_NAME[name].shape, dtype=np.int64))


def _row_layout() -> tuple[dict[str, tuple[int, int]], int]:
    layout, offset = {}, 0
    for name, dtype in BATCH_COLUMNS.items():
        itemsize = np.dtype(_NUMPY_OF[dtype]).itemsize
        assert offset % itemsize == 0, f"{name} would be misaligned: order columns widest first"
        layout[name] = (offset, _width(name))
        offset += _width(name) * itemsize
    return layout, -(-offset // 8) * 8  # rows stay 8-byte aligned


#: Column -> (byte offset in the row, values per record); ROW_BYTES per record in all.
ROW_LAYOUT, ROW_BYTES = _row_layout()


def _as_numpy(a: np.ndarray, name: str) -> np.ndarray:
    """A stored column as the numpy array of its batch dtype (uint64 bits kept)."""
    want = np.dtype(_NUMPY_OF[BATCH_COLUMNS[name]])
    if a.dtype == np.uint64:
        return a.view(np.int64)
    if a.dtype == np.uint16 and want == np.int16:
        return a.view(np.int16)
    return a if a.dtype == want else a.astype(want)


def to_rows(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Records (a ``schema.Block``) as a (n, ROW_BYTES) uint8 array."""
    n = len(columns["planes"])
    rows = np.zeros((n, ROW_BYTES), dtype=np.uint8)
    for name, dtype in BATCH_COLUMNS.items():
        offset, width = ROW_LAYOUT[name]
        np_dtype = np.dtype(_NUMPY_OF[dtype])
        view = rows[:, offset : offset + width * np_dtype.itemsize].view(np_dtype)
        view[...] = _as_numpy(columns[name], name).reshape(n, width)
    return rows


def columns_of(rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The columns of (n, ROW_BYTES) uint8 rows, as views on the rows' device: (n, 12) and
    (n, 20) int64 for the bitboards, (n,) for the rest (dtypes of BATCH_COLUMNS)."""
    if rows.dtype != torch.uint8 or rows.dim() != 2 or rows.shape[1] != ROW_BYTES:
        raise ValueError(f"rows must be (n, {ROW_BYTES}) uint8, got {tuple(rows.shape)} "
                         f"{rows.dtype}")
    out = {}
    for name, dtype in BATCH_COLUMNS.items():
        offset, width = ROW_LAYOUT[name]
        column = rows[:, offset : offset + width * dtype.itemsize].view(dtype)
        out[name] = column if width > 1 else column[:, 0]
    return out


def from_numpy(block: schema.Block, device: torch.device | str | None = None) -> dict:
    """The compact torch batch of a ``schema.Block``, with the dtypes of BATCH_COLUMNS.

    >>> batch = from_numpy(schema.empty_columns(2))
    >>> batch["planes"].dtype, batch["move"].dtype, batch["move"].tolist()
    (torch.int64, torch.int32, [65535, 65535])
    """
    return {name: torch.from_numpy(np.ascontiguousarray(_as_numpy(np.asarray(block[name]),
                                                                  name))).to(device)
            for name in BATCH_COLUMNS}


def check_batch(batch: dict, keys=None) -> int:
    """Raise ``ValueError`` naming the column unless ``batch`` holds ``keys`` (default:
    EXPAND_COLUMNS) with the dtypes and shapes above; return B. Only metadata is read,
    so this never synchronises with the device."""
    n = None
    for name in EXPAND_COLUMNS if keys is None else keys:
        if name not in batch:
            raise ValueError(f"batch is missing column {name!r} (has {sorted(batch)})")
        t = batch[name]
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"batch[{name!r}] must be a torch.Tensor, got {type(t).__name__}")
        dtypes = (BATCH_COLUMNS[name], *((torch.int64,) if name in _WIDER_OK else ()))
        if t.dtype not in dtypes:
            wanted = " or ".join(str(d) for d in dtypes)
            raise ValueError(f"batch[{name!r}] must be {wanted}, got {t.dtype} (see from_numpy)")
        shape = tuple(schema.COLUMN_BY_NAME[name].shape)
        if t.dim() != 1 + len(shape) or tuple(t.shape[1:]) != shape:
            raise ValueError(f"batch[{name!r}] must have shape (B, {shape}), got {tuple(t.shape)}")
        if n is None:
            n = t.shape[0]
        elif t.shape[0] != n:
            raise ValueError(f"batch[{name!r}] has {t.shape[0]} rows, expected {n}")
    return int(n or 0)
