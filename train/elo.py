"""Elo ratings fitted to game results by maximum likelihood, anchored on known players.

    >>> fit = fit_ratings([("cand", "sf1500", 1.0), ("cand", "sf1500", 0.5),
    ...                    ("cand", "sf1500", 0.5), ("cand", "sf1500", 0.0)] * 5,
    ...                   anchors={"sf1500": 1500})
    >>> fit.ratings["cand"].describe()
    '1500 [1345, 1655]'

The model is the logistic (Elo) one: a player rated ``R_a`` scores, in expectation,
``E = 1 / (1 + 10 ** ((R_b - R_a) / 400))`` against one rated ``R_b``. Every game is
a pair of players and the first one's score: 1, 1/2 or 0 (any score in [0, 1] is
taken). Players named in ``anchors`` keep their rating; every other player is
free, and all free ratings are fitted together to every game at once (one joint
estimate: a player's rating is informed by the games of the players it met).

Draws count as half a win: the log-likelihood of a pairing with ``n`` games and
``S`` points for ``a`` is ``S log E + (n - S) log(1 - E)`` (the quasi-likelihood
that Ordo and BayesElo without a draw model maximize). Its estimate is the rating at
which the expected score equals the score made: 75% against one anchor at ``R``
is ``R + 400 log10(3) = R + 190.85``, whatever the mix of wins and draws. The
spread it assumes for a game's score is a win-or-loss game's, ``E (1 - E)``; draws
make the real spread smaller, so with many draws the intervals are a little wider
than they need to be (conservative), never narrower.

Intervals come from the profile likelihood, not from the curvature at the
estimate: for a free player ``k``, ``D(r) = 2 (l_max - max l(R | R_k = r))`` (the
other free players re-fitted for each ``r``), and the 95% interval is where
``D(r) <= 3.841`` (chi-square, 1 degree of freedom). It is asymmetric where the
likelihood is (scores near 0% or 100%) and needs no normal approximation.

A player that scored 100% against everyone it met (more generally: a group of
free players none of whom lost a point to the rest of the field) has no finite
estimate: the likelihood keeps growing as its rating goes up. It is reported as
``above X`` with a one-sided 95% bound ``X`` where the likelihood ratio to the
supremum is 0.05, ``D(X) = 2 ln 20 = 5.991``. For a perfect score of ``n`` wins
against one opponent that ratio is exactly the probability of ``n`` wins out of
``n`` at rating ``X``, so ``X`` is the exact one-sided 95% binomial bound
(10 wins out of 10 against ``R``: above ``R + 182.7``). A 0% score is ``below X``
in the same way. A free player whose games do not link it, through results both
ways, to an anchor (a player only ever beaten by, and beating, players with
no finite estimate themselves), or that never met a rated player at all, is
``unrated``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ABOVE",
    "ANCHOR",
    "BELOW",
    "CHI2_95",
    "FITTED",
    "ONE_SIDED_95",
    "UNRATED",
    "Fit",
    "Game",
    "Rating",
    "expected_score",
    "fit_ratings",
]

Game = tuple[str, str, float]
"""``(a, b, a's score)``: 1 a win for ``a``, 1/2 a draw, 0 a loss."""

ANCHOR, FITTED, ABOVE, BELOW, UNRATED = "anchor", "fitted", "above", "below", "unrated"

#: chi-square quantile, 1 degree of freedom, 95%: the two-sided profile interval
CHI2_95 = 3.841458820694124
#: 2 ln 20: the one-sided 95% bound of a player with no finite estimate (module doc)
ONE_SIDED_95 = 2.0 * math.log(20.0)

#: Elo points per natural-log unit of the odds: the fit works in ``x = R / SCALE``
SCALE = 400.0 / math.log(10.0)
#: how far (Elo) beyond the anchors a rating may go while fitting: players with no
#: finite estimate settle there, where their games' likelihood is within 1e-20 of 1
_BOX = 12_000.0
#: where the interval search stops (Elo beyond the anchors): no bound inside it, none given
_SEARCH = 6_000.0


def expected_score(ra: float, rb: float) -> float:
    """The expected score of a player rated ``ra`` against one rated ``rb``.

    >>> round(expected_score(1700, 1509.15), 4)
    0.75
    """
    return 1.0 / (1.0 + 10.0 ** ((rb - ra) / 400.0))


@dataclass(frozen=True)
class Rating:
    name: str
    status: str
    """``anchor``, ``fitted``, ``above`` (no finite estimate: a one-sided lower bound),
    ``below`` (an upper bound) or ``unrated``."""
    elo: float
    """The estimate: the anchor's rating; +inf above, -inf below, nan unrated."""
    low: float
    """95% lower bound (-inf when there is none)."""
    high: float
    """95% upper bound (+inf when there is none)."""
    games: int
    points: float

    @property
    def score(self) -> float:
        return self.points / self.games if self.games else math.nan

    def describe(self) -> str:
        """One phrase: ``1623 [1540, 1702]``, ``above 1712 (95%, one-sided)``, ...

        >>> Rating("x", FITTED, 1623.4, 1540.2, 1701.9, 20, 12).describe()
        '1623 [1540, 1702]'
        """
        if self.status == ANCHOR:
            return f"{self.elo:.0f} (anchor)"
        if self.status == UNRATED:
            return "unrated (no result links it both ways to an anchor)"
        if self.status == ABOVE:
            return ("above " + _elo_text(self.low) + " (95%, one-sided)"
                    if math.isfinite(self.low) else "above any bound")
        if self.status == BELOW:
            return ("below " + _elo_text(self.high) + " (95%, one-sided)"
                    if math.isfinite(self.high) else "below any bound")
        return f"{self.elo:.0f} [{_elo_text(self.low)}, {_elo_text(self.high)}]"

    def as_dict(self) -> dict:
        """JSON-ready (non-finite numbers as None)."""
        def num(x: float) -> float | None:
            return round(x, 2) if math.isfinite(x) else None
        return {"status": self.status, "elo": num(self.elo), "low": num(self.low),
                "high": num(self.high), "games": self.games, "points": self.points,
                "text": self.describe()}


def _elo_text(x: float) -> str:
    return f"{x:.0f}" if math.isfinite(x) else ("+inf" if x > 0 else "-inf")


@dataclass(frozen=True)
class Fit:
    ratings: dict[str, Rating]
    """Every player, anchors first, then the free ones in order of first appearance."""
    log_likelihood: float
    """At the estimate (its supremum where some estimate is infinite)."""
    method: str = ("logistic ML, draws = 1/2 a win; 95% profile-likelihood interval; "
                   "no finite estimate: one-sided 95% bound")


# ----------------------------------------------------------------------------- tallies


@dataclass
class _Tally:
    """Games aggregated by pairing: ``i`` scored ``s`` points in ``n`` games against ``j``."""

    names: list[str]
    i: np.ndarray
    j: np.ndarray
    n: np.ndarray
    s: np.ndarray


def _tally(games: Iterable[Game], anchors: Mapping[str, float]) -> _Tally:
    index = {name: k for k, name in enumerate(anchors)}
    pairs: dict[tuple[int, int], list[float]] = {}
    for game in games:
        try:
            a, b, score = game
            score = float(score)
        except (TypeError, ValueError):
            raise ValueError(f"a game is (a, b, a's score), got {game!r}") from None
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"a score is in [0, 1], got {score!r} in {game!r}")
        if a == b:
            raise ValueError(f"a player cannot play itself: {game!r}")
        ia, ib = (index.setdefault(p, len(index)) for p in (a, b))
        if ia > ib:
            ia, ib, score = ib, ia, 1.0 - score
        tally = pairs.setdefault((ia, ib), [0, 0.0])
        tally[0] += 1
        tally[1] += score
    keys = list(pairs)
    return _Tally(names=list(index),
                  i=np.array([k[0] for k in keys], dtype=np.int64),
                  j=np.array([k[1] for k in keys], dtype=np.int64),
                  n=np.array([pairs[k][0] for k in keys], dtype=np.float64),
                  s=np.array([pairs[k][1] for k in keys], dtype=np.float64))


