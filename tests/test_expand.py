"""train.expand against a python-chess expansion written here, square by square.

The compact batches are built the way the data engine builds records (canonical
planes, CASTLE_* bits, legal en-passant file, policy indices) and converted with
``expand.from_numpy``; the expected planes and targets come from python-chess boards
(``board.mirror()`` when Black is to move) and ``labelers.reference``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator

import chess
import numpy as np
import pytest
import torch

import labelers
from dataengine import policy, schema, views
from labelers import reference
from train import expand
from train.batch import BATCH_COLUMNS, check_batch

RANDOM_SEED = 20240611
RANDOM_POSITIONS = 3_000

HAND_PICKED = (
    "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",  # their rook on h8: bit 63
    "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1",  # Black to move, e3 not legal ep
    "r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1",
    "r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1",
    "r3k2r/8/8/8/8/8/8/R3K2R w Kq - 5 20",
    "r3k2r/8/8/8/8/8/8/R3K2R b Kq - 5 20",  # us (Black) queen side only after mirroring
    "r3k2r/8/8/8/8/8/8/R3K2R w Qk - 0 1",
    "r3k2r/8/8/8/8/8/8/R3K2R b Qk - 0 1",
    "4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 3",  # legal en passant exd6
    "4k3/8/8/8/3Pp3/8/8/4K3 b - d3 0 3",  # Black's exd3: canonical target d6
    "4k3/8/8/6pP/8/8/8/4K3 w - g6 0 3",  # h-file pawn takes towards g
    "4k3/8/8/8/Pp6/8/8/4K3 b - a3 0 3",  # file 0
    "4k3/8/8/3p4/8/8/8/4K3 w - d6 0 3",  # ep square in the FEN, no capture possible
    "8/8/4k3/8/8/4K3/8/7R w - - 99 120",
    "8/8/4k3/8/8/4K3/8/7r b - - 100 120",
    "8/8/4k3/8/8/4K3/8/7R w - - 250 300",  # clipped to 1
    "7K/8/8/8/8/8/8/k7 w - - 0 1",  # our king on h8: the sign bit of plane 5
    "8/8/8/8/8/8/8/K6k b - - 0 1",  # Black king h1 -> our king on h8 after mirroring
    "7k/8/8/8/8/8/8/K6Q b - - 0 1",  # their queen h1 -> h8 (plane 10, bit 63)
    "4k3/1P6/8/8/8/8/6p1/4K3 w - - 0 1",  # pawns on the 7th/2nd
    "r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4",
)


def random_boards(seed: int, n: int) -> Iterator[chess.Board]:
    """Positions of seeded random legal games from the start, ``n`` in all."""
    rng = random.Random(seed)
    produced = 0
    while produced < n:
        board = chess.Board()
        for _ in range(rng.randrange(10, 200)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
            yield board.copy(stack=False)
            produced += 1
            if produced == n:
                return


def hand_picked_boards() -> list[chess.Board]:
    boards = [chess.Board(fen) for fen in HAND_PICKED]
    assert all(b.is_valid() for b in boards), [b.fen() for b in boards if not b.is_valid()]
    return boards


def make_block(boards: Iterable[chess.Board], seed: int = 0) -> schema.Block:
    """Records of real (un-mirrored) boards with random moves, results and teacher evals,
    built column by column the way the data engine fills them."""
    rng = random.Random(seed)
    boards = list(boards)
    block = schema.empty_columns(len(boards))
    for i, board in enumerate(boards):
        us = board.turn
        block["planes"][i] = labelers.planes_from_board(board)
        block["castling"][i] = (
            board.has_kingside_castling_rights(us) * schema.CASTLE_US_KING
            | board.has_queenside_castling_rights(us) * schema.CASTLE_US_QUEEN
            | board.has_kingside_castling_rights(not us) * schema.CASTLE_THEM_KING
            | board.has_queenside_castling_rights(not us) * schema.CASTLE_THEM_QUEEN
        )
        legal_ep = board.ep_square is not None and board.has_legal_en_passant()
        block["ep_file"][i] = chess.square_file(board.ep_square) if legal_ep else -1
        block["halfmove"][i] = board.halfmove_clock
        flags = 0 if us else schema.MIRRORED
        moves = list(board.legal_moves)
        if moves and rng.random() < 0.9:
            block["move"][i] = policy.move_to_index(rng.choice(moves), us)
            flags |= schema.HAS_MOVE
        if rng.random() < 0.8:
            block["result"][i] = rng.choice((-1, 0, 1))
            flags |= schema.HAS_RESULT
        if rng.random() < 0.6:
            if rng.random() < 0.1:
                block["teacher_mate"][i] = rng.choice((-1, 1)) * rng.randint(1, 30)
            else:
                block["teacher_cp"][i] = rng.randint(-1500, 1500)
            flags |= schema.HAS_TEACHER_EVAL
        if moves and rng.random() < 0.5:
            block["teacher_move"][i] = policy.move_to_index(rng.choice(moves), us)
            flags |= schema.HAS_TEACHER_MOVE
        block["flags"][i] = flags
    block["labels"] = labelers.label_boards(block["planes"])
    block["themes"] = np.full(len(boards), "", dtype=str)
    return block


def canonical(board: chess.Board) -> chess.Board:
    return board.mirror() if board.turn == chess.BLACK else board


# --- the independent python-chess expansion --------------------------------------


def expected_inputs(board: chess.Board) -> np.ndarray:
    """The (19, 8, 8) input of a real board, written from the plane table."""
    cb = canonical(board)
    x = np.zeros((19, 8, 8), dtype=np.float32)
    for square in chess.SQUARES:
        piece = cb.piece_at(square)
        if piece is not None:
            plane = piece.piece_type - 1 + (0 if piece.color == chess.WHITE else 6)
            x[plane, chess.square_rank(square), chess.square_file(square)] = 1.0
    x[12] = cb.has_kingside_castling_rights(chess.WHITE)
    x[13] = cb.has_queenside_castling_rights(chess.WHITE)
    x[14] = cb.has_kingside_castling_rights(chess.BLACK)
    x[15] = cb.has_queenside_castling_rights(chess.BLACK)
    if cb.ep_square is not None and cb.has_legal_en_passant():
        assert chess.square_rank(cb.ep_square) == 5
        x[16, 5, chess.square_file(cb.ep_square)] = 1.0
    x[17] = min(board.halfmove_clock / 100.0, 1.0)
    x[18] = 1.0
    return x


def expected_ssl(board: chess.Board) -> dict[str, np.ndarray]:
    cb = canonical(board)
    masks = reference.label_board(cb)

    def squares(mask) -> np.ndarray:
        return np.array([(int(mask) >> s) & 1 for s in range(64)], dtype=np.float32)

    piece = np.zeros(64, dtype=np.int64)
    for square in chess.SQUARES:
        p = cb.piece_at(square)
        if p is not None:
            piece[square] = p.piece_type + (0 if p.color == chess.WHITE else 6)
    control = squares(masks[6]).astype(np.int64) + 2 * squares(masks[7]).astype(np.int64)
    assert control.max() <= 2

    def maps(first: int, last: int) -> np.ndarray:
        return np.stack([squares(masks[i]) for i in range(first, last)])

    return {
        "piece": piece,
        "threat": maps(0, 2),
        "pin": maps(2, 4),
        "fork": maps(4, 6),
        "control": control,
        "pawn_structure": maps(8, 16),
        "king_safety": maps(16, 20),
    }


def expected_value(block: schema.Block, i: int, teacher_mix: float) -> float | None:
    flags = int(block["flags"][i])
    parts = []
    if flags & schema.HAS_RESULT and teacher_mix < 1:
        parts.append((1 - teacher_mix, float(block["result"][i])))
    if flags & schema.HAS_TEACHER_EVAL and teacher_mix > 0:
        cp, mate = int(block["teacher_cp"][i]), int(block["teacher_mate"][i])
        if mate:
            v = 1.0 if mate > 0 else -1.0
        else:
            p = 1.0 / (1.0 + 10.0 ** (-cp / 400.0))  # Elo expected score
            v = 2.0 * p - 1.0
        parts.append((teacher_mix, v))
    if not parts:
        return None
    return sum(w * v for w, v in parts) / sum(w for w, _ in parts)


# --- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def boards() -> list[chess.Board]:
    return hand_picked_boards() + list(random_boards(RANDOM_SEED, RANDOM_POSITIONS))


@pytest.fixture(scope="module")
def block(boards) -> schema.Block:
    return make_block(boards, seed=1)


@pytest.fixture(scope="module")
def batch(block) -> dict:
    return expand.from_numpy(block)


# --- tests -------------------------------------------------------------------------


def test_block_matches_the_data_engine_views(boards, block):
    """The test's records decode to the canonical boards (so the batches are realistic)."""
    for i, board in enumerate(boards):
        assert views.canonical_board(block, i).epd() == canonical(board).epd(), board.fen()
        assert views.real_board(block, i).epd() == board.epd(), board.fen()


