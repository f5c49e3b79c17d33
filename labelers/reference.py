"""Slow, obvious python-chess twin of the 20 SSL label masks.

Written straight from the label contract, ``labelers/LABELS.md`` (format version 1), and kept
independent of the numba labelers on purpose: the tests compare the two, so
nothing here may be shared with them. Readability comes first; speed only as far
as the tests need (they label a few hundred thousand positions), which is why
each position's attacker sets are computed once and reused by every mask:
``label_board`` runs at about 11-12k positions/s of CPU time on game positions,
``label_fen`` at about half that because parsing the FEN costs as much as the
labelling, so feed boards where you have them.

Boards are in canonical orientation (spec section 1): White is the side to move,
so ``us`` is White and ``them`` is Black.

>>> import chess
>>> masks = label_masks(chess.Board("4k3/8/8/3q4/8/2N5/8/4K2R w K - 0 1"))
>>> chess.SquareSet(masks["threat_us"])
SquareSet(0x0000_0000_0000_0080)
"""

from __future__ import annotations

import chess
import numpy as np

Bitboard = int
Square = int

# The stored record order, copied from the table in LABELS.md section 3. Kept
# private and not imported from ``labelers`` so that this twin shares nothing
# with the code it checks; a test asserts it equals ``labelers.MASK_NAMES``.
_ORDER: tuple[str, ...] = (
    "threat_us",
    "threat_them",
    "pin_us",
    "pin_them",
    "fork_us",
    "fork_them",
    "control_us",
    "control_them",
    "passed_us",
    "passed_them",
    "isolated_us",
    "isolated_them",
    "doubled_us",
    "doubled_them",
    "connected_us",
    "connected_them",
    "kingzone_attacked_us",
    "kingzone_attacked_them",
    "shield_us",
    "shield_them",
)

_VALUE: dict[chess.PieceType, int] = {
    chess.PAWN: 1,
    chess.KNIGHT: 3,
    chess.BISHOP: 3,
    chess.ROOK: 5,
    chess.QUEEN: 9,
    chess.KING: 100,
}

# Cheapest first, so the first type found among a square's attackers is the
# cheapest attacker (knight and bishop tie at 3).
_CHEAPEST_FIRST = sorted(_VALUE, key=_VALUE.__getitem__)


# --- tables, built once --------------------------------------------------------
#
# Per-square pawn-structure zones, indexed [colour][square] where "ahead" and
# "behind" depend on the colour (White ahead = higher rank, Black = lower).


def _ranks(color: chess.Color, rank: int, steps: range) -> Bitboard:
    """The ranks ``steps`` steps ahead of ``rank`` from ``color``'s view (off-board ones dropped)."""
    forward = 1 if color == chess.WHITE else -1
    mask = 0
    for step in steps:
        r = rank + forward * step
        if 0 <= r <= 7:
            mask |= chess.BB_RANKS[r]
    return mask


def _adjacent_files(square: Square) -> Bitboard:
    """The files left and right of ``square``'s file (not the file itself)."""
    f = chess.square_file(square)
    return (chess.BB_FILES[f - 1] if f > 0 else 0) | (chess.BB_FILES[f + 1] if f < 7 else 0)


def _build_front_span() -> dict[chess.Color, list[Bitboard]]:
    """Same and adjacent files, every rank strictly ahead: where enemy pawns stop a passer."""
    return {
        color: [
            (chess.BB_FILES[chess.square_file(s)] | _adjacent_files(s))
            & _ranks(color, chess.square_rank(s), range(1, 8))
            for s in chess.SQUARES
        ]
        for color in chess.COLORS
    }


def _build_connect_zone() -> dict[chess.Color, list[Bitboard]]:
    """Adjacent files, on the same rank or the rank one step behind."""
    return {
        color: [
            _adjacent_files(s) & _ranks(color, chess.square_rank(s), range(-1, 1))
            for s in chess.SQUARES
        ]
        for color in chess.COLORS
    }


def _build_shield_zone() -> dict[chess.Color, list[Bitboard]]:
    """For a king square: its file and the adjacent ones, one or two ranks ahead."""
    return {
        color: [
            (chess.BB_FILES[chess.square_file(k)] | _adjacent_files(k))
            & _ranks(color, chess.square_rank(k), range(1, 3))
            for k in chess.SQUARES
        ]
        for color in chess.COLORS
    }


_ADJACENT_FILES: list[Bitboard] = [_adjacent_files(s) for s in chess.SQUARES]
_OTHER_SQUARES_ON_FILE: list[Bitboard] = [
    chess.BB_FILES[chess.square_file(s)] & ~chess.BB_SQUARES[s] for s in chess.SQUARES
]
_FRONT_SPAN = _build_front_span()
_CONNECT_ZONE = _build_connect_zone()
_SHIELD_ZONE = _build_shield_zone()


# --- per-position attack facts -------------------------------------------------


