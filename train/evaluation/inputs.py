"""python-chess boards -> the network's input planes, the way the shards store them.

A board becomes one record of a compact batch (``train.expand``'s format): the
canonical piece planes (``labelers.planes_from_board``), the CASTLE_* bits
(``dataengine.records.canonical_castling``), the en-passant file only when a
legal en-passant capture exists (as the readers store it), and the halfmove
clock. ``train.expand.expand_inputs`` then makes the planes, so a board played in
a match is seen exactly as the same position read from a shard.
"""

from __future__ import annotations

from collections.abc import Sequence

import chess
import numpy as np
import torch

import labelers
from dataengine import schema
from dataengine.records import canonical_castling
from train.batch import from_numpy
from train.expand import expand_inputs

__all__ = ["board_inputs", "compact_batch"]


def compact_batch(boards: Sequence[chess.Board]) -> dict[str, torch.Tensor]:
    """A compact batch (``train.batch.from_numpy`` of a schema block) of ``boards``.

    Only the input columns mean anything (planes, castling, ep_file, halfmove);
    the targets are the schema's "unknown" sentinels.

    >>> batch = compact_batch([chess.Board()])
    >>> int(batch["castling"][0]), int(batch["ep_file"][0]), int(batch["halfmove"][0])
    (15, -1, 0)
    """
    n = len(boards)
    block = schema.empty_columns(n)
    if n == 0:
        return from_numpy(block)
    block["planes"] = np.stack([labelers.planes_from_board(b) for b in boards])
    rights = np.array([b.clean_castling_rights() for b in boards], dtype=np.uint64)
    white = np.array([b.turn == chess.WHITE for b in boards], dtype=np.bool_)
    block["castling"] = canonical_castling(rights, white)
    block["ep_file"] = np.array(
        [chess.square_file(b.ep_square) if b.ep_square is not None and b.has_legal_en_passant()
         else -1 for b in boards], dtype=np.int8)
    block["halfmove"] = np.array([min(b.halfmove_clock, 0xFFFF) for b in boards],
                                 dtype=np.uint16)
    return from_numpy(block)


def board_inputs(boards: Sequence[chess.Board],
                 device: torch.device | str | None = None) -> torch.Tensor:
    """``(len(boards), 19, 8, 8)`` float network inputs of ``boards`` on ``device``."""
    batch = {k: v.to(device) for k, v in compact_batch(boards).items()}
    return expand_inputs(batch)