def _reach(start: set[int], edges: list[tuple[int, int]]) -> set[int]:
    """Every node reachable from ``start`` along the directed ``edges``."""
    out: dict[int, list[int]] = {}
    for u, v in edges:
        out.setdefault(u, []).append(v)
    seen, todo = set(start), list(start)
    while todo:
        for v in out.get(todo.pop(), ()):
            if v not in seen:
                seen.add(v)
                todo.append(v)
    return seen


def _classify(t: _Tally, n_anchors: int) -> list[str]:
    """Each player's status. ``u -> v`` when ``u`` took a point share from ``v``: then
    ``v`` cannot be rated infinitely above ``u``. A free player reached from an anchor
    cannot go to +inf, one that reaches an anchor cannot go to -inf; both: finite."""
    edges = []
    for i, j, n, s in zip(t.i, t.j, t.n, t.s, strict=True):
        if s > 0:
            edges.append((int(i), int(j)))
        if s < n:
            edges.append((int(j), int(i)))
    anchors = set(range(n_anchors))
    down = _reach(anchors, edges)  # capped above
    up = _reach(anchors, [(v, u) for u, v in edges])  # capped below
    status = []
    for k in range(len(t.names)):
        if k in anchors:
            status.append(ANCHOR)
        elif k in down and k in up:
            status.append(FITTED)
        elif k in up:
            status.append(ABOVE)
        elif k in down:
            status.append(BELOW)
        else:
            status.append(UNRATED)
    return status


