"""Stockfish self-play against the real binary at a tiny node budget: the PGN parses
with python-chess and with our reader, every engine move has its eval, results match
the final positions, games do not depend on the number of workers, and a rerun
continues the file."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import chess
import chess.engine
import chess.pgn
import pytest

from dataengine import readers, selfplay, teacher
from dataengine.selfplay import SelfPlayConfig, format_eval, load_openings, main
from tests import naive

NODES = 200
CFG = SelfPlayConfig(nodes=NODES, max_plies=160, seed=7)
EVAL_RE = re.compile(r"^\[%eval (#-?[1-9]\d*|-?\d+\.\d\d)\]$")
HEADERS = ["Event", "Site", "Date", "Round", "White", "Black", "Result", "ECO", "Opening"]


def stockfish_or_skip() -> str:
    try:
        return teacher.find_stockfish()
    except teacher.EngineNotFound:
        pytest.skip("Stockfish is not installed (apt-get install stockfish, or make stockfish)")


@pytest.fixture(scope="module")
def four_games(tmp_path_factory) -> Path:
    stockfish_or_skip()
    out = tmp_path_factory.mktemp("selfplay") / "games.pgn"
    summary = selfplay.selfplay(4, out, cfg=CFG, workers=2, quiet=True)
    assert summary["played"] == 4 and summary["already_there"] == 0
    return out


def read_games(path: Path) -> list[chess.pgn.Game]:
    games = []
    with open(path, encoding="utf-8") as f:
        while (game := chess.pgn.read_game(f)) is not None:
            assert not game.errors, game.errors
            games.append(game)
    return games


def test_games_parse_with_evals_and_consistent_results(four_games):
    book = {(o.eco, o.name, o.moves) for o in load_openings([selfplay.DEFAULT_OPENINGS])[0]}
    games = read_games(four_games)
    assert [g.headers["Round"] for g in games] == ["1", "2", "3", "4"]
    units = [u for u in readers.read_pgn(str(four_games))]
    assert all(isinstance(u, readers.Unit) for u in units) and len(units) == 4
    for game, unit in zip(games, units, strict=True):
        assert list(game.headers) == HEADERS
        assert game.headers["White"] == game.headers["Black"] == f"Stockfish nodes={NODES}"
        nodes = list(game.mainline())
        opening = next(i for i, n in enumerate(nodes) if n.comment)  # the first engine move
        line = tuple(n.move.uci() for n in nodes[:opening])
        assert (game.headers["ECO"], game.headers["Opening"], line) in book
        for node in nodes[opening:]:  # every engine move has exactly one eval comment
            assert EVAL_RE.match(node.comment), node.comment
            assert node.eval() is not None
        board = game.end().board()
        outcome = board.outcome(claim_draw=True)
        if outcome is None:
            assert game.headers["Result"] == "*" and board.ply() == CFG.max_plies
        else:
            assert game.headers["Result"] == outcome.result()
        # our reader: one position per board, an eval on each position after an engine move
        assert len(unit) == len(nodes) + 1
        assert unit.has_eval == [False] * (opening + 1) + [True] * (len(nodes) - opening)
        for k, node in enumerate(nodes[opening:], start=opening + 1):
            score = node.eval().white()
            if score.is_mate():
                assert (unit.eval_cp[k], unit.eval_mate[k]) == (0, score.mate())
            else:
                assert (unit.eval_cp[k], unit.eval_mate[k]) == (score.score(), 0)
        assert unit.result == {"1-0": 1, "0-1": -1, "1/2-1/2": 0}.get(game.headers["Result"], 2)


def test_format_matches_the_sample_file(four_games):
    """Exactly python-chess's one-line export, games separated by a blank line."""
    text = four_games.read_text()
    exported = [g.accept(chess.pgn.StringExporter(columns=None)) for g in read_games(four_games)]
    assert text == "".join(e + "\n\n" for e in exported)
    sample = (selfplay.DEFAULT_OPENINGS.parent / "sf_selfplay_200.pgn").read_text()
    games = sample.split("\n\n[Event")[:3]
    for line in (ln for g in games for ln in g.splitlines() if ln.startswith("1.")):
        evals = re.findall(r"\{ ([^}]*) \}", line)
        assert evals and all(EVAL_RE.match(e) for e in evals)  # the sample obeys our regex too


def test_one_worker_plays_the_same_games(four_games, tmp_path):
    out = tmp_path / "one.pgn"
    selfplay.selfplay(2, out, cfg=CFG, workers=1, quiet=True)
    first_two = four_games.read_text().split("\n\n[Event")[:2]
    assert out.read_text() == "\n\n[Event".join(first_two) + "\n\n"


