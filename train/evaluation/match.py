"""Games between two players from book openings, their score, Elo and PGN.

Openings are lines of an opening TSV (columns ``eco``, ``name``, ``pgn``, as in
``dataengine/sample_data/openings_a.tsv``), drawn in a seeded random order; each
line is played twice, once with A as White and once with A as Black, so the two
sides share every opening's advantage. All games run together: each turn, every
game where A is to move goes to A in one call (one network batch), then those
where B is to move go to B.

A game ends by python-chess's rules, ``board.outcome(claim_draw=True)``
(checkmate, stalemate, insufficient material, a claimable threefold repetition
or 50-move rule), or at ``max_plies`` plies from the initial position, book
moves included. A game stopped at the cap is adjudicated (PGN ``Termination``
"adjudication"): a draw, or with ``adjudicate="material"`` a win for the side
ahead by at least ``MATERIAL_MARGIN`` points of material (P 1, N 3, B 3, R 5, Q 9),
else a draw.

Elo: with ``n`` games, score ``s = (W + D/2) / n`` from A's view, the per-game
scores (1, 1/2, 0) have the trinomial variance
``var = (W (1 - s)^2 + D (1/2 - s)^2 + L s^2) / n``; the 95% interval of the
score is ``s +- 1.96 sqrt(var / n)`` (normal approximation), clipped to [0, 1],
and both ends go through ``Elo(s) = -400 log10(1 / s - 1)``. A score of 0 or 1
(or an interval end there) is an unbounded Elo: -inf / +inf. Where an end of the
interval is unbounded the summary gives a one-sided bound instead (``elo_bound``):
the Elo is *below* ``Elo(u)`` at 95%, ``u`` the score's one-sided 95% upper bound.
At 0 points in ``n`` games (where the interval above is [0, 0]) that is the exact
``u = 1 - 0.05^(1/n)``: were A's expected score any higher, it would lose every
game with a chance under 5%. With a few points it is the Wilson bound (z = 1.645),
whose binomial variance is no smaller than the trinomial one. At the other end
the Elo is *above* ``Elo(l)``, the same way. :func:`elo_text` writes
"+191 [+50, +400]", or "below -607 at 95%" for 100 games lost.
"""

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass
from pathlib import Path

import chess
import chess.pgn

from dataengine.progress import progress as progress_bar
from train.evaluation.players import EvalError, Player, material_balance

__all__ = [
    "MATERIAL_MARGIN",
    "GameBoard",
    "GameRecord",
    "Opening",
    "elo_from_score",
    "elo_text",
    "play_match",
    "read_openings",
    "schedule",
    "summarize",
    "write_pgn",
]

#: material adjudication at the ply cap: this lead (in pawns) wins, less is a draw
MATERIAL_MARGIN = 3
Z95 = 1.959963984540054
Z95_ONE_SIDED = 1.6448536269514722


@dataclass(frozen=True)
class Opening:
    eco: str
    name: str
    moves: tuple[chess.Move, ...]
    line: int
    """Line number in the TSV (the header is line 1)."""


@dataclass
class GameRecord:
    round: int
    opening: Opening
    a_is_white: bool
    white: str
    black: str
    moves: list[chess.Move]
    result: str
    """PGN result: 1-0, 0-1 or 1/2-1/2."""
    termination: str
    """python-chess's termination (checkmate, stalemate, ...) or adjudication."""
    note: str = ""

    @property
    def score_a(self) -> float:
        return _score_a(self.result, self.a_is_white)


def _score_a(result: str, a_is_white: bool) -> float:
    white = {"1-0": 1.0, "0-1": 0.0, "1/2-1/2": 0.5}[result]
    return white if a_is_white else 1.0 - white


