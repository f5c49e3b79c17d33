"""Curricula: which share of every batch comes from which bucket, step by step.

A curriculum is a list of phases; a phase has a length (a fraction of the run)
and bucket weights. Each batch's count per *stream* (a bucket, split into its
teacher-annotated and other records) is deterministic: the shares are carried
across batches with largest-remainder rounding, so that every stream's
cumulative count stays within one record of its exact quota. That is what makes
the measured mix hit the configured one exactly, and what makes batch k a pure
function of (seed, k, curriculum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from dataengine import schema
from dataengine.config import ConfigError, load_section


@dataclass(kw_only=True)
class Phase:
    """One phase of a curriculum."""

    name: str
    """A label for logs."""
    length: float
    """Relative length; phases are scaled so that their lengths fill the run."""
    weights: dict[str, float]
    """Bucket -> weight (normalised to sum to 1; missing buckets get 0)."""

    def __post_init__(self) -> None:
        if not self.length > 0:
            raise ConfigError(f"phase {self.name!r}: length must be > 0, got {self.length}")
        for bucket, w in self.weights.items():
            if bucket not in schema.BUCKETS:
                raise ConfigError(f"phase {self.name!r}: unknown bucket {bucket!r} "
                                  f"(buckets: {', '.join(schema.BUCKETS)})")
            if not (isinstance(w, int | float) and w >= 0):
                raise ConfigError(f"phase {self.name!r}: weight of {bucket} must be >= 0, got {w!r}")
        if sum(self.weights.values()) <= 0:
            raise ConfigError(f"phase {self.name!r}: weights sum to 0")


@dataclass(kw_only=True)
class Curriculum:
    """A named list of phases, plus the teacher share."""

    phases: list[Phase]
    teacher_share: float = 0.4
    """Share of every batch drawn from teacher-annotated records (those with a teacher eval),
    when the data has them; the rest from the other records of the same buckets."""

    def __post_init__(self) -> None:
        if not self.phases:
            raise ConfigError("a curriculum needs at least one phase")
        if not 0.0 <= self.teacher_share <= 1.0:
            raise ConfigError(f"teacher_share must be in [0, 1], got {self.teacher_share}")


def _default_curricula() -> dict[str, dict]:
    mixed = {"tactical": 0.2, "positional": 0.2}
    return {
        # the original tool's: openings 22%, king safety 12%, endgames 22% of the run, in the ratio
        # 22:12:22 (39,286 / 21,429 / 39,285 steps of 100,000); tactical and positional
        # positions mixed into every phase.
        "stockfish": {
            "teacher_share": 0.4,
            "phases": [
                {"name": "openings", "length": 22,
                 "weights": {"openings": 0.5, "king_safety": 0.05, "endgames": 0.05, **mixed}},
                {"name": "king_safety", "length": 12,
                 "weights": {"openings": 0.05, "king_safety": 0.5, "endgames": 0.05, **mixed}},
                {"name": "endgames", "length": 22,
                 "weights": {"openings": 0.05, "king_safety": 0.05, "endgames": 0.5, **mixed}},
            ],
        },
        "uniform": {
            "teacher_share": 0.4,
            "phases": [{"name": "uniform", "length": 1,
                        "weights": dict.fromkeys(schema.BUCKETS, 1.0)}],
        },
    }


def load_curriculum(name: str, curricula: dict | None = None) -> Curriculum:
    """Curriculum `name` from a `curricula:` mapping (config.yaml), or the built-in ones."""
    table = _default_curricula() | (curricula or {})
    if name not in table:
        raise ConfigError(f"unknown curriculum {name!r} (known: {', '.join(sorted(table))})")
    return load_section(Curriculum, table[name], f"curricula.{name}")


@dataclass
class Streams:
    """The streams a batch is drawn from: (bucket, teacher?) pairs, in a fixed order."""

    names: list[tuple[str, bool]] = field(
        default_factory=lambda: [(b, t) for b in schema.BUCKETS for t in (True, False)]
    )

    def index(self, bucket: str, teacher: bool) -> int:
        return self.names.index((bucket, teacher))


STREAMS = Streams()


class Schedule:
    """Per-step stream shares of a curriculum over a run of `steps` batches.

    `available[s]` says whether stream s has any records; the share of an empty
    stream goes to its bucket's other stream, and a bucket with no records at all
    has its weight spread over the others (see `warnings`)."""

    def __init__(self, curriculum: Curriculum, steps: int, available: np.ndarray):
        self.curriculum, self.steps = curriculum, max(1, steps)
        self.bounds = np.cumsum(phase_lengths(curriculum, self.steps))
        self.warnings: list[str] = []
        self.shares = np.stack([self._shares(p, available) for p in curriculum.phases])

    def _shares(self, phase: Phase, available: np.ndarray) -> np.ndarray:
        t = self.curriculum.teacher_share
        shares = np.zeros(len(STREAMS.names))
        weights = {b: float(phase.weights.get(b, 0.0)) for b in schema.BUCKETS}
        for b in schema.BUCKETS:
            has_t = available[STREAMS.index(b, True)]
            has_o = available[STREAMS.index(b, False)]
            if weights[b] > 0 and not (has_t or has_o):
                self.warnings.append(f"phase {phase.name!r}: no {b} records; "
                                     f"its weight {weights[b]} goes to the other buckets")
                weights[b] = 0.0
            elif weights[b] > 0 and t > 0 and not has_t:
                self.warnings.append(f"phase {phase.name!r}: no teacher-annotated {b} records; "
                                     f"its teacher share comes from the other {b} records")
        norm = sum(weights.values())
        if norm <= 0:
            raise ConfigError(f"phase {phase.name!r}: none of its buckets has records")
        for b in schema.BUCKETS:
            w = weights[b] / norm
            has_t = available[STREAMS.index(b, True)]
            has_o = available[STREAMS.index(b, False)]
            t_share = t if (has_t and has_o) else (1.0 if has_t else 0.0)
            shares[STREAMS.index(b, True)] = w * t_share
            shares[STREAMS.index(b, False)] = w * (1 - t_share)
        return shares

    def phase_at(self, step: int) -> int:
        return min(int(np.searchsorted(self.bounds, step, side="right")),
                   len(self.curriculum.phases) - 1)

    def phase_name(self, step: int) -> str:
        return self.curriculum.phases[self.phase_at(step)].name

    def counts(self, batch_size: int, first: int = 0):
        """Yield (step, counts per stream) for steps first, first+1, ... (see `blocks`)."""
        for step, counts, _ in self.blocks(batch_size, 256, first):
            for i, row in enumerate(counts):
                yield step + i, row

    def blocks(self, batch_size: int, size: int, first: int = 0):
        """Yield (step, counts, before) for the blocks of `size` steps from `first` on:
        `counts` (size, streams) is the records each stream gives to steps step ..
        step + size - 1, `before` (streams,) what it gave to all the steps before.

        The rounding carry is replayed from step 0, so any step's counts are the same
        however it is reached, and whatever the block size."""
        carry = np.zeros(len(STREAMS.names))
        before = np.zeros(len(STREAMS.names), dtype=np.int64)
        step = 0
        while step < first:
            n = min(first - step, 1 << 16)
            before += self._round(step, n, batch_size, carry).sum(axis=0)
            step += n
        while True:
            counts = self._round(step, size, batch_size, carry)
            yield step, counts, before.copy()
            before += counts.sum(axis=0)
            step += size

    def _round(self, step: int, n: int, batch_size: int, carry: np.ndarray) -> np.ndarray:
        phases = np.searchsorted(self.bounds, np.arange(step, step + n), side="right")
        phases = np.minimum(phases, len(self.curriculum.phases) - 1)
        return _round_counts(self.shares[phases], batch_size, carry)


@njit(cache=True)
def _round_counts(shares: np.ndarray, batch_size: int, carry: np.ndarray) -> np.ndarray:
    """Counts (steps, streams) of consecutive batches of `batch_size` records with the
    per-step stream `shares`: each step's quota is its shares times the batch size plus
    the `carry` (updated in place) of the steps before; the counts are the quotas
    rounded down, and the records still missing go to the largest remainders (ties to
    the first stream)."""
    steps, streams = shares.shape
    counts = np.zeros((steps, streams), dtype=np.int64)
    quota = np.empty(streams)
    for i in range(steps):
        total = 0
        for j in range(streams):
            quota[j] = shares[i, j] * batch_size + carry[j]
            counts[i, j] = max(np.int64(np.floor(quota[j] + 1e-9)), 0)
            total += counts[i, j]
        short = batch_size - total
        if short > 0:
            order = np.argsort(-(quota - counts[i]), kind="mergesort")  # stable
            for j in order[:short]:
                counts[i, j] += 1
        for j in range(streams):
            carry[j] = quota[j] - counts[i, j]
    return counts


def phase_lengths(curriculum: Curriculum, steps: int) -> list[int]:
    """Steps of each phase in a run of `steps`: each rounded, the last takes the rest
    (the original tool's 22:12:22 over 100,000 steps gives 39,286 / 21,429 / 39,285)."""
    total = sum(p.length for p in curriculum.phases)
    lengths = [math.floor(p.length / total * steps + 0.5) for p in curriculum.phases[:-1]]
    return [*lengths, steps - sum(lengths)]
