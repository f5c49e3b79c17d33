"""Curriculum buckets: one rule set (``BucketRules`` in config.yaml) puts every
record in exactly one of ``schema.BUCKETS``. Vectorised numpy over a block's
columns; no chess library involved.
"""

from __future__ import annotations

import numpy as np

from dataengine import schema
from dataengine.config import BucketRules

# piece-plane indices (us then them) and their material values
_NONPAWN_VALUES = {1: 3, 2: 3, 3: 5, 4: 9}  # N B R Q
_RANKS_1_2 = np.uint64(0xFFFF)


def _popcount(a: np.ndarray) -> np.ndarray:
    return np.bitwise_count(a).astype(np.int32)


def nonpawn_material(planes: np.ndarray) -> np.ndarray:
    """Non-pawn material of both sides (N=B=3, R=5, Q=9) per record."""
    total = np.zeros(len(planes), dtype=np.int32)
    for piece, value in _NONPAWN_VALUES.items():
        total += value * (_popcount(planes[:, piece]) + _popcount(planes[:, 6 + piece]))
    return total


def rule_matches(block: schema.Block, rules: BucketRules) -> dict[str, np.ndarray]:
    """For each rule (bucket name other than positional), which records it matches."""
    from labelers import MASK_NAMES

    mask = {name: block["labels"][:, i] for i, name in enumerate(MASK_NAMES)}
    source = block["source"]
    opening_src = schema.SOURCES.index("opening")
    pgn_src = schema.SOURCES.index("pgn")

    openings = (source == opening_src) | (
        (source == pgn_src) & (block["ply"] < rules.opening_max_ply)
    )
    tactical = np.isin(source, [schema.SOURCES.index(s) for s in rules.tactical_sources])
    for m in rules.tactical_masks:
        tactical |= mask[m] != 0
    endgames = nonpawn_material(block["planes"]) <= rules.endgame_max_material
    king_us = block["planes"][:, 5]
    king_safety = _popcount(mask["kingzone_attacked_us"]) >= rules.king_safety_min_attacked
    king_safety |= ((king_us & _RANKS_1_2) != 0) & (
        _popcount(mask["shield_us"]) <= rules.king_safety_max_shield
    )
    return {
        "openings": openings,
        "tactical": tactical,
        "endgames": endgames,
        "king_safety": king_safety,
    }


def assign_buckets(block: schema.Block, rules: BucketRules) -> np.ndarray:
    """The bucket index (into schema.BUCKETS) of every record: first matching rule wins."""
    matches = rule_matches(block, rules)
    n = schema.block_len(block)
    bucket = np.full(n, schema.BUCKETS.index("positional"), dtype=np.uint8)
    undecided = np.ones(n, dtype=bool)
    for name in rules.order:
        hit = undecided & matches[name]
        bucket[hit] = schema.BUCKETS.index(name)
        undecided &= ~hit
    return bucket
