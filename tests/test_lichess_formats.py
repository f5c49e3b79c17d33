"""The Lichess databases built into shards with the real build: the evaluation database
(``lichess_db_eval.jsonl.zst``), a month of rated games with the PGN filters
(``lichess_db_standard_rated_YYYY-MM.pgn.zst``), the puzzle database with its current
header (``lichess_db_puzzle.csv.zst``), and ``--limit`` on compressed inputs."""

from __future__ import annotations

import json
from pathlib import Path

import chess
import numpy as np
import pytest
import yaml
import zstandard

from dataengine import policy, readers, schema
from dataengine.build import build, main
from dataengine.config import BuildConfig, ConfigError, PgnFilters, load_build_config
from dataengine.readers.pgn import read_pgn
from tests import naive
from tests.test_build import read_split

# every record in input order in train: no validation split, no repeat cap
ALL = dict(max_repeats=1 << 30, val_fraction=0.0, val_min_positions=0)

START = "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq -"
# after 1. f3 e5 2. g4: Black mates in one (Qh4#); -1 is White's view
FOOL = "rnbqkbnr/pppp1ppp/8/4p3/6P1/5P2/PPPPP2P/RNBQKBNR b KQkq -"
CASTLE = "r3k2r/pppq1ppp/2n2n2/3pp3/3PP3/2N2N2/PPPQ1PPP/R3K2R w KQkq -"


def zst(path: Path, data: bytes) -> Path:
    path.write_bytes(zstandard.ZstdCompressor().compress(data))
    return path


def jsonl(*objects) -> bytes:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objects).encode()


EVAL_LINES = [
    # the deepest analysis wins; of the two at depth 36 the first listed; its first pv
    {"fen": START, "evals": [
        {"pvs": [{"cp": 18, "line": "d2d4 d7d5"}], "knodes": 1000, "depth": 20},
        {"pvs": [{"cp": 31, "line": "e2e4 e7e5 g1f3"}, {"cp": 20, "line": "d2d4"}],
         "knodes": 206765, "depth": 36},
        {"pvs": [{"cp": 99, "line": "g1f3"}], "knodes": 300000, "depth": 36},
    ]},
    {"fen": FOOL, "evals": [
        {"pvs": [{"cp": -500, "line": "b8c6"}], "knodes": 10, "depth": 5},
        {"pvs": [{"mate": -1, "line": "d8h4"}], "knodes": 50, "depth": 245},
    ]},
    # castling as king-takes-rook (e1h1) is the same move as e1g1
    {"fen": CASTLE, "evals": [{"pvs": [{"cp": 12, "line": "e1h1 e8g8"}], "depth": 30}]},
    "",                                                              # blank: ignored
    "{not json",                                                     # bad_json
    "[1, 2]",                                                        # bad_json
    {"evals": [{"pvs": [{"cp": 1, "line": "e2e4"}], "depth": 1}]},  # bad_fen: no fen
    {"fen": "rnbqkbnr/pppppppp w KQkq -", "evals": []},             # bad_fen
    {"fen": "8/8/8/8/8/8/8/8 w - -",                                 # invalid_position
     "evals": [{"pvs": [{"cp": 0, "line": "a1a2"}], "depth": 1}]},
    {"fen": START, "evals": []},                                     # no_evals
    {"fen": START, "evals": [{"pvs": [{"line": "e2e4"}], "depth": 9}]},  # no_evals: no score
    {"fen": START, "evals": [{"pvs": [{"cp": 5, "line": "e2e5"}], "depth": 10}]},  # bad_move
]
EVAL_SKIPS = {"bad_json": 2, "bad_fen": 2, "invalid_position": 1, "no_evals": 2, "bad_move": 1}


def test_evaldb_is_a_kind_of_its_own():
    assert readers.detect_kind("lichess_db_eval.jsonl.zst") == "evaldb"
    assert readers.detect_kind("evals.jsonl") == "evaldb"


