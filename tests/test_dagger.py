"""python -m train.dagger: the network's own positions, labelled by a real Stockfish."""

from __future__ import annotations

import chess
import pytest

from dataengine import readers
from dataengine.teacher import find_stockfish
from dataengine.teacher.engine import Analyst
from tests.test_enhanced_eval import model, workdir  # noqa: F401  (the tiny trained model)
from tests.test_selfplay import stockfish_or_skip
from train import dagger
from train.evaluation.match import play_match, read_openings, schedule
from train.evaluation.players import RandomPlayer

BOOK = dagger.DEFAULT_BOOKS[0]
NODES = 64


def test_net_positions_are_side_a_to_move_after_the_book():
    book = read_openings(BOOK)
    records = play_match(RandomPlayer("a", 1), RandomPlayer("b", 2), schedule(book, 4, 3),
                         max_plies=30)
    for record in records:
        positions = dagger.net_positions(record, f"g{record.round}")
        board, expected = chess.Board(), []
        for ply, move in enumerate(record.moves):
            a_to_move = board.turn == (chess.WHITE if record.a_is_white else chess.BLACK)
            if a_to_move and ply >= len(record.opening.moves):
                expected.append(board.fen())
            board.push(move)
        assert [p.fen for p in positions] == expected and expected
        assert {p.game_id for p in positions} == {f"g{record.round}"}
        for p in positions:
            b = chess.Board(p.fen)
            assert (p.epd, p.halfmove, p.fullmove) == (b.epd(), b.halfmove_clock,
                                                        b.fullmove_number)


@pytest.fixture(scope="module")
def run(model, tmp_path_factory):  # noqa: F811
    stockfish_or_skip()
    out = tmp_path_factory.mktemp("dagger") / "d.epd"
    summary = dagger.dagger(str(model), out, games=4, opponents=("random", "material"),
                            openings=[BOOK], nodes=NODES, workers=2, max_plies=40, quiet=True)
    return out, summary


def test_every_line_is_stockfish_best_move_in_a_position_the_net_reached(run):
    out, summary = run
    lines = out.read_text().splitlines()
    ends = [line for line in lines if line.startswith("# dagger ")]
    positions = [line for line in lines if not line.startswith("#")]
    assert len(ends) == summary["games"] == 8
    assert len(positions) == summary["written"] == summary["distinct"] > 0
    assert summary["failed"] == 0 and summary["positions_reached"] >= summary["distinct"]
    keys = [" ".join(line.split()[:4]) for line in positions]
    assert len(set(keys)) == len(keys)  # each position once
    analyst = Analyst(find_stockfish(), NODES, 60.0)
    try:
        for line in positions:
            board = chess.Board(line.split(" bm ")[0])
            ops = board.set_epd(line)
            answer = analyst.analyse(board.fen())  # the same search: 1 thread, ucinewgame
            assert ops["bm"] == [chess.Move.from_uci(answer.move)], line
            assert ops.get("dm", 0) == answer.mate and ops.get("ce", 0) == answer.cp, line
            round_ = int(ops["id"].rsplit(" r", 1)[1])
            net_white = round_ % 2 == 1  # schedule: the network is White in odd rounds
            assert board.turn == net_white, line
    finally:
        analyst.close()


def test_the_file_builds_as_positions_one_unit_per_game(run):
    out, summary = run
    units = list(readers.read_positions(str(out)))
    assert all(isinstance(u, readers.Unit) for u in units)
    assert len(units) == summary["written"]
    assert all(u.has_eval == [True] for u in units)
    games = {u.identity for u in units}
    assert games <= {f"fen:dagger {o} s1 r{r}" for o in ("random", "material")
                     for r in range(1, 5)}
    for results in summary["results"].values():
        assert results["wins"] + results["draws"] + results["losses"] == 4
        assert sum(results["terminations"].values()) == 4


def test_a_bad_output_name_is_one_line_and_writes_nothing(model, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "d.pgn"
    assert dagger.main(["--checkpoint", str(model), "--out", str(out), "--games", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: the output is EPD: name --out *.epd")
    assert not out.exists()