class _Attacks:
    """Who attacks what, computed once per position and shared by every mask.

    All of it comes from python-chess ``attacks_mask``, so sliders stop at the
    first blocker (no x-rays), pawns attack diagonally forward only, en passant
    and castling are not attacks, and pinned pieces still attack.

    - ``of[s]``: ``attacks(s)`` for every occupied square ``s``.
    - ``covered[c]``: the squares ``t`` with ``A_c(t)`` non-empty (the union of
      ``attacks(s)`` over ``c``'s pieces); indexable by ``chess.WHITE``/``BLACK``.
    - ``balance[t]``: ``|A_white(t)| - |A_black(t)|``, a ``(64,)`` int array.
    """

    def __init__(self, board: chess.Board) -> None:
        self.of: dict[Square, Bitboard] = {}
        self.covered: list[Bitboard] = [0, 0]
        for color in (chess.WHITE, chess.BLACK):  # white pieces first in self.of
            covered = 0
            for s in chess.scan_forward(board.occupied_co[color]):
                mask = board.attacks_mask(s)
                self.of[s] = mask
                covered |= mask
            self.covered[color] = covered
        # contains[i, t] = 1 if t is in the i-th piece's attacks; with sign +1 for
        # white pieces and -1 for black ones, balance[t] = sum_i sign[i] * contains[i, t].
        n_white = chess.popcount(board.occupied_co[chess.WHITE])
        sign = np.full(len(self.of), -1, dtype=np.int16)
        sign[:n_white] = 1
        masks = np.fromiter(self.of.values(), dtype="<u8", count=len(self.of))
        contains = np.unpackbits(masks.view(np.uint8), bitorder="little").reshape(-1, 64)
        self.balance: np.ndarray = sign @ contains


def _squares_to_mask(is_set: np.ndarray) -> Bitboard:
    """A ``(64,)`` bool array indexed by square to a bitboard."""
    return int.from_bytes(np.packbits(is_set, bitorder="little").tobytes(), "little")


def _value_at(board: chess.Board, square: Square) -> int:
    piece_type = board.piece_type_at(square)
    assert piece_type is not None, chess.square_name(square)
    return _VALUE[piece_type]


def _cheapest_value(board: chess.Board, attackers: Bitboard, color: chess.Color) -> int:
    """``min(val(a) for a in attackers)`` for a non-empty set of ``color``'s squares."""
    for piece_type in _CHEAPEST_FIRST:
        if attackers & board.pieces_mask(piece_type, color):
            return _VALUE[piece_type]
    raise ValueError(f"no {chess.COLOR_NAMES[color]} piece among {chess.SquareSet(attackers)!r}")


# --- one function per mask family (c = the colour the mask is about) ----------


def _threat(board: chess.Board, att: _Attacks, c: chess.Color) -> Bitboard:
    """Non-king ``c`` pieces attacked by ``o`` and undefended or attacked by something cheaper."""
    o = not c
    threatened = 0
    attacked = board.occupied_co[c] & ~board.kings & att.covered[o]
    for s in chess.scan_forward(attacked):
        defended = att.covered[c] & chess.BB_SQUARES[s]
        attackers = board.attackers_mask(o, s)  # A_o(s), not empty here
        if not defended or _cheapest_value(board, attackers, o) < _value_at(board, s):
            threatened |= chess.BB_SQUARES[s]
    return threatened


def _pin(board: chess.Board, c: chess.Color) -> Bitboard:
    """Non-king ``c`` pieces absolutely pinned to ``c``'s king (python-chess ``is_pinned``)."""
    king = board.king(c)
    if king is None:
        return 0
    # A pinned piece is the only piece strictly between the king and an enemy
    # slider, so only such squares need asking; is_pinned then checks that the
    # slider moves along that line (rook/queen orthogonally, bishop/queen diagonally).
    enemy_sliders = board.occupied_co[not c] & (board.bishops | board.rooks | board.queens)
    candidates = 0
    for slider in chess.scan_forward(enemy_sliders):
        in_between = chess.between(king, slider) & board.occupied
        if chess.popcount(in_between) == 1:
            candidates |= in_between
    candidates &= board.occupied_co[c] & ~board.kings
    pinned = 0
    for s in chess.scan_forward(candidates):
        if board.is_pinned(c, s):
            pinned |= chess.BB_SQUARES[s]
    return pinned


def _fork(board: chess.Board, att: _Attacks, c: chess.Color) -> Bitboard:
    """``c`` pieces (king included) with at least two targets among ``attacks(s)``.

    A target is an ``o`` piece that is ``o``'s king, worth more than the forker,
    or attacked by no ``o`` piece (``A_o(t)`` empty: undefended).
    """
    o = not c
    their_king = board.king(o)
    forks = 0
    for s in chess.scan_forward(board.occupied_co[c]):
        in_reach = att.of[s] & board.occupied_co[o]
        if chess.popcount(in_reach) < 2:
            continue  # fewer than two enemy pieces in reach: no fork, skip the details
        forker_value = _value_at(board, s)
        targets = 0
        for t in chess.scan_forward(in_reach):
            undefended = not att.covered[o] & chess.BB_SQUARES[t]
            if t == their_king or _value_at(board, t) > forker_value or undefended:
                targets += 1
        if targets >= 2:
            forks |= chess.BB_SQUARES[s]
    return forks


