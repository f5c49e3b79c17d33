"""Reader units -> record columns (``schema.Block``).

The per-position Python work ends in the readers; everything here is numpy and
numba over whole arrays: canonical planes, labels, move encoding.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numba import njit

import labelers
from dataengine import policy, schema
from dataengine.readers import RESULT_UNKNOWN, Unit
from labelers.mates import mate_moves
from labelers.stalemate import stalemate_moves

# python-chess castling rights are a mask of rook squares
_A1, _H1, _A8, _H8 = 0, 7, 56, 63


def game_id(identity: str) -> int:
    """64-bit id of a unit from its content identity (stable across files and runs)."""
    return int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=8).digest(), "little")


def _bit(mask: np.ndarray, square: int) -> np.ndarray:
    return ((mask >> np.uint64(square)) & np.uint64(1)).astype(np.uint8)


def canonical_castling(rights: np.ndarray, white_to_move: np.ndarray) -> np.ndarray:
    """python-chess castling masks (absolute) -> schema CASTLE_* bits (us = side to move)."""
    wk, wq, bk, bq = (_bit(rights, s) for s in (_H1, _A1, _H8, _A8))
    us_k = np.where(white_to_move, wk, bk)
    us_q = np.where(white_to_move, wq, bq)
    them_k = np.where(white_to_move, bk, wk)
    them_q = np.where(white_to_move, bq, wq)
    return (us_k | us_q << 1 | them_k << 2 | them_q << 3).astype(np.uint8)


def units_to_block(units: list[Unit], file_id: int, *, labels: bool = True) -> schema.Block:
    """Columns for every position of `units` (bucket left at 0: assigned at merge;
    ``labels=False``: the label masks left at 0 too, for whoever computes them later)."""
    counts = np.array([len(u.turn) for u in units], dtype=np.int64)
    n = int(counts.sum())
    block = schema.empty_columns(n)
    block["themes"] = np.repeat(np.asarray([u.themes for u in units], dtype=str), counts)
    if n == 0:
        return block

    def flat(attr: str, dtype) -> np.ndarray:
        # a unit's column is a list (extended into one with its neighbours') or an array
        chunks, pending = [], []
        for u in units:
            column = getattr(u, attr)
            if isinstance(column, np.ndarray):
                if pending:
                    chunks.append(np.asarray(pending, dtype=dtype))
                    pending = []
                chunks.append(column.astype(dtype, copy=False))
            else:
                pending.extend(column)
        if pending or not chunks:
            chunks.append(np.asarray(pending, dtype=dtype))
        return np.concatenate(chunks)

    def per_unit(values: list, dtype) -> np.ndarray:
        return np.repeat(np.asarray(values, dtype=dtype), counts)

    white = flat("turn", bool)
    raw = flat("bitboards", np.uint64).reshape(n, 8)
    block["planes"] = labelers.canonical_planes(raw, white)
    block["castling"] = canonical_castling(flat("castling", np.uint64), white)
    ep = flat("ep_square", np.int16)
    block["ep_file"] = np.where(ep >= 0, ep & 7, -1).astype(np.int8)
    if labels:
        block["labels"] = labelers.label_boards(block["planes"], parallel=False)
    block["stalemate_moves"] = stalemate_moves(block["planes"], block["castling"],
                                               block["ep_file"])
    block["mate_moves"] = mate_moves(block["planes"], block["castling"], block["ep_file"])
    block["halfmove"] = np.minimum(flat("halfmove", np.int64), 0xFFFF).astype(np.uint16)
    block["ply"] = np.minimum(flat("ply", np.int64), 0xFFFF).astype(np.uint16)

    packed = flat("move", np.int64)
    block["move"] = policy.encode_moves(packed, white)
    sign = np.where(white, 1, -1).astype(np.int16)
    result = per_unit([u.result for u in units], np.int16)
    has_result = result != RESULT_UNKNOWN
    block["result"] = np.where(has_result, result * sign, 0).astype(np.int8)
    has_eval = flat("has_eval", bool)
    cp = np.clip(flat("eval_cp", np.int64), -schema.TEACHER_CP_LIMIT, schema.TEACHER_CP_LIMIT)
    block["teacher_cp"] = np.where(has_eval, cp * sign, 0).astype(np.int16)
    mate = np.clip(flat("eval_mate", np.int64), -32767, 32767)
    block["teacher_mate"] = np.where(has_eval, mate * sign, 0).astype(np.int16)
    block["flags"] = (
        np.where(packed >= 0, schema.HAS_MOVE, 0)
        | np.where(has_result, schema.HAS_RESULT, 0)
        | np.where(has_eval, schema.HAS_TEACHER_EVAL, 0)
        | np.where(white, 0, schema.MIRRORED)
    ).astype(np.uint8)
    block["source"] = per_unit([schema.SOURCES.index(u.source) for u in units], np.uint8)
    block["file_id"][:] = file_id
    block["game_id"] = per_unit([game_id(u.identity) for u in units], np.uint64)
    block["rating"] = per_unit([min(max(u.rating, 0), 0xFFFF) for u in units], np.uint16)
    return block


_MIX = np.uint64(0xFF51AFD7ED558CCD)


def position_keys(block: schema.Block) -> np.ndarray:
    """64-bit hash of each record's canonical position (planes, castling, en passant),
    used to cap repeats of the same position."""
    h = np.full(schema.block_len(block), 0x9E3779B97F4A7C15, dtype=np.uint64)
    columns = [block["planes"][:, i] for i in range(12)]
    columns += [block["castling"].astype(np.uint64), block["ep_file"].astype(np.int64).astype(np.uint64)]
    with np.errstate(over="ignore"):
        for col in columns:
            h ^= col
            h *= _MIX
            h ^= h >> np.uint64(33)
    return h


_SLOT_MIX = np.uint64(0xC2B2AE3D27D4EB4F)


def repeat_keep_mask(keys: np.ndarray, max_repeats: int) -> np.ndarray:
    """True for the first `max_repeats` occurrences (in array order) of each key."""
    return RepeatCounter(max_repeats).add(keys)


class RepeatCounter:
    """`repeat_keep_mask` over keys that come in pieces, in order: ``add`` gives each
    piece's mask, the one `repeat_keep_mask` would give it within all the pieces so far
    (the copies of each key are counted in a hash table that grows as keys come)."""

    def __init__(self, max_repeats: int) -> None:
        self.cap = max(0, min(int(max_repeats), 1 << 30))
        self.bits, self.keys = 4, 0  # table size (log2), keys added (a bound on distinct)
        self.table, self.seen = _rehash(np.empty(0, dtype=np.uint64),
                                        np.zeros(0, dtype=np.int32), self.bits)

    def add(self, keys: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        self.keys += len(keys)
        bits = max(4, (2 * self.keys - 1).bit_length())  # the table at most half full
        if bits > self.bits:
            self.table, self.seen = _rehash(self.table, self.seen, bits)
            self.bits = bits
        keep = np.empty(len(keys), dtype=bool)
        _repeat_keep_kernel(keys, self.cap, self.bits, self.table, self.seen, keep)
        return keep


@njit(cache=True, nogil=True, inline="always")
def _slot(key, shift):
    """A key's first slot: the top bits of the key mixed, not the bits that
    dataengine.spill's partitions share."""
    return np.int64(((key ^ (key >> np.uint64(29))) * _SLOT_MIX) >> shift)


