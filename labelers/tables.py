"""Attack tables for the numba labelers, built once at import.

Squares use python-chess numbering (a1 = 0, b1 = 1, ..., h8 = 63); every table
is a C-contiguous ``np.uint64`` array. Each table comes from a small private
builder that walks the board square by square, so the builders read as the
definition and the kernels only index.

Sliders use *kindergarten bitboards*: the occupancy of one line (rank, file,
diagonal or anti-diagonal) is gathered into a 6-bit index by one multiply, and a
64-entry row gives that line's attacks. The slider tables take 8 KB and need
no magic numbers.

Pawn attacks have no table: the kernels compute them for all pawns at once by
shifting the pawn bitboard, which is cheaper than one lookup per pawn.

The kernels read these arrays as globals, which numba freezes into the
compiled code (no reference counting in the hot path). numba's on-disk cache is
keyed on ``kernels.py`` alone, so a table changed here would keep running from
a stale cache: ``kernels.py`` therefore pins :func:`digest` and refuses to
import when it differs; updating the pinned value there also renews the cache.
"""

from __future__ import annotations

import hashlib

import numpy as np

Square = int
Bitboard = int

_FULL = (1 << 64) - 1

#: Multiplier gathering the b..g files of a rank/diagonal mask into bits 58..63.
B_FILE = 0x0202020202020202
#: Multiplier gathering the ranks 2..7 of the a-file into bits 58..63 (reversed).
DIAG_C7_H2 = 0x0080402010080400
A_FILE = 0x0101010101010101

_KNIGHT_STEPS = ((1, 2), (2, 1), (2, -1), (1, -2), (-1, -2), (-2, -1), (-2, 1), (-1, 2))
_KING_STEPS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
_ROOK_DIRS = ((1, 0), (-1, 0), (0, 1), (0, -1))
_BISHOP_DIRS = ((1, 1), (-1, -1), (1, -1), (-1, 1))


def _on_board(file: int, rank: int) -> bool:
    return 0 <= file < 8 and 0 <= rank < 8


def _bit(file: int, rank: int) -> Bitboard:
    return 1 << (rank * 8 + file)


