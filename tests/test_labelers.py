"""The numba labelers against their python-chess twin (``labelers.reference``).

Every record is compared whole (all 20 masks): on every position of the shared
sample data, on seeded random legal play, and on hand-written edge cases; plus
threads, input checks and the bulk canonicalisation.

Each source is deduplicated on piece placement and side to move before the slow
reference runs; every distinct position is then compared.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator
from pathlib import Path

import chess
import chess.pgn
import numba
import numpy as np
import pytest

import labelers
from labelers import kernels, reference, tables
from tests.naive import shared_data

DATA = shared_data()
needs_data = pytest.mark.skipif(
    DATA is None, reason="shared sample data not found (set CHESS_SSL_SHARED_DATA)"
)

RANDOM_GAMES_SEED = 20240611
RANDOM_POSITIONS = 20_000
RANDOM_PLACEMENTS = 5_000
GAME_PARTS = 2  # the sample games are split so pytest-xdist can spread them


# --- helpers -------------------------------------------------------------------


def _raw(board: chess.Board) -> tuple[int, ...]:
    """python-chess's own bitboards and turn: what ``canonical_planes`` takes."""
    return (
        board.pawns,
        board.knights,
        board.bishops,
        board.rooks,
        board.queens,
        board.kings,
        board.occupied_co[chess.WHITE],
        board.occupied_co[chess.BLACK],
        board.turn,
    )


class Positions:
    """Distinct positions seen so far, with the reference's labels for each."""

    def __init__(self) -> None:
        self.seen = 0
        self._raw: dict[tuple[int, ...], np.ndarray] = {}

    def add(self, board: chess.Board) -> None:
        self.seen += 1
        key = _raw(board)
        if key not in self._raw:
            # mirror() copies the move stack: drop it first, long games pay per ply
            canonical = board if board.turn == chess.WHITE else board.copy(stack=False).mirror()
            self._raw[key] = reference.label_board(canonical)

    def __len__(self) -> int:
        return len(self._raw)

    def planes_and_expected(self) -> tuple[np.ndarray, np.ndarray]:
        """Canonical planes (through ``canonical_planes``, the data engine's path)."""
        keys = np.array(list(self._raw), dtype=np.uint64).reshape(-1, 9)
        raw = np.ascontiguousarray(keys[:, :8])
        planes = labelers.canonical_planes(raw, keys[:, 8].astype(bool))
        expected = np.stack(list(self._raw.values())) if self._raw else np.empty((0, 20), np.uint64)
        return planes, expected


def _board_from_planes(planes: np.ndarray) -> chess.Board:
    """The canonical board (White to move) of one planes row, for messages."""
    board = chess.Board(None)
    for index, mask in enumerate(planes.tolist()):
        color = chess.WHITE if index < 6 else chess.BLACK
        for square in chess.scan_forward(mask):
            board.set_piece_at(square, chess.Piece(index % 6 + 1, color))
    return board


def assert_agrees(planes: np.ndarray, expected: np.ndarray, source: str) -> None:
    """``label_boards(planes) == expected`` row for row, else name the first mismatch."""
    got = labelers.label_boards(planes)
    bad = np.flatnonzero((got != expected).any(axis=1))
    if bad.size:
        first = bad[0]
        names = [
            n
            for n, a, b in zip(labelers.MASK_NAMES, got[first], expected[first], strict=True)
            if a != b
        ]
        fen = _board_from_planes(planes[first]).fen()
        pytest.fail(
            f"{bad.size} of {len(planes)} {source} positions differ from the reference;"
            f" first: {fen!r} (canonical) in {names}"
        )


def check_positions(positions: Positions, source: str) -> None:
    assert len(positions) > 0, f"no {source} positions"
    planes, expected = positions.planes_and_expected()
    assert_agrees(planes, expected, source)
    print(f"{source}: {positions.seen} positions, {len(positions)} distinct, 0 mismatches")