def test_bits_to_squares_sign_bit():
    cases = {
        0: [],
        1: [0],
        -1: list(range(64)),
        -(2**63): [63],  # h8 alone: the sign bit
        -(2**63) | 1 << 62 | 1: [0, 62, 63],
        2**63 - 1: list(range(63)),
    }
    for value, expected in cases.items():
        got = expand.bits_to_squares(torch.tensor(value, dtype=torch.int64))
        assert got.shape == (64,) and got.dtype == torch.bool
        assert got.nonzero().flatten().tolist() == expected, hex(value)


def test_bits_to_squares_random_uint64():
    raw = np.random.default_rng(3).integers(0, 2**64, size=(50, 7), dtype=np.uint64)
    got = expand.bits_to_squares(torch.from_numpy(raw.view(np.int64)))
    want = np.unpackbits(raw.view(np.uint8).reshape(50, 7, 8), axis=-1, bitorder="little")
    assert got.shape == (50, 7, 64)
    np.testing.assert_array_equal(got.numpy(), want.astype(bool))


def test_bits_to_squares_rejects_other_dtypes():
    with pytest.raises(ValueError, match="int64"):
        expand.bits_to_squares(torch.zeros(3, dtype=torch.int32))


def test_from_numpy_dtypes(batch, block):
    assert check_batch(batch) == len(block["planes"])
    assert set(batch) == set(BATCH_COLUMNS)
    for name, dtype in BATCH_COLUMNS.items():
        assert batch[name].dtype == dtype, name
    # same bits through the int64 view
    np.testing.assert_array_equal(batch["planes"].numpy().view(np.uint64), block["planes"])
    np.testing.assert_array_equal(batch["move"].numpy(), block["move"].astype(np.int32))


