"""dataengine.traps: every drawn position is a trap, Stockfish's move avoids it, the
EPD reads back as positions with that move and eval."""

from __future__ import annotations

import chess
import pytest

from dataengine import traps
from dataengine.readers import Unit, read
from tests.test_selfplay import stockfish_or_skip


def stalemates(board: chess.Board, move: chess.Move) -> bool:
    after = board.copy()
    after.push(move)
    return not any(after.legal_moves) and not after.is_check()


def test_every_drawn_position_is_a_won_trap():
    boards = [traps.trap(3, n) for n in range(300)]
    assert all(b is not None for b in boards)
    for board in boards:
        assert board.is_valid() and not board.is_game_over()
        strong, weak = board.turn, not board.turn
        # the weak side: a king and at most two pawns; the strong side has a queen or rook
        assert board.pieces_mask(chess.KING, weak) | board.pieces_mask(chess.PAWN, weak) \
            == board.occupied_co[weak]
        assert chess.popcount(board.pieces_mask(chess.PAWN, weak)) <= 2
        assert board.pieces(chess.QUEEN, strong) or board.pieces(chess.ROOK, strong)
        trap_moves = [m for m in board.legal_moves if stalemates(board, m)]
        assert trap_moves and set(trap_moves) == set(traps.stalemating_moves(board))
    # both colours are the strong side, and a queen is not the only material
    assert {b.turn for b in boards} == {chess.WHITE, chess.BLACK}
    assert any(b.pieces(chess.ROOK, b.turn) for b in boards)


def blocked_pawns(board: chess.Board, color: chess.Color) -> int:
    step = 8 if color == chess.WHITE else -8
    return sum(board.piece_at(s + step) is not None for s in board.pieces(chess.PAWN, color))


def test_mixed_family_traps_have_minor_pieces_and_blocked_pawns():
    boards = [traps.trap(4, n, family="mixed") for n in range(120)]
    assert all(b is not None for b in boards)
    for board in boards:
        assert board.is_valid() and not board.is_game_over()
        weak = not board.turn
        assert board.pieces_mask(chess.KING, weak) | board.pieces_mask(chess.PAWN, weak) \
            == board.occupied_co[weak]
        assert 1 <= chess.popcount(board.pieces_mask(chess.PAWN, weak)) <= 4
        assert set(traps.stalemating_moves(board)) == \
            {m for m in board.legal_moves if stalemates(board, m)} != set()
    strong_minor = [b for b in boards if b.pieces(chess.KNIGHT, b.turn) or
                    b.pieces(chess.BISHOP, b.turn)]
    assert len(strong_minor) > 90  # most sets have minor pieces
    assert sum(blocked_pawns(b, not b.turn) > 0 for b in boards) > 60
    # a family of its own: not the heavy family's positions, and its ids say so
    assert [b.fen() for b in boards[:20]] != [traps.trap(4, n).fen() for n in range(20)]
    with pytest.raises(ValueError, match="family"):
        traps.traps("t.epd", positions=1, family="light")


def test_position_n_depends_only_on_seed_and_n():
    assert traps.trap(5, 17).fen() == traps.trap(5, 17).fen()
    assert [traps.trap(5, n).fen() for n in range(20)] != \
        [traps.trap(6, n).fen() for n in range(20)]


def test_written_epd_has_stockfish_moves_that_do_not_stalemate(tmp_path):
    engine = stockfish_or_skip()
    out = tmp_path / "traps.epd"
    summary = traps.traps(out, positions=16, seed=1, nodes=300, workers=1, engine=engine,
                          quiet=True)
    lines = out.read_text().splitlines()
    assert summary["written"] == len(lines) == summary["distinct"] - summary["failed"]
    assert summary["written"] >= 15
    for line in lines:
        board, ops = chess.Board.from_epd(line)
        assert ops["id"].startswith("trap s1 ")
        assert board.is_legal(ops["bm"][0]) and not stalemates(board, ops["bm"][0])
        # the strong side is winning: a mate for it, or a large plus
        assert ops.get("dm", 0) > 0 or ops.get("ce", 0) > 300
    units = [u for u in read(str(out)) if isinstance(u, Unit)]
    assert len(units) == len(lines)
    assert all(u.has_eval == [True] and u.move[0] >= 0 for u in units)


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="EPD"):
        traps.traps(tmp_path / "t.txt", positions=1)
    with pytest.raises(ValueError, match="positions"):
        traps.traps(tmp_path / "t.epd", positions=0)
