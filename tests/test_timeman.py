"""train.engine.timeman: the clock's budget and the early stop, as pure functions; a whole
game on a simulated clock checks that the budget never flags."""

from __future__ import annotations

import pytest

from train.engine.timeman import HORIZON, MAX_FRACTION, Allotment, allot, stop_early


def test_no_limit_without_a_clock_or_movetime():
    assert allot() is None
    assert allot(increment=1.0, movestogo=10) is None


def test_movetime_less_the_overhead():
    assert allot(movetime=1.0, overhead=0.1) == Allotment(0.9, 0.9)
    assert allot(movetime=0.05, overhead=0.1) == Allotment(0.0, 0.0)
    # with a clock too, the tighter of the two
    assert allot(movetime=5.0, time_left=2.0, overhead=0.1).hard <= MAX_FRACTION * 1.9


def test_sudden_death_spreads_the_clock_over_the_horizon():
    a = allot(time_left=60.0, overhead=0.0)
    assert a.soft == pytest.approx(60.0 / HORIZON)
    assert a.soft < a.hard <= MAX_FRACTION * 60.0
    # the overhead is kept back for every move still to play
    assert allot(time_left=60.0, overhead=0.1).soft < a.soft


def test_increment_and_movestogo():
    base = allot(time_left=10.0, overhead=0.1)
    with_inc = allot(time_left=10.0, increment=0.1, overhead=0.1)
    assert with_inc.soft > base.soft
    assert with_inc == Allotment(0.2425, 0.7275)  # 10+0.1 at the first move
    # the last move before the time control may use much of the clock, but never all
    last = allot(time_left=5.0, movestogo=1, overhead=0.1)
    assert last.hard == pytest.approx(MAX_FRACTION * 4.9)
    # more moves to go, less a move
    assert allot(time_left=30.0, movestogo=10).soft > allot(time_left=30.0, movestogo=30).soft
    # movestogo 0 (a sloppy GUI) reads as sudden death, not a division by zero
    assert allot(time_left=30.0, movestogo=0) == allot(time_left=30.0)


@pytest.mark.parametrize("time_left", [0.0, 0.05, 0.1, -0.5])
def test_a_clock_below_the_overhead_gives_the_minimal_search(time_left):
    assert allot(time_left=time_left, increment=0.1, overhead=0.1) == Allotment(0.0, 0.0)


def test_bad_numbers_are_refused():
    with pytest.raises(ValueError, match="time_left"):
        allot(time_left=float("nan"))
    with pytest.raises(ValueError, match="movetime"):
        allot(movetime=float("inf"))


def _moves_before_flag(base: float, increment: float, limit: int) -> int:
    """Moves played (up to ``limit``) when every move takes its hard deadline (the worst
    case) plus the Move Overhead that the search does not see (its last batch past the
    deadline, Python, the pipe, the GUI)."""
    clock = base
    for played in range(limit):
        clock -= allot(time_left=clock, increment=increment, overhead=0.1).hard + 0.1
        if clock <= 0:
            return played
        clock += increment
    return limit


@pytest.mark.parametrize("base, increment", [(10.0, 0.1), (180.0, 2.0), (1.0, 0.1)])
def test_a_game_with_an_increment_never_flags(base, increment):
    assert _moves_before_flag(base, increment, 500) == 500


@pytest.mark.parametrize("base, moves", [(60.0, 80), (3.0, 25)])
def test_sudden_death_keeps_a_reserve_for_the_last_moves(base, moves):
    """At 0.1 s a move at least, 3+0 cannot last more than 30 moves."""
    assert _moves_before_flag(base, 0.0, 500) >= moves


def test_the_hard_deadline_keeps_half_the_clock():
    for time_left in (0.0, 0.2, 1.0, 5.0, 30.0, 600.0):
        for increment in (0.0, 0.1, 2.0, 30.0):
            for movestogo in (None, 1, 2, 40, 100):
                a = allot(time_left=time_left, increment=increment, movestogo=movestogo,
                          overhead=0.1)
                assert 0 <= a.soft <= a.hard <= MAX_FRACTION * max(0.0, time_left - 0.1) + 1e-4


def test_soft_targets_use_the_clock_in_a_10_plus_0_1_game():
    """Moves at their soft targets play 80 moves without dropping below a second."""
    clock, spent = 10.0, []
    for _ in range(80):
        a = allot(time_left=clock, increment=0.1, overhead=0.1)
        spent.append(a.soft)
        clock += 0.1 - a.soft - 0.03
    assert clock > 1.0
    assert sum(spent[:20]) > 3.0  # and the opening moves do think


def test_stop_early_when_the_best_move_cannot_change():
    a = Allotment(soft=1.0, hard=3.0)
    # one legal move: at once
    assert stop_early(elapsed=0.01, allotment=a, nodes=10, root=[(10, 0.0)])
    # 1000 nodes/s, 0.5 s left to the soft target: 500 more visits; a lead of 600 is safe
    assert stop_early(elapsed=0.5, allotment=a, nodes=500, root=[(650, 0.1), (50, 0.0)])
    assert not stop_early(elapsed=0.5, allotment=a, nodes=500, root=[(300, 0.1), (200, 0.0)])
    assert not stop_early(elapsed=0.0, allotment=a, nodes=0, root=[(0, 0.0), (0, 0.0)])


def test_past_the_soft_target_only_an_overtaking_move_keeps_the_search_on():
    a = Allotment(soft=1.0, hard=3.0)
    assert stop_early(elapsed=1.2, allotment=a, nodes=900, root=[(600, 0.1), (300, 0.12)])
    # a close second with a clearly better value: on to the hard deadline
    assert not stop_early(elapsed=1.2, allotment=a, nodes=900, root=[(500, 0.1), (400, 0.3)])
    # ... but a barely visited move's value is noise
    assert stop_early(elapsed=1.2, allotment=a, nodes=900, root=[(800, 0.1), (5, 0.9)])
    # unvisited moves have no value (nan) and never hold the search
    assert stop_early(elapsed=1.2, allotment=a, nodes=900,
                      root=[(500, 0.1), (0, float("nan")), (0, float("nan"))])
    assert stop_early(elapsed=3.0, allotment=a, nodes=900, root=[(500, 0.1), (400, 0.3)])