@njit(cache=True, nogil=True)
def _repeat_keep_kernel(keys, max_repeats, bits, table, seen, keep):
    """Count each key's copies as they come in an open-addressing table of 2**bits slots
    (linear probing; ``seen``: copies so far, up to max_repeats + 1; 0: a free slot)."""
    shift, last = np.uint64(64 - bits), np.int64((1 << bits) - 1)
    for i in range(len(keys)):
        key = keys[i]
        slot = _slot(key, shift)
        while seen[slot] and table[slot] != key:
            slot = (slot + 1) & last
        if not seen[slot]:
            table[slot] = key
        keep[i] = seen[slot] < max_repeats
        if seen[slot] <= max_repeats:
            seen[slot] += 1


@njit(cache=True, nogil=True)
def _rehash(table, seen, bits):
    """The counted keys of (`table`, `seen`) in a new table of 2**bits slots. (Allocated
    here, in small pages: numpy's allocator asks for transparent huge pages, whose first
    touch, where the kernel compacts memory for them, made a table of 2**24 slots take
    0.6 s to fill instead of 0.2.)"""
    new_table = np.empty(1 << bits, dtype=np.uint64)
    new_seen = np.zeros(1 << bits, dtype=np.int32)
    shift, last = np.uint64(64 - bits), np.int64((1 << bits) - 1)
    for i in range(len(table)):
        if seen[i]:
            slot = _slot(table[i], shift)
            while new_seen[slot]:
                slot = (slot + 1) & last
            new_table[slot] = table[i]
            new_seen[slot] = seen[i]
    return new_table, new_seen
