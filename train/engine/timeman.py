"""Time management: from a UCI ``go`` command's clock to how long to search.

:func:`allot` turns the clock (``wtime``/``btime``, ``winc``/``binc``, ``movestogo``,
``movetime``) and the ``Move Overhead`` option into a soft target and a hard deadline;
:func:`stop_early` decides, while the search runs, whether it can stop before the hard
deadline. Both are pure functions of numbers (seconds), like sunfish's one-line clock,
so that the UCI loop stays a dispatcher and the rules are tested on their own.

The budget follows Stockfish's: the clock is spread over the moves still to play
(``movestogo``, or :data:`HORIZON` in sudden death) with the increments they will
bring, less ``Move Overhead`` for each of them (the time the GUI, the pipe and
Python lose around every move, which the search does not see). A search aims at
``soft`` and never passes ``hard``; neither ever exceeds half of what is left on the
clock after the overhead, so that one long move cannot flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HORIZON", "HARD_FACTOR", "MAX_FRACTION", "Allotment", "allot", "stop_early"]

HORIZON = 40
"""Moves still to play assumed in sudden death (no ``movestogo``)."""

HARD_FACTOR = 3.0
"""The hard deadline is this many soft targets, when the clock allows it."""

MAX_FRACTION = 0.5
"""No search takes more than this share of the clock left after the overhead."""

UNSTABLE_VALUE_GAP = 0.05
"""Past the soft target the search goes on (up to the hard deadline) while a root move
with at least half the best move's visits has a value this much higher than it: the
most visited move is about to be overtaken."""


@dataclass(frozen=True)
class Allotment:
    """How long one search may take, in seconds from its start."""

    soft: float
    """The search stops here, or earlier when the best move cannot change any more."""
    hard: float
    """The search never runs past this (``hard >= soft``)."""


def allot(*, time_left: float | None = None, increment: float = 0.0,
          movestogo: int | None = None, movetime: float | None = None,
          overhead: float = 0.1) -> Allotment | None:
    """The time for one move, or None when neither a clock nor ``movetime`` limits it.

    All arguments are in seconds (UCI sends milliseconds): ``time_left`` and
    ``increment`` are the side to move's clock and increment, ``movestogo`` the moves to
    the next time control, ``movetime`` a fixed time for this move, ``overhead`` the
    ``Move Overhead`` option. A clock already below the overhead (or negative, as some
    GUIs send after a lag) gives ``0, 0``: the search then runs its one minimal batch.

    >>> allot(time_left=10.0, increment=0.1, overhead=0.1)
    Allotment(soft=0.2425, hard=0.7275)
    >>> allot(movetime=1.0, overhead=0.1)
    Allotment(soft=0.9, hard=0.9)
    """
    for name, value in (("time_left", time_left), ("increment", increment),
                        ("movetime", movetime), ("overhead", overhead)):
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if movestogo is not None and movestogo < 1:
        movestogo = None  # `movestogo 0` from a sloppy GUI: treat as sudden death
    overhead = max(0.0, overhead)
    limits: list[Allotment] = []
    if time_left is not None:
        increment = max(0.0, increment)
        moves = min(movestogo, 50) if movestogo else HORIZON
        pool = max(0.0, time_left + increment * (moves - 1) - overhead * (moves + 2))
        cap = MAX_FRACTION * max(0.0, time_left - overhead)
        soft = min(pool / moves, cap)
        limits.append(Allotment(soft, min(HARD_FACTOR * soft, cap)))
    if movetime is not None:
        fixed = max(0.0, movetime - overhead)
        limits.append(Allotment(fixed, fixed))
    if not limits:
        return None
    # to the tenth of a millisecond: UCI counts milliseconds, and round numbers read better
    return Allotment(round(min(a.soft for a in limits), 4), round(min(a.hard for a in limits), 4))


def stop_early(*, elapsed: float, allotment: Allotment, nodes: int,
               root: Sequence[tuple[int, float]]) -> bool:
    """Whether a timed search may stop now, before its hard deadline.

    ``root`` lists the root moves' (visits, value for the side to move), most visited
    first (the search's ``multipv``); ``nodes`` counts this search's visits so far.
    Before the soft target: stop when the second move cannot catch up with the first
    in the visits left until the soft target at the rate so far (lc0's "smart
    pruning"; a root with one legal move stops at once). At the soft target: stop,
    unless a move with at least half the best move's visits has a value higher than
    it by :data:`UNSTABLE_VALUE_GAP` (then go on to the hard deadline).
    """
    if elapsed >= allotment.hard or len(root) < 2:
        return True
    (best_visits, best_value), (second_visits, _) = root[0], root[1]
    if elapsed >= allotment.soft:
        return not any(visits * 2 >= best_visits and value > best_value + UNSTABLE_VALUE_GAP
                       for visits, value in root[1:])
    if elapsed <= 0 or nodes <= 0:
        return False
    visits_left = nodes / elapsed * (allotment.soft - elapsed)
    return best_visits - second_visits > visits_left