def test_wider_int_columns_are_accepted_and_expand_the_same(batch):
    wide = dict(batch, **{k: batch[k].long() for k in ("halfmove", "move", "teacher_move")})
    assert check_batch(wide) == len(batch["planes"])
    kwargs = {"teacher_mix": 0.5, "policy_from_teacher": True}
    assert_same_expansion(expand.expand(wide, **kwargs), expand.expand(batch, **kwargs))
    assert_same_expansion(expand.expand(wide, fused=False, **kwargs),
                          expand.expand(batch, fused=False, **kwargs))


def test_check_batch_names_the_bad_column(batch):
    bad = dict(batch, halfmove=batch["halfmove"].to(torch.int16))
    with pytest.raises(ValueError, match="'halfmove'"):
        expand.expand_inputs(bad)
    bad = dict(batch, planes=batch["planes"][:, :11])
    with pytest.raises(ValueError, match="'planes'"):
        expand.expand_inputs(bad)
    bad = {k: v for k, v in batch.items() if k != "labels"}
    with pytest.raises(ValueError, match="'labels'"):
        expand.expand_targets(bad)
    bad = dict(batch, result=batch["result"][:-1])
    with pytest.raises(ValueError, match="'result'"):
        expand.expand_targets(bad)


def inputs(batch: dict, fused: bool) -> torch.Tensor:
    """The input planes by the tensor ops (expand_inputs) or the fused CPU kernel."""
    return expand.expand(batch, fused=True)[0] if fused else expand.expand_inputs(batch)