def _step_table(steps: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Square -> the squares one step away (knight or king), as a (64,) table."""
    table = np.zeros(64, dtype=np.uint64)
    for sq in range(64):
        f, r = sq & 7, sq >> 3
        mask = 0
        for df, dr in steps:
            if _on_board(f + df, r + dr):
                mask |= _bit(f + df, r + dr)
        table[sq] = mask
    return table


def _ray(sq: Square, df: int, dr: int) -> list[Square]:
    """Squares from ``sq`` (excluded) to the edge in direction (df, dr)."""
    f, r = (sq & 7) + df, (sq >> 3) + dr
    out = []
    while _on_board(f, r):
        out.append(r * 8 + f)
        f, r = f + df, r + dr
    return out


def _line_mask(sq: Square, dirs: tuple[tuple[int, int], ...]) -> Bitboard:
    mask = 0
    for df, dr in dirs:
        for t in _ray(sq, df, dr):
            mask |= 1 << t
    return mask


def _line_masks(dirs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Square -> every square along ``dirs`` to the edge, the square itself excluded."""
    return np.array([_line_mask(sq, dirs) for sq in range(64)], dtype=np.uint64)


def _slide_1d(pos: int, occupied: int) -> int:
    """Attacks of a slider at ``pos`` on an 8-square line with occupancy bits ``occupied``."""
    attacks = 0
    for step in (1, -1):
        i = pos + step
        while 0 <= i < 8:
            attacks |= 1 << i
            if occupied >> i & 1:
                break
            i += step
    return attacks


def _build_fill_up() -> np.ndarray:
    """(file, 6-bit index) -> rank attacks, copied onto all 8 ranks.

    Index bit ``i`` is the occupancy of file ``i + 1`` (files b..g; the edge files
    never block anything beyond them). ANDing a row with a rank or diagonal mask
    keeps the attacked squares of that line, because each of its squares sits on
    a distinct file, in file order.
    """
    table = np.zeros((8, 64), dtype=np.uint64)
    for file in range(8):
        for index in range(64):
            table[file, index] = _slide_1d(file, index << 1) * A_FILE
    return table


def _build_file_attacks() -> np.ndarray:
    """(rank, 6-bit index) -> a-file attacks of a slider on that rank of the a-file.

    The index is ``((occ >> file) & A_FILE) * DIAG_C7_H2 >> 58`` (see
    :func:`_file_index`); rather than derive its bit order, enumerate every a-file
    occupancy and check that equal indices always mean equal attacks.
    """
    table = np.zeros((8, 64), dtype=np.uint64)
    seen = np.zeros((8, 64), dtype=bool)
    for rank in range(8):
        for occupied in range(256):
            attacks_1d = _slide_1d(rank, occupied)
            attacks = _spread_on_a_file(attacks_1d)
            index = _file_index(_spread_on_a_file(occupied))
            if seen[rank, index]:
                assert int(table[rank, index]) == attacks, (rank, occupied)
            table[rank, index] = attacks
            seen[rank, index] = True
    assert seen.all()
    return table


def _spread_on_a_file(bits: int) -> Bitboard:
    """Bit ``r`` of an 8-bit line -> the a-file square on rank ``r``."""
    return sum(1 << (8 * r) for r in range(8) if bits >> r & 1)


def _file_index(a_file_occupancy: Bitboard) -> int:
    """The 6-bit file-attack index of an occupancy already shifted onto the a-file."""
    return ((a_file_occupancy & A_FILE) * DIAG_C7_H2 & _FULL) >> 58


def _build_between() -> np.ndarray:
    """(a, b) -> squares strictly between a and b on a shared line, else 0."""
    table = np.zeros((64, 64), dtype=np.uint64)
    for a in range(64):
        for df, dr in _ROOK_DIRS + _BISHOP_DIRS:
            mask = 0
            for b in _ray(a, df, dr):
                table[a, b] = mask
                mask |= 1 << b
    return table


#: (64,) knight attacks.
KNIGHT_ATTACKS = _step_table(_KNIGHT_STEPS)
#: (64,) king attacks.
KING_ATTACKS = _step_table(_KING_STEPS)
#: (64,) the square's rank, the square excluded.
RANK_EX = _line_masks(((1, 0), (-1, 0)))
#: (64,) the square's a1-h8 diagonal, the square excluded.
DIAG_EX = _line_masks(((1, 1), (-1, -1)))
#: (64,) the square's h1-a8 anti-diagonal, the square excluded.
ANTI_EX = _line_masks(((1, -1), (-1, 1)))
#: (8, 64) rank attacks by (file, 6-bit line occupancy), copied onto every rank.
FILL_UP = _build_fill_up()
#: (8, 64) a-file attacks by (rank, 6-bit file occupancy).
FILE_ATTACKS = _build_file_attacks()
#: (64,) rook attacks on an empty board.
ROOK_RAYS = _line_masks(_ROOK_DIRS)
#: (64,) bishop attacks on an empty board.
BISHOP_RAYS = _line_masks(_BISHOP_DIRS)
#: (64, 64) squares strictly between two squares on a shared line, else 0.
BETWEEN = _build_between()


def digest() -> str:
    """SHA-256 of every table and multiplier above (see the note at the top)."""
    sha = hashlib.sha256(np.array([B_FILE, DIAG_C7_H2, A_FILE], dtype="<u8").tobytes())
    for table in (
        KNIGHT_ATTACKS,
        KING_ATTACKS,
        RANK_EX,
        DIAG_EX,
        ANTI_EX,
        FILL_UP,
        FILE_ATTACKS,
        ROOK_RAYS,
        BISHOP_RAYS,
        BETWEEN,
    ):
        sha.update(table.astype("<u8").tobytes())
    return sha.hexdigest()


def require_digest(pinned: str, where: str, what: str) -> None:
    """Refuse to import `where` (a module whose numba kernels freeze these tables into
    their on-disk cache, which does not see this file) unless the tables still have
    the digest it pinned; updating the pinned value renews that cache."""
    if digest() != pinned:
        raise ImportError(
            f"labelers.tables changed (digest {digest()}): update _TABLES_SHA256 in"
            f" {where} so that numba's cache of {what} is renewed"
        )
