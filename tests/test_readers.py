"""dataengine.readers: the sample data against python-chess, byte ranges,
compression, a corpus of malformed inputs, and the SAN fast path against
`Board.parse_san`."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import random
from pathlib import Path

import chess
import chess.pgn
import pytest
import zstandard

from dataengine.readers import (
    RESULT_UNKNOWN,
    Note,
    ReaderError,
    Skip,
    Unit,
    detect_kind,
    read,
    read_evals,
    read_openings,
    read_pgn,
    read_positions,
    read_puzzles,
    split_ranges,
)
from tests import naive
from tests.naive import shared_data

DATA = shared_data()
needs_data = pytest.mark.skipif(
    DATA is None, reason="shared sample data not found (../shared/data or $CHESS_SSL_SHARED_DATA)"
)
SAMPLE_PGN = DATA / "games" / "sf_selfplay_1500.pgn" if DATA else None
SAMPLE_CSV = DATA / "puzzles" / "lichess_puzzles_sample.csv" if DATA else None
SAMPLE_TSVS = sorted((DATA / "openings").glob("*.tsv")) if DATA else []
RESULTS = {"1-0": 1, "0-1": -1, "1/2-1/2": 0}


# ----------------------------------------------------------------------------- helpers


def pack(move: chess.Move) -> int:
    return move.from_square | move.to_square << 6 | (move.promotion or 0) << 12


def board_at(unit: Unit, i: int) -> chess.Board:
    """The python-chess board that the columns of position `i` describe."""
    board = chess.Board(None)
    (
        board.pawns,
        board.knights,
        board.bishops,
        board.rooks,
        board.queens,
        board.kings,
        white,
        black,
    ) = unit.bitboards[8 * i : 8 * i + 8]
    board.occupied_co[chess.WHITE] = white
    board.occupied_co[chess.BLACK] = black
    board.occupied = white | black
    board.turn = unit.turn[i]
    board.castling_rights = unit.castling[i]
    board.ep_square = None if unit.ep_square[i] < 0 else unit.ep_square[i]
    board.halfmove_clock = unit.halfmove[i]
    return board


def fen5(board: chess.Board) -> str:
    """FEN without the fullmove number, en passant only when capturable."""
    return board.fen(en_passant="legal").rsplit(" ", 1)[0]


def columns(unit: Unit, i: int) -> tuple:
    """Everything the unit stores for position `i`."""
    ev = (unit.eval_cp[i], unit.eval_mate[i]) if unit.has_eval[i] else None
    return (
        tuple(unit.bitboards[8 * i : 8 * i + 8]),
        unit.turn[i],
        unit.castling[i],
        unit.ep_square[i],
        unit.halfmove[i],
        unit.ply[i],
        unit.move[i],
        ev,
    )


def expected(board: chess.Board, ply: int, move: chess.Move | None, node=None) -> tuple:
    """`columns` as python-chess computes them for `board` (eval from `node`'s comment)."""
    ev = None
    if node is not None and (pov := node.eval()) is not None:
        white = pov.white()
        ev = (0, white.mate()) if white.is_mate() else (white.score(), 0)
    ep = board.ep_square if board.ep_square is not None and board.has_legal_en_passant() else -1
    bitboards = (
        board.pawns,
        board.knights,
        board.bishops,
        board.rooks,
        board.queens,
        board.kings,
        board.occupied_co[chess.WHITE],
        board.occupied_co[chess.BLACK],
    )
    return (
        bitboards,
        board.turn,
        board.clean_castling_rights(),
        ep,
        board.halfmove_clock,
        ply,
        -1 if move is None else pack(move),
        ev,
    )


FEN_EVERY = 16  # FEN round trips of the columns (slow in python-chess) on every 16th board


def reference_games(text: str):
    """(game, [expected columns], {index: FEN}) per game of `text`, by chess.pgn.read_game."""
    handle = io.StringIO(text)
    while (game := chess.pgn.read_game(handle)) is not None:
        assert not game.errors, game.errors
        board = game.board()
        want, fens = [], {}
        node = game
        for ply, child in enumerate(game.mainline()):
            if ply % FEN_EVERY == 0:
                fens[ply] = fen5(board)
            want.append(expected(board, ply, child.move, node))
            board.push(child.move)
            node = child
        fens[len(want)] = fen5(board)
        want.append(expected(board, len(want), None, node))
        yield game, want, fens


def assert_same_as_python_chess(units: list, text: str) -> None:
    games = list(reference_games(text))
    assert len(units) == len(games)
    for unit, (game, want, fens) in zip(units, games, strict=True):
        assert isinstance(unit, Unit), unit
        got = [columns(unit, i) for i in range(len(unit))]
        assert got == want, f"game at line {unit.line} differs"
        assert {i: fen5(board_at(unit, i)) for i in fens} == fens
        assert unit.result == RESULTS.get(game.headers.get("Result"), RESULT_UNKNOWN)
        assert unit.source == "pgn"
        n = len(unit)
        assert len(unit.bitboards) == 8 * n
        assert all(
            len(col) == n
            for col in (
                unit.turn,
                unit.castling,
                unit.ep_square,
                unit.halfmove,
                unit.ply,
                unit.move,
                unit.eval_cp,
                unit.eval_mate,
                unit.has_eval,
            )
        )


def line_of(text: str, marker: str) -> int:
    """1-based line number of the first line containing `marker`."""
    return text[: text.index(marker)].count("\n") + 1


def reasons(items: list) -> list:
    """Each item as (reason, "note:" reason or "unit", line)."""
    return [
        (
            item.reason if isinstance(item, Skip)
            else "note:" + item.reason if isinstance(item, Note)
            else "unit",
            item.line,
        )
        for item in items
    ]


def read_ranges(path: Path, target: int) -> list:
    """Everything read from the `split_ranges` of `path`, in file order.

    The ranges are read last to first, then first to last: the line numbers of
    a range must not depend on which ranges this process has read before.
    """
    ranges = split_ranges(path, target)
    assert ranges[0][0] == 0 and ranges[-1][1] is None
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    backwards = [list(read(path, start, end)) for start, end in reversed(ranges)]
    forwards = [list(read(path, start, end)) for start, end in ranges]
    assert backwards[::-1] == forwards
    return [item for items in forwards for item in items]


# ----------------------------------------------------------------------------- sample data


@pytest.fixture(scope="module")
def sample_games() -> list:
    return list(read_pgn(SAMPLE_PGN))


@needs_data
def test_sample_pgn_matches_python_chess(sample_games):
    text = SAMPLE_PGN.read_text(encoding="utf-8")
    assert_same_as_python_chess(sample_games, text)
    # PROVENANCE's 173,795 positions are the boards before a move; each of the
    # 1,500 games adds its final board (target -1).
    assert len(sample_games) == 1500
    assert sum(len(u) for u in sample_games) == 173_795 + 1500
    assert sum(m >= 0 for u in sample_games for m in u.move) == 173_795
    assert [u.result for u in sample_games].count(1) == 674
    assert [u.result for u in sample_games].count(-1) == 631
    assert [u.result for u in sample_games].count(0) == 195
    starts = [i + 1 for i, line in enumerate(text.splitlines()) if line.startswith("[Event ")]
    assert [u.line for u in sample_games] == starts
    assert len({u.identity for u in sample_games}) == 1500


@needs_data
def test_sample_pgn_identity_and_turns(sample_games):
    game = chess.pgn.read_game(io.StringIO(SAMPLE_PGN.read_text(encoding="utf-8")))
    roster = [
        game.headers[t] for t in ("Event", "Site", "Date", "Round", "White", "Black", "Result")
    ]
    ucis = " ".join(m.uci() for m in game.mainline_moves())
    first = sample_games[0]
    assert first.identity == "|".join(roster) + "|" + ucis
    assert first.turn == [i % 2 == 0 for i in range(len(first))]
    assert first.ply == list(range(len(first)))
    assert (first.rating, first.themes) == (0, "")


@needs_data
def test_sample_pgn_ranges_equal_whole(sample_games):
    assert read_ranges(SAMPLE_PGN, 1 << 16) == sample_games


@needs_data
def test_sample_puzzles_match_python_chess():
    units = list(read_puzzles(SAMPLE_CSV))
    with open(SAMPLE_CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(units) == len(rows) == 1499
    assert sum(len(u) for u in units) == sum(len(r["Moves"].split()) // 2 for r in rows)
    for line, (unit, row) in enumerate(zip(units, rows, strict=True), start=2):
        assert isinstance(unit, Unit), unit
        assert (unit.source, unit.identity, unit.line) == (
            "puzzle",
            "puzzle:" + row["PuzzleId"],
            line,
        )
        assert (unit.rating, unit.themes, unit.result) == (
            int(row["Rating"]),
            row["Themes"],
            RESULT_UNKNOWN,
        )
        assert not any(unit.has_eval)
        board = chess.Board(row["FEN"])
        want, fens = [], []
        for ply, uci in enumerate(row["Moves"].split()):
            move = chess.Move.from_uci(uci)
            if ply % 2:
                want.append(expected(board, ply, move))
                fens.append(fen5(board))
            board.push(move)
        assert [columns(unit, i) for i in range(len(unit))] == want
        assert [fen5(board_at(unit, i)) for i in range(len(unit))] == fens


@needs_data
def test_sample_openings_match_python_chess():
    total = 0
    for path in SAMPLE_TSVS:
        units = list(read_openings(path))
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        assert len(units) == len(rows)
        for line, (unit, row) in enumerate(zip(units, rows, strict=True), start=2):
            assert isinstance(unit, Unit), unit
            identity = f"opening:{row['eco']}|{row['name']}|{row['pgn']}"
            assert (unit.source, unit.identity, unit.line) == ("opening", identity, line)
            game = chess.pgn.read_game(io.StringIO(row["pgn"]))
            board = game.board()
            want, fens = [], []
            for ply, move in enumerate(game.mainline_moves()):
                want.append(expected(board, ply, move))
                fens.append(fen5(board))
                board.push(move)
            assert [columns(unit, i) for i in range(len(unit))] == want
            assert fen5(board_at(unit, len(unit) - 1)) == fens[-1]
            total += len(want)
    assert total == 36_895


@needs_data
def test_sample_line_files_ranges_equal_whole():
    for path, target in [(SAMPLE_CSV, 10_000), (SAMPLE_CSV, 1), *((p, 3_000) for p in SAMPLE_TSVS)]:
        assert read_ranges(path, target) == list(read(path)), path


@needs_data
@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zst"])
def test_compressed_round_trip(tmp_path, suffix, sample_games):
    compress = {
        ".gz": gzip.compress,
        ".bz2": bz2.compress,
        ".zst": zstandard.ZstdCompressor().compress,
    }[suffix]
    cut = split_ranges(SAMPLE_PGN, 1 << 19)[1][0]  # the first ~170 games
    pgn = tmp_path / "games.pgn"
    pgn.write_bytes(SAMPLE_PGN.read_bytes()[:cut])
    plain = list(read_pgn(pgn))
    assert plain == sample_games[: len(plain)] and 100 < len(plain) < 1500
    packed = tmp_path / ("games.pgn" + suffix)
    packed.write_bytes(compress(pgn.read_bytes()))
    assert list(read_pgn(packed)) == plain
    assert split_ranges(packed) == [(0, None)]
    for source in (SAMPLE_CSV, SAMPLE_TSVS[0]):
        target = tmp_path / (source.name + suffix)
        target.write_bytes(compress(source.read_bytes()))
        assert list(read(target)) == list(read(source))


# ----------------------------------------------------------------------------- compression


def test_zstd_multiple_frames(tmp_path):
    text = b'[Event "a"]\n\n1. e4 e5 *\n\n[Event "b"]\n\n1. d4 d5 *\n'
    plain = tmp_path / "g.pgn"
    plain.write_bytes(text)
    frames = tmp_path / "g.pgn.zst"
    cctx = zstandard.ZstdCompressor()
    frames.write_bytes(cctx.compress(text[:20]) + cctx.compress(text[20:]))
    assert list(read_pgn(frames)) == list(read_pgn(plain))


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zst"])
def test_truncated_compressed_stream(tmp_path, suffix):
    games = "".join(f'[Event "{i}"]\n\n1. e4 *\n\n' for i in range(20_000))
    compress = {
        ".gz": gzip.compress,
        ".bz2": lambda b: bz2.compress(b, 1),  # 100 kB blocks
        ".zst": zstandard.ZstdCompressor().compress,
    }[suffix]
    data = compress(games.encode())
    path = tmp_path / ("g.pgn" + suffix)
    path.write_bytes(data[: len(data) // 2])
    items = list(read_pgn(path))
    assert isinstance(items[-1], Skip) and items[-1].reason == "truncated"
    units = [u for u in items if isinstance(u, Unit)]
    assert 0 < len(units) < 20_000
    assert all(u.line == 4 * i + 1 for i, u in enumerate(units))


# ----------------------------------------------------------------------------- malformed PGN

CORPUS_PGN = """% an escape line
; a comment line before the first game

[Event "good 1"]
[Site "?"]
[Result "1-0"]

1. e4 e5 2. Qh5 Nc6 3. Bc4 Nf6 4. Qxf7# 1-0

[Event "illegal mid-game"]
[Result "0-1"]

1. e4 e5 2. Ke3 Nc6 0-1

[Event "good 2"]
[Result "*"]

1. d4 d5 *

[Event "bad fen"]
[SetUp "1"]
[FEN "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP w KQkq - 0 1"]

1. e4 *

[Event "invalid position"]
[SetUp "1"]
[FEN "8/8/8/8/8/8/8/8 w - - 0 1"]

1. e4 *

[Event "atomic"]
[Variant "Atomic"]

1. e4 *

[Event "encoding"]
[White "M@@ller"]

1. e4 *

[Event "no moves"]
[Result "*"]

*

[Event "from position"]
[Variant "From Position"]
[SetUp "1"]
[FEN "4k3/8/8/8/8/8/4P3/4K3 w - - 5 40"]
[Result "1/2-1/2"]

1. e4 Kd7 2. e5 1/2-1/2

1. Nf3 Nf6 *

[Event "truncated"]

1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 4. B"""


def write_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.pgn"
    path.write_bytes(CORPUS_PGN.encode().replace(b"@@", b"\xfc"))  # latin-1 u-umlaut
    return path


def test_malformed_pgn_corpus(tmp_path):
    path = write_corpus(tmp_path)
    items = list(read_pgn(path))
    t = CORPUS_PGN
    assert reasons(items) == [
        ("unit", line_of(t, '"good 1"')),
        ("unit", line_of(t, '"illegal mid-game"')),
        ("note:truncated", line_of(t, '"illegal mid-game"')),
        ("unit", line_of(t, '"good 2"')),
        ("bad_fen", line_of(t, '"bad fen"')),
        ("invalid_position", line_of(t, '"invalid position"')),
        ("variant", line_of(t, '"atomic"')),
        ("unit", line_of(t, '"encoding"')),
        ("note:recoded", line_of(t, '"encoding"')),
        ("no_moves", line_of(t, '"no moves"')),
        ("unit", line_of(t, '"from position"')),
        ("unit", line_of(t, "1. Nf3 Nf6")),
        ("unit", line_of(t, '"truncated"')),
        ("note:truncated", line_of(t, '"truncated"')),
    ]
    assert all(s.path == str(path) and s.detail for s in items if isinstance(s, Skip | Note))
    assert "Ke3" in items[2].detail and "\\xfc" in items[8].detail and "'B'" in items[13].detail
    assert "cp1252" in items[8].detail
    good1, cut, good2, encoded, from_position, tagless, cut2 = (
        u for u in items if isinstance(u, Unit)
    )
    # a game cut short keeps the boards before the bad move, the last one without a target
    assert (len(cut), cut.move[-1], cut.result) == (3, -1, -1)
    assert (len(cut2), cut2.move[-1]) == (7, -1)
    assert len(encoded) == 2 and encoded.identity.startswith("encoding||||M\u00fcller|")
    # the good games around the bad ones are intact: compare with python-chess
    good_text = "\n\n".join(
        t[t.index(a) : t.index(b)]
        for a, b in [
            ('[Event "good 1"]', '[Event "illegal'),
            ('[Event "good 2"]', '[Event "bad fen'),
            ('[Event "from position"]', '[Event "truncated'),
        ]
    )
    assert_same_as_python_chess([good1, good2, from_position, tagless], good_text)
    assert (good1.result, len(good1), good2.result, from_position.result) == (
        1,
        8,
        RESULT_UNKNOWN,
        0,
    )
    assert from_position.halfmove[0] == 5 and from_position.ply == [0, 1, 2, 3]
    assert from_position.identity.endswith("|4k3/8/8/8/8/8/4P3/4K3 w - - 5 40|e2e4 e8d7 e4e5")
    assert tagless.identity == "|" * 7 + "g1f3 g8f6"


def naive_columns(path: Path) -> list[tuple]:
    """`columns` of every position tests/naive.py's python-chess twin expects in `path`."""
    out = []
    for e in naive.pgn_positions(path):
        want = list(expected(e.board, e.ply, e.move))
        want[-1] = e.eval
        out.append(tuple(want))
    return out


def unit_columns(items: list) -> list[tuple]:
    return [columns(u, i) for u in items if isinstance(u, Unit) for i in range(len(u))]


def long_game(plies: int, seed: int) -> tuple[chess.Board, str]:
    """A game of `plies` legal moves (seeded) that is not over, as numbered SAN with an
    eval comment after each move, and the board after it."""
    rng = random.Random(seed)
    while True:
        board, words = chess.Board(), []
        for ply in range(plies):
            moves = sorted(board.legal_moves, key=lambda m: m.uci())
            if not moves:
                break
            move = rng.choice(moves)
            number = f"{ply // 2 + 1}." if ply % 2 == 0 else f"{ply // 2 + 1}..."
            words += [number, board.san(move), f"{{ [%eval {rng.randint(-300, 300) / 100}] }}"]
            board.push(move)
        else:
            if not board.is_game_over():
                return board, " ".join(words)


@pytest.mark.parametrize("null", ["Z0", "--"])
def test_pgn_null_move_mid_game_keeps_the_positions_before_it(tmp_path, null):
    """As python-chess's anastasian-lewis.pgn: a null move (Z0) at ply 81 of a game that
    goes on after it. Its 80 positions before the null move are kept with their moves,
    then the board before the null move without one; the rest of the game is dropped."""
    board, movetext = long_game(80, seed=81)
    after = board.copy()
    after.push(chess.Move.null())
    going_on = " ".join(after.san(m) for m in list(after.legal_moves)[:1])
    text = (
        '[Event "World Senior Teams +50"]\n[White "Anastasian, A."]\n[Black "Lewis, An"]\n'
        f'[Result "1-0"]\n\n{movetext} 41. {null} {going_on} 1-0\n\n'
        '[Event "next"]\n[Result "*"]\n\n1. e4 *\n'
    )
    path = tmp_path / "anastasian-lewis.pgn"
    path.write_text(text)
    items = list(read_pgn(path))
    assert reasons(items) == [("unit", 1), ("note:truncated", 1), ("unit", line_of(text, "next"))]
    game, note = items[0], items[1]
    assert len(game) == 81 and sum(m >= 0 for m in game.move) == 80 and game.move[-1] == -1
    assert game.ply == list(range(81)) and game.result == 1 and game.has_eval[80]
    assert fen5(board_at(game, 80)) == fen5(board)
    assert null in note.detail and "80 moves" in note.detail
    assert unit_columns(items) == naive_columns(path)
    assert read_ranges(path, 1) == items


def test_pgn_illegal_move_mid_game_keeps_the_positions_before_it(tmp_path):
    board, movetext = long_game(30, seed=3)
    king = chess.square_name(board.king(chess.WHITE))
    far = "a8" if king[0] > "d" else "h8"
    text = f'[Event "cut"]\n[Result "0-1"]\n\n{movetext} 16. K{far} e5 17. d4 0-1\n'
    path = tmp_path / "illegal.pgn"
    path.write_text(text)
    game, note = read_pgn(path)
    assert isinstance(note, Note) and note.reason == "truncated" and "ply 30" in note.detail
    assert (len(game), game.move[-1], game.result) == (31, -1, -1)
    assert unit_columns([game]) == naive_columns(path)
    # python-chess ends the mainline at the illegal move too
    assert len(list(chess.pgn.read_game(io.StringIO(text)).mainline_moves())) == 30
    # a bad first move leaves nothing to keep: the game is skipped
    path.write_text('[Event "first"]\n\n1. Ke3 e5 *\n\n[Event "null"]\n\n1. -- e5 *\n')
    assert reasons(list(read_pgn(path))) == [("illegal_move", 1), ("illegal_move", 5)]
    assert naive_columns(path) == []


def test_pgn_latin1_game_is_recoded(tmp_path):
    games = (
        b'[Event "Torneo Pe\xf1a"]\n[White "M\x93ller\x94"]\n[Result "1-0"]\n\n'
        b"1. e4 { bien jou\xe9 [%eval 0.3] } e5 2. Qh5 Nc6 3. Bc4 Nf6 4. Qxf7# 1-0\n\n"
        b'[Event "undefined in cp1252: \x81"]\n\n1. d4 d5 *\n\n'
        + '[Event "UTF-8 Peña"]\n\n1. c4 *\n'.encode()
    )
    path = tmp_path / "latin1.pgn"
    path.write_bytes(games)
    items = list(read_pgn(path))
    assert reasons(items) == [("unit", 1), ("note:recoded", 1), ("unit", 7),
                              ("note:recoded", 7), ("unit", 11)]
    pena, undefined, utf8 = (u for u in items if isinstance(u, Unit))
    assert pena.identity.startswith("Torneo Pe\u00f1a||||M\u201cller\u201d||1-0|e2e4 ")
    assert "read as cp1252" in items[1].detail and "read as Latin-1" in items[3].detail
    assert undefined.identity.startswith("undefined in cp1252: \x81|")
    assert utf8.identity.startswith("UTF-8 Pe\u00f1a|")
    assert (len(pena), pena.result, pena.has_eval[1], pena.eval_cp[1]) == (8, 1, True, 30)
    assert unit_columns(items) == naive_columns(path)
    assert read_ranges(path, 1) == items


def test_pgn_truncated_between_tokens(tmp_path):
    path = tmp_path / "cut.pgn"
    path.write_text('[Event "x"]\n[Result "1-0"]\n\n1. e4 e5 2. Nf3 {unclosed comment')
    (unit,) = read_pgn(path)
    assert unit.move[:-1] == [pack(chess.Move.from_uci(u)) for u in ("e2e4", "e7e5", "g1f3")]
    assert (unit.move[-1], unit.result) == (-1, 1)
    path.write_text('[Event "x"]\n\n1. e4 *\n\n[Event "cut in the tags"]\n[Site ')
    assert reasons(list(read_pgn(path))) == [("unit", 1), ("truncated", 5)]


ANNOTATED_PGN = """[Event "annotated"]
[Result "0-1"]

{ [%eval 0.2] opening comment } 1. f3 { [%clk 0:03:00] [%eval -0.50] } 1... e5 $2 { [%clk 0:02:59] }
{ second comment [%eval -0.61] } 2. g4?? ; a line comment { with a brace
(2. e4 { [%eval 0.10] } 2... Nc6 (2... d5 { [%eval 1.5] }) 3. d4) 2... Qh4# { a comment

over lines
[%clk 0:02:58] [%eval #-2] } 0-1

[Event "lichess style"]
[Result "1/2-1/2"]

1. e4 { [%eval 0.17] [%clk 0:01:00] } 1... c5 { [%eval 0.29] [%clk 0:01:00] } 2. Nf3 { [%eval 0.3,22] } 2... d6?! { [%eval #3] } 1/2-1/2
"""


def test_pgn_mainline_only(tmp_path):
    path = tmp_path / "annotated.pgn"
    path.write_text(ANNOTATED_PGN)
    items = list(read_pgn(path))
    assert reasons(items) == [("unit", 1), ("unit", line_of(ANNOTATED_PGN, '"lichess style"'))]
    assert_same_as_python_chess(items, ANNOTATED_PGN)
    first, second = items
    assert first.move == [
        pack(chess.Move.from_uci(u)) for u in ("f2f3", "e7e5", "g2g4", "d8h4")
    ] + [-1]
    assert first.has_eval == [True, True, True, False, True]
    assert (first.eval_cp, first.eval_mate) == ([20, -50, -61, 0, 0], [0, 0, 0, 0, -2])
    assert (second.eval_cp, second.eval_mate) == ([0, 17, 29, 30, 0], [0, 0, 0, 0, 3])


def test_pgn_start_end_are_byte_offsets_of_game_starts(tmp_path):
    path = write_corpus(tmp_path)
    whole = list(read_pgn(path))
    data = path.read_bytes()
    for cut in [
        0,
        1,
        5,
        30,
        data.index(b'[Event "good 2"]'),
        data.index(b'[Event "good 2"]') + 1,
        data.index(b"1. Nf3"),
        data.index(b"[SetUp") + 3,
        len(data) - 3,
        len(data),
    ]:
        head, tail = list(read_pgn(path, 0, cut)), list(read_pgn(path, cut))
        assert head + tail == whole, cut
    assert read_ranges(path, 1) == whole
    assert len(split_ranges(path, 1)) == 11  # the file start, then one per tag section


def test_identity_independent_of_file_position(tmp_path):
    game = '[Event "same"]\n[Result "*"]\n\n1. e4 e5 *\n\n'
    a, b = tmp_path / "a.pgn", tmp_path / "b.pgn"
    a.write_text(game)
    b.write_text('[Event "other"]\n\n1. d4 *\n\n' + game)
    assert list(read_pgn(a))[0].identity == list(read_pgn(b))[1].identity


# ----------------------------------------------------------------------------- malformed CSV/TSV/EPD

PUZZLE_HEADER = (
    "PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,OpeningTags"
)
PUZZLE_ROWS = [
    "000rZ,2kr1b1r/p1p2pp1/2pqb3/7p/3N2n1/2NPB3/PPP2PPP/R2Q1RK1 w - - 2 13,d4e6 d6h2,633,93,100,616,"
    "kingsideAttack mate mateIn1 oneMove opening,https://lichess.org/seIMDWkD#25,Scandinavian_Defense",
    "short,row",
    "badfen,notafen w - - 0 1,e2e4 e7e5,1500,75,90,100,mate,u,",
    "baduci,rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1,e2e4 e7e9,1500,75,90,100,t,u,",
    "illegal,rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1,e2e4 e7e4,1500,75,90,100,t,u,",
    "rating,rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1,e2e4 e7e5,abc,75,90,100,t,u,",
    "invalid,8/8/8/8/8/8/8/K7 w - - 0 1,a1a2 a2a3,1500,75,90,100,t,u,",
    "encoding,rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1,e2e4 e7e5,1500,75,90,100,M@@,u,",
    "nomoves,rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1,e2e4,1500,75,90,100,t,u,",
    "good2,rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1,e2e4 e7e5 g1f3 b8c6 f1b5,900,75,90,100,"
    "opening,u,",
]


def test_malformed_puzzles(tmp_path):
    path = tmp_path / "p.csv"
    text = "\n".join([PUZZLE_HEADER, *PUZZLE_ROWS]) + "\n"
    path.write_bytes(text.encode().replace(b"@@", b"\xfc"))
    items = list(read_puzzles(path))
    assert reasons(items) == [
        ("unit", 2),
        ("bad_columns", 3),
        ("bad_fen", 4),
        ("bad_move", 5),
        ("illegal_move", 6),
        ("bad_rating", 7),
        ("invalid_position", 8),
        ("bad_encoding", 9),
        ("no_moves", 10),
        ("unit", 11),
    ]
    first, last = items[0], items[-1]
    assert (first.rating, first.themes, first.identity) == (
        633,
        "kingsideAttack mate mateIn1 oneMove opening",
        "puzzle:000rZ",
    )
    assert first.move == [pack(chess.Move.from_uci("d6h2"))] and first.turn == [False]
    assert last.ply == [1, 3] and last.turn == [False, False] and len(last.bitboards) == 16
    assert last.move == [pack(chess.Move.from_uci("e7e5")), pack(chess.Move.from_uci("b8c6"))]
    assert read_ranges(path, 1) == items


def test_puzzle_columns_by_name(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(
        "Themes,Extra,Moves,FEN,PuzzleId,Rating\n"
        'mate,"a, quoted",e2e4 e7e5,rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1,x1,1234\n'
    )
    (unit,) = read_puzzles(path)
    assert (unit.identity, unit.rating, unit.themes, unit.ply) == ("puzzle:x1", 1234, "mate", [1])
    path.write_text("PuzzleId,FEN,Rating,Themes\nx,y,1,t\nz,w,2,u\n")
    assert reasons(list(read_puzzles(path))) == [("bad_columns", 1)]


def test_malformed_openings(tmp_path):
    path = tmp_path / "o.tsv"
    path.write_text(
        "eco\tname\tpgn\n"
        "C20\tKing's Pawn Game\t1. e4 e5\n"
        "C20\tBad\t1. e4 e5 2. Ke3\n"
        "A00\tEmpty\t\n"
        "A00\tToo\tmany\tcolumns\n"
        "B00\tOwen\t1. e4 b6\n"
    )
    items = list(read_openings(path))
    assert reasons(items) == [
        ("unit", 2),
        ("illegal_move", 3),
        ("no_moves", 4),
        ("bad_columns", 5),
        ("unit", 6),
    ]
    assert items[0].identity == "opening:C20|King's Pawn Game|1. e4 e5"
    assert items[0].ply == [0, 1] and items[0].turn == [True, False] and items[0].move[-1] >= 0
    path.write_text("eco\tpgn\nA00\t1. e4\n")
    assert reasons(list(read_openings(path))) == [("bad_columns", 1)]


EPD_TEXT = """# a comment line

rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq e3 0 1
r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - bm Bb5 Bc4; ce 35; id "ruy";
r1bqkbnr/pppp1ppp/2n5/1B2p3/4P3/5N2/PPPP1PPP/RNBQK2R b KQkq - ce 50; dm 3;
this is not a fen
8/8/8/8/8/8/8/8 w - - 0 1
r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - bm Qxh7;
4k3/8/8/3pP3/8/8/8/4K3 w - d6 3
"""


def test_malformed_positions(tmp_path):
    path = tmp_path / "p.epd"
    path.write_text(EPD_TEXT)
    items = list(read_positions(path))
    assert reasons(items) == [
        ("unit", 3),
        ("unit", 4),
        ("unit", 5),
        ("bad_fen", 6),
        ("invalid_position", 7),
        ("bad_move", 8),
        ("unit", 9),
    ]
    e3, ruy, black, ep = (u for u in items if isinstance(u, Unit))
    assert (e3.ep_square, e3.turn, e3.move, e3.has_eval, e3.ply) == (
        [-1],
        [False],
        [-1],
        [False],
        [0],
    )
    assert e3.identity == "fen:rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq e3 0 1"
    assert (ruy.identity, ruy.move, ruy.eval_cp, ruy.has_eval) == (
        "fen:ruy",
        [pack(chess.Move.from_uci("f1b5"))],
        [35],
        [True],
    )
    assert (black.eval_cp, black.eval_mate, black.move) == ([0], [-3], [-1])
    assert (ep.ep_square, ep.halfmove) == ([chess.D6], [3])
    assert fen5(board_at(ruy, 0)) == EPD_TEXT.splitlines()[3].split(" bm")[0] + " 0"
    assert read_ranges(path, 1) == items


def test_empty_files(tmp_path):
    for name in ("e.pgn", "e.csv", "e.tsv", "e.fen", "e.pgn.gz"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"")
        assert list(read(path)) == [Skip("empty", str(path), 1, "the file is empty")]
        assert split_ranges(path) == [(0, None)]


# ----------------------------------------------------------------------------- API


def test_detect_kind_and_errors(tmp_path):
    assert [
        detect_kind(n) for n in ("a.pgn", "B.PGN.ZST", "c.csv.gz", "d.tsv.bz2", "e.fen", "f.epd")
    ] == ["pgn", "pgn", "puzzle", "opening", "fen", "fen"]
    with pytest.raises(ReaderError, match=r"notes\.txt.*\.pgn"):
        detect_kind("notes.txt")
    missing = tmp_path / "missing.pgn"
    with pytest.raises(ReaderError, match="cannot read") as info:
        read(missing)  # raised at the call, not at the first next()
    assert isinstance(info.value, OSError)
    packed = tmp_path / "g.pgn.gz"
    packed.write_bytes(gzip.compress(b"1. e4 *\n"))
    with pytest.raises(ValueError, match="compressed"):
        read(packed, 10, None)


def test_one_registry_of_formats(tmp_path):
    from dataengine.readers import FORMATS

    suffixes = [s for f in FORMATS.values() for s in f.suffixes]
    assert len(suffixes) == len(set(suffixes))
    assert {f.read for f in FORMATS.values()} == {read_pgn, read_puzzles, read_openings,
                                                  read_positions, read_evals}
    for fmt in FORMATS.values():  # read() dispatches to the format's own reader
        for suffix in fmt.suffixes:
            path = tmp_path / f"x{suffix}"
            path.write_bytes(b"")
            assert detect_kind(str(path)) == fmt.kind
            assert list(read(str(path))) == list(fmt.read(str(path), 0, None))


# ----------------------------------------------------------------------------- SAN


def random_positions(count: int, seed: int) -> list[chess.Board]:
    rng = random.Random(seed)
    boards = []
    while len(boards) < count:
        board = chess.Board()
        for ply in range(rng.randrange(20, 160)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
            if ply % 9 == 0:
                boards.append(board.copy(stack=False))
    return boards[:count]


SPECIAL_FENS = [
    "4k3/8/8/8/1b6/8/3N4/4K1N1 w - - 0 1",  # Nf3: the d2 knight is pinned
    "4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 2",  # legal en passant
    "8/8/8/K2pP2r/8/8/8/4k3 w - d6 0 2",  # en passant exposes the king
    "3r2k1/4P3/8/8/8/8/8/4K3 w - - 0 1",  # promotions, with capture
    "R6R/8/8/8/8/8/8/2k1K3 w - - 0 1",  # ambiguous rooks
    "r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1",  # castling
    "4k3/8/8/8/8/8/4q3/4K3 w - - 0 1",  # in check
    "4k3/8/8/8/1b6/8/8/r3K2R w K - 0 1",  # checks from two pieces' lines
    "rnbqkbnr/ppp1pppp/8/8/3pP3/8/PPPP1PPP/RNBQKBNR b KQkq e3 0 3",
]


def san_variants(board: chess.Board, foreign: list[str]) -> list[str]:
    out = set(foreign)
    for move in board.legal_moves:
        san = board.san(move)
        piece = board.piece_at(move.from_square).symbol().upper()
        frm, to = chess.SQUARE_NAMES[move.from_square], chess.SQUARE_NAMES[move.to_square]
        promo = "=" + chess.piece_symbol(move.promotion).upper() if move.promotion else ""
        out |= {san, san.rstrip("+#"), move.uci(), frm + to}
        if piece == "P":
            out |= {to + promo, frm[0] + "x" + to + promo, frm[0] + to, to, to + "=K", to + "=P"}
        else:
            out |= {
                piece + to,
                piece + frm[0] + to,
                piece + frm[1] + to,
                piece + frm + to,
                piece + "x" + to,
                piece + to + "=Q",
            }
    out |= {"O-O", "O-O-O", "0-0", "Kg1", "Kc1", "e1g1", "--", "Z0", "Nf", "exd", "e9"}
    return sorted(out)


def test_san_like_python_chess(tmp_path):
    """Each SAN variant, played from a FEN tag, is read exactly as Board.parse_san reads it."""
    boards = random_positions(150, seed=7) + [chess.Board(f) for f in SPECIAL_FENS]
    assert all(board.is_valid() for board in boards)
    games, want = [], []
    foreign: list[str] = []
    for board in boards:
        for san in san_variants(board, foreign):
            try:
                move = board.parse_san(san)
                want.append(pack(move) if move else None)
            except ValueError:
                want.append(None)
            games.append(f'[Event "{san}"]\n[FEN "{board.fen()}"]\n\n{san} *\n\n')
        foreign = [board.san(m) for m in list(board.legal_moves)[:15]]
    path = tmp_path / "sans.pgn"
    path.write_text("".join(games))
    got = [u.move[0] if isinstance(u, Unit) else None for u in read_pgn(path)]
    assert len(got) == len(want) > 10_000
    mismatches = [
        (g, w, games[i]) for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w
    ]
    assert not mismatches, mismatches[:3]
    assert sum(w is not None for w in want) > 3_000


def test_pgn_crlf_bom_and_movetext_first(tmp_path):
    text = '1. e4 e5 *\n\n[Event "a"]\n[Result "1-0"]\n\n1. d4 { [%eval 0.3] } d5 2. c4 1-0\n'
    plain, windows = tmp_path / "plain.pgn", tmp_path / "windows.pgn"
    plain.write_text(text)
    windows.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    items = list(read_pgn(plain))
    assert reasons(items) == [("unit", 1), ("unit", 3)]
    assert_same_as_python_chess(items, text)
    assert list(read_pgn(windows)) == items
    assert read_ranges(windows, 1) == items


@pytest.mark.parametrize("variant", ["Chess960", "fischerandom", "Fischer Random"])
def test_chess960_games_are_skipped_as_variant(tmp_path, variant):
    # a real Chess960 start (position 518 is the standard one; this is 0: BBQNNRKR),
    # castling by X-FEN rights: the record cannot say which rook castles (README)
    path = tmp_path / "960.pgn"
    path.write_text(f'[Event "960"]\n[Variant "{variant}"]\n[SetUp "1"]\n'
                    '[FEN "bbqnnrkr/pppppppp/8/8/8/8/PPPPPPPP/BBQNNRKR w HFhf - 0 1"]\n'
                    '[Result "*"]\n\n1. e4 e5 2. O-O *\n\n'
                    '[Event "standard"]\n[Result "*"]\n\n1. e4 e5 *\n')
    items = list(read_pgn(path))
    skips = [i for i in items if isinstance(i, Skip)]
    units = [i for i in items if isinstance(i, Unit)]
    assert [(s.reason, s.line) for s in skips] == [("variant", 1)]
    assert variant in skips[0].detail
    assert len(units) == 1 and units[0].line == 9 and units[0].ply == [0, 1, 2]


EPD_EDGE_CASES = [
    'bm e4; id "a";', "bm e4", "bm e4;;", 'id "semi;colon"; bm e4', 'id "esc \\" \\n q"',
    "hmvc 7; fmvn 30; bm Nf3", "hmvc -1; bm e4", "fmvn -3", "hmvc 2.5", 'hmvc "x"', "hmvc;",
    "fmvn 0", "bm Ke3", "bm e5", "bm", "bm e4 d4", "ce +31", "ce 1e2", "ce nan", "dm 0",
    "pv e4 e5 Nf3", "pv e4 e4", "1bad 3", "- ; bm e4", "c0 \"x\"; c1 nope", 'id "open',
    "am Qxf7", "bm O-O", "bm 0000", "bm e2e4", "hmvc 99999999999999999999",
]


def _set_epd_path(placement: str, operations: str):
    """The public python-chess path that epd_operations stands for."""
    board = chess.Board(None)
    try:
        ops = board.set_epd(f"{placement} {operations}")
    except ValueError as exc:
        return type(exc), str(exc)
    return ops, board.halfmove_clock if "hmvc" in ops else None


def _fast_path(placement: str, operations: str):
    from dataengine.readers.epd import epd_operations

    board = chess.Board(f"{placement} 0 1")
    before = board.fen()
    try:
        ops = epd_operations(board, placement, operations)
    except ValueError as exc:
        return type(exc), str(exc)
    assert board.fen() == before  # the operations never move the caller's board
    return ops, int(ops["hmvc"]) if "hmvc" in ops else None


def _epd_cases(stride: int) -> list[tuple[str, str]]:
    """Edge cases on three placements, then the lines of the sample EPD files: every
    line of the conversion games, every `stride`-th line of the others."""
    placements = ["rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq -",
                  "r3k2r/8/8/8/8/8/8/R3K2R w KQkq -", "4k3/8/8/3pP3/8/8/8/4K3 w - d6"]
    cases = [(p, ops) for p in placements for ops in EPD_EDGE_CASES]
    for path in sorted(naive.SAMPLE.glob("*.epd")):
        step = 1 if path.name == "sf_vs_random_3000.epd" else stride
        lines = [t for t in path.read_text().splitlines() if t and not t.startswith("#")]
        for text in lines[::step]:
            parts = text.split(None, 4)
            cases.append((" ".join(parts[:4]), parts[4] if len(parts) > 4 else ""))
    return cases


@pytest.mark.parametrize("stride", [
    20, pytest.param(1, marks=pytest.mark.slow, id="every-line")])
def test_epd_operations_are_what_set_epd_gives_on_the_sample_lines(stride):
    cases = _epd_cases(stride)
    assert len(cases) > 30000
    for placement, operations in cases:
        assert _fast_path(placement, operations) == _set_epd_path(placement, operations), \
            (placement, operations)