def targets_of(batch: dict, fused: bool) -> dict:
    return expand.expand(batch, fused=True)[1] if fused else expand.expand_targets(batch)


@pytest.mark.parametrize("fused", [False, True])
def test_inputs_match_python_chess(boards, batch, fused):
    x = inputs(batch, fused)
    assert x.shape == (len(boards), expand.N_INPUT_PLANES, 8, 8) and x.dtype == torch.float32
    want = np.stack([expected_inputs(b) for b in boards])
    for i, board in enumerate(boards):
        if not np.array_equal(x[i].numpy(), want[i]):
            diff = sorted({int(p) for p in np.argwhere(x[i].numpy() != want[i])[:, 0]})
            pytest.fail(f"planes {diff} differ for {board.fen()!r}")


@pytest.mark.parametrize("fused", [False, True])
def test_hand_picked_planes(boards, batch, fused):
    """Spot checks of the plane table itself, on the hand-picked positions."""
    x = inputs(batch, fused)
    index = {fen: i for i, fen in enumerate(HAND_PICKED)}
    start = x[index[HAND_PICKED[0]]]
    assert start[9, 7, 7] == 1 and start[9, 7, 0] == 1  # their rooks on h8 and a8
    assert start[5, 0, 4] == 1 and start[11, 7, 4] == 1  # kings on e1 / e8
    assert start[12:16].amax(dim=(1, 2)).tolist() == [1, 1, 1, 1]
    assert start[16].sum() == 0 and start[17].sum() == 0 and start[18].sum() == 64
    # Black to move with "Kq": us = Black has q(ueen side), them = White has K(ing side)
    black = x[index["r3k2r/8/8/8/8/8/8/R3K2R b Kq - 5 20"]]
    assert black[12:16, 0, 0].tolist() == [0, 1, 1, 0]
    assert torch.allclose(black[17], torch.full((8, 8), 0.05))
    ep_white = x[index["4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 3"]]
    assert ep_white[16].nonzero().tolist() == [[5, 3]]  # d6 = square 43
    ep_black = x[index["4k3/8/8/8/3Pp3/8/8/4K3 b - d3 0 3"]]
    assert ep_black[16].nonzero().tolist() == [[5, 3]]  # d3 mirrored to d6
    assert ep_black[0].nonzero().tolist() == [[4, 4]]  # Black's e4 pawn is our e5 pawn
    assert x[index["4k3/8/8/8/Pp6/8/8/4K3 b - a3 0 3"]][16].nonzero().tolist() == [[5, 0]]
    assert x[index["4k3/8/8/3p4/8/8/8/4K3 w - d6 0 3"]][16].sum() == 0
    assert x[index["8/8/4k3/8/8/4K3/8/7R w - - 99 120"]][17, 0, 0] == pytest.approx(0.99)
    assert x[index["8/8/4k3/8/8/4K3/8/7R w - - 250 300"]][17, 3, 3] == 1.0
    assert x[index["7K/8/8/8/8/8/8/k7 w - - 0 1"]][5].nonzero().tolist() == [[7, 7]]
    assert x[index["8/8/8/8/8/8/8/K6k b - - 0 1"]][5].nonzero().tolist() == [[7, 7]]
    assert x[index["7k/8/8/8/8/8/8/K6Q b - - 0 1"]][10].nonzero().tolist() == [[7, 7]]


def test_inputs_dtype_and_device_follow_the_batch(batch):
    small = {k: v[:5] for k, v in batch.items()}
    x16 = expand.expand_inputs(small, dtype=torch.bfloat16)
    assert x16.dtype == torch.bfloat16
    x32 = expand.expand_inputs(small)
    halfmove = expand.PLANE_HALFMOVE
    assert torch.equal(x16[:, :halfmove].float(), x32[:, :halfmove])  # 0/1 are exact
    assert torch.allclose(x16.float(), x32, atol=1 / 128)


