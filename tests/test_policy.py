"""Tests of the 8x8x73 policy encoding (dataengine/policy.py).

The data tests check every legal move of every position of the shared sample
data (self-play games, puzzles, opening lines) and of seeded random play.
python-chess move generation and the one-move functions are the cost, so each
distinct position (transpositions are checked once) is visited once and its
moves feed every assertion: the Python round trip per position, then the
numba kernels and decoding vectorised over all moves of a data set. The
mirror-board checks (a second move generation) run on every puzzle and
hand-picked position and on every 4th random one.
"""

from __future__ import annotations

import csv
import os
import random
import re
from array import array
from collections.abc import Callable
from pathlib import Path

import chess
import numpy as np
import pytest

from dataengine.policy import (
    N_POLICY,
    NO_MOVE,
    decode_indices,
    encode_moves,
    index_to_move,
    legal_move_mask,
    move_to_index,
)

SHARED_DATA = Path(
    os.environ.get("CHESS_SSL_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)

# --------------------------------------------------------------------------
# an independent statement of the layout, written from the docstring table

_NAIVE_DIRECTIONS = [(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)]
_NAIVE_KNIGHT = [(1, 2), (2, 1), (2, -1), (1, -2), (-1, -2), (-2, -1), (-2, 1), (-1, 2)]
_NAIVE_UNDERPROMOTION = [chess.KNIGHT, chess.BISHOP, chess.ROOK]


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def _naive_index(move: chess.Move, turn: chess.Color) -> int | None:
    """Policy index by geometry, square by square; None where there is none."""
    frm, to = move.from_square, move.to_square
    if turn == chess.BLACK:
        frm, to = chess.square_mirror(frm), chess.square_mirror(to)
    df = chess.square_file(to) - chess.square_file(frm)
    dr = chess.square_rank(to) - chess.square_rank(frm)
    if move.promotion is not None:
        if chess.square_rank(frm) != 6 or dr != 1 or abs(df) > 1:
            return None
        if move.promotion in _NAIVE_UNDERPROMOTION:
            plane = 64 + 3 * (df + 1) + _NAIVE_UNDERPROMOTION.index(move.promotion)
            return frm * 73 + plane
        if move.promotion != chess.QUEEN:
            return None
    if (df, dr) in _NAIVE_KNIGHT:
        return frm * 73 + 56 + _NAIVE_KNIGHT.index((df, dr))
    if (df, dr) != (0, 0) and (df == 0 or dr == 0 or abs(df) == abs(dr)):
        direction = _NAIVE_DIRECTIONS.index((_sign(df), _sign(dr)))
        return frm * 73 + direction * 7 + max(abs(df), abs(dr)) - 1
    return None


def _error(function: Callable[..., object], *args: object) -> str:
    """The message of the ValueError ``function(*args)`` raises; fails if it raises none."""
    try:
        function(*args)
    except ValueError as error:
        return str(error)
    raise AssertionError(f"no ValueError from {function.__name__}{args!r}")


def _pack(move: chess.Move) -> int:
    return move.from_square | move.to_square << 6 | (move.promotion or 0) << 12


# --------------------------------------------------------------------------
# the position checker shared by every data set


def _canonical_pawns(board: chess.Board) -> int:
    pawns = board.pawns & board.occupied_co[board.turn]
    return pawns if board.turn else chess.flip_vertical(pawns)


class _PositionChecker:
    """Checks every legal move of every distinct position it is given.

    ``add(board)``, per position, in Python: every legal move's index is in
    range, the indices are distinct and ``index_to_move`` inverts
    ``move_to_index``; on every ``mirror_every``-th position (0: never) also:
    the mirrored board's legal moves
    are the mirrored moves and have the same indices (``move_to_index(m,
    BLACK)`` on a board equals ``move_to_index(mirrored m, WHITE)`` on
    ``board.mirror()`` and vice versa), and ``legal_move_mask`` marks exactly
    the indices. It returns the legal moves, so that the position sources can
    pick their next move from them instead of generating them again.

    ``finish()``, vectorised over all the moves: ``encode_moves`` (int64 and
    int32 input) equals ``move_to_index``, ``decode_indices`` gives back the
    canonical moves, and the mirrored moves encode the same with the other
    side to move. Returns (distinct positions, moves).
    """

    def __init__(self, *, mirror_every: int = 0) -> None:
        self.mirror_every = mirror_every
        self.mirrored = 0
        self.seen: set[tuple] = set()
        self.packed, self.indices = array("q"), array("q")
        self.counts, self.turns, self.pawns = array("q"), array("b"), array("Q")

    def add(self, board: chess.Board) -> list[chess.Move] | None:
        """Check ``board``; return its legal moves, or None if it was checked before."""
        key = (
            board.pawns,
            board.knights,
            board.bishops,
            board.rooks,
            board.queens,
            board.kings,
            board.occupied_co[chess.WHITE],
            board.turn,
            board.castling_rights,
            board.ep_square,
        )
        if key in self.seen:  # a transposition: same legal moves
            return None
        self.seen.add(key)
        turn = board.turn
        moves = list(board.generate_legal_moves())
        indices = [move_to_index(m, turn) for m in moves]
        assert [index_to_move(i, board) for i in indices] == moves, board.fen()
        assert len(set(indices)) == len(indices), board.fen()
        if self.mirror_every and len(self.seen) % self.mirror_every == 0:
            self._check_mirror(board, moves, indices)
            self.mirrored += 1
        self.packed.extend(
            [m.from_square | m.to_square << 6 | (m.promotion or 0) << 12 for m in moves]
        )
        self.indices.extend(indices)
        self.counts.append(len(moves))
        self.turns.append(turn)
        self.pawns.append(_canonical_pawns(board))
        return moves

    @staticmethod
    def _check_mirror(board: chess.Board, moves: list[chess.Move], indices: list[int]) -> None:
        mirror = board.copy(stack=False).mirror()  # mirror() copies the move stack
        flipped = [
            chess.Move(
                chess.square_mirror(m.from_square), chess.square_mirror(m.to_square), m.promotion
            )
            for m in moves
        ]
        assert set(flipped) == set(mirror.generate_legal_moves()), board.fen()
        assert [move_to_index(m, mirror.turn) for m in flipped] == indices, board.fen()
        assert np.array_equal(np.flatnonzero(legal_move_mask(board)), np.sort(indices)), board.fen()

    def finish(self) -> tuple[int, int]:
        packed = np.frombuffer(self.packed, dtype=np.int64)
        expected = np.frombuffer(self.indices, dtype=np.int64)
        white = np.repeat(np.frombuffer(self.turns, dtype=np.int8).astype(bool), self.counts)
        assert expected.min(initial=0) >= 0 and expected.max(initial=0) < N_POLICY

        encoded = encode_moves(packed, white)
        assert encoded.dtype == np.uint16
        assert np.array_equal(encoded, expected)
        assert np.array_equal(encode_moves(packed.astype(np.int32), white), expected)

        flip = np.where(white, 0, 56)
        frm, to, promotion = packed & 63, (packed >> 6) & 63, packed >> 12
        pawns = np.repeat(np.frombuffer(self.pawns, dtype=np.uint64), self.counts)
        dec_from, dec_to, dec_promotion = decode_indices(encoded, pawns)
        assert np.array_equal(dec_from, frm ^ flip)
        assert np.array_equal(dec_to, to ^ flip)
        assert np.array_equal(dec_promotion, promotion)

        mirrored = (frm ^ 56) | (to ^ 56) << 6 | promotion << 12
        assert np.array_equal(encode_moves(mirrored, ~white), encoded)
        return len(self.seen), len(expected)


# --------------------------------------------------------------------------
# position sources: each feeds every position to the checker


def _data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"sample data not found: {path} (set CHESS_SSL_SHARED_DATA)")
    return path


_COMMENT = re.compile(r"\{[^}]*\}|;[^\n]*")
_MOVE_NUMBER = re.compile(r"^\d+\.+")
_RESULTS = {"1-0", "0-1", "1/2-1/2", "*"}


def _san_tokens(movetext: str) -> list[str]:
    tokens = (_MOVE_NUMBER.sub("", t) for t in _COMMENT.sub(" ", movetext).split())
    return [t for t in tokens if t and t not in _RESULTS and not t.startswith("$")]


def _find_san(board: chess.Board, moves: list[chess.Move], san: str) -> chess.Move:
    """The one legal move (of ``moves``) that ``san`` names: python-chess's
    ``parse_san`` without generating the moves a second time."""
    san = san.rstrip("+#")
    if san in ("O-O", "O-O-O"):
        kingside = san == "O-O"
        found = [
            m for m in moves if board.is_castling(m) and board.is_kingside_castling(m) == kingside
        ]
    else:
        match = chess.SAN_REGEX.match(san)
        assert match, (board.fen(), san)
        piece = chess.PIECE_SYMBOLS.index(match[1].lower()) if match[1] else chess.PAWN
        file = "abcdefgh".index(match[2]) if match[2] else None
        rank = int(match[3]) - 1 if match[3] else None
        to = chess.parse_square(match[4])
        promotion = chess.PIECE_SYMBOLS.index(match[5][-1].lower()) if match[5] else None
        found = [
            m
            for m in moves
            if m.to_square == to
            and m.promotion == promotion
            and board.piece_type_at(m.from_square) == piece
            and file in (None, chess.square_file(m.from_square))
            and rank in (None, chess.square_rank(m.from_square))
        ]
    assert len(found) == 1, (board.fen(), san, found)
    return found[0]


def _play_line(checker: _PositionChecker, board: chess.Board, tokens: list[str]) -> int:
    """Check ``board`` before each SAN move and after the last; return the positions."""
    for san in tokens:
        moves = checker.add(board)
        board.push(board.parse_san(san) if moves is None else _find_san(board, moves, san))
    checker.add(board)
    return len(tokens) + 1


def _play_pgn(checker: _PositionChecker, path: Path, stats: dict[str, int]) -> None:
    """Every position of every game's mainline (a fast reader: no variations)."""
    for chunk in re.split(r"^(?=\[Event )", path.read_text(), flags=re.MULTILINE):
        if not chunk.strip():
            continue
        fen = re.search(r'^\[FEN "([^"]+)"\]', chunk, flags=re.MULTILINE)
        movetext = "\n".join(line for line in chunk.splitlines() if not line.startswith("["))
        board = chess.Board(fen.group(1) if fen else chess.STARTING_FEN)
        stats["games"] += 1
        stats["positions"] += _play_line(checker, board, _san_tokens(movetext))


def _play_puzzles(checker: _PositionChecker, path: Path, stats: dict[str, int]) -> None:
    """The FEN of each puzzle, then the position after each of its moves."""
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            board = chess.Board(row["FEN"])
            stats["puzzles"] += 1
            for uci in row["Moves"].split():
                moves = checker.add(board)
                move = chess.Move.from_uci(uci)
                assert move in (board.legal_moves if moves is None else moves), row["PuzzleId"]
                board.push(move)
                stats["positions"] += 1
            checker.add(board)
            stats["positions"] += 1


def _play_openings(checker: _PositionChecker, paths: list[Path], stats: dict[str, int]) -> None:
    for path in paths:
        with path.open(newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                stats["lines"] += 1
                stats["positions"] += _play_line(checker, chess.Board(), _san_tokens(row["pgn"]))


def _play_random(checker: _PositionChecker, seed: int, n_positions: int) -> None:
    """Seeded uniform random legal play from the start (at most 400 plies a game)
    until ``n_positions`` distinct positions are checked."""
    rng = random.Random(seed)
    while len(checker.seen) < n_positions:
        board = chess.Board()
        while len(checker.seen) < n_positions:
            moves = checker.add(board)
            if moves is None:
                moves = list(board.generate_legal_moves())
            if not moves or board.ply() >= 400 or board.is_insufficient_material():
                break
            board.push(rng.choice(moves))


# Hand-picked positions: every kind of promotion, castling, en passant, edges.
HAND_PICKED = {
    # c7 can push or capture on b8 / d8: straight and both captures, all four pieces
    "white promotions": "1n1n4/2P5/8/8/8/8/8/4K2k w - - 0 1",
    "black promotions": "4K2k/8/8/8/8/8/2p5/1N1N4 b - - 0 1",
    # edge pawns: a-pawn captures right only, h-pawn left only
    "white edge promotions": "1n4n1/P6P/8/8/8/8/8/2K1k3 w - - 0 1",
    "black edge promotions": "2k1K3/8/8/8/8/8/p6p/1N4N1 b - - 0 1",
    # a rook on the 7th going to the 8th must not decode as a promotion
    "rook beside promoting pawn": "3k4/R5P1/8/8/8/8/8/4K3 w - - 0 1",
    "black rook beside promoting pawn": "4k3/8/8/8/8/8/r5p1/3K4 b - - 0 1",
    "castling white": "r3k2r/pppppppp/8/8/8/8/PPPPPPPP/R3K2R w KQkq - 0 1",
    "castling black": "r3k2r/pppppppp/8/8/8/8/PPPPPPPP/R3K2R b KQkq - 0 1",
    "castling open board white": "r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1",
    "castling open board black": "r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1",
    "en passant white": "4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 2",
    "en passant black": "4k3/8/8/8/3Pp3/8/8/4K3 b - d3 0 1",
    "en passant both sides white": "4k3/8/8/2PpP3/8/8/8/4K3 w - d6 0 2",
    "en passant both sides black": "4k3/8/8/8/2pPp3/8/8/4K3 b - d3 0 1",
    "knights in the corners white": "N6N/8/8/4k3/8/8/8/N3K2N w - - 0 1",
    "knights in the corners black": "n3k2n/8/8/8/4K3/8/8/n6n b - - 0 1",
    "knights on the edges": "3N4/8/N6N/4k3/8/8/8/3NK3 w - - 0 1",
    "long slides": "6k1/8/8/8/8/8/8/Q3K2R w - - 0 1",
    "queen in the centre": "6k1/8/8/8/3Q4/8/8/K7 w - - 0 1",
    "start": chess.STARTING_FEN,
    "kiwipete": "r3k2r/p1ppqpb1/bn2pnp1/3PN3/1p2P3/2N2Q1p/PPPBBPPP/R3K2R w KQkq - 0 1",
    "promotion with capture and check": "r3k2r/1Pppqpb1/bn2pnp1/3PN3/1p2P3/2N2Q1p/PpPBBPPP/R3K2R b KQkq - 0 1",
}


# --------------------------------------------------------------------------
# layout


@pytest.mark.parametrize(
    ("fen", "uci", "expected"),
    [
        (chess.STARTING_FEN, "e2e4", 12 * 73 + 0 * 7 + 1),  # N, distance 2 -> plane 1: 877
        (chess.STARTING_FEN, "g1f3", 6 * 73 + 63),  # knight NNW (-1, +2) -> plane 63: 501
        (chess.STARTING_FEN, "b1c3", 1 * 73 + 56),  # knight NNE (+1, +2) -> plane 56: 129
        ("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1", "e7e5", 877),
        ("rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1", "g8f6", 501),
        ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "e1g1", 4 * 73 + 2 * 7 + 1),  # E 2: 307
        ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "e1c1", 4 * 73 + 6 * 7 + 1),  # W 2: 335
        ("r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1", "e8g8", 307),
        ("r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1", "e8c8", 335),
        ("1n1n4/2P5/8/8/8/8/8/4K2k w - - 0 1", "c7c8q", 50 * 73 + 0),  # N 1: 3650
        ("1n1n4/2P5/8/8/8/8/8/4K2k w - - 0 1", "c7d8q", 50 * 73 + 7),  # NE 1: 3657
        ("1n1n4/2P5/8/8/8/8/8/4K2k w - - 0 1", "c7b8q", 50 * 73 + 49),  # NW 1: 3699
        ("1n1n4/2P5/8/8/8/8/8/4K2k w - - 0 1", "c7b8n", 50 * 73 + 64),  # left, N: 3714
        ("1n1n4/2P5/8/8/8/8/8/4K2k w - - 0 1", "c7c8b", 50 * 73 + 68),  # straight, B: 3718
        ("1n1n4/2P5/8/8/8/8/8/4K2k w - - 0 1", "c7d8r", 50 * 73 + 72),  # right, R: 3722
        ("4K2k/8/8/8/8/8/2p5/1N1N4 b - - 0 1", "c2b1n", 3714),  # towards the a-file: left
        ("4K2k/8/8/8/8/8/2p5/1N1N4 b - - 0 1", "c2d1r", 3722),
        ("4K2k/8/8/8/8/8/2p5/1N1N4 b - - 0 1", "c2c1q", 3650),
        ("4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 2", "e5d6", 36 * 73 + 49),  # e.p. NW 1: 2677
        ("6k1/8/8/8/8/8/8/Q3K2R w - - 0 1", "a1h8", 0 * 73 + 13),  # NE 7: 13
        ("6k1/8/8/8/8/8/8/Q3K2R w - - 0 1", "a1a8", 0 * 73 + 6),  # N 7: 6
        ("8/8/1K6/8/8/8/8/k6q b - - 0 1", "h1a8", 63 * 73 + 41),  # mirror h8a1, SW 7: 4640
        ("N6N/8/8/4k3/8/8/8/N3K2N w - - 0 1", "h1g3", 7 * 73 + 63),  # 574
        ("N6N/8/8/4k3/8/8/8/N3K2N w - - 0 1", "h8f7", 63 * 73 + 61),  # WSW (-2, -1): 4660
    ],
)
def test_hand_checked_index(fen: str, uci: str, expected: int) -> None:
    board = chess.Board(fen)
    move = chess.Move.from_uci(uci)
    assert board.is_legal(move)
    assert move_to_index(move, board.turn) == expected
    assert index_to_move(expected, board) == move
    packed = np.array([_pack(move)], dtype=np.int64)
    assert encode_moves(packed, np.array([board.turn])).tolist() == [expected]


