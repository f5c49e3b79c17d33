"""train.elo: the joint Elo fit against results whose ratings are known in closed form."""

from __future__ import annotations

import math
import random

import pytest

from train.elo import (
    ABOVE,
    ANCHOR,
    BELOW,
    FITTED,
    UNRATED,
    expected_score,
    fit_ratings,
)

ELO_75 = 400.0 * math.log10(3.0)  # 190.85: the Elo edge of a 75% score


def games(a: str, b: str, wins: int, draws: int, losses: int) -> list[tuple[str, str, float]]:
    return [(a, b, 1.0)] * wins + [(a, b, 0.5)] * draws + [(a, b, 0.0)] * losses


def exact_one_sided(n: int) -> float:
    """Elo edge above which ``n`` wins out of ``n`` have probability 0.05 or more."""
    p = 0.05 ** (1.0 / n)
    return 400.0 * math.log10(p / (1.0 - p))


def test_75_percent_against_one_anchor_is_plus_191():
    for result in ((3, 0, 1), (1, 1, 0), (30, 0, 10), (10, 10, 0), (13, 7, 2)):
        fit = fit_ratings(games("cand", "sf", *result), {"sf": 1500})
        r = fit.ratings["cand"]
        assert r.status == FITTED
        assert r.elo == pytest.approx(1500 + ELO_75, abs=1e-6), result
        assert r.low < r.elo < r.high
        assert r.score == pytest.approx(0.75)


def test_50_percent_is_the_anchor_and_the_interval_is_symmetric():
    fit = fit_ratings(games("cand", "sf", 5, 10, 5), {"sf": 1700})
    r = fit.ratings["cand"]
    assert r.elo == pytest.approx(1700, abs=1e-6)
    assert 1700 - r.low == pytest.approx(r.high - 1700, abs=0.05)
    assert fit.ratings["sf"].status == ANCHOR and fit.ratings["sf"].elo == 1700


def test_25_percent_mirrors_75_percent():
    up = fit_ratings(games("cand", "sf", 9, 0, 3), {"sf": 1500}).ratings["cand"]
    down = fit_ratings(games("cand", "sf", 3, 0, 9), {"sf": 1500}).ratings["cand"]
    assert down.elo == pytest.approx(1500 - ELO_75, abs=1e-6)
    assert down.low == pytest.approx(3000 - up.high, abs=0.05)
    assert down.high == pytest.approx(3000 - up.low, abs=0.05)
    # the order of the pair in a game does not matter
    swapped = fit_ratings(games("sf", "cand", 9, 0, 3), {"sf": 1500}).ratings["cand"]
    assert swapped.elo == pytest.approx(down.elo, abs=1e-6)


def test_large_sample_interval_is_the_normal_one():
    # 400 decisive games at 50%: standard error (400 / ln 10) / sqrt(400 / 4) = 17.37 Elo
    r = fit_ratings(games("cand", "sf", 200, 0, 200), {"sf": 1500}).ratings["cand"]
    half = 1.959964 * 400.0 / math.log(10.0) / 10.0
    assert r.high - 1500 == pytest.approx(half, rel=0.01)
    assert 1500 - r.low == pytest.approx(half, rel=0.01)


def test_two_anchors_fit_jointly():
    # 50% against 1400 and against 1600, as many games each: 1500 by symmetry
    g = games("cand", "a", 4, 4, 4) + games("cand", "b", 4, 4, 4)
    assert fit_ratings(g, {"a": 1400, "b": 1600}).ratings["cand"].elo == pytest.approx(1500)
    # expected scores of a 1550 player, as fractional points: the estimate is 1550
    anchors = {"a": 1350, "b": 1500, "c": 1700}
    g = [("cand", name, expected_score(1550, elo)) for name, elo in anchors.items()
         for _ in range(10)]
    assert fit_ratings(g, anchors).ratings["cand"].elo == pytest.approx(1550, abs=1e-4)
    # more anchors, more games: a narrower interval than against one of them alone
    one = fit_ratings([x for x in g if x[1] == "b"], anchors).ratings["cand"]
    three = fit_ratings(g, anchors).ratings["cand"]
    assert three.high - three.low < one.high - one.low


def test_free_players_are_fitted_jointly():
    # B met only A: A's rating comes from its anchor games alone, B sits 191 below A
    g = games("A", "sf", 15, 0, 5) + games("B", "A", 5, 0, 15)
    fit = fit_ratings(g, {"sf": 1500})
    a, b = fit.ratings["A"], fit.ratings["B"]
    alone = fit_ratings(games("A", "sf", 15, 0, 5), {"sf": 1500}).ratings["A"]
    assert a.elo == pytest.approx(alone.elo, abs=1e-6)
    assert a.low == pytest.approx(alone.low, abs=0.05)
    assert b.elo == pytest.approx(a.elo - ELO_75, abs=1e-6)
    # B's uncertainty includes A's
    assert b.high - b.low > a.high - a.low
    # a chain through a second free player carries information both ways
    g2 = g + games("B", "sf", 2, 4, 14)
    assert fit_ratings(g2, {"sf": 1500}).ratings["A"].elo < a.elo