@pytest.mark.parametrize("fused", [False, True])
def test_ssl_targets_match_reference(boards, batch, fused):
    targets = targets_of(batch, fused)
    b = len(boards)
    shapes = {
        "piece": ((b, 64), torch.int64),
        "threat": ((b, 2, 64), torch.uint8),
        "pin": ((b, 2, 64), torch.uint8),
        "fork": ((b, 2, 64), torch.uint8),
        "control": ((b, 64), torch.int64),
        "pawn_structure": ((b, 8, 64), torch.uint8),
        "king_safety": ((b, 4, 64), torch.uint8),
    }
    for task, (shape, dtype) in shapes.items():
        assert tuple(targets[task].shape) == shape and targets[task].dtype == dtype, task
    for i, board in enumerate(boards):
        want = expected_ssl(board)
        for task in shapes:
            if not np.array_equal(targets[task][i].numpy(), want[task]):
                pytest.fail(f"{task} differs for {board.fen()!r}")
    # every class and mask actually occurs somewhere, so the comparison means something
    assert set(targets["piece"].unique().tolist()) == set(range(13))
    assert set(targets["control"].unique().tolist()) == {0, 1, 2}
    for task in ("threat", "pin", "fork", "pawn_structure", "king_safety"):
        assert (targets[task].sum(dim=(0, 2)) > 0).all(), task


def test_policy_and_value_targets(block, batch):
    n = len(block["planes"])
    for teacher_mix in (0.0, 0.3, 1.0):
        targets = expand.expand_targets(batch, teacher_mix=teacher_mix)
        value, mask = targets["value"].tolist(), targets["value_mask"].tolist()
        for i in range(n):
            want = expected_value(block, i, teacher_mix)
            assert mask[i] == (want is not None)
            if want is not None:
                assert value[i] == pytest.approx(want, abs=1e-5)
        assert (targets["value"].abs() <= 1).all()

    targets = expand.expand_targets(batch)
    has_move = block["flags"] & schema.HAS_MOVE != 0
    assert (has_move == (block["move"] != schema.NO_MOVE)).all()
    want = np.where(has_move, block["move"].astype(np.int64), expand.IGNORE_INDEX)
    np.testing.assert_array_equal(targets["policy"].numpy(), want)
    assert targets["policy"].dtype == torch.int64
    has_result = block["flags"] & schema.HAS_RESULT != 0
    wdl = np.where(has_result, 1 - block["result"].astype(np.int64), expand.IGNORE_INDEX)
    np.testing.assert_array_equal(targets["wdl"].numpy(), wdl)

    teacher = expand.expand_targets(batch, policy_from_teacher=True)["policy"].numpy()
    use = block["flags"] & schema.HAS_TEACHER_MOVE != 0
    want = np.where(use, block["teacher_move"].astype(np.int64), want)
    np.testing.assert_array_equal(teacher, want)
    assert use.any() and (teacher != targets["policy"].numpy()).any()


def test_value_from_teacher():
    cp = torch.tensor([0, 100, -100, 400, 15000, -15000, 50, 0], dtype=torch.int16)
    mate = torch.tensor([0, 0, 0, 0, 0, 0, 3, -1], dtype=torch.int16)
    got = expand.value_from_teacher(cp, mate).tolist()
    want = [2 / (1 + 10 ** (-c / 400)) - 1 for c in cp.tolist()[:6]] + [1.0, -1.0]
    assert got == pytest.approx(want, abs=1e-6)
    assert got[1] == pytest.approx(math.tanh(100 * math.log(10) / 800), abs=1e-6)
    with pytest.raises(ValueError, match="teacher_mix"):
        expand.expand_targets({}, teacher_mix=1.5)


def test_masks_table_agrees_with_labelers():
    tasks = {k: v for k, v in labelers.TASKS.items() if v}
    assert expand.SSL_MASKS == tasks
    assert expand.SSL_TASKS == tuple(labelers.TASKS)


def test_empty_batch(block):
    empty = expand.from_numpy(schema.take(block, slice(0, 0)))
    assert expand.expand_inputs(empty).shape == (0, 19, 8, 8)
    assert expand.expand_targets(empty)["piece"].shape == (0, 64)
    x, targets = expand.expand(empty, fused=True)
    assert x.shape == (0, 19, 8, 8) and targets["piece"].shape == (0, 64)


# --- row-packed batches and the combined expansion ---------------------------------