def test_evaldb_builds_deepest_first_pv(tmp_path):
    path = zst(tmp_path / "lichess_db_eval.jsonl.zst", jsonl(*EVAL_LINES))
    manifest = build([str(path)], tmp_path / "out", cfg=BuildConfig(**ALL), quiet=True)
    assert manifest["inputs"][0]["kind"] == "evaldb"
    assert manifest["skipped"] == EVAL_SKIPS
    assert manifest["records"] == 3
    block = read_split(tmp_path / "out", "train")
    moves = [(chess.WHITE, "e2e4"), (chess.BLACK, "d8h4"), (chess.WHITE, "e1g1")]
    expected = [policy.move_to_index(chess.Move.from_uci(m), turn) for turn, m in moves]
    assert block["move"].tolist() == expected
    # side to move's view: White +31; Black to move and mating: +1; White +12
    assert block["teacher_cp"].tolist() == [31, 0, 12]
    assert block["teacher_mate"].tolist() == [0, 1, 0]
    assert (block["flags"] & schema.HAS_TEACHER_EVAL).all()
    assert not (block["flags"] & schema.HAS_RESULT).any()  # value from the teacher only
    assert block["result"].tolist() == [0, 0, 0]
    assert set(block["source"].tolist()) == {schema.SOURCES.index("fen")}


def test_evaldb_is_the_epd_it_stands_for(tmp_path):
    """The same positions as EPD lines (bm, ce/dm in the side to move's view) build to
    the same records but for the game ids (identities name the line)."""
    path = zst(tmp_path / "e.jsonl.zst", jsonl(*EVAL_LINES[:3]))
    epd = tmp_path / "same.epd"
    epd.write_text(f"{START} bm e4; ce 31;\n{FOOL} bm Qh4#; dm 1;\n{CASTLE} bm O-O; ce 12;\n")
    build([str(path)], tmp_path / "a", cfg=BuildConfig(**ALL), quiet=True)
    build([str(epd)], tmp_path / "b", cfg=BuildConfig(**ALL), quiet=True)
    a, b = read_split(tmp_path / "a", "train"), read_split(tmp_path / "b", "train")
    for c in schema.COLUMNS:
        if c.name not in ("game_id", "bucket"):
            np.testing.assert_array_equal(a[c.name], b[c.name], err_msg=c.name)


def test_plain_jsonl_ranges_tile_the_file(tmp_path):
    lines = [{"fen": START, "evals": [{"pvs": [{"cp": i, "line": "e2e4"}], "depth": 1}]}
             for i in range(200)]
    path = tmp_path / "evals.jsonl"
    path.write_bytes(jsonl(*lines))
    ranges = readers.split_ranges(str(path), 1000)
    assert len(ranges) > 5
    pieces = [u for s, e in ranges for u in readers.read(str(path), s, e)]
    whole = list(readers.read(str(path)))
    assert [u.eval_cp for u in pieces] == [u.eval_cp for u in whole] == [[i] for i in range(200)]
    assert [u.line for u in pieces] == list(range(1, 201))


# ----------------------------------------------------------------------------- PGN


def game(white_elo="2000", black_elo="1900", time_control="600+5", termination="Normal",
         extra="", moves=None) -> str:
    tags = {"Event": "Rated Rapid game", "Site": "https://lichess.org/abcdefgh",
            "White": "a", "Black": "b", "Result": "1-0", "WhiteElo": white_elo,
            "BlackElo": black_elo, "TimeControl": time_control, "Termination": termination}
    head = "".join(f'[{k} "{v}"]\n' for k, v in tags.items() if v is not None)
    body = moves or ("1. e4 { [%eval 0.31] [%clk 0:10:00] } 1... e5 { [%clk 0:10:00] "
                     "[%eval #-2] } 2. Nf3 { [%clk 0:09:58] } 1-0")
    return f"{head}{extra}\n{body}\n\n"


MONTH = [
    game(),                                            # kept: 4 positions
    game(black_elo="?"),                               # filtered_rating
    game(white_elo="1200"),                            # filtered_rating
    game(white_elo=None, black_elo=None),              # filtered_rating: no ratings
    game(time_control="60+0"),                         # filtered_time_control
    game(time_control="-"),                            # filtered_time_control
    game(termination="Abandoned"),                     # filtered_termination
    game(extra='[Variant "Chess960"]\n'),              # variant
    game(white_elo="1500", black_elo="1500", time_control="300+0",
         moves="1. d4 { [%clk 0:05:00] [%eval -0.5] } 1... d5 1-0"),  # kept: 3 positions
]
FILTERS = PgnFilters(min_rating=1500, min_base_seconds=300)