def test_layout_equals_naive_geometry() -> None:
    """Every (from, to, promotion) and side: move_to_index is the documented table."""
    valid = 0
    for turn in chess.COLORS:
        for frm in chess.SQUARES:
            for to in chess.SQUARES:
                for promotion in (None, *chess.PIECE_TYPES):
                    move = chess.Move(frm, to, promotion)
                    expected = _naive_index(move, turn)
                    if expected is None:
                        assert repr(move.uci()) in _error(move_to_index, move, turn)
                    else:
                        assert move_to_index(move, turn) == expected, (move, turn)
                        valid += 1
    # per side: 1456 queen-like + 336 knight from-to pairs, 22 promotion
    # geometries x 4 pieces (queen shares its pair with the plain move)
    assert valid == 2 * (1456 + 336 + 22 * 4)


def test_encode_moves_exhaustive() -> None:
    """encode_moves agrees with move_to_index on every packed value and side, bad ones raise."""
    values = np.arange(-1, 7 << 12, dtype=np.int64)
    for turn in chess.COLORS:
        good, expected = [], []
        for value in values[1:].tolist():
            try:
                index = move_to_index(
                    chess.Move(value & 63, (value >> 6) & 63, (value >> 12) or None), turn
                )
            except ValueError:
                message = _error(encode_moves, np.array([value]), np.array([turn]))
                assert message.startswith(f"packed[0] = {value} "), value
                continue
            good.append(value)
            expected.append(index)
        good_np = np.array([-1, *good], dtype=np.int64)
        encoded = encode_moves(good_np, np.full(len(good_np), turn))
        assert encoded.tolist() == [NO_MOVE, *expected]


