"""The puzzle benchmark (train.puzzles): the scoring rule on hand-made puzzles, reading
(skips, header errors, compressed files, samples), the intervals and bands, the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import chess
import pytest
import zstandard

from train import puzzles
from train.puzzles import Puzzle, Tally, rating_band, read_puzzles, score, wilson

HEADER = ("PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,"
          "OpeningTags")

#: Mate in two: 1. Rf8+ Rg8 2. Rxg8#; 2. Qxg8#, Qc3# and Qb2# mate too.
MATE_IN_TWO = Puzzle.from_uci("7k/p6p/6rB/8/8/1Q6/8/5R1K b - - 0 1", "a7a6 f1f8 g6g8 f8g8",
                              rating=1300, themes="mate mateIn2 short", puzzle_id="m2")
#: c8=Q# (c8=R# mates too; c8=N and c8=B do not).
PROMOTION = Puzzle.from_uci("k7/2P5/1K6/8/8/8/8/7r b - - 0 1", "h1h2 c7c8q",
                            rating=900, themes="mate mateIn1 promotion", puzzle_id="pr")
#: d8=N+ forks the king and the queen, then Nxf7: only the knight wins.
UNDERPROMOTION = Puzzle.from_uci("8/1k1P4/8/8/8/5q2/8/K7 b - - 0 1", "f3f7 d7d8n b7c7 d8f7",
                                 rating=1700, themes="underPromotion fork", puzzle_id="up")


def scripted(*ucis_per_round: str):
    """A solver that plays the given UCI moves, round by round (one per board)."""
    rounds = iter(ucis_per_round)

    def choose(boards: list[chess.Board]) -> list[chess.Move]:
        ucis = next(rounds).split()
        assert len(ucis) == len(boards)
        return [chess.Move.from_uci(u) for u in ucis]

    return choose


def oracle(puzzle_list: list[Puzzle]):
    """A solver that plays each puzzle's solution (it finds the puzzle by its board)."""
    by_board = {}
    for p in puzzle_list:
        board = p.board()
        for i, move in enumerate(p.moves[1:]):
            if i % 2 == 0:
                by_board[board.fen()] = move
            board.push(move)
    return lambda boards: [by_board[b.fen()] for b in boards]


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def row(pid: str, fen: str, moves: str, rating: int | str = 1500, themes: str = "short") -> str:
    return f"{pid},{fen},{moves},{rating},75,90,100,{themes},https://lichess.org/x,"


# ----------------------------------------------------------------------------- scoring


def test_the_solution_solves_and_the_first_move_is_counted():
    out = score([MATE_IN_TWO], scripted("f1f8", "f8g8"))[0]
    assert out.first and out.solved and not out.illegal
    assert [m.uci() for m in out.played] == ["f1f8", "f8g8"]


@pytest.mark.parametrize("mate", ["b3g8", "b3c3", "b3b2"])
def test_another_mating_move_is_accepted_at_the_last_move(mate):
    out = score([MATE_IN_TWO], scripted("f1f8", mate))[0]
    assert out.first and out.solved


def test_first_move_right_second_wrong():
    out = score([MATE_IN_TWO], scripted("f1f8", "b3b8"))[0]  # Qb8: no mate
    assert out.first and not out.solved
    assert [m.uci() for m in out.played] == ["f1f8", "b3b8"]


def test_first_move_wrong_ends_the_puzzle():
    out = score([MATE_IN_TWO], scripted("b3g8"))[0]  # Qxg8+?? Rxg8: a check, not a mate
    assert not out.first and not out.solved and len(out.played) == 1


def test_a_mate_ends_the_puzzle_early():
    # the solution underpromotes and goes on; c8=Q mates at once, which solves it
    line = Puzzle.from_uci("k7/2P5/1K6/8/8/8/8/7r b - - 0 1", "h1h2 c7c8n h2h1 b6a6")
    out = score([line], scripted("c7c8q"))[0]
    assert out.first and out.solved and len(out.played) == 1