def test_rerun_continues_and_keeps_the_games(four_games, tmp_path):
    out = tmp_path / "games.pgn"
    shutil.copy(four_games, out)
    before = out.read_bytes()
    summary = selfplay.selfplay(6, out, cfg=CFG, workers=2, quiet=True)
    assert (summary["already_there"], summary["played"], summary["games"]) == (4, 2, 6)
    after = out.read_bytes()
    assert after.startswith(before) and len(after) > len(before)
    assert [g.headers["Round"] for g in read_games(out)] == [str(i) for i in range(1, 7)]
    assert selfplay.selfplay(5, out, cfg=CFG, workers=2, quiet=True)["played"] == 0
    assert out.read_bytes() == after


def test_a_cut_off_last_game_is_played_again(four_games, tmp_path):
    out = tmp_path / "games.pgn"
    text = four_games.read_text()
    last = text.rindex("[Event ")
    out.write_text(text[: last + (len(text) - last) // 2])  # killed while writing game 4
    summary = selfplay.selfplay(4, out, cfg=CFG, workers=1, quiet=True)
    assert (summary["already_there"], summary["played"]) == (3, 1)
    assert out.read_text() == text


def test_sigkill_then_rerun_gives_the_same_file(four_games, tmp_path):
    out = tmp_path / "games.pgn"
    cmd = [sys.executable, "-m", "dataengine.selfplay", "--games", "4", "--out", str(out),
           "--nodes", str(NODES), "--max-plies", str(CFG.max_plies), "--seed", str(CFG.seed),
           "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=naive.REPO, start_new_session=True)
    deadline = time.monotonic() + 120
    # killed (with its engine: the whole group) once the first game is in the file
    while not out.exists() or out.read_text().count("[Event ") < 2:
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() != four_games.read_bytes()
    again = subprocess.run(cmd, cwd=naive.REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert out.read_bytes() == four_games.read_bytes()  # as if it had never been killed


def test_max_plies_ends_with_unknown_result(tmp_path):
    stockfish_or_skip()
    out = tmp_path / "short.pgn"
    cfg = SelfPlayConfig(nodes=NODES, max_plies=30, seed=1, multipv_prob=1.0)
    selfplay.selfplay(1, out, cfg=cfg, workers=1, quiet=True)
    (game,) = read_games(out)
    board = game.end().board()
    opening = len(list(game.mainline())) - sum(1 for n in game.mainline() if n.comment)
    if board.outcome(claim_draw=True) is None:
        assert game.headers["Result"] == "*" and board.ply() == max(30, opening)


def test_format_eval():
    pov = chess.engine.PovScore
    assert format_eval(pov(chess.engine.Cp(15), chess.BLACK)) == "[%eval -0.15]"
    assert format_eval(pov(chess.engine.Cp(0), chess.BLACK)) == "[%eval 0.00]"
    assert format_eval(pov(chess.engine.Cp(-1234), chess.WHITE)) == "[%eval -12.34]"
    assert format_eval(pov(chess.engine.Mate(3), chess.WHITE)) == "[%eval #3]"
    assert format_eval(pov(chess.engine.Mate(2), chess.BLACK)) == "[%eval #-2]"


def test_errors_are_clear(tmp_path, capsys):
    assert main(["--games", "1", "--out", str(tmp_path / "g.pgn"), "--engine",
                 str(tmp_path / "stockfish")]) == 2
    assert capsys.readouterr().err.startswith("error: stockfish not found at ")
    other = tmp_path / "other.pgn"
    other.write_text("1. e4 e5 *\n\n")
    assert main(["--games", "1", "--out", str(other), "--engine", stockfish_or_skip()]) == 2
    assert "is not a self-play PGN" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("eco\tname\tpgn\nA00\tnonsense\t1. e5\n")
    assert main(["--games", "1", "--out", str(tmp_path / "g.pgn"), "--openings", str(bad)]) == 2
    assert "no usable opening line" in capsys.readouterr().err


def test_unusable_book_lines_are_named_with_their_line_and_why(tmp_path, monkeypatch):
    book = tmp_path / "book.tsv"
    book.write_text("eco\tname\tpgn\n"
                    "C20\tKing's Pawn\t1. e4 e5\n"
                    "A00\tWalk\t1. e4 e5 2. Ke3\n"
                    "A00\tEmpty\t\n"
                    "A00\tFool's Mate\t1. f3 e5 2. g4 Qh4#\n")
    openings, bad = load_openings([book])
    assert [o.name for o in openings] == ["King's Pawn"]
    assert bad[0].startswith(f"{book}:3: A00 'Walk': illegal san: 'Ke3'")
    assert bad[1:] == [f"{book}:4: A00 'Empty': no moves",
                       f"{book}:5: A00 \"Fool's Mate\": the game is over after the line "
                       "(checkmate)"]
    # the default book's one such line, named relative to the working directory
    monkeypatch.chdir(selfplay.DEFAULT_OPENINGS.parent)
    assert load_openings([selfplay.DEFAULT_OPENINGS])[1] == [
        "openings_a.tsv:9: A00 \"Barnes Opening: Fool's Mate\": the game is over after the "
        "line (checkmate)"]
    # with none usable, the error names the first
    book.write_text("eco\tname\tpgn\nA00\tEmpty\t\n")
    with pytest.raises(selfplay.SelfPlayError, match=f"the first left out: {book}:2: A00 "):
        load_openings([book])


def test_the_summary_is_sentences_and_names_unusable_lines():
    summary = {"games": 12, "played": 10, "already_there": 2, "seconds": 4.0,
               "games_per_s": 2.5, "results": {"*": 1, "0-1": 3, "1-0": 6},
               "openings": 816, "bad_openings": [f"book.tsv:{i}: A00 'x': no moves"
                                                 for i in range(2, 9)]}
    assert selfplay.format_summary(summary, "g.pgn") == "\n".join([
        "g.pgn: 12 games; 10 played now in 4.0 s (2.50 games/s), 2 were there before",
        "results of these: 1-0 6, 0-1 3, * (cut at --max-plies) 1",
        "opening lines: 816 used, 7 left out:",
        *[f"  book.tsv:{i}: A00 'x': no moves" for i in range(2, 7)],
        "  ... and 2 more"])
    done = {**summary, "played": 0, "already_there": 12, "results": {}, "bad_openings": []}
    assert selfplay.format_summary(done, "g.pgn", "start positions") == (
        "g.pgn already holds 12 games: nothing to play (a larger --games plays more)\n"
        "start positions: 816 used")


# ----------------------------------------------------------------------------- conversions

CONV = SelfPlayConfig(nodes=NODES, max_plies=200, seed=3, opponent="random", multipv_prob=0.0)


@pytest.fixture(scope="module")
def conversions(tmp_path_factory) -> Path:
    stockfish_or_skip()
    out = tmp_path_factory.mktemp("conversions") / "conv.epd"
    summary = selfplay.selfplay(6, out, cfg=CONV, workers=2, quiet=True)
    assert (summary["played"], summary["games"]) == (6, 6)
    return out


def split_games(path: Path) -> list[tuple[list[str], str]]:
    """(EPD lines, # round line) of each game."""
    games, lines = [], []
    for line in path.read_text().splitlines():
        if line.startswith("# round "):
            games.append((lines, line))
            lines = []
        else:
            lines.append(line)
    assert lines == [], "lines after the last # round line"
    return games


def test_conversion_games_are_stockfish_positions_read_as_epd(conversions):
    games = split_games(conversions)
    assert [m.split()[2] for _, m in games] == [str(i) for i in range(1, 7)]
    units = list(readers.read_positions(str(conversions)))
    assert all(isinstance(u, readers.Unit) for u in units)
    assert len(units) == sum(len(lines) for lines, _ in games)
    k = 0
    for i, (lines, marker) in enumerate(games):
        white, black = selfplay.conversion_players(i, NODES)
        assert marker.startswith(f"# round {i + 1} {white} vs {black}: ")
        engine_white = white != "random"
        for line in lines:
            unit = units[k]
            k += 1
            assert unit.turn == [engine_white]  # only the engine's positions
            board = chess.Board(line.split(" bm ")[0])
            bm = board.parse_san(line.split(" bm ")[1].split(";")[0])
            assert unit.move == [bm.from_square | bm.to_square << 6 | (bm.promotion or 0) << 12]
            assert unit.has_eval == [True]
            assert unit.identity == f"fen:{white} vs {black} r{i + 1}"  # one split unit a game
        ending, result = marker.rsplit(": ", 1)[1].split()
        board = chess.Board(lines[-1].split(" bm ")[0])
        bm = board.parse_san(lines[-1].split(" bm ")[1].split(";")[0])
        if ending == "checkmate":  # every engine move is written (multipv_prob 0): its last mates
            board.push(bm)
            assert board.is_checkmate() and result == ("1-0" if engine_white else "0-1")
            assert " dm 1;" in lines[-1]


def test_conversions_do_not_depend_on_workers_and_resume(conversions, tmp_path):
    out = tmp_path / "conv.epd"
    selfplay.selfplay(3, out, cfg=CONV, workers=1, quiet=True)
    text = conversions.read_text()
    third = text.index("# round 3 ")
    assert out.read_text() == text[: text.index("\n", third) + 1]
    cut = text.index("# round 5 ")
    out.write_text(text[: cut - 30])  # killed while writing game 5
    summary = selfplay.selfplay(6, out, cfg=CONV, workers=2, quiet=True)
    assert (summary["already_there"], summary["played"]) == (4, 2)
    assert out.read_text() == text


def test_conversion_errors_are_clear(tmp_path, capsys):
    engine = stockfish_or_skip()
    assert main(["--games", "1", "--opponent", "random", "--out", str(tmp_path / "c.pgn"),
                 "--engine", engine]) == 2
    assert "are EPD: name --out *.epd" in capsys.readouterr().err
    other = tmp_path / "other.epd"
    other.write_text("8/8/8/8/8/8/8/K1k5 w - - bm Kb2;\n")
    assert main(["--games", "1", "--opponent", "random", "--out", str(other),
                 "--engine", engine]) == 2
    assert "is not a conversion EPD of this tool" in capsys.readouterr().err
    mine = tmp_path / "mine.epd"
    selfplay.selfplay(1, mine, cfg=CONV, workers=1, quiet=True)
    assert main(["--games", "2", "--opponent", "random", "--out", str(mine), "--nodes", "300",
                 "--engine", engine]) == 2
    assert "continue with the same --nodes" in capsys.readouterr().err


STARTS = [
    "8/8/8/4k3/8/8/Q7/1K6 w - - bm Qa5;",     # queen against a bare king, White to play
    "# a comment line",
    "8/8/8/3k4/8/8/1QQ5/4K3 w - - 0 1",         # two queens, with the counters
    "r6k/8/8/8/8/8/8/6K1 b - -",                # rook against a bare king, Black to play
    "k7/2Q5/1K6/8/8/8/8/8 b - -",               # stalemate already: the game is over
    "6k1/8/8/8/8/8/8/K7 w - -",                 # two bare kings: insufficient material
    "8/8/8/8/8/8/8/8 w - -",                    # no kings: not a legal position
]


def test_conversion_games_from_start_positions(tmp_path, capsys):
    stockfish_or_skip()
    starts = tmp_path / "starts.epd"
    starts.write_text("\n".join(STARTS) + "\n")
    book, bad = selfplay.load_starts([starts])
    usable = [" ".join(STARTS[i].split()[:4]) for i in (0, 2, 3)]
    assert [b.board().epd() for b in book] == usable
    assert bad[:2] == [f"{starts}:5: the game is already over (stalemate)",
                       f"{starts}:6: the game is already over (insufficient material)"]
    assert bad[2].startswith(f"{starts}:7: not a legal position (no white king, no black king")
    out = tmp_path / "from_starts.epd"
    summary = selfplay.selfplay(4, out, cfg=CONV, workers=2, quiet=True, starts=[starts])
    assert (summary["played"], summary["openings"], summary["bad_openings"]) == (4, 3, bad)
    games = split_games(out)
    assert len(games) == 4
    for i, (lines, marker) in enumerate(games):
        start = chess.Board(usable[i % 3] + " 0 1")  # position i modulo their number
        engine_white = start.turn == chess.WHITE  # the engine is the side to move
        white, black = selfplay.conversion_players(i, NODES, book)
        assert (white != "random") == engine_white
        assert marker.startswith(f"# round {i + 1} {white} vs {black}: ")
        assert lines[0].split()[:4] == usable[i % 3].split()  # the first position is the start
        for line in lines:
            assert chess.Board(line.split(" bm ")[0]).turn == engine_white
    # the same games with one worker, and a rerun continues from the start positions
    one = tmp_path / "one.epd"
    selfplay.selfplay(2, one, cfg=CONV, workers=1, quiet=True, starts=[starts])
    again = selfplay.selfplay(4, one, cfg=CONV, workers=1, quiet=True, starts=[starts])
    assert again["already_there"] == 2 and one.read_text() == out.read_text()
    # starts are for conversion games only, and replace the book
    with pytest.raises(selfplay.SelfPlayError, match="--starts"):
        selfplay.selfplay(1, tmp_path / "x.pgn", cfg=CFG, quiet=True, starts=[starts])
    with pytest.raises(selfplay.SelfPlayError, match="--starts"):
        selfplay.selfplay(1, out, cfg=CONV, quiet=True, starts=[starts],
                          openings=[selfplay.DEFAULT_OPENINGS])
    empty = tmp_path / "empty.epd"
    empty.write_text("# nothing\n")
    assert main(["--games", "1", "--opponent", "random", "--out", str(out),
                 "--starts", str(empty)]) == 2
    assert "no usable start position" in capsys.readouterr().err