def _control(att: _Attacks, c: chess.Color) -> Bitboard:
    """Every square (empty or not) with ``|A_c(t)| > |A_o(t)|``."""
    more_for_c = att.balance > 0 if c == chess.WHITE else att.balance < 0
    return _squares_to_mask(more_for_c)


def _pawn_structure(board: chess.Board, c: chess.Color) -> dict[str, Bitboard]:
    """passed, isolated, doubled and connected ``c`` pawns ("ahead" from ``c``'s view)."""
    ours = board.pieces_mask(chess.PAWN, c)
    theirs = board.pieces_mask(chess.PAWN, not c)
    passed = isolated = doubled = connected = 0
    for s in chess.scan_forward(ours):
        bit = chess.BB_SQUARES[s]
        if not theirs & _FRONT_SPAN[c][s]:
            passed |= bit
        if not ours & _ADJACENT_FILES[s]:
            isolated |= bit
        if ours & _OTHER_SQUARES_ON_FILE[s]:
            doubled |= bit
        if ours & _CONNECT_ZONE[c][s]:
            connected |= bit
    return {"passed": passed, "isolated": isolated, "doubled": doubled, "connected": connected}


def _kingzone_attacked(board: chess.Board, att: _Attacks, c: chess.Color) -> Bitboard:
    """Squares of ``{king(c)} ∪ attacks(king(c))`` that some ``o`` piece attacks."""
    king = board.king(c)
    if king is None:
        return 0
    zone = chess.BB_SQUARES[king] | att.of[king]
    return zone & att.covered[not c]


def _shield(board: chess.Board, c: chess.Color) -> Bitboard:
    """``c`` pawns on or beside the king's file, one or two ranks ahead of the king."""
    king = board.king(c)
    if king is None:
        return 0
    return board.pieces_mask(chess.PAWN, c) & _SHIELD_ZONE[c][king]


# --- public API ----------------------------------------------------------------


def canonical(board: chess.Board) -> chess.Board:
    """A copy of ``board`` with White to move: ``board.mirror()`` if Black is to move."""
    return board.mirror() if board.turn == chess.BLACK else board.copy()


def label_masks(board: chess.Board) -> dict[str, Bitboard]:
    """The 20 masks of a canonical board (White to move), by name, in record order.

    Raises ``ValueError`` if Black is to move (pass ``canonical(board)``).
    """
    if board.turn != chess.WHITE:
        raise ValueError(f"board not in canonical orientation (Black to move): {board.fen()!r}")
    att = _Attacks(board)
    us, them = chess.WHITE, chess.BLACK
    pawns_us = _pawn_structure(board, us)
    pawns_them = _pawn_structure(board, them)
    return {
        "threat_us": _threat(board, att, us),
        "threat_them": _threat(board, att, them),
        "pin_us": _pin(board, us),
        "pin_them": _pin(board, them),
        "fork_us": _fork(board, att, us),
        "fork_them": _fork(board, att, them),
        "control_us": _control(att, us),
        "control_them": _control(att, them),
        "passed_us": pawns_us["passed"],
        "passed_them": pawns_them["passed"],
        "isolated_us": pawns_us["isolated"],
        "isolated_them": pawns_them["isolated"],
        "doubled_us": pawns_us["doubled"],
        "doubled_them": pawns_them["doubled"],
        "connected_us": pawns_us["connected"],
        "connected_them": pawns_them["connected"],
        "kingzone_attacked_us": _kingzone_attacked(board, att, us),
        "kingzone_attacked_them": _kingzone_attacked(board, att, them),
        "shield_us": _shield(board, us),
        "shield_them": _shield(board, them),
    }


def label_board(board: chess.Board) -> np.ndarray:
    """The 20 masks of a canonical board as a ``(20,)`` uint64 array in record order.

    Raises ``ValueError`` if Black is to move (pass ``canonical(board)``).
    """
    masks = label_masks(board)
    return np.array([masks[name] for name in _ORDER], dtype=np.uint64)


def label_fen(fen: str) -> np.ndarray:
    """Parse ``fen``, put it in canonical orientation and label it: ``(20,)`` uint64.

    Raises ``ValueError`` quoting the FEN if it does not parse or the position is
    not ``Board.is_valid()`` (spec section 4: invalid positions are never labelled).

    >>> hex(int(label_fen("4k3/8/8/3q4/8/2N5/8/4K2R w K - 0 1")[0]))
    '0x80'
    """
    try:
        board = chess.Board(fen)
    except ValueError as exc:
        raise ValueError(f"invalid fen: {fen!r} ({exc})") from exc
    if not board.is_valid():
        raise ValueError(f"invalid position: {fen!r} (status {board.status()!r})")
    return label_board(canonical(board))