@pytest.mark.parametrize("uci, solved", [("c7c8q", True), ("c7c8r", True),
                                         ("c7c8n", False), ("c7c8b", False)])
def test_promotion_piece_must_match_unless_it_mates(uci, solved):
    out = score([PROMOTION], scripted(uci))[0]
    assert out.first == solved and out.solved == solved


def test_a_promotion_without_its_piece_is_illegal_and_wrong():
    out = score([PROMOTION], scripted("c7c8"))[0]
    assert out.illegal and not out.first and not out.solved


@pytest.mark.parametrize("first, second, expected", [
    ("d7d8n", "d8f7", (True, True)),
    ("d7d8q", None, (False, False)),   # a queen is no fork: wrong
    ("d7d8n", "d8e6", (True, False)),
])
def test_underpromotion(first, second, expected):
    rounds = [first] + ([second] if second else [])
    out = score([UNDERPROMOTION], scripted(*rounds))[0]
    assert (out.first, out.solved) == expected


def test_puzzles_advance_together_one_call_per_round():
    sizes = []
    solve = oracle([MATE_IN_TWO, PROMOTION, UNDERPROMOTION])

    def counting(boards):
        sizes.append(len(boards))
        return solve(boards)

    outs = score([MATE_IN_TWO, PROMOTION, UNDERPROMOTION], counting)
    assert all(o.solved for o in outs)
    assert sizes == [3, 2]  # the one-move puzzle is done after the first round


def test_the_solver_sees_the_history():
    seen = []

    def choose(boards):
        seen.extend(b.move_stack[:] for b in boards)
        return oracle([UNDERPROMOTION])(boards)

    score([UNDERPROMOTION], choose)
    assert [[m.uci() for m in s] for s in seen] == [["f3f7"], ["f3f7", "d7d8n", "b7c7"]]


def test_an_oracle_solves_every_held_out_puzzle():
    ps = list(read_puzzles(puzzles.DEFAULT_PUZZLES, limit=200))
    outs = score(ps, oracle(ps))
    assert len(outs) == 200 and all(o.first and o.solved for o in outs)


# ----------------------------------------------------------------------------- reading


def test_malformed_rows_are_skipped_and_counted(tmp_path):
    fen = "k7/2P5/1K6/8/8/8/8/7r b - - 0 1"
    path = write_csv(tmp_path / "p.csv", [
        row("ok1", fen, "h1h2 c7c8q"),
        row("setup", fen, "h1a8 c7c8q"),           # the setup move is illegal
        row("solver", fen, "h1h2 c7z9"),           # not UCI
        row("later", fen, "h1h2 b6a6 a8b8 a6b6"),  # Kb8 is illegal (the c7 pawn)
        row("fen", "not a fen", "h1h2 c7c8q"),
        row("rating", fen, "h1h2 c7c8q", rating="high"),
        row("short", fen, "h1h2"),
        "cols,too,few",
        row("ok2", fen, "h1h2 c7c8q"),
    ])
    skipped, examples = Counter(), []
    ids = [p.puzzle_id for p in read_puzzles(path, skipped=skipped, examples=examples)]
    assert "ok1" in ids and "ok2" in ids
    assert skipped["illegal_move"] == 2 and skipped["bad_move"] == 1
    assert skipped["bad_fen"] == 1 and skipped["bad_rating"] == 1
    assert skipped["no_moves"] == 1 and skipped["bad_columns"] == 1
    assert "setup move 'h1a8' is illegal" in examples[0].detail
    assert len(ids) + sum(skipped.values()) == 9


def test_a_puzzle_whose_setup_move_is_illegal_is_skipped(tmp_path):
    path = write_csv(tmp_path / "p.csv", [row("a", "k7/2P5/1K6/8/8/8/8/7r b - - 0 1",
                                              "c7c8q h1h2")])  # White's move with Black to move
    skipped = Counter()
    assert list(read_puzzles(path, skipped=skipped)) == []
    assert skipped == Counter(illegal_move=1)