@pytest.mark.parametrize("n", [1, 5, 10, 40])
def test_perfect_scores_give_the_exact_one_sided_bound(n):
    up = fit_ratings(games("cand", "sf", n, 0, 0), {"sf": 1500}).ratings["cand"]
    assert up.status == ABOVE and up.elo == math.inf and up.high == math.inf
    assert up.low == pytest.approx(1500 + exact_one_sided(n), abs=0.05)
    assert up.describe() == f"above {1500 + exact_one_sided(n):.0f} (95%, one-sided)"
    down = fit_ratings(games("cand", "sf", 0, 0, n), {"sf": 1500}).ratings["cand"]
    assert down.status == BELOW and down.elo == -math.inf and down.low == -math.inf
    assert down.high == pytest.approx(1500 - exact_one_sided(n), abs=0.05)
    assert down.describe().startswith("below ")


def test_perfect_score_against_one_anchor_among_others():
    # 100% against 1350, 60% against 1700: finite, above 1700
    g = games("cand", "a", 10, 0, 0) + games("cand", "b", 6, 0, 4)
    r = fit_ratings(g, {"a": 1350, "b": 1700}).ratings["cand"]
    assert r.status == FITTED and math.isfinite(r.low) and math.isfinite(r.high)
    # 0% everywhere, and a baseline met only by it: both below, bounds finite
    g = games("cand", "a", 0, 0, 10) + games("cand", "random", 8, 2, 0)
    fit = fit_ratings(g, {"a": 1350, "b": 1700})
    cand, rnd = fit.ratings["cand"], fit.ratings["random"]
    assert cand.status == BELOW and cand.high == pytest.approx(1350 - exact_one_sided(10), abs=0.05)
    assert rnd.status == BELOW and rnd.high < cand.high
    assert fit.ratings["b"].games == 0


def test_interval_shrinks_with_more_games():
    widths = []
    for k in (1, 4, 16):
        r = fit_ratings(games("cand", "sf", 6 * k, 0, 4 * k), {"sf": 1500}).ratings["cand"]
        assert r.elo == pytest.approx(1500 + 400 * math.log10(1.5), abs=1e-6)
        widths.append(r.high - r.low)
    assert widths[0] > widths[1] > widths[2]
    # about 1 / sqrt(games)
    assert widths[1] / widths[2] == pytest.approx(2.0, rel=0.1)


def simulate(rng: random.Random, truth: float, anchors: dict[str, float], per_anchor: int,
             draw_share: float = 0.3) -> list[tuple[str, str, float]]:
    """Games of a player rated ``truth``: each game a draw with probability
    ``min(draw_share, 2 min(E, 1 - E))``, else a win or loss, so that its expected score
    is the logistic ``E``."""
    out = []
    for name, elo in anchors.items():
        e = expected_score(truth, elo)
        d = min(draw_share, 2 * min(e, 1 - e))
        for _ in range(per_anchor):
            u = rng.random()
            score = 0.5 if u < d else (1.0 if u < d + (e - d / 2) else 0.0)
            out.append(("cand", name, score))
    return out


def test_simulated_tournament_contains_the_truth():
    anchors = {"sf1350": 1350, "sf1500": 1500, "sf1700": 1700}
    truth = 1560.0
    rng = random.Random(20240601)
    r = fit_ratings(simulate(rng, truth, anchors, 60), anchors).ratings["cand"]
    assert r.low < truth < r.high
    assert abs(r.elo - truth) < 60
    assert r.high - r.low < 150  # 180 games pin it down to within ~+-50

    # coverage over many tournaments: the 95% interval (conservative with draws)
    covered, errors = 0, []
    for _ in range(60):
        r = fit_ratings(simulate(rng, truth, anchors, 20), anchors).ratings["cand"]
        covered += r.low < truth < r.high
        errors.append(abs(r.elo - truth))
    assert covered >= 54  # >= 90% of 60 (binomial at 0.95: P(< 54) ~ 3%)
    assert sorted(errors)[len(errors) // 2] < 50


def test_unrated_and_bad_input():
    g = games("cand", "sf", 3, 0, 1) + games("x", "y", 1, 0, 1)
    fit = fit_ratings(g, {"sf": 1500})
    assert fit.ratings["x"].status == UNRATED and math.isnan(fit.ratings["x"].elo)
    assert fit.ratings["cand"].elo == pytest.approx(1500 + ELO_75)
    # a player beaten by one with no finite estimate, and beating it: nothing pins it
    g = games("cand", "sf", 0, 0, 4) + games("m", "cand", 4, 0, 0)
    assert fit_ratings(g, {"sf": 1500}).ratings["m"].status == UNRATED
    with pytest.raises(ValueError, match="'cand', 'sf', 2"):
        fit_ratings([("cand", "sf", 2)], {"sf": 1500})
    with pytest.raises(ValueError, match="itself"):
        fit_ratings([("sf", "sf", 1)], {"sf": 1500})
    with pytest.raises(ValueError, match="anchor 'sf'"):
        fit_ratings([], {"sf": math.nan})