# ----------------------------------------------------------------------------- likelihood


def _log_likelihood(x: np.ndarray, t: _Tally) -> float:
    d = x[t.i] - x[t.j]
    # log E = -log(1 + e^-d), log(1 - E) = -log(1 + e^d), stable at any d
    return float(-(t.s * np.logaddexp(0.0, -d) + (t.n - t.s) * np.logaddexp(0.0, d)).sum())


def _gradient_hessian(x: np.ndarray, t: _Tally) -> tuple[np.ndarray, np.ndarray]:
    d = x[t.i] - x[t.j]
    e = 0.5 * (1.0 + np.tanh(0.5 * d))  # the logistic function, no overflow
    g_pair = t.s - t.n * e
    w = t.n * e * (1.0 - e)
    size = len(x)
    g = np.bincount(t.i, g_pair, size) - np.bincount(t.j, g_pair, size)
    h = np.zeros((size, size))
    np.add.at(h, (t.i, t.i), -w)
    np.add.at(h, (t.j, t.j), -w)
    np.add.at(h, (t.i, t.j), w)
    np.add.at(h, (t.j, t.i), w)
    return g, h


def _maximize(x: np.ndarray, free: np.ndarray, t: _Tally, lo: float, hi: float) -> np.ndarray:
    """``x`` with its ``free`` entries moved to the maximum of the log-likelihood in
    ``[lo, hi]`` (projected Newton: players at a bound that the gradient pushes out of
    the box stay there). The log-likelihood is concave, so this is the maximum."""
    x = x.copy()
    if free.size == 0:
        return x
    f = _log_likelihood(x, t)
    for _ in range(500):
        g, h = _gradient_hessian(x, t)
        gf, xf = g[free], x[free]
        held = ((xf <= lo) & (gf < 0)) | ((xf >= hi) & (gf > 0))
        move = free[~held]
        if move.size == 0 or np.abs(g[move]).max() < 1e-10:
            break
        # a tiny ridge: a player far from everyone it met has a near-zero curvature
        a = -h[np.ix_(move, move)] + 1e-9 * np.eye(move.size)
        step = np.linalg.solve(a, g[move])
        step = np.clip(step, -5.0, 5.0)  # at most ~870 Elo an iteration
        for _ in range(60):
            trial = x.copy()
            trial[move] = np.clip(x[move] + step, lo, hi)
            f_trial = _log_likelihood(trial, t)
            if f_trial >= f - 1e-12:
                break
            step *= 0.5
        else:
            break
        moved = np.abs(trial - x).max()
        x, f = trial, f_trial
        if moved < 1e-9:
            break
    return x


# ----------------------------------------------------------------------------- the fit