def test_a_file_without_the_columns_names_them(tmp_path):
    path = write_csv(tmp_path / "p.csv", ["1,2,3"], header="Id,Position,Line")
    with pytest.raises(puzzles.PuzzleFileError) as e:
        read_puzzles(path)
    text = str(e.value)
    assert str(path) in text and "PuzzleId" in text and "columns found: Id, Position, Line" in text


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(puzzles.PuzzleFileError, match="not found"):
        read_puzzles(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(puzzles.PuzzleFileError, match="empty"):
        read_puzzles(tmp_path / "empty.csv")


def test_zst_file_is_streamed_like_the_plain_one(tmp_path):
    plain = puzzles.DEFAULT_PUZZLES
    packed = tmp_path / "p.csv.zst"
    packed.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    a = list(read_puzzles(plain, limit=50))
    b = list(read_puzzles(packed, limit=50))
    assert [(p.puzzle_id, p.moves) for p in a] == [(p.puzzle_id, p.moves) for p in b]


def test_reading_is_lazy(tmp_path):
    # a limit stops reading: rows after it are never parsed (a bad one is not counted)
    rows = [row(f"p{i}", "k7/2P5/1K6/8/8/8/8/7r b - - 0 1", "h1h2 c7c8q") for i in range(5)]
    path = write_csv(tmp_path / "p.csv", rows + [row("bad", "x", "h1h2 c7c8q")])
    skipped = Counter()
    assert len(list(read_puzzles(path, limit=5, skipped=skipped))) == 5
    assert not skipped


def test_sample_is_seeded_uniform_and_in_file_order():
    a = [p.puzzle_id for p in read_puzzles(puzzles.DEFAULT_PUZZLES, sample=100, seed=1)]
    b = [p.puzzle_id for p in read_puzzles(puzzles.DEFAULT_PUZZLES, sample=100, seed=1)]
    c = [p.puzzle_id for p in read_puzzles(puzzles.DEFAULT_PUZZLES, sample=100, seed=2)]
    everything = [p.puzzle_id for p in read_puzzles(puzzles.DEFAULT_PUZZLES)]
    assert a == b != c and len(set(a)) == 100
    assert a == [x for x in everything if x in set(a)]
    assert a != everything[:100]


# ----------------------------------------------------------------------------- figures


def test_wilson_interval_on_known_values():
    # Wilson (1927) / Newcombe (1998): 8 of 10 -> [0.490, 0.943], 0 of 10 -> [0, 0.278]
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    lo, hi = wilson(500, 1000)
    assert (lo + hi) / 2 == pytest.approx(0.5) and hi - lo == pytest.approx(0.0619, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("rating, band", [(0, "<1000"), (999, "<1000"), (1000, "1000-1499"),
                                          (1499, "1000-1499"), (1500, "1500-1999"),
                                          (2000, "2000-2499"), (2499, "2000-2499"),
                                          (2500, ">=2500"), (3300, ">=2500")])
def test_rating_bands(rating, band):
    assert rating_band(rating) == band


def test_tally_by_band_and_theme():
    tally = Tally()
    ps = [MATE_IN_TWO, PROMOTION, UNDERPROMOTION]
    for p, o in zip(ps, score(ps, scripted("f1f8 c7c8n d7d8n", "f8g8 d8e6")), strict=True):
        tally.add(p, o)
    s = tally.summary()
    assert (s["overall"]["n"], s["overall"]["first"], s["overall"]["line"]) == (3, 2, 1)
    assert s["bands"]["1000-1499"]["line"] == 1 and s["bands"]["<1000"]["first"] == 0
    assert s["bands"]["1500-1999"]["first"] == 1 and s["bands"]["1500-1999"]["line"] == 0
    assert s["themes"]["mate"]["n"] == 2 and s["themes"]["mate"]["line"] == 1
    assert list(s["themes"])[0] == "mate"  # most frequent first
    assert s["overall"]["first_ci95"] == pytest.approx(list(wilson(2, 3)))


# ----------------------------------------------------------------------------- command line


def run_cli(capsys, *args):
    code = puzzles.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_errors_are_one_line(tmp_path, capsys):
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"not read before the puzzles are")
    bad = write_csv(tmp_path / "bad.csv", ["1,2"], header="Foo,Bar")
    none_valid = write_csv(tmp_path / "none.csv",
                           [row("a", "k7/2P5/1K6/8/8/8/8/7r b - - 0 1", "c7c8q h1h2")])
    cases = [([tmp_path / "missing.pt"], "checkpoint not found"),
             ([fake, tmp_path / "missing.csv"], "puzzle file not found"),
             ([fake, bad], "columns found: Foo, Bar"),
             ([fake, none_valid], "no valid puzzle (illegal_move 1)"),
             ([fake, "--limit", "0"], "--limit must be >= 1")]
    for args, message in cases:
        code, out, err = run_cli(capsys, *args)
        assert code == 2 and message in err, (args, err)
        assert err.count("\n") == 1, err


def tiny_checkpoint(path: Path) -> Path:
    """An untrained 1x8 network saved as a trainer checkpoint (enough for the CLI)."""
    import dataclasses

    import torch

    from train import checkpoint as ckpt
    from train.expand import INPUT_FORMAT_VERSION
    from train.model import ChessNet, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(blocks=1, channels=8)
    net = ChessNet(config)
    ckpt.save(path, {"config": {"model": dataclasses.asdict(config), "train": {}},
                     "model": net.state_dict(), "ema_model": net.state_dict(), "step": 0,
                     "input_format_version": INPUT_FORMAT_VERSION})
    return path


def test_cli_on_a_tiny_checkpoint(tmp_path, capsys):
    model = tiny_checkpoint(tmp_path / "tiny.pt")
    report = tmp_path / "report.json"
    code, out, err = run_cli(capsys, model, "--limit", "20", "--sims", "8", "--report", report,
                             "--no-progress")
    assert code == 0, err
    r = json.loads(report.read_text())
    assert r["puzzles"] == 20 and r["selection"] == "the first 20"
    assert list(r["solvers"]) == ["policy", "search 8"]
    assert r["solvers"]["search 8"]["nodes"] == 8
    for s in r["solvers"].values():
        o = s["overall"]
        assert o["n"] == 20 and 0 <= o["line"] <= o["first"] <= 20
        assert o["first_ci95"] == pytest.approx(list(wilson(o["first"], 20)))
        assert sum(b["n"] for b in s["bands"].values()) == 20
        assert s["illegal_moves"] == 0
    for text in ("first move", "full line", "by rating band", "by theme", "search 8", "policy"):
        assert text in out, text
    assert str(report) in out

    code, out, err = run_cli(capsys, model, "--sample", "10", "--seed", "3", "--sims", "0",
                             "--report", report, "--no-progress")
    r = json.loads(report.read_text())
    assert code == 0 and list(r["solvers"]) == ["policy"] and r["puzzles"] == 10
    assert r["selection"] == "a uniform sample of 10, seed 3"


def test_default_file_is_the_held_out_set():
    args = puzzles.parser().parse_args(["x.pt"])
    assert Path(args.puzzles).resolve() == puzzles.DEFAULT_PUZZLES.resolve() or \
        (puzzles.REPO / args.puzzles).resolve() == puzzles.DEFAULT_PUZZLES.resolve()
    assert args.sims == [100]
    assert puzzles.parser().parse_args(["x.pt", "--sims", "0"]).sims == []
    assert puzzles.parser().parse_args(["x.pt", "--sims", "400,100"]).sims == [100, 400]

