"""The PUCT search: the classic bugs each fail a test here.

The evaluators are stand-ins with known behaviour, so a result depends on the search
alone: ``Uniform`` (flat policy, value 0: only finished games carry information),
``Material`` (flat policy, value tanh of the material balance: a side a queen up is
winning, so a draw is a loss of value for it) and ``Hashed`` (a fixed pseudo-random
policy and value per position, whatever else is in the batch).
"""

from __future__ import annotations

import hashlib
import threading
import time

import chess
import numpy as np
import pytest

from train.engine import tree
from train.engine.search import Search, SearchConfig, search_many, value_to_cp

_PIECE_VALUES = np.array([1, 3, 3, 5, 9, 0], dtype=np.float32)


class Uniform:
    has_wdl = False

    def raw(self, x):
        n = len(x)
        return np.zeros((n, 4672), np.float32), np.zeros(n, np.float32), None


class Material(Uniform):
    def raw(self, x):
        logits, _, _ = super().raw(x)
        counts = x[:, :12].sum(axis=(2, 3))
        balance = counts[:, :6] @ _PIECE_VALUES - counts[:, 6:] @ _PIECE_VALUES
        return logits, np.tanh(0.3 * balance).astype(np.float32), None


class Hashed(Uniform):
    def raw(self, x):
        logits, values = [], []
        for row in x:
            seed = int.from_bytes(hashlib.sha256(row.tobytes()).digest()[:8], "little")
            rng = np.random.default_rng(seed)
            logits.append(rng.normal(size=4672).astype(np.float32))
            values.append(np.float32(rng.uniform(-0.5, 0.5)))
        return np.stack(logits), np.array(values, np.float32), None


def _search(fen_or_board, evaluator, nodes, **config) -> tuple[Search, chess.Move]:
    board = chess.Board(fen_or_board) if isinstance(fen_or_board, str) else fen_or_board
    search = Search(evaluator, SearchConfig(**config))
    search.set_position(board)
    return search, search.run(nodes=nodes).move


def _mates_in_one(board: chess.Board) -> list[chess.Move]:
    found = []
    for move in board.legal_moves:
        board.push(move)
        if board.is_checkmate():
            found.append(move)
        board.pop()
    return found


def _forces_mate_in_two(board: chess.Board, move: chess.Move) -> bool:
    """After ``move``, every reply leaves a mate in one."""
    board.push(move)
    try:
        if board.is_checkmate():
            return True
        replies = list(board.legal_moves)
        for reply in replies:
            board.push(reply)
            ok = bool(_mates_in_one(board))
            board.pop()
            if not ok:
                return False
        return bool(replies)
    finally:
        board.pop()


@pytest.mark.parametrize("fen", ["6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1",
                                 "r5k1/8/8/8/8/8/5PPP/6K1 b - - 0 1"])
def test_finds_a_mate_in_one_for_either_colour(fen):
    board = chess.Board(fen)
    _, move = _search(board, Uniform(), 400)
    board.push(move)
    assert board.is_checkmate()


# Lichess puzzles 00awK (Qf8+ Rxf8 Rxf8#) and 007mr (...Rd1+ Rxd1 Rxd1#), after their
# setup moves
@pytest.mark.parametrize("fen, setup", [
    ("r5k1/2p2Qpp/p7/4b3/8/8/1PP1KR2/2q5 b - - 0 24", "g8h8"),
    ("5k2/p2r3p/1p4pP/3r1q2/3Rp3/2P5/PP3PQ1/K3R3 w - - 0 33", "d4e4")])
def test_finds_a_mate_in_two_for_either_colour(fen, setup):
    board = chess.Board(fen)
    board.push_uci(setup)
    assert not _mates_in_one(board)
    _, move = _search(board, Uniform(), 3000)
    assert _forces_mate_in_two(board, move), move


def test_defends_against_a_mate_in_one():
    # White threatens Ra8#; most of Black's moves (the knight's, Kh8) allow it
    board = chess.Board("6k1/5ppp/8/n7/8/8/5PPP/R5K1 b - - 0 1")
    _, move = _search(board, Uniform(), 1500)
    board.push(move)
    assert not _mates_in_one(board), move


def test_avoids_stalemating_when_winning():
    board = chess.Board("7k/8/5K2/8/8/8/8/6Q1 w - - 0 1")  # Qg6 stalemates, Qg7 mates
    search, move = _search(board, Material(), 800)
    board.push(move)
    assert not board.is_stalemate()
    board.pop()
    stalemating = movegen_child(search, board, chess.Move.from_uci("g1g6"))
    assert search.tree.status[stalemating] == tree.TERMINAL
    assert search.tree.tvalue[stalemating] == 0.0