def read_openings(path: str | Path) -> list[Opening]:
    """Every line of an opening TSV whose movetext plays legally from the start position."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise EvalError(f"cannot read the opening book {str(path)!r}: {e.strerror or e}") from None
    rows = csv.DictReader(io.StringIO(text), delimiter="\t")
    if rows.fieldnames is None or "pgn" not in rows.fieldnames:
        raise EvalError(f"opening book {str(path)!r} needs a header with a `pgn` column "
                        f"(found {rows.fieldnames})")
    openings = []
    for lineno, row in enumerate(rows, start=2):
        game = chess.pgn.read_game(io.StringIO(row.get("pgn") or ""))
        if game is None or game.errors:
            continue
        moves = tuple(game.mainline_moves())
        if moves:
            openings.append(Opening(row.get("eco") or "", row.get("name") or "", moves, lineno))
    if not openings:
        raise EvalError(f"opening book {str(path)!r} has no playable line")
    return openings


def schedule(openings: list[Opening], games: int, seed: int) -> list[tuple[Opening, bool]]:
    """``games`` (opening, A is White) pairs: openings in a seeded order, each twice
    with colours swapped (cycling through the book if it is short)."""
    order = list(openings)
    random.Random(seed).shuffle(order)
    return [(order[(i // 2) % len(order)], i % 2 == 0) for i in range(games)]


def _position_key(board: chess.Board) -> tuple:
    # coarser than python-chess's repetition key (no en-passant square): it may count
    # two positions as one, never one as two, so `may_claim_draw` never misses a claim
    return (board.pawns, board.knights, board.bishops, board.rooks, board.queens,
            board.kings, board.occupied_co[chess.WHITE], board.turn, board.castling_rights)


class GameBoard:
    """A board that knows cheaply when a draw claim is possible at all.

    ``board.outcome(claim_draw=True)`` tries every legal move for a threefold
    repetition (~2 ms a call); a claim needs some position to have occurred twice
    since the last capture or pawn move (or the 50-move clock at 99+), which
    counting positions tells for free. :meth:`outcome` equals python-chess's.
    """

    def __init__(self, board: chess.Board | None = None) -> None:
        self.board = board or chess.Board()
        self.counts = {_position_key(self.board): 1}
        self.repeated = False

    def push(self, move: chess.Move) -> None:
        if self.board.is_zeroing(move):  # no earlier position can occur again
            self.counts.clear()
            self.repeated = False
        self.board.push(move)
        key = _position_key(self.board)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.repeated = self.repeated or self.counts[key] >= 2

    def outcome(self) -> chess.Outcome | None:
        """``board.outcome(claim_draw=True)``."""
        may_claim = self.repeated or self.board.halfmove_clock >= 99
        return self.board.outcome(claim_draw=may_claim)


class _Game:
    def __init__(self, round_: int, opening: Opening, a_is_white: bool) -> None:
        self.round, self.opening, self.a_is_white = round_, opening, a_is_white
        self.game_board = GameBoard()
        self.board = self.game_board.board
        for move in opening.moves:
            self.game_board.push(move)
        self.result: str | None = None
        self.termination = self.note = ""

    def a_to_move(self) -> bool:
        return self.board.turn == (chess.WHITE if self.a_is_white else chess.BLACK)

    def check_end(self, max_plies: int, adjudicate: str) -> None:
        outcome = self.game_board.outcome()
        if outcome is not None:
            self.result, self.termination = outcome.result(), outcome.termination.name.lower()
        elif self.board.ply() >= max_plies:
            self.result, self.termination = "1/2-1/2", "adjudication"
            self.note = f"ply cap {max_plies}: adjudicated a draw"
            if adjudicate == "material":
                lead = material_balance(self.board, chess.WHITE)
                if abs(lead) >= MATERIAL_MARGIN:
                    self.result = "1-0" if lead > 0 else "0-1"
                self.note = (f"ply cap {max_plies}: adjudicated on material "
                             f"(White {lead:+d}, margin {MATERIAL_MARGIN})")


def play_match(a: Player, b: Player, pairings: list[tuple[Opening, bool]], *,
               max_plies: int = 200, adjudicate: str = "draw",
               progress: bool = False) -> list[GameRecord]:
    """Play every (opening, A is White) game to its end; records in schedule order."""
    if adjudicate not in ("draw", "material"):
        raise ValueError(f"adjudicate must be 'draw' or 'material', got {adjudicate!r}")
    games = [_Game(i + 1, opening, a_white) for i, (opening, a_white) in enumerate(pairings)]
    for g in games:
        g.check_end(max_plies, adjudicate)
    active = [g for g in games if g.result is None]
    score = {"W": 0, "D": 0, "L": 0}
    bar = progress_bar(total=len(games), initial=len(games) - len(active), desc="match", unit="game",
               disable=not progress, dynamic_ncols=True, leave=False)
    while active:
        for player, is_a in ((a, True), (b, False)):
            todo = [g for g in active if g.a_to_move() == is_a]
            if not todo:
                continue
            moves = player.choose([g.board for g in todo])
            for g, move in zip(todo, moves, strict=True):
                if not g.board.is_legal(move):
                    raise EvalError(f"{player.name} chose the illegal move {move.uci()!r} "
                                    f"in {g.board.fen()!r}")
                g.game_board.push(move)
                g.check_end(max_plies, adjudicate)
                if g.result is not None:
                    s = _score_a(g.result, g.a_is_white)
                    score["W" if s == 1 else "L" if s == 0 else "D"] += 1
                    bar.update(1)
                    bar.set_postfix(A=f"+{score['W']}={score['D']}-{score['L']}")
            active = [g for g in active if g.result is None]
    bar.close()
    return [GameRecord(
        round=g.round, opening=g.opening, a_is_white=g.a_is_white,
        white=a.name if g.a_is_white else b.name, black=b.name if g.a_is_white else a.name,
        moves=list(g.board.move_stack), result=g.result or "*", termination=g.termination,
        note=g.note) for g in games]


def elo_from_score(score: float) -> float:
    """``-400 log10(1/s - 1)``; +-inf at a score of 1 or 0.

    >>> round(elo_from_score(0.75), 1), elo_from_score(0.5), elo_from_score(1.0)
    (190.8, 0.0, inf)
    """
    if score <= 0.0:
        return -math.inf
    if score >= 1.0:
        return math.inf
    return -400.0 * math.log10(1.0 / score - 1.0) + 0.0  # + 0.0: no "-0" at a score of 1/2


def wilson_bound(score: float, n: int, upper: bool, z: float = Z95_ONE_SIDED) -> float:
    """The Wilson score bound of a proportion ``score`` seen in ``n`` trials (upper or
    lower): finite and inside (0, 1) even at a score of 0 or 1.

    >>> round(wilson_bound(0.0, 100, upper=True), 4), round(wilson_bound(1.0, 100, False), 4)
    (0.0263, 0.9737)
    """
    centre = score + z * z / (2 * n)
    half = z * math.sqrt(score * (1 - score) / n + z * z / (4 * n * n))
    return (centre + half if upper else centre - half) / (1 + z * z / n)


def elo_bound(score: float, score_95: tuple[float, float], n: int) -> dict | None:
    """``{"side": "below" | "above", "elo", "score"}`` where the score's 95% interval
    reaches 0 or 1 (its Elo is unbounded there), else None (module doc)."""
    lo, hi = score_95
    if lo <= 0.0 < 1.0 <= hi or n == 0:
        return None  # unbounded both ways: too few games for any bound
    exact = 0.05 ** (1 / n)  # a chance of 5% to score nothing (everything) in n games
    if lo <= 0.0:
        bound = 1 - exact if score <= 0.0 else wilson_bound(score, n, upper=True)
        return {"side": "below", "elo": elo_from_score(bound), "score": bound}
    if hi >= 1.0:
        bound = exact if score >= 1.0 else wilson_bound(score, n, upper=False)
        return {"side": "above", "elo": elo_from_score(bound), "score": bound}
    return None


def elo_text(summary: dict) -> str:
    """A match summary's Elo for people: "+191 [+50, +400]" (the 95% interval), or at an
    extreme score "below -607 at 95%" / "above +607 at 95%" (:func:`elo_bound`) instead
    of an infinite end."""
    elo, (lo, hi), bound = summary["elo"], summary["elo_95"], summary.get("elo_bound")

    def fmt(x: float) -> str:
        return f"{x:+.0f}" if math.isfinite(x) else ("+inf" if x > 0 else "-inf")

    if bound:
        point = f"{fmt(elo)}, " if math.isfinite(elo) else ""
        return f"{point}{bound['side']} {fmt(bound['elo'])} at 95%"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{fmt(elo)} (any Elo is in its 95% interval: too few games)"
    return f"{fmt(elo)} [{fmt(lo)}, {fmt(hi)}]"


def summarize(records: list[GameRecord]) -> dict:
    """W/D/L from A's view, score, Elo and its 95% interval (see the module doc)."""
    n = len(records)
    wins = sum(r.score_a == 1.0 for r in records)
    losses = sum(r.score_a == 0.0 for r in records)
    draws = n - wins - losses
    if n == 0:
        return {"games": 0}
    s = (wins + 0.5 * draws) / n
    var = (wins * (1 - s) ** 2 + draws * (0.5 - s) ** 2 + losses * s ** 2) / n
    half = Z95 * math.sqrt(var / n)
    lo, hi = max(0.0, s - half), min(1.0, s + half)
    terminations: dict[str, int] = {}
    for r in records:
        terminations[r.termination] = terminations.get(r.termination, 0) + 1
    return {
        "games": n, "wins": wins, "draws": draws, "losses": losses,
        "points": wins + 0.5 * draws, "score": s,
        "score_95": [lo, hi],
        "elo": elo_from_score(s), "elo_95": [elo_from_score(lo), elo_from_score(hi)],
        "elo_bound": elo_bound(s, (lo, hi), n),
        "mean_plies": sum(len(r.moves) for r in records) / n,
        "terminations": dict(sorted(terminations.items())),
    }


def to_pgn(record: GameRecord, event: str = "enhanced_eval") -> chess.pgn.Game:
    game = chess.pgn.Game()
    game.headers["Event"] = event
    game.headers["Site"] = "?"
    game.headers["Date"] = "????.??.??"
    game.headers["Round"] = str(record.round)
    game.headers["White"] = record.white
    game.headers["Black"] = record.black
    game.headers["Result"] = record.result
    game.headers["ECO"] = record.opening.eco or "?"
    game.headers["Opening"] = record.opening.name or "?"
    game.headers["PlyCount"] = str(len(record.moves))
    game.headers["Termination"] = "adjudication" if record.termination == "adjudication" \
        else "normal"
    node = game.add_line(record.moves)
    node.comment = record.note or record.termination
    return game


def write_pgn(records: list[GameRecord], path: str | Path, event: str = "enhanced_eval") -> None:
    """All games, in round order, as one PGN file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            print(to_pgn(record, event), file=f, end="\n\n")