@pytest.mark.parametrize("fast", [True, False])
def test_clk_comments_do_not_hide_evals(tmp_path, fast):
    path = tmp_path / "g.pgn"
    path.write_text(MONTH[0] + MONTH[-1])
    first, last = list(read_pgn(str(path), fast=fast))
    # [%eval 0.31] [%clk ...] after 1. e4; [%clk ...] [%eval #-2] after 1... e5
    assert first.eval_cp == [0, 31, 0, 0] and first.eval_mate == [0, 0, -2, 0]
    assert first.has_eval == [False, True, True, False]
    assert last.eval_cp == [0, -50, 0] and last.has_eval == [False, True, False]


@pytest.mark.parametrize("fast", [True, False])
def test_filters_skip_by_tags(tmp_path, fast):
    path = tmp_path / "m.pgn"
    path.write_text("".join(MONTH))
    items = list(read_pgn(str(path), fast=fast, filters=FILTERS))
    assert [type(i).__name__ for i in items].count("Unit") == 2
    assert [i.reason for i in items if isinstance(i, readers.Skip)] == [
        "filtered_rating", "filtered_rating", "filtered_rating", "filtered_time_control",
        "filtered_time_control", "filtered_termination", "variant"]
    # no filters: every standard game (the Abandoned one too)
    assert sum(isinstance(i, readers.Unit) for i in read_pgn(str(path), fast=fast)) == 8


def test_filtered_month_builds_with_counts(tmp_path):
    path = zst(tmp_path / "lichess_db_standard_rated_2013-01.pgn.zst", "".join(MONTH).encode())
    cfg = BuildConfig(**ALL, pgn_filters=FILTERS)
    manifest = build([str(path)], tmp_path / "out", cfg=cfg, quiet=True)
    assert manifest["skipped"] == {"filtered_rating": 3, "filtered_termination": 1,
                                   "filtered_time_control": 2, "variant": 1}
    assert manifest["inputs"][0]["skipped"] == 7
    assert manifest["records"] == 4 + 3
    assert manifest["build_config"]["pgn_filters"] == {
        "min_rating": 1500, "min_base_seconds": 300, "skip_abandoned": True}
    block = read_split(tmp_path / "out", "train")
    assert block["teacher_cp"].tolist() == [0, -31, 0, 0, 0, 50, 0]  # side to move's view
    assert block["teacher_mate"].tolist() == [0, 0, -2, 0, 0, 0, 0]
    # the defaults: only Abandoned games (and variants) are left out
    default = build([str(path)], tmp_path / "default", cfg=BuildConfig(**ALL), quiet=True)
    assert default["skipped"] == {"filtered_termination": 1, "variant": 1}
    assert default["records"] == 6 * 4 + 3


def test_filters_from_config_yaml(tmp_path):
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({"data": {"pgn_filters": {
        "min_rating": 1800, "min_base_seconds": 180, "skip_abandoned": False}}}))
    assert load_build_config(cfg_path).pgn_filters == PgnFilters(
        min_rating=1800, min_base_seconds=180, skip_abandoned=False)
    cfg_path.write_text(yaml.safe_dump({"data": {"pgn_filters": {"min_rating": -1}}}))
    with pytest.raises(ConfigError, match="min_rating"):
        load_build_config(cfg_path)
    cfg_path.write_text(yaml.safe_dump({"data": {"pgn_filters": {"min_elo": 1}}}))
    with pytest.raises(ConfigError, match="min_elo"):
        load_build_config(cfg_path)


# ----------------------------------------------------------------------------- --limit