#: How the loader ships a batch: one (B, 312) uint8 tensor, a row per record, each
#: column at a byte offset (name -> offset, dtype, per-record shape); 3 bytes padding.
PACKED_COLUMNS = {
    "planes": (0, torch.int64, (12,)),
    "labels": (96, torch.int64, (20,)),
    "halfmove": (256, torch.int32, ()),
    "move": (260, torch.int32, ()),
    "teacher_move": (264, torch.int32, ()),
    "teacher_cp": (268, torch.int16, ()),
    "teacher_mate": (270, torch.int16, ()),
    "stalemate_moves": (272, torch.int16, (8,)),
    "mate_moves": (288, torch.int16, (8,)),
    "castling": (304, torch.uint8, ()),
    "ep_file": (305, torch.int8, ()),
    "result": (306, torch.int8, ()),
    "flags": (307, torch.uint8, ()),
    "bucket": (308, torch.uint8, ()),
}
PACKED_ROW_BYTES = 312


def packed_batch(batch: dict) -> dict:
    """``batch`` written into one row-packed buffer, returned as the loader's column
    views of it (non-contiguous; ``move`` and ``teacher_move`` int32)."""
    n = batch["planes"].shape[0]
    buffer = torch.zeros((n, PACKED_ROW_BYTES), dtype=torch.uint8)
    columns = {}
    for name, (offset, dtype, shape) in PACKED_COLUMNS.items():
        size = dtype.itemsize * math.prod(shape)
        column = buffer[:, offset : offset + size].view(dtype)
        if not shape:
            column = column[:, 0]
        column.copy_(batch[name] if name in batch else torch.arange(n) % 7)
        columns[name] = column
    return columns