class _MainlineBoards(chess.pgn.BaseVisitor):
    """Feeds every mainline position (before each move, and the last) to ``positions``."""

    def __init__(self, positions: Positions) -> None:
        self.positions = positions

    def begin_variation(self):
        return chess.pgn.SKIP

    def visit_move(self, board: chess.Board, move: chess.Move) -> None:
        self.positions.add(board)

    def visit_board(self, board: chess.Board) -> None:
        self.last = board

    def result(self) -> chess.Board:
        return self.last


def _add_mainline(text_stream: io.TextIOBase, positions: Positions) -> bool:
    """Read one game; False at the end of the stream."""
    visitor = _MainlineBoards(positions)
    last = chess.pgn.read_game(text_stream, Visitor=lambda: visitor)
    if last is None:
        return False
    positions.add(last)
    return True


def random_boards(seed: int, n_positions: int) -> Iterator[chess.Board]:
    """Positions of random legal games from the start, until ``n_positions``."""
    rng = random.Random(seed)
    produced = 0
    while True:
        board = chess.Board()
        for _ in range(rng.randrange(20, 300)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
            yield board
            produced += 1
            if produced == n_positions:
                return


# --- agreement on the shared sample data --------------------------------------


@needs_data
@pytest.mark.parametrize("part", range(GAME_PARTS))
def test_games_agree(part):
    positions = Positions()
    for path in sorted((DATA / "games").glob("*.pgn")):
        with open(path, encoding="utf-8") as f:
            index = 0
            while True:
                if index % GAME_PARTS == part:
                    if not _add_mainline(f, positions):
                        break
                elif not chess.pgn.skip_game(f):
                    break
                index += 1
    check_positions(positions, f"games part {part + 1}/{GAME_PARTS}")


@needs_data
def test_puzzles_agree():
    positions = Positions()
    for path in sorted((DATA / "puzzles").glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                board = chess.Board(row["FEN"])
                positions.add(board)
                for uci in row["Moves"].split():
                    board.push_uci(uci)
                    positions.add(board)
    check_positions(positions, "puzzles")


@needs_data
def test_openings_agree():
    positions = Positions()
    for path in sorted((DATA / "openings").glob("*.tsv")):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                assert _add_mainline(io.StringIO(row["pgn"]), positions), row
    check_positions(positions, "openings")


# --- agreement on random play --------------------------------------------------


def test_random_play_agrees():
    positions = Positions()
    for board in random_boards(RANDOM_GAMES_SEED, RANDOM_POSITIONS):
        positions.add(board)
    assert positions.seen == RANDOM_POSITIONS
    check_positions(positions, "random play")


def random_placements(seed: int, n_positions: int) -> Iterator[chess.Board]:
    """Valid positions with pieces dropped at random: promoted pieces, odd lines."""
    rng = random.Random(seed)
    kinds = [chess.PAWN] * 6 + [chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN] * 3
    produced = 0
    while produced < n_positions:
        board = chess.Board(None)
        squares = rng.sample(chess.SQUARES, 2 + rng.randrange(0, 28))
        board.set_piece_at(squares[0], chess.Piece(chess.KING, chess.WHITE))
        board.set_piece_at(squares[1], chess.Piece(chess.KING, chess.BLACK))
        for square in squares[2:]:
            board.set_piece_at(square, chess.Piece(rng.choice(kinds), rng.random() < 0.5))
        board.turn = rng.random() < 0.5
        if board.is_valid():
            produced += 1
            yield board


def test_random_placements_agree():
    positions = Positions()
    for board in random_placements(RANDOM_GAMES_SEED, RANDOM_PLACEMENTS):
        positions.add(board)
    check_positions(positions, "random placements")


# --- hand-written edge cases ---------------------------------------------------

EDGE_FENS = [
    # the worked example of LABELS.md section 5, and its mirror with Black to move
    "4k3/8/8/3q4/8/2N5/8/4K2R w K - 0 1",
    "4k2r/8/2n5/8/3Q4/8/8/4K3 b k - 0 1",
    # en passant available (both colours), and an en-passant capture that would
    # expose the king along the rank (the pawn is not pinned by the spec)
    "rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 0 3",
    "rnbqkbnr/pppp1ppp/8/8/3Pp3/5N2/PPP1PPPP/RNBQKB1R b KQkq d3 0 3",
    "8/8/8/K2pP2r/8/8/8/7k w - d6 0 1",
    "8/8/8/8/k2Pp2R/8/8/7K b - d3 0 1",
    # promotions and underpromotions just happened
    "rnbQkb1r/pppp1ppp/5n2/8/8/8/PPPP1PPP/RNB1KBNR b KQkq - 0 5",
    "2N1k3/8/8/8/8/8/8/4K3 b - - 0 1",
    "4k3/8/8/8/8/8/8/2b1K3 w - - 0 1",
    "4k3/8/8/8/8/8/8/r3K3 w - - 0 1",
    "R3k3/8/8/8/8/8/8/4K3 b - - 0 1",
    "3nk3/8/8/8/8/8/8/4K3 w - - 0 1",
    # castling rights variants
    "r3k2r/pppppppp/8/8/8/8/PPPPPPPP/R3K2R w KQkq - 0 1",
    "r3k2r/pppppppp/8/8/8/8/PPPPPPPP/R3K2R b Kq - 0 1",
    "r3k2r/pppppppp/8/8/8/8/PPPPPPPP/R3K2R w - - 0 1",
    "r4rk1/pppppppp/8/8/8/8/PPPPPPPP/2KR3R b - - 2 2",
    # side to move in check (single, double, by a pawn, by a knight)
    "rnbqkbnr/ppp2ppp/8/1B1pp3/4P3/8/PPPP1PPP/RNBQK1NR b KQkq - 1 3",
    "4k3/8/8/8/8/5n2/8/4K2r w - - 0 1",
    "4k3/8/8/8/8/8/3p4/4K3 w - - 0 1",
    "4k3/8/3N4/8/8/8/8/4K3 b - - 0 1",
    # crowded boards with many queens
    "qqqqkqqq/qqqqqqq1/8/8/8/8/QQQQQQQ1/QQQQKQQQ w - - 0 1",
    "1q1q1q1k/q1q1q1q1/1q1q1q1q/8/8/Q1Q1Q1Q1/1Q1Q1Q1Q/K1Q1Q1Q1 b - - 0 1",
    "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
    # e4 attacked by 16 white pieces (8 ray neighbours, 8 knights): the most
    # one side can bring, so the control counters need all five binary digits
    "7k/8/3N1N2/2NBQBN1/3R1R2/2NPKPN1/3N1N2/8 w - - 0 1",
    "8/3n1n2/2npkpn1/3r1r2/2nbqbn1/3n1n2/8/7K b - - 0 1",
    # bare kings, kings in opposition, kings in corners
    "8/8/8/8/8/8/8/K6k w - - 0 1",
    "8/8/8/3k4/8/3K4/8/8 b - - 0 1",
    "7k/8/8/8/8/8/8/K7 b - - 0 1",
    # forks: knight on king and rook, pawn fork, king forking undefended pieces
    "4k3/8/8/2r5/8/3N4/8/4K3 w - - 0 1",
    "4k3/8/8/2n1b3/3P4/8/8/4K3 w - - 0 1",
    "4k3/8/8/8/8/8/2nKb3/8 w - - 0 1",
    # pawn structure: passed, isolated, doubled, connected, shield
    "4k3/p1p3pp/2p5/1P1P4/P7/5P2/5PPP/6K1 b - - 0 1",
    "6k1/5ppp/8/8/8/8/PPP5/1K6 w - - 0 1",
]


@pytest.mark.parametrize("fen", EDGE_FENS)
def test_edge_case_agrees(fen):
    assert chess.Board(fen).is_valid(), fen
    got = labelers.label_fens([fen])[0]
    expected = reference.label_fen(fen)
    diff = [n for n, a, b in zip(labelers.MASK_NAMES, got, expected, strict=True) if a != b]
    assert not diff, f"{fen!r}: {diff}"


_SIXTEEN = "7k/8/3N1N2/2NBQBN1/3R1R2/2NPKPN1/3N1N2/8"


@pytest.mark.parametrize(
    "fen,color,square,name,canonical_square",
    [
        (f"{_SIXTEEN} w - - 0 1", chess.WHITE, chess.E4, "control_us", chess.E4),
        (f"{_SIXTEEN} b - - 0 1", chess.WHITE, chess.E4, "control_them", chess.E5),
        (
            "8/3n1n2/2npkpn1/3r1r2/2nbqbn1/3n1n2/8/7K b - - 0 1",
            chess.BLACK,
            chess.E5,
            "control_us",
            chess.E4,
        ),
    ],
)
def test_sixteen_attackers_control(fen, color, square, name, canonical_square):
    """16 attackers against none is control (a 4-digit counter would wrap to 0)."""
    assert len(chess.Board(fen).attackers(color, square)) == 16
    mask = int(labelers.label_fens([fen])[0, labelers.MASK_NAMES.index(name)])
    assert mask >> canonical_square & 1, fen


_DIRECTIONS = [(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)]


def _pin_cases() -> Iterator[tuple[str, str, int]]:
    """(fen, mask name, expected mask): a piece pinned along each of the 8 lines
    by a rook/bishop and by a queen, for each pinned colour and side to move."""
    pinned_types = [chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN, chess.PAWN]
    for pinned_color in chess.COLORS:
        for turn in chess.COLORS:
            for d, (df, dr) in enumerate(_DIRECTIONS):
                diagonal = df != 0 and dr != 0
                for pinner in (chess.BISHOP if diagonal else chess.ROOK, chess.QUEEN):
                    board = chess.Board(None)
                    king = chess.D4
                    between = chess.square(3 + df, 3 + dr)
                    far = chess.square(3 + 3 * df, 3 + 3 * dr)
                    board.set_piece_at(king, chess.Piece(chess.KING, pinned_color))
                    kind = pinned_types[(d + pinner) % len(pinned_types)]
                    board.set_piece_at(between, chess.Piece(kind, pinned_color))
                    board.set_piece_at(far, chess.Piece(pinner, not pinned_color))
                    board.turn = turn
                    for other_king in (chess.H8, chess.A8, chess.H1, chess.A1, chess.H6, chess.B7):
                        if board.piece_at(other_king) is None:
                            board.set_piece_at(
                                other_king, chess.Piece(chess.KING, not pinned_color)
                            )
                            if board.is_valid():
                                break
                            board.remove_piece_at(other_king)
                    assert board.is_valid(), board.fen()
                    suffix = "us" if pinned_color == turn else "them"
                    square = between if turn == chess.WHITE else chess.square_mirror(between)
                    yield board.fen(), f"pin_{suffix}", chess.BB_SQUARES[square]


@pytest.mark.parametrize("fen,name,mask", list(_pin_cases()))
def test_pin_every_direction(fen, name, mask):
    got = labelers.label_fens([fen])[0]
    assert int(got[labelers.MASK_NAMES.index(name)]) == mask, fen
    other = "pin_them" if name == "pin_us" else "pin_us"
    assert int(got[labelers.MASK_NAMES.index(other)]) == 0, fen
    assert (got == reference.label_fen(fen)).all(), fen


@pytest.mark.parametrize(
    "fen,pin_us",
    [
        ("4k3/8/8/8/4r3/8/4N3/4K3 w - - 0 1", chess.BB_E2),  # rook on the file: pinned
        ("4k3/8/8/8/4b3/8/4N3/4K3 w - - 0 1", 0),  # bishop on the file: not a pin
        ("4k3/8/8/4r3/4N3/8/4N3/4K3 w - - 0 1", 0),  # two pieces between: not pinned
        ("4k3/8/8/8/4r3/8/4n3/4K3 w - - 0 1", 0),  # their own piece between: no pin
    ],
)
def test_pin_non_pins(fen, pin_us):
    got = labelers.label_fens([fen])[0]
    assert int(got[labelers.MASK_NAMES.index("pin_us")]) == pin_us
    assert (got == reference.label_fen(fen)).all()


# --- drivers and threads -------------------------------------------------------


@pytest.fixture(scope="module")
def random_planes() -> np.ndarray:
    return np.stack([labelers.planes_from_board(b) for b in random_boards(7, 5_000)])


def test_serial_equals_parallel(random_planes):
    serial = labelers.label_boards(random_planes, parallel=False)
    parallel = labelers.label_boards(random_planes, parallel=True)
    np.testing.assert_array_equal(serial, parallel)


def test_one_thread_equals_several(random_planes):
    several = numba.config.NUMBA_NUM_THREADS
    if several < 2:
        pytest.skip("numba has a single thread here")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = labelers.label_boards(random_planes)
        numba.set_num_threads(several)
        many = labelers.label_boards(random_planes)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)


def test_empty_and_record_layout():
    out = labelers.label_boards(np.empty((0, 12), dtype=np.uint64))
    assert out.shape == (0, 20) and out.dtype == np.uint64
    assert labelers.label_fens([]).shape == (0, 20)
    assert not labelers.label_boards(np.zeros((3, 12), dtype=np.uint64)).any()  # no pieces
    assert labelers.N_MASKS == len(labelers.MASK_NAMES) == 20
    assert labelers.N_PLANES == 12
    assert tuple(reference.label_masks(chess.Board())) == labelers.MASK_NAMES
    flat = sorted(i for idx in labelers.TASKS.values() for i in idx)
    assert flat == list(range(20)) and labelers.TASKS["piece"] == ()


# --- input checks --------------------------------------------------------------

_GOOD = np.zeros((3, 12), dtype=np.uint64)


@pytest.mark.parametrize(
    "planes,quoted",
    [
        (_GOOD.astype(np.float32), "float32"),
        (_GOOD.astype(np.int64), "int64"),
        (_GOOD[0], "(12,)"),
        (_GOOD.reshape(3, 12, 1), "(3, 12, 1)"),
        (np.zeros((3, 11), dtype=np.uint64), "(3, 11)"),
        (np.zeros((3, 24), dtype=np.uint64)[:, ::2], "strides"),
        (np.zeros((3, 13), dtype=np.uint64)[:, :12], "strides"),
        (np.asfortranarray(_GOOD), "strides"),
        (_GOOD.tolist(), "list"),
        (None, "NoneType"),
    ],
)
def test_label_boards_rejects(planes, quoted):
    with pytest.raises(ValueError, match="planes") as err:
        labelers.label_boards(planes)
    assert quoted in str(err.value)


@pytest.mark.parametrize(
    "fen,quoted",
    [
        ("not a fen", "not a fen"),
        ("8/8/8/8/8/8/8/8/8 w - - 0 1", "8/8/8/8/8/8/8/8/8"),
        ("8/8/8/8/8/8/8/K7 w - - 0 1", "K7 w"),  # no black king
        ("4k3/8/8/8/8/8/8/4K2r b - - 0 1", "K2r b"),  # side not to move in check
        ("P3k3/8/8/8/8/8/8/4K3 w - - 0 1", "P3k3"),  # pawn on the back rank
    ],
)
def test_label_fens_rejects(fen, quoted):
    with pytest.raises(ValueError) as err:
        labelers.label_fens(["4k3/8/8/8/8/8/8/4K3 w - - 0 1", fen])
    assert quoted in str(err.value)


@pytest.mark.parametrize(
    "raw,white_to_move,quoted",
    [
        (np.zeros((2, 8), np.int64), np.ones(2, bool), "raw must be uint64"),
        (np.zeros((2, 9), np.uint64), np.ones(2, bool), "raw must have 8 columns"),
        (np.zeros((2, 8), np.uint64), np.ones(2, np.uint8), "white_to_move must be bool"),
        (np.zeros((2, 8), np.uint64), np.ones(3, bool), "one entry per row"),
        (np.zeros((2, 8), np.uint64), np.ones(4, bool)[::2], "white_to_move must be C-contiguous"),
    ],
)
def test_canonical_planes_rejects(raw, white_to_move, quoted):
    with pytest.raises(ValueError, match=quoted):
        labelers.canonical_planes(raw, white_to_move)


# --- canonicalisation ----------------------------------------------------------


def test_canonical_planes_equals_planes_from_board():
    boards = [b.copy(stack=False) for b in random_boards(11, 3_000)]
    assert {b.turn for b in boards} == {chess.WHITE, chess.BLACK}
    raw = np.array([_raw(b) for b in boards], dtype=np.uint64)
    planes = labelers.canonical_planes(np.ascontiguousarray(raw[:, :8]), raw[:, 8].astype(bool))
    expected = np.stack([labelers.planes_from_board(b) for b in boards])
    np.testing.assert_array_equal(planes, expected)
    fens = [b.fen() for b in boards[:200]]
    np.testing.assert_array_equal(labelers.planes_from_fens(fens), expected[:200])


def test_planes_from_board_mirrors_black_to_move():
    board = chess.Board()
    board.push_san("e4")  # Black to move: Black's pieces become ours, on ranks 1-2
    planes = labelers.planes_from_board(board)
    mirrored = board.mirror()
    for index, piece_type in enumerate(chess.PIECE_TYPES):
        assert int(planes[index]) == mirrored.pieces_mask(piece_type, chess.WHITE)
        assert int(planes[6 + index]) == mirrored.pieces_mask(piece_type, chess.BLACK)
    assert int(planes[0]) == chess.BB_RANK_2


# --- slider attacks against python-chess ---------------------------------------


def test_slider_attacks_match_python_chess():
    rng = random.Random(3)
    for _ in range(300):
        occupied = rng.getrandbits(64) & rng.getrandbits(64)
        for square in chess.SQUARES:
            occ = np.uint64(occupied | chess.BB_SQUARES[square])
            rook = chess.BB_RANK_ATTACKS[square][int(occ) & chess.BB_RANK_MASKS[square]]
            rook |= chess.BB_FILE_ATTACKS[square][int(occ) & chess.BB_FILE_MASKS[square]]
            bishop = chess.BB_DIAG_ATTACKS[square][int(occ) & chess.BB_DIAG_MASKS[square]]
            assert int(kernels._rook_attacks(square, occ)) == rook
            assert int(kernels._bishop_attacks(square, occ)) == bishop


def test_step_tables_match_python_chess():
    for square in chess.SQUARES:
        assert int(tables.KNIGHT_ATTACKS[square]) == chess.BB_KNIGHT_ATTACKS[square]
        assert int(tables.KING_ATTACKS[square]) == chess.BB_KING_ATTACKS[square]
        for other in chess.SQUARES:
            assert int(tables.BETWEEN[square, other]) == chess.between(square, other)


def test_the_label_contract_in_the_repo_is_the_shared_one():
    data = shared_data()
    if data is None:
        pytest.skip("../shared is not beside the repository")
    repo = Path(__file__).resolve().parents[1]
    assert (repo / "labelers" / "LABELS.md").read_text() == (data.parent / "LABELS.md").read_text()
