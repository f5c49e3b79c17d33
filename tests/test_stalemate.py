"""labelers.stalemate (numba) against python-chess: the legal moves after which
``board.is_stalemate()``, as policy indices.

Compared on every distinct position of: hand-made edge cases (castling, en passant on
either side, promotions and underpromotions, more moves than the column holds), seeded
random play and random sparse placements (where stalemates are common), the shared
puzzles and openings, and the sample data through the data engine's own readers and
records (``units_to_block``, so the stored column itself): in ``make test`` the trap
files whole and every SAMPLE_EVERY-th unit of the rest, under ``make test-slow`` every
unit of every sample file and every shared game.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Iterator

import chess
import numpy as np
import pytest

from dataengine import policy, readers, schema, views
from dataengine.records import position_keys, units_to_block
from dataengine.traps import stalemating_moves
from labelers import stalemate
from labelers.stalemate import MAX_STALEMATE_MOVES, NO_MOVE, inputs_of_boards, stalemate_moves
from tests.naive import SAMPLE, shared_data
from tests.test_labelers import RANDOM_GAMES_SEED, random_boards, random_placements

DATA = shared_data()
needs_data = pytest.mark.skipif(
    DATA is None, reason="shared sample data not found (set CHESS_SSL_SHARED_DATA)"
)
SAMPLE_EVERY = 20  # make test: every 20th unit of the larger sample files
TRAP_FILES = ("traps_15000.epd", "traps_mixed_12000.epd")
SPARSE_POSITIONS = 20_000


def reference(board: chess.Board) -> list[int]:
    """python-chess (traps.stalemating_moves): the first MAX_STALEMATE_MOVES of the
    ascending policy indices of the legal moves of the (canonical, White to move) `board`
    that stalemate the other side."""
    return every_stalemating_index(board)[:MAX_STALEMATE_MOVES]


def every_stalemating_index(board: chess.Board) -> list[int]:
    return sorted(policy.move_to_index(m, chess.WHITE) for m in stalemating_moves(board))


def columns_of(boards: Iterable[chess.Board]) -> schema.Block:
    """A block of the kernel's inputs (planes, castling, ep_file) of canonical boards,
    made from python-chess by labelers.stalemate.inputs_of_boards (the records path is
    checked on the sample data)."""
    boards = list(boards)
    block = schema.empty_columns(len(boards))
    block["themes"] = np.full(len(boards), "")
    block["planes"], block["castling"], block["ep_file"] = inputs_of_boards(boards)
    return block


def canonical(board: chess.Board) -> chess.Board:
    return board.copy(stack=False) if board.turn == chess.WHITE else board.mirror()


def distinct(block: schema.Block) -> schema.Block:
    _, first = np.unique(position_keys(block), return_index=True)
    return schema.take(block, np.sort(first))


def assert_agrees(block: schema.Block, source: str, stored: bool = False, *,
                  kernel=stalemate_moves, column: str = "stalemate_moves",
                  reference=reference, what: str = "a stalemating move") -> int:
    """The kernel (or, with `stored`, the block's own column) equals the reference on
    every distinct position of `block`; returns how many had `what`. The keywords name
    another kernel of the same shape (test_mates)."""
    block = distinct(block)
    n = schema.block_len(block)
    assert n > 0, f"no {source} positions"
    got = (block[column] if stored else
           kernel(block["planes"], block["castling"], block["ep_file"]))
    with_moves = 0
    for i in range(n):
        board = views.canonical_board(block, i)
        want = reference(board)
        have = [int(m) for m in got[i] if m != NO_MOVE]
        assert have == want, f"{source}: {board.fen()!r}: kernel {have}, python-chess {want}"
        with_moves += bool(want)
    print(f"{source}: {n} distinct positions, {with_moves} with {what}, agree")
    return with_moves


# --- hand-made cases -----------------------------------------------------------------

EDGE_CASES = [
    # (FEN, moves that must be among the stalemating ones, moves that must not)
    ("7k/8/6K1/8/8/8/8/5Q2 w - - 0 1", ["f1f7", "f1c4"], ["f1f8"]),
    ("1k6/3Q4/1P6/8/8/3P4/8/R3K2R w KQ - 0 1", ["e1g1"], []),  # 23 of them, castling too
    ("7B/6P1/7k/8/7K/8/P7/8 w - - 0 1", ["g7g8q"], []),  # a queen promotion
    ("8/1P6/8/4N3/7Q/P3k3/8/4K2R w K - 0 1", ["b7b8r"], []),  # an underpromotion
    ("1R2R3/5Q2/6K1/1Pp5/8/8/4Q3/2k5 w - c6 0 1", ["b5c6"], []),  # en passant
    # e2e4 would leave Black only d4xe3 en passant: no stalemate; Kh2 is one
    ("k7/8/1Q6/8/3p4/3N4/4P3/7K w - - 0 1", ["h1h2", "b6c7"], ["e2e4"]),
    # the knight on b7 is pinned and cannot move while the bishop stays on the diagonal
    ("k7/1nK5/1P6/8/8/5B2/8/8 w - - 0 1", ["f3e4", "f3g2", "c7c8"], ["f3e2", "f3b7"]),
]


@pytest.mark.parametrize("fen, yes, no", EDGE_CASES)
def test_edge_cases(fen, yes, no):
    board = chess.Board(fen)
    got = stalemate_moves(*inputs_of_boards([board]))
    have = [int(m) for m in got[0] if m != NO_MOVE]
    every = every_stalemating_index(board)
    assert have == every[:MAX_STALEMATE_MOVES]
    for uci in yes:
        index = policy.move_to_index(chess.Move.from_uci(uci), chess.WHITE)
        assert index in every, uci
        assert index in have or len(every) > MAX_STALEMATE_MOVES, uci
    for uci in no:
        assert policy.move_to_index(chess.Move.from_uci(uci), chess.WHITE) not in have, uci


def test_more_moves_than_the_column_keeps_the_lowest():
    board = chess.Board("1k6/3Q4/1P6/8/8/3P4/8/R3K2R w KQ - 0 1")
    every = every_stalemating_index(board)
    assert len(every) > MAX_STALEMATE_MOVES
    got = stalemate_moves(*inputs_of_boards([board]))
    assert got.dtype == np.uint16 and got.shape == (1, MAX_STALEMATE_MOVES)
    assert got[0].tolist() == every[:MAX_STALEMATE_MOVES]


def test_the_kernels_plane_table_is_the_policy_encodings():
    # labelers does not import dataengine: its copy of the queen-like and knight planes
    np.testing.assert_array_equal(stalemate._PLANE.reshape(-1), policy._build_plane_of())


def test_no_stalemate_gives_no_moves_and_empty_input_works():
    got = stalemate_moves(*inputs_of_boards([chess.Board()]))
    assert (got == NO_MOVE).all()
    empty = stalemate_moves(np.zeros((0, 12), np.uint64), np.zeros(0, np.uint8),
                            np.zeros(0, np.int8))
    assert empty.shape == (0, MAX_STALEMATE_MOVES)


def test_bad_inputs_are_refused():
    planes = np.zeros((2, 12), np.uint64)
    with pytest.raises(ValueError, match="castling and ep_file"):
        stalemate_moves(planes, np.zeros(3, np.uint8), np.zeros(2, np.int8))
    with pytest.raises(ValueError, match="planes"):
        stalemate_moves(planes.astype(np.int64), np.zeros(2, np.uint8), np.zeros(2, np.int8))


# --- random positions ------------------------------------------------------------------


def sparse_placements(seed: int, n: int) -> Iterator[chess.Board]:
    """Valid positions of two kings, 1-4 pieces or pawns for White and 0-3 pawns (and
    sometimes a piece) for Black, with castling rights and en passant where they can be:
    the material of won endgames, where stalemates are common."""
    rng = random.Random(seed)
    ours = [chess.PAWN, chess.PAWN, chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN]
    made = 0
    while made < n:
        board = chess.Board(None)
        squares = rng.sample(chess.SQUARES, 10)
        board.set_piece_at(squares[0], chess.Piece(chess.KING, chess.WHITE))
        board.set_piece_at(squares[1], chess.Piece(chess.KING, chess.BLACK))
        k = 2
        for _ in range(rng.randint(1, 4)):
            board.set_piece_at(squares[k], chess.Piece(rng.choice(ours), chess.WHITE))
            k += 1
        for _ in range(rng.randint(0, 3)):
            board.set_piece_at(squares[k], chess.Piece(chess.PAWN, chess.BLACK))
            k += 1
        if rng.random() < 0.2:
            board.set_piece_at(squares[k], chess.Piece(rng.choice(ours[2:]), chess.BLACK))
        if rng.random() < 0.1:  # castling: king e1 and rooks on their corners
            board.remove_piece_at(squares[0])
            board.set_piece_at(chess.E1, chess.Piece(chess.KING, chess.WHITE))
            board.set_piece_at(chess.H1, chess.Piece(chess.ROOK, chess.WHITE))
            board.castling_rights = board.clean_castling_rights() | chess.BB_H1
            board.castling_rights = board.clean_castling_rights()
        board.turn = chess.WHITE
        if board.is_valid():
            made += 1
            yield board


def test_sparse_placements_agree():
    with_moves = assert_agrees(columns_of(sparse_placements(7, SPARSE_POSITIONS)),
                               "sparse placements")
    assert with_moves > 300  # 497 with seed 7: the set is there to exercise them


def test_random_play_and_placements_agree():
    boards = [canonical(b) for b in random_boards(RANDOM_GAMES_SEED, 20_000)]
    boards += [canonical(b) for b in random_placements(RANDOM_GAMES_SEED, 5_000)]
    assert_agrees(columns_of(boards), "random play and placements")


# --- the sample data, through the readers and records -----------------------------------


def sample_block(path, every: int) -> schema.Block:
    """Every `every`-th unit of a sample file as records (units_to_block: the column as
    the build stores it)."""
    units = [u for k, u in enumerate(x for x in readers.read(str(path))
                                     if isinstance(x, readers.Unit)) if k % every == 0]
    return units_to_block(units, file_id=0)


SAMPLE_FILES = sorted(p.name for p in SAMPLE.iterdir()
                      if p.suffix in (".epd", ".pgn", ".csv", ".tsv"))


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_sample_files_agree(name):
    every = 1 if name in TRAP_FILES or name.endswith((".csv", ".tsv")) else SAMPLE_EVERY
    assert_agrees(sample_block(SAMPLE / name, every), f"{name} (every {every})", stored=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_sample_files_agree_on_every_unit(name):
    assert_agrees(sample_block(SAMPLE / name, 1), name, stored=True)


def shared_puzzles_and_openings() -> schema.Block:
    """Every position of the shared puzzles (start and after each solution move) and the
    shared opening lines (through the readers and records)."""
    boards = []
    for path in sorted((DATA / "puzzles").glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                board = chess.Board(row["FEN"])
                boards.append(canonical(board))
                for uci in row["Moves"].split():
                    board.push_uci(uci)
                    boards.append(canonical(board))
    blocks = [records_of(p) for p in sorted((DATA / "openings").glob("*.tsv"))]
    return schema.concat_blocks([columns_of(boards), *blocks])


def shared_games() -> schema.Block:
    return schema.concat_blocks([records_of(p) for p in sorted((DATA / "games").glob("*.pgn"))])


def records_of(path) -> schema.Block:
    return units_to_block([u for u in readers.read(str(path)) if isinstance(u, readers.Unit)],
                          file_id=0)


@needs_data
def test_shared_puzzles_and_openings_agree():
    assert_agrees(shared_puzzles_and_openings(), "shared puzzles, openings")


@needs_data
@pytest.mark.slow
def test_shared_games_agree():
    assert_agrees(shared_games(), "shared games", stored=True)
