"""labelers.mates (numba) against python-chess: the legal moves after which
``board.is_checkmate()``, as policy indices.

Compared on every distinct position of: hand-made edge cases (castling, en passant,
promotions and underpromotions, discovered and double checks, a check answered only
by en passant), seeded random play, the last plies of random games that end in mate,
random placements and sparse won endgames (where mates are common), the shared puzzles
and openings, and the sample data through the data engine's readers and records
(``units_to_block``, so the stored column itself): in ``make test`` the trap files
whole and every SAMPLE_EVERY-th unit of the rest, under ``make test-slow`` every unit
of every sample file and every shared game. The helpers are test_stalemate's.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import partial

import chess
import numpy as np
import pytest

from dataengine import policy
from dataengine.traps import mating_moves
from labelers.mates import MAX_MATE_MOVES, NO_MOVE, inputs_of_boards, mate_moves
from tests.test_labelers import RANDOM_GAMES_SEED, random_boards, random_placements
from tests.test_stalemate import (
    SAMPLE,
    SAMPLE_EVERY,
    SAMPLE_FILES,
    SPARSE_POSITIONS,
    TRAP_FILES,
    canonical,
    columns_of,
    needs_data,
    sample_block,
    shared_games,
    shared_puzzles_and_openings,
    sparse_placements,
)
from tests.test_stalemate import assert_agrees as _assert_agrees


def every_mating_index(board: chess.Board) -> list[int]:
    """python-chess (traps.mating_moves): the ascending policy indices of the legal moves
    of the (canonical, White to move) `board` that checkmate the other side."""
    return sorted(policy.move_to_index(m, chess.WHITE) for m in mating_moves(board))


def reference(board: chess.Board) -> list[int]:
    return every_mating_index(board)[:MAX_MATE_MOVES]


assert_agrees = partial(_assert_agrees, kernel=mate_moves, column="mate_moves",
                        reference=reference, what="a mating move")


# --- hand-made cases -----------------------------------------------------------------

EDGE_CASES = [
    # (FEN, moves that must be among the mating ones, moves that must not)
    ("6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1", ["a1a8"], ["a1a7"]),  # back rank
    ("6rk/6pp/8/6N1/8/8/8/6K1 w - - 0 1", ["g5f7"], ["g5h7"]),  # smothered
    ("2rkr3/2p1p3/8/8/8/8/8/R3K3 w Q - 0 1", ["e1c1", "a1d1"], []),  # castling mates
    ("8/8/8/1R1pP1kB/6N1/6K1/2pn4/8 w - d6 0 1", ["e5d6"], ["e5e6"]),  # en passant
    ("8/1P2N3/Q6K/8/1k2N3/8/8/8 w - - 0 1", ["b7b8r"], []),  # an underpromotion
    ("8/R3P2k/3K4/R7/2p2B2/8/1n6/8 w - - 0 1", ["e7e8q"], []),  # a promotion
    ("8/7P/7k/8/8/8/7B/4K1QR w - - 0 1", ["h2f4"], []),  # double check
    # g4+ and f4+ are checks answered only by taking en passant: no mate
    ("8/2Bp2Q1/8/5k2/2Q4p/7K/6P1/8 w - - 0 1", [], ["g2g4"]),
    ("5Q2/Q7/8/4k3/2B1p3/8/K4P2/8 w - - 0 1", [], ["f2f4"]),
    # Qb7 is mate (the king guards it), Qb8+ is taken
    ("k7/8/K7/8/8/8/8/1Q6 w - - 0 1", ["b1b7"], ["b1b8"]),
]


@pytest.mark.parametrize("fen, yes, no", EDGE_CASES)
def test_edge_cases(fen, yes, no):
    board = chess.Board(fen)
    got = mate_moves(*inputs_of_boards([board]))
    have = [int(m) for m in got[0] if m != NO_MOVE]
    every = every_mating_index(board)
    assert have == every[:MAX_MATE_MOVES]
    for uci in yes:
        index = policy.move_to_index(chess.Move.from_uci(uci), chess.WHITE)
        assert index in every, uci
        assert index in have or len(every) > MAX_MATE_MOVES, uci
    for uci in no:
        move = chess.Move.from_uci(uci)
        assert move in board.legal_moves, uci
        assert policy.move_to_index(move, chess.WHITE) not in every, uci


def test_more_mates_than_the_column_keeps_the_lowest():
    board = chess.Board("2R5/7R/1K3k2/4R3/8/8/4Q1QQ/4Q3 w - - 0 1")  # 14 mates
    every = every_mating_index(board)
    assert len(every) > MAX_MATE_MOVES
    got = mate_moves(*inputs_of_boards([board]))
    assert got.dtype == np.uint16 and got.shape == (1, MAX_MATE_MOVES)
    assert got[0].tolist() == every[:MAX_MATE_MOVES]


def test_no_mate_gives_no_moves_and_empty_input_works():
    assert (mate_moves(*inputs_of_boards([chess.Board()])) == NO_MOVE).all()
    empty = mate_moves(np.zeros((0, 12), np.uint64), np.zeros(0, np.uint8), np.zeros(0, np.int8))
    assert empty.shape == (0, MAX_MATE_MOVES)


def test_bad_inputs_are_refused():
    planes = np.zeros((2, 12), np.uint64)
    with pytest.raises(ValueError, match="castling and ep_file"):
        mate_moves(planes, np.zeros(3, np.uint8), np.zeros(2, np.int8))
    with pytest.raises(ValueError, match="planes"):
        mate_moves(planes.astype(np.int64), np.zeros(2, np.uint8), np.zeros(2, np.int8))


# --- random positions ------------------------------------------------------------------


def before_random_mates(seed: int, n_games: int, plies: int = 12) -> Iterator[chess.Board]:
    """The last `plies` positions of each of `n_games` seeded random games that end in
    checkmate (the position before the mate among them)."""
    rng = random.Random(seed)
    made = 0
    while made < n_games:
        board = chess.Board()
        history = []
        while not board.is_game_over(claim_draw=False) and board.ply() < 400:
            history.append(board.copy(stack=False))
            board.push(rng.choice(list(board.legal_moves)))
        if board.is_checkmate():
            made += 1
            yield from history[-plies:]


def test_random_play_and_placements_agree():
    boards = [canonical(b) for b in random_boards(RANDOM_GAMES_SEED, 20_000)]
    boards += [canonical(b) for b in random_placements(RANDOM_GAMES_SEED, 5_000)]
    assert_agrees(columns_of(boards), "random play and placements")


def test_before_random_mates_agree():
    boards = [canonical(b) for b in before_random_mates(3, 300)]
    with_moves = assert_agrees(columns_of(boards), "last plies of random mated games")
    assert with_moves >= 150  # at least the position before each mate, once per side


def test_sparse_placements_agree():
    with_moves = assert_agrees(columns_of(sparse_placements(11, SPARSE_POSITIONS)),
                               "sparse placements")
    assert with_moves > 500


# --- the sample data, through the readers and records -----------------------------------


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_sample_files_agree(name):
    every = 1 if name in TRAP_FILES or name.endswith((".csv", ".tsv")) else SAMPLE_EVERY
    assert_agrees(sample_block(SAMPLE / name, every), f"{name} (every {every})", stored=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_sample_files_agree_on_every_unit(name):
    assert_agrees(sample_block(SAMPLE / name, 1), name, stored=True)


@needs_data
def test_shared_puzzles_and_openings_agree():
    with_moves = assert_agrees(shared_puzzles_and_openings(), "shared puzzles, openings")
    assert with_moves > 0  # mateIn1 puzzles end in one


@needs_data
@pytest.mark.slow
def test_shared_games_agree():
    assert_agrees(shared_games(), "shared games", stored=True)
