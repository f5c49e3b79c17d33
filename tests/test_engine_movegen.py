"""The search's numba positions against python-chess, move for move.

Every position of many seeded random games and of the sample EPD files: the legal
moves (and their policy indices), the position after each of them, the repetition
key (equal exactly when python-chess's transposition key is), insufficient material,
check, and the network inputs (equal to the shards' encoding of the same board).
"""

from __future__ import annotations

import random
from pathlib import Path

import chess
import numpy as np
import pytest

from dataengine import policy
from train.engine import movegen, tree
from train.evaluation.inputs import board_inputs

SAMPLE = Path(__file__).resolve().parents[1] / "dataengine" / "sample_data"

# hand-made: castling through and out of check, en passant that exposes the king on
# its rank, promotions with and without capture, double check, pinned pieces
EDGE_FENS = [
    "r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1",
    "r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1",
    "r3k2r/8/8/8/8/5q2/8/R3K2R w KQkq - 0 1",  # f1 attacked: no O-O; O-O-O fine
    "r3k2r/8/8/8/8/8/4q3/R3K2R w KQkq - 0 1",  # in check: no castling
    "r3k2r/8/8/8/8/8/8/Rn2K2R w KQkq - 0 1",  # b1 occupied: no O-O-O
    "8/8/8/K2pP2r/8/8/8/7k w - d6 0 1",  # exd6 e.p. would expose the king on rank 5
    "8/8/8/3pP3/8/8/8/K6k w - d6 0 1",
    "4k3/8/8/8/2pP4/8/8/4K2B b - d3 0 1",  # cxd3 e.p. legal? the bishop pins nothing
    "1r2k3/P7/8/8/8/8/8/4K3 w - - 0 1",  # a8=Q, axb8 with every promotion
    "4k3/8/8/8/8/8/p7/1R2K3 b - - 0 1",
    "4k3/8/8/8/8/5n2/8/r3K3 w - - 0 1",  # double check: king moves only
    "4k3/4r3/8/8/8/8/4B3/4K3 w - - 0 1",  # pinned bishop
    "7k/5Q2/6K1/8/8/8/8/8 b - - 0 1",  # stalemate
    "6rk/5Npp/8/8/8/8/8/6K1 b - - 0 1",  # smothered: mate
]


def _states(board: chess.Board):
    return movegen.state_of_board(board)


def _check_position(board: chess.Board, moves: np.ndarray, indices: np.ndarray,
                    out: np.ndarray, children: int | None = None) -> None:
    """Legal moves, indices, check and material of ``board``; the position after each
    legal move (or after ``children`` of them, drawn by the position's ply)."""
    bb, castling, ep, halfmove = _states(board)
    n, ep_legal = movegen.legal_moves(bb, castling, ep, moves, indices)
    mine = {movegen.move_to_chess(int(m), board.turn): int(i)
            for m, i in zip(moves[:n], indices[:n], strict=True)}
    assert len(mine) == n
    legal = list(board.legal_moves)
    assert set(mine) == set(legal), board.fen()
    for move in legal:
        assert mine[move] == policy.move_to_index(move, board.turn), (board.fen(), move)
    assert ep_legal == (ep >= 0)
    assert bool(movegen.in_check(bb)) == board.is_check()
    assert bool(movegen.insufficient_material(bb)) == board.is_insufficient_material()
    if children is not None:
        legal = random.Random(len(board.move_stack)).sample(legal, min(children, len(legal)))
    for move in legal:
        c, e, h = movegen.make_move(bb, castling, ep, halfmove, movegen.move_of_chess(
            move, board.turn), out)
        board.push(move)
        bb2, c2, e2, h2 = _states(board)
        scratch_m, scratch_i = np.zeros_like(moves), np.zeros_like(indices)
        _, legal_ep = movegen.legal_moves(out, c, e, scratch_m, scratch_i)
        assert np.array_equal(out, bb2) and (c, h) == (c2, h2), (board.fen(), move)
        assert (e if legal_ep else -1) == e2, (board.fen(), move)
        board.pop()


def _random_games(n_games: int, seed: int, max_plies: int = 160):
    rng = random.Random(seed)
    for _ in range(n_games):
        board = chess.Board()
        for _ in range(max_plies):
            if board.is_game_over(claim_draw=False):
                break
            yield board
            board.push(rng.choice(list(board.legal_moves)))


@pytest.fixture
def scratch():
    return (np.zeros(movegen.MAX_MOVES, np.int32), np.zeros(movegen.MAX_MOVES, np.int32),
            np.zeros(12, np.uint64))


def test_edge_positions_match_python_chess(scratch):
    for fen in EDGE_FENS:
        _check_position(chess.Board(fen), *scratch)


def test_random_games_match_python_chess(scratch):
    count = 0
    for board in _random_games(40, seed=0):
        _check_position(board, *scratch, children=2)
        count += 1
    assert count > 3000


@pytest.mark.slow
def test_many_random_games_every_child_matches_python_chess(scratch):
    count = 0
    for board in _random_games(300, seed=10):
        _check_position(board, *scratch)
        count += 1
    assert count > 25000


def _epd_boards(path: Path, every: int):
    with path.open() as f:
        for i, line in enumerate(f):
            if i % every == 0 and line.strip() and not line.startswith("#"):
                yield chess.Board.from_epd(line)[0]


@pytest.mark.parametrize("name", ["traps_15000.epd", "traps_mixed_12000.epd",
                                  "sf_vs_random_3000.epd", "dagger_r2.epd"])
def test_sample_positions_match_python_chess(name, scratch):
    count = 0
    for board in _epd_boards(SAMPLE / name, every=397):
        _check_position(board, *scratch)
        count += 1
    assert count > 20


def test_keys_equal_exactly_when_python_chess_transposition_keys_are():
    seen: dict[int, tuple] = {}
    python_keys: dict[tuple, int] = {}
    for board in _random_games(40, seed=1, max_plies=120):
        bb, castling, ep, _ = _states(board)
        key = int(movegen.position_key(bb, castling, ep))
        reference = board._transposition_key()
        assert seen.setdefault(key, reference) == reference
        assert python_keys.setdefault(reference, key) == key
    assert len(seen) > 3000


def test_encoded_inputs_equal_the_shards_encoding():
    boards = [chess.Board(fen) for fen in EDGE_FENS]
    boards += list(_random_games(10, seed=2, max_plies=120))
    for board in boards[::3]:
        board.halfmove_clock = random.Random(len(board.move_stack)).randrange(0, 140)
    leaves = tree.LeafBuffers(len(boards))
    for i, board in enumerate(boards):
        bb, castling, ep, halfmove = _states(board)
        leaves.bb[i] = bb
        leaves.meta[i] = (castling, ep, halfmove)
    out = np.zeros((len(boards), tree.N_INPUT_PLANES, 8, 8), np.float32)
    tree.encode(leaves.bb, leaves.meta, len(boards), out)
    assert np.array_equal(out, board_inputs(boards).numpy())