def movegen_child(search: Search, board: chess.Board, move: chess.Move) -> int:
    from train.engine import movegen

    packed = movegen.move_of_chess(move, board.turn)
    for child in search.tree.children(search.root):
        if search.tree.move[child] == packed:
            return child
    raise AssertionError(f"{move} is not a root child")


def test_fifty_move_rule_is_a_draw():
    # a queen up at halfmove 99: every quiet move draws; only the pawn keeps the win
    board = chess.Board("7k/8/8/8/8/8/P7/K5Q1 w - - 99 80")
    search, move = _search(board, Material(), 600)
    assert board.piece_type_at(move.from_square) == chess.PAWN, move
    quiet = movegen_child(search, board, chess.Move.from_uci("g1g2"))
    assert search.tree.status[quiet] == tree.TERMINAL and search.tree.tvalue[quiet] == 0.0


def _repeated_game(fen: str, moves: str) -> chess.Board:
    board = chess.Board(fen)
    for uci in moves.split():
        board.push_uci(uci)
    return board


def test_repetition_is_a_draw_avoided_when_winning():
    board = _repeated_game("7k/8/8/8/8/8/8/K5Q1 w - - 0 1", "a1a2 h8h7 a2a1 h7h8")
    search, move = _search(board, Material(), 600)
    assert move != chess.Move.from_uci("a1a2")
    repeat = movegen_child(search, board, chess.Move.from_uci("a1a2"))
    if search.tree.visits[repeat]:
        assert search.tree.status[repeat] == tree.TERMINAL and search.tree.tvalue[repeat] == 0


def test_repetition_is_a_draw_sought_when_losing():
    board = _repeated_game("7k/8/8/8/8/8/8/K5Q1 b - - 0 1", "h8h7 a1a2 h7h8 a2a1")
    _, move = _search(board, Material(), 600)
    assert move == chess.Move.from_uci("h8h7")


def test_same_move_alone_and_inside_a_batch():
    fens = ["r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3",
            "8/8/4k3/8/2R5/5K2/8/8 b - - 0 1",
            "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1"]
    alone = []
    for fen in fens:
        search, _ = _search(fen, Hashed(), 200, batch_size=16)
        alone.append(search.result())
    batched = search_many(Hashed(), [chess.Board(f) for f in fens], 200,
                          SearchConfig(batch_size=16))
    for a, b in zip(alone, batched, strict=True):
        assert a.move == b.move
        assert [(m, n) for m, n, _ in a.multipv] == [(m, n) for m, n, _ in b.multipv]


def test_node_budget_and_batch_of_one_agree_on_the_best_move_with_a_clear_signal():
    # batching with virtual loss may change visit counts but not an obvious choice
    fen = "6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1"
    for batch in (1, 8, 64):
        search, move = _search(fen, Uniform(), 300, batch_size=batch)
        assert move == chess.Move.from_uci("a1a8")
        assert 300 <= search.result().nodes < 300 + batch


def test_tree_is_kept_between_moves_of_a_game():
    board = chess.Board()
    search, first = _search(board, Hashed(), 300)
    reply = search.result().pv[1]
    board.push(first)
    board.push(reply)
    kept_visits = int(search.tree.visits[search.tree.first_child[search.root]])
    search.set_position(board)
    assert search.root != 0
    assert int(search.tree.visits[search.root]) > 0
    assert kept_visits >= 0
    assert search.run(nodes=50).move in board.legal_moves
    search.set_position(chess.Board("8/8/4k3/8/2R5/5K2/8/8 b - - 0 1"))  # another game
    assert search.root == 0


def test_stop_event_and_deadline_end_the_search():
    search = Search(Uniform())
    search.set_position(chess.Board())
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    result = search.run(stop=stop)
    assert time.monotonic() - started < 5 and result.move is not None
    result = search.run(deadline=time.monotonic() + 0.2)
    assert result.move in chess.Board().legal_moves


def test_no_legal_move_gives_no_move():
    search = Search(Uniform())
    search.set_position(chess.Board("7k/5Q2/6K1/8/8/8/8/8 b - - 0 1"))
    result = search.run(nodes=10)
    assert result.move is None and result.value == 0.0


def test_value_to_cp_is_monotone_and_bounded():
    values = np.linspace(-1, 1, 201)
    cps = [value_to_cp(v) for v in values]
    assert cps == sorted(cps) and cps[100] == 0
    assert max(abs(c) for c in cps) <= 12800