def test_every_index_decodes_consistently() -> None:
    """Every index, side and pawn: decode_indices, index_to_move and move_to_index agree."""
    produced = set()
    for turn in chess.COLORS:
        flip = 0 if turn else 56
        for pawn in (False, True):
            for value in range(N_POLICY):
                # a board whose side to move has (or has not) a pawn on the origin
                board = chess.Board(None)
                board.turn = turn
                if pawn:
                    board.set_piece_at((value // 73) ^ flip, chess.Piece(chess.PAWN, turn))
                pawns_us = np.array([_canonical_pawns(board)], dtype=np.uint64)
                index = np.array([value], dtype=np.uint16)
                try:
                    move = index_to_move(value, board)
                except ValueError:
                    message = _error(decode_indices, index, pawns_us)
                    assert message.startswith(f"indices[0] = {value} "), value
                    continue
                assert move_to_index(move, turn) == value
                assert [int(a[0]) for a in decode_indices(index, pawns_us)] == [
                    move.from_square ^ flip,
                    move.to_square ^ flip,
                    move.promotion or 0,
                ]
                produced.add(value)
    # the indices some move produces: queen-like, knight, 22 underpromotion geometries x 3
    assert len(produced) == 1456 + 336 + 22 * 3


def test_legal_move_mask_shape_and_terminal_positions() -> None:
    start = legal_move_mask(chess.Board())
    assert start.dtype == np.bool_ and start.shape == (N_POLICY,)
    assert start.sum() == 20 and start[877] and start[501]
    mated = chess.Board("rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3")
    assert mated.is_checkmate() and not legal_move_mask(mated).any()


def test_no_move_sentinel() -> None:
    encoded = encode_moves(np.array([-1, 12 | 28 << 6, -1]), np.array([True, True, False]))
    assert encoded.tolist() == [NO_MOVE, 877, NO_MOVE]
    frm, to, promotion = decode_indices(encoded, np.zeros(3, dtype=np.uint64))
    assert frm.tolist() == [-1, 12, -1]
    assert to.tolist() == [-1, 28, -1]
    assert promotion.tolist() == [0, 0, 0]
    empty = encode_moves(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=bool))
    assert empty.dtype == np.uint16 and empty.shape == (0,)


# --------------------------------------------------------------------------
# invalid input


@pytest.mark.parametrize(
    ("move", "turn"),
    [
        (chess.Move.null(), chess.WHITE),
        (chess.Move(chess.E4, chess.E4, drop=chess.KNIGHT), chess.WHITE),
        (chess.Move.from_uci("a1c4"), chess.WHITE),  # neither queen-like nor knight
        (chess.Move.from_uci("e7e8k"), chess.WHITE),  # promotion to a king
        (chess.Move.from_uci("e7e8p"), chess.WHITE),  # promotion to a pawn
        (chess.Move.from_uci("e6e7q"), chess.WHITE),  # promotion off the last rank
        (chess.Move.from_uci("b7d8q"), chess.WHITE),  # promotion two files over
        (chess.Move.from_uci("e2e1q"), chess.WHITE),  # a black promotion, white to move
        (chess.Move.from_uci("e7e8n"), chess.BLACK),  # a white promotion, black to move
    ],
)
def test_move_to_index_rejects_unencodable(move: chess.Move, turn: chess.Color) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(move.uci()))):
        move_to_index(move, turn)


