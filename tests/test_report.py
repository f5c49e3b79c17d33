"""Match summaries and the evaluation report at extreme scores: a one-sided Elo bound
("below X at 95%"), never -inf."""

from __future__ import annotations

import json
import math

import pytest

from train.evaluation.match import GameRecord, Opening, elo_from_score, elo_text, summarize
from train.evaluation.report import format_report, json_safe

OPENING = Opening(eco="C20", name="King's pawn", moves=(), line=2)


def records(wins: int, draws: int, losses: int) -> list[GameRecord]:
    """Games with A as White and these results."""
    results = ["1-0"] * wins + ["1/2-1/2"] * draws + ["0-1"] * losses
    return [GameRecord(round=i + 1, opening=OPENING, a_is_white=True, white="A", black="B",
                       moves=[], result=r, termination="checkmate")
            for i, r in enumerate(results)]


def report_of(match: dict) -> dict:
    players = {s: {"name": s, "description": "test"} for s in "AB"}
    return {"players": players, "heldout": None,
            "match": {**match, "openings": 1, "book": "book.tsv", "max_plies": 80,
                      "adjudicate": "draw"}}


def test_all_games_lost_is_an_upper_bound():
    s = summarize(records(0, 0, 100))
    assert s["elo"] == -math.inf and s["elo_95"] == [-math.inf, -math.inf]
    bound = s["elo_bound"]
    # exact: losing all 100 games has a 5% chance at this expected score
    assert bound["side"] == "below" and (1 - bound["score"]) ** 100 == pytest.approx(0.05)
    assert bound["elo"] == pytest.approx(elo_from_score(1 - 0.05 ** 0.01))
    assert elo_text(s) == f"below {bound['elo']:+.0f} at 95%" == "below -607 at 95%"
    text = format_report(report_of(s))
    assert "below -607 at 95%" in text and "inf" not in text
    assert "0/100 = 0.000" in text
    json.dumps(json_safe(report_of(s)), allow_nan=False)  # strict JSON: the bound is there


def test_all_games_won_is_a_lower_bound():
    s = summarize(records(20, 0, 0))
    assert s["elo_bound"]["side"] == "above" and s["elo_bound"]["elo"] > 0
    assert elo_text(s) == f"above {s['elo_bound']['elo']:+.0f} at 95%"
    assert "inf" not in format_report(report_of(s))


def test_a_few_points_keep_their_estimate_and_bound_the_open_end():
    s = summarize(records(0, 1, 99))
    assert s["elo_95"][0] == -math.inf and math.isfinite(s["elo"])
    text = elo_text(s)
    assert text.startswith(f"{s['elo']:+.0f}, below ") and text.endswith(" at 95%")
    # more points, a higher bound; more games, a tighter one
    nothing = summarize(records(0, 0, 100))["elo_bound"]["elo"]
    assert nothing < s["elo_bound"]["elo"]
    assert summarize(records(0, 0, 400))["elo_bound"]["elo"] < nothing


def test_an_ordinary_score_has_a_two_sided_interval():
    s = summarize(records(12, 4, 4))
    assert s["elo_bound"] is None
    lo, hi = s["elo_95"]
    assert elo_text(s) == f"{s['elo']:+.0f} [{lo:+.0f}, {hi:+.0f}]"
    assert elo_text(s) in format_report(report_of(s))


def test_two_games_bound_nothing():
    s = summarize(records(1, 0, 1))
    assert s["elo_95"] == [-math.inf, math.inf] and s["elo_bound"] is None
    assert "too few games" in elo_text(s)