def cut_zst(path: Path, head: bytes, tail_lines: int) -> Path:
    """`head`, then `tail_lines` lines of garbage of 1000 bytes, compressed as one frame
    and cut off in the middle of that frame: whoever reads it all finds a corrupt file."""
    tail = b"".join(f"garbage {i:06d} ".encode().ljust(999, b"x") + b"\n"
                    for i in range(tail_lines))
    data = zstandard.ZstdCompressor(level=1).compress(head + tail)
    path.write_bytes(data[: len(data) * 3 // 4])
    return path


def test_limit_stops_early_on_a_cut_off_zst(tmp_path, capsys):
    lines = [{"fen": START, "evals": [{"pvs": [{"cp": i, "line": "e2e4"}], "depth": 1}]}
             for i in range(10)]
    path = cut_zst(tmp_path / "lichess_db_eval.jsonl.zst", jsonl(*lines), 3000)
    # read to its end, the file is garbage and then cut off
    tail = list(readers.read(str(path)))[-1]
    assert isinstance(tail, readers.Skip) and tail.reason == "truncated"
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"val_fraction": 0.0, "val_min_positions": 0}}))
    assert main([str(path), "--out", str(out), "--limit", "7", "--config", str(cfg),
                 "--quiet", "--workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["positions_read"] == 7 and manifest["skipped"] == {}
    assert manifest["build_config"]["limit"] == 7
    block = read_split(out, "train")
    assert block["teacher_cp"].tolist() == list(range(7))
    # another limit is another build, not the cached one
    assert main([str(path), "--out", str(out), "--limit", "10", "--config", str(cfg),
                 "--quiet", "--workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["positions_read"] == 10 and manifest["skipped"] == {}
    # the 11th line is garbage: counted (a skip is a unit read), then no more
    assert main([str(path), "--out", str(out), "--limit", "12", "--config", str(cfg),
                 "--quiet", "--workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["positions_read"] == 10 and manifest["skipped"] == {"bad_json": 2}
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--limit N" in capsys.readouterr().out


def test_limit_counts_games_of_a_pgn_zst(tmp_path):
    path = cut_zst(tmp_path / "month.pgn.zst", "".join(MONTH).encode(), 3000)
    cfg = BuildConfig(**ALL, pgn_filters=FILTERS, limit=3)
    manifest = build([str(path)], tmp_path / "out", cfg=cfg, quiet=True)
    # the kept first game, then two filtered ones; the rest is never read
    assert manifest["records"] == 4
    assert manifest["skipped"] == {"filtered_rating": 2}


def test_limit_on_a_plain_file_is_one_task(tmp_path):
    lines = [{"fen": START, "evals": [{"pvs": [{"cp": i, "line": "e2e4"}], "depth": 1}]}
             for i in range(300)]
    path = tmp_path / "evals.jsonl"
    path.write_bytes(jsonl(*lines))
    cfg = BuildConfig(**ALL, chunk_bytes=1000, limit=250)
    manifest = build([str(path)], tmp_path / "out", cfg=cfg, quiet=True)
    assert manifest["positions_read"] == 250
    assert read_split(tmp_path / "out", "train")["teacher_cp"].tolist() == list(range(250))


# ----------------------------------------------------------------------------- puzzles

PUZZLE_HEADER = ("PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,"
                 "GameUrl,OpeningTags")
PUZZLES = [
    "005gP,8/8/3p4/2kP4/1p4P1/2pK4/P7/8 w - - 1 42,g4g5 c5d5 g5g6 d5e6 g6g7 e6f7 a2a4 "
    "b4a3 g7g8r f7g8,1705,74,100,635,crushing enPassant endgame pawnEndgame veryLong,"
    "https://lichess.org/I76OvKQT#83,",
    "000rZ,2kr1b1r/p1p2pp1/2pqb3/7p/3N2n1/2NPB3/PPP2PPP/R2Q1RK1 w - - 2 13,d4e6 d6h2,633,"
    "93,100,616,kingsideAttack mate mateIn1 oneMove opening,https://lichess.org/seIMDWkD#25,"
    "Scandinavian_Defense Scandinavian_Defense_Modern_Variation",
    "00A8H,1k6/1pb2p2/p1p1p3/2P5/PP6/1KB5/4q3/1R1R4 b - - 1 38,c7e5 d1d8 b8a7 b1e1 e2e1 "
    "c3e1,2376,84,100,87,clearance crushing endgame long,https://lichess.org/rMR9LIY8/black#76,",
]


def test_puzzle_db_with_its_header_through_zst(tmp_path):
    text = PUZZLE_HEADER + "\n" + "\n".join(PUZZLES) + "\n"
    plain = tmp_path / "lichess_db_puzzle.csv"
    plain.write_text(text)
    path = zst(tmp_path / "lichess_db_puzzle.csv.zst", text.encode())
    manifest = build([str(path)], tmp_path / "out", cfg=BuildConfig(**ALL), quiet=True)
    assert manifest["inputs"][0]["kind"] == "puzzle"
    assert manifest["skipped"] == {}
    expected = list(naive.puzzle_positions(plain))
    assert manifest["records"] == len(expected) == 5 + 1 + 3
    block = read_split(tmp_path / "out", "train")
    assert block["move"].tolist() == [policy.move_to_index(e.move, e.board.turn)
                                      for e in expected]
    assert block["rating"].tolist() == [1705] * 5 + [633] + [2376] * 3
    assert block["themes"][5] == "kingsideAttack mate mateIn1 oneMove opening"