def test_move_to_index_rejects_bad_turn() -> None:
    with pytest.raises(ValueError, match="turn"):
        move_to_index(chess.Move.from_uci("e2e4"), 1)  # type: ignore[arg-type]
    assert move_to_index(chess.Move.from_uci("e7e5"), np.bool_(False)) == 877


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (-1, "out of range"),
        (N_POLICY, "out of range"),
        (NO_MOVE, "out of range"),
        (0 * 73 + 28, "encodes no move"),  # a1 south
        (7 * 73 + 14, "encodes no move"),  # h1 east
        (12 * 73 + 67, "encodes no move"),  # underpromotion from e2
    ],
)
def test_index_to_move_rejects_bad_index(index: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        index_to_move(index, chess.Board())


def test_encode_moves_rejects_bad_input() -> None:
    white = np.array([True, True])
    with pytest.raises(ValueError, match="packed must have dtype int32 or int64, got float64"):
        encode_moves(np.array([12.0, 13.0]), white)
    with pytest.raises(ValueError, match="packed must have dtype int32 or int64, got uint16"):
        encode_moves(np.array([12, 13], dtype=np.uint16), white)
    with pytest.raises(ValueError, match="white_to_move must have dtype bool, got int64"):
        encode_moves(np.array([12, 13]), np.array([1, 1]))
    with pytest.raises(ValueError, match=r"white_to_move has shape \(3,\)"):
        encode_moves(np.array([12, 13]), np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match=r"packed must be 1-D, got shape \(1, 2\)"):
        encode_moves(np.array([[12, 13]]), white[None])
    with pytest.raises(ValueError, match="packed must be a numpy array, got list"):
        encode_moves([12, 13], white)  # type: ignore[arg-type]
    e2e4 = 12 | 28 << 6
    for bad in (0, -2, 12 | 38 << 6, 52 | 60 << 6 | 6 << 12, 1 << 15, 2**40):
        with pytest.raises(ValueError, match=rf"packed\[1\] = {bad} "):
            encode_moves(np.array([e2e4, bad, e2e4]), np.ones(3, dtype=bool))
    # legality is not checked: e2e4 with Black to move is the canonical e7e5, S distance 2
    assert encode_moves(np.array([e2e4]), np.array([False])).tolist() == [52 * 73 + 29]


def test_decode_indices_rejects_bad_input() -> None:
    pawns = np.zeros(2, dtype=np.uint64)
    with pytest.raises(ValueError, match="indices must have dtype uint16, got int64"):
        decode_indices(np.array([877, 878]), pawns)
    with pytest.raises(ValueError, match="pawns_us must have dtype uint64, got int64"):
        decode_indices(np.array([877, 878], dtype=np.uint16), np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match=r"pawns_us has shape \(3,\)"):
        decode_indices(np.array([877, 878], dtype=np.uint16), np.zeros(3, dtype=np.uint64))
    for bad in (N_POLICY, N_POLICY + 1, 28, 12 * 73 + 67, 40_000, 0xFFFE):
        with pytest.raises(ValueError, match=rf"indices\[1\] = {bad} "):
            decode_indices(np.array([877, bad], dtype=np.uint16), pawns)


# --------------------------------------------------------------------------
# every legal move of many positions


@pytest.mark.parametrize("name", sorted(HAND_PICKED))
def test_hand_picked_position(name: str) -> None:
    board = chess.Board(HAND_PICKED[name])
    assert board.is_valid(), name
    checker = _PositionChecker(mirror_every=1)
    moves = checker.add(board)
    assert moves and checker.finish() == (1, len(moves)) and checker.mirrored == 1


def test_hand_picked_positions_cover_every_move_kind() -> None:
    """The hand-picked positions hold every kind the encoding distinguishes."""
    kinds = set()
    for fen in HAND_PICKED.values():
        board = chess.Board(fen)
        for move in board.legal_moves:
            plane = move_to_index(move, board.turn) % 73
            side = "white" if board.turn else "black"
            if move.promotion:
                df = chess.square_file(move.to_square) - chess.square_file(move.from_square)
                kinds.add((side, "promotion", df, move.promotion))
            if board.is_castling(move):
                kinds.add((side, "castling", board.is_kingside_castling(move)))
            if board.is_en_passant(move):
                kinds.add((side, "en passant"))
            if 56 <= plane < 64 and chess.square_file(move.from_square) in (0, 7):
                kinds.add((side, "edge knight", plane))
    for side in ("white", "black"):
        for df in (-1, 0, 1):
            for piece in (chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN):
                assert (side, "promotion", df, piece) in kinds
        assert (side, "castling", True) in kinds and (side, "castling", False) in kinds
        assert (side, "en passant") in kinds
        assert len({k for k in kinds if k[:2] == (side, "edge knight")}) >= 4


def test_random_play_positions() -> None:
    checker = _PositionChecker(mirror_every=4)  # the mirror checks cost 3x the rest
    _play_random(checker, seed=20240601, n_positions=20_000)
    positions, moves = checker.finish()
    assert positions == 20_000 and checker.mirrored == 5_000
    print(f"random play: {positions} positions ({checker.mirrored} mirrored), {moves} moves")


def test_puzzle_positions() -> None:
    path = _data("puzzles", "lichess_puzzles_sample.csv")
    checker = _PositionChecker(mirror_every=1)
    stats = {"puzzles": 0, "positions": 0}
    _play_puzzles(checker, path, stats)
    positions, moves = checker.finish()
    assert stats["puzzles"] > 0
    print(f"puzzles: {stats} -> {positions} distinct positions, {moves} moves")


def test_opening_positions() -> None:
    paths = sorted(_data("openings").glob("*.tsv"))
    if not paths:
        pytest.skip(f"no opening files in {SHARED_DATA / 'openings'}")
    checker = _PositionChecker()
    stats = {"lines": 0, "positions": 0}
    _play_openings(checker, paths, stats)
    positions, moves = checker.finish()
    assert stats["lines"] > 0
    print(f"openings: {stats} -> {positions} distinct positions, {moves} moves")


def test_selfplay_game_positions() -> None:
    path = _data("games", "sf_selfplay_1500.pgn")
    checker = _PositionChecker()
    stats = {"games": 0, "positions": 0}
    _play_pgn(checker, path, stats)
    positions, moves = checker.finish()
    assert stats["games"] == path.read_text().count("[Event ")
    print(f"games: {stats} -> {positions} distinct positions, {moves} moves")