def fit_ratings(games: Iterable[Game], anchors: Mapping[str, float]) -> Fit:
    """Every player's rating and 95% interval, fitted jointly (see the module doc).

    ``games``: ``(a, b, a's score)`` triples in any order and with any number of
    players; ``anchors``: players whose rating is known (at least one is needed for a
    free player to be rated). Raises ``ValueError`` quoting a bad game or anchor.
    """
    for name, elo in anchors.items():
        if not isinstance(elo, int | float) or not math.isfinite(elo):
            raise ValueError(f"anchor {name!r}: a rating is a finite number, got {elo!r}")
    t = _tally(games, anchors)
    n_anchors, size = len(anchors), len(t.names)
    status = _classify(t, n_anchors)
    played = np.bincount(t.i, t.n, size) + np.bincount(t.j, t.n, size)
    points = np.bincount(t.i, t.s, size) + np.bincount(t.j, t.n - t.s, size)

    # unrated players and their games drop out (they cannot move anyone's estimate)
    keep = np.array([s != UNRATED for s in status])
    pair_kept = keep[t.i] & keep[t.j]
    tk = _Tally(t.names, t.i[pair_kept], t.j[pair_kept], t.n[pair_kept], t.s[pair_kept])

    anchor_x = np.array([float(anchors[name]) / SCALE for name in list(anchors)])
    centre = float(anchor_x.mean()) if n_anchors else 0.0
    lo = (float(anchor_x.min()) if n_anchors else 0.0) - _BOX / SCALE
    hi = (float(anchor_x.max()) if n_anchors else 0.0) + _BOX / SCALE
    x0 = np.full(size, centre)
    x0[:n_anchors] = anchor_x
    for k, s in enumerate(status):  # start the unbounded ones near where they end
        if s == ABOVE:
            x0[k] = hi - 1.0
        elif s == BELOW:
            x0[k] = lo + 1.0
    free = np.array([k for k, s in enumerate(status) if s in (FITTED, ABOVE, BELOW)],
                    dtype=np.int64)
    x_hat = _maximize(x0, free, tk, lo, hi)
    l_max = _log_likelihood(x_hat, tk)

    ratings = {}
    for k, name in enumerate(t.names):
        s, g, p = status[k], int(played[k]), float(points[k])
        if s == ANCHOR:
            r = float(anchors[name])
            ratings[name] = Rating(name, s, r, r, r, g, p)
            continue
        if s == UNRATED:
            ratings[name] = Rating(name, s, math.nan, -math.inf, math.inf, g, p)
            continue
        others = free[free != k]

        def deviance(r: float, k: int = k, others: np.ndarray = others) -> float:
            x = x_hat.copy()
            x[k] = r / SCALE
            return 2.0 * (l_max - _log_likelihood(_maximize(x, others, tk, lo, hi), tk))

        if s == FITTED:
            est = float(x_hat[k]) * SCALE
            low = _crossing(deviance, est, -1.0, CHI2_95, lo * SCALE + _BOX - _SEARCH)
            high = _crossing(deviance, est, +1.0, CHI2_95, hi * SCALE - _BOX + _SEARCH)
            ratings[name] = Rating(name, s, est + 0.0, low, high, g, p)
        elif s == ABOVE:
            # search down from where the likelihood is at its supremum
            top = hi * SCALE - _BOX + _SEARCH
            low = _crossing(deviance, top, -1.0, ONE_SIDED_95, lo * SCALE + _BOX - _SEARCH)
            ratings[name] = Rating(name, s, math.inf, low, math.inf, g, p)
        else:
            bottom = lo * SCALE + _BOX - _SEARCH
            high = _crossing(deviance, bottom, +1.0, ONE_SIDED_95, hi * SCALE - _BOX + _SEARCH)
            ratings[name] = Rating(name, s, -math.inf, -math.inf, high, g, p)
    return Fit(ratings=ratings, log_likelihood=l_max)


def _crossing(deviance, start: float, direction: float, level: float, limit: float) -> float:
    """Where ``deviance`` (non-decreasing away from ``start``) reaches ``level``, going
    from ``start`` in ``direction``; +-inf if it stays below it up to ``limit``."""
    inner, step = start, 25.0
    while True:
        outer = start + direction * step
        if direction * (outer - limit) >= 0:
            outer = limit
        if deviance(outer) >= level:
            break
        if outer == limit:
            return direction * math.inf
        inner, step = outer, step * 2.0
    for _ in range(60):  # bisection to 0.01 Elo
        if abs(outer - inner) < 0.01:
            break
        mid = 0.5 * (inner + outer)
        if deviance(mid) >= level:
            outer = mid
        else:
            inner = mid
    return 0.5 * (inner + outer)