def assert_identical(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """Same dtype, shape and bits (so -0.0 and 0.0 differ)."""
    assert got.dtype == want.dtype and got.shape == want.shape, what
    assert torch.equal(got, want), what
    assert torch.equal(got.contiguous().view(torch.uint8), want.contiguous().view(torch.uint8)), what


def assert_same_expansion(got, want) -> None:
    (x, targets), (want_x, want_targets) = got, want
    assert_identical(x, want_x, "x")
    assert targets.keys() == want_targets.keys()
    for key in want_targets:
        assert_identical(targets[key], want_targets[key], key)


def test_row_packed_batch_expands_like_the_contiguous_one(batch):
    packed = packed_batch(batch)
    assert packed["planes"].shape == batch["planes"].shape
    assert packed["planes"].stride() == (PACKED_ROW_BYTES // 8, 1)
    assert packed["halfmove"].stride() == (PACKED_ROW_BYTES // 4,)
    assert packed["flags"].stride() == (PACKED_ROW_BYTES,)
    assert packed["move"].dtype == packed["teacher_move"].dtype == torch.int32
    for name in BATCH_COLUMNS:
        assert torch.equal(packed[name].long(), batch[name].long()), name
    settings = (
        {},
        {"teacher_mix": 0.5, "policy_from_teacher": True},
        {"dtype": torch.bfloat16, "teacher_mix": 1.0},
    )
    for kwargs in settings:
        assert_same_expansion(expand.expand(packed, **kwargs), expand.expand(batch, **kwargs))
    assert_identical(expand.expand_inputs(packed), expand.expand_inputs(batch), "inputs")
    assert_identical(expand.bits_to_squares(packed["labels"]),
                     expand.bits_to_squares(batch["labels"]), "bits_to_squares")


def test_expand_is_expand_inputs_and_expand_targets(batch):
    for dtype, teacher_mix, policy_from_teacher in (
        (torch.float32, 0.0, False),
        (torch.float32, 0.3, True),
        (torch.float16, 1.0, False),
    ):
        got = expand.expand(batch, dtype, teacher_mix=teacher_mix,
                            policy_from_teacher=policy_from_teacher)
        want = (
            expand.expand_inputs(batch, dtype),
            expand.expand_targets(batch, teacher_mix=teacher_mix,
                                  policy_from_teacher=policy_from_teacher),
        )
        assert_same_expansion(got, want)


def test_fused_expansion_is_the_tensor_expansion(batch):
    """The numba CPU kernel gives the tensor ops' results bit for bit, on contiguous and
    row-packed batches, in both float dtypes it writes."""
    packed = packed_batch(batch)
    for dtype, teacher_mix, policy_from_teacher in (
        (torch.float32, 0.0, False),
        (torch.float32, 0.3, True),
        (torch.float64, 1.0, False),
    ):
        kwargs = dict(teacher_mix=teacher_mix, policy_from_teacher=policy_from_teacher)
        want = expand.expand(batch, dtype, fused=False, **kwargs)
        assert_same_expansion(expand.expand(batch, dtype, fused=True, **kwargs), want)
        assert_same_expansion(expand.expand(packed, dtype, fused=True, **kwargs), want)
    # the default on a CPU batch is the kernel, for float32 and float64 only
    assert_same_expansion(expand.expand(batch), expand.expand(batch, fused=True))
    with pytest.raises(ValueError, match="fused expansion needs"):
        expand.expand(batch, torch.bfloat16, fused=True)


def test_fused_expansion_of_arbitrary_bits():
    """Any bits at all (overlapping pieces, every castling byte, every ep_file, clocks
    outside 0..100) expand the same way by both paths: the kernel repeats the tensor ops'
    arithmetic, not just their results on valid positions."""
    gen = torch.Generator().manual_seed(5)
    n = 20_000
    batch = expand.from_numpy(schema.empty_columns(n))

    def bits(*shape):
        return torch.randint(-(2**63), 2**63 - 1, shape, dtype=torch.int64, generator=gen)

    # sparse and dense masks, so that piece-plane sums both do and do not carry
    batch["planes"] = bits(n, 12) & bits(n, 12) & bits(n, 12)
    batch["planes"][: n // 2] = bits(n // 2, 12)
    batch["labels"] = bits(n, 20)
    batch["castling"] = torch.arange(n, dtype=torch.int64).remainder(256).to(torch.uint8)
    batch["ep_file"] = torch.arange(n).remainder(256).sub(128).to(torch.int8)
    batch["halfmove"] = torch.randint(-300, 70_000, (n,), dtype=torch.int32, generator=gen)
    # every flag combination, any result byte, moves with NO_MOVE among them, mates
    batch["flags"] = torch.randint(0, 256, (n,), generator=gen).to(torch.uint8)
    batch["result"] = torch.randint(-128, 128, (n,), generator=gen).to(torch.int8)
    batch["result"][: n // 2] = torch.randint(-1, 2, (n // 2,), generator=gen).to(torch.int8)
    for key in ("move", "teacher_move"):
        moves = torch.randint(0, 2**16, (n,), generator=gen)
        batch[key] = torch.where(moves % 5 == 0, schema.NO_MOVE, moves)
    batch["teacher_cp"] = torch.randint(-(2**15), 2**15, (n,), generator=gen).to(torch.int16)
    mate = torch.randint(-(2**15), 2**15, (n,), generator=gen).to(torch.int16)
    batch["teacher_mate"] = torch.where(torch.arange(n) % 3 == 0, mate, 0).to(torch.int16)
    for dtype, teacher_mix, policy_from_teacher in (
        (torch.float32, 0.0, False),
        (torch.float64, 1.0, True),
        (torch.float32, 0.37, True),
    ):
        kwargs = dict(teacher_mix=teacher_mix, policy_from_teacher=policy_from_teacher)
        assert_same_expansion(expand.expand(batch, dtype, fused=True, **kwargs),
                              expand.expand(batch, dtype, fused=False, **kwargs))


def test_expand_async_is_expand(batch):
    """The kernel in the background thread gives what expand gives; a bad batch is an
    error in the caller, before anything starts."""
    kwargs = dict(teacher_mix=0.3, policy_from_teacher=True)
    pending = [expand.expand_async(batch, **kwargs) for _ in range(3)]  # queued in order
    for job in pending:
        assert_same_expansion(job.result(), expand.expand(batch, **kwargs))
        assert_same_expansion(job.result(), expand.expand(batch, **kwargs))  # again: the same
    with pytest.raises(ValueError, match="'labels'"):
        expand.expand_async({k: v for k, v in batch.items() if k != "labels"})
