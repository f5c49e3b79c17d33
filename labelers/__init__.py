"""The 20 SSL label masks of chess positions, computed with numba bitboards.

The masks, their order and their meaning are the contract in labelers/LABELS.md
(format version 1). Positions come in as canonical piece planes (side to move
is White; see :mod:`labelers.boards`), labels go out as one ``(20,)`` uint64
record per position.

>>> import labelers
>>> labels = labelers.label_fens(["4k3/8/8/3q4/8/2N5/8/4K2R w K - 0 1"])
>>> labels.shape, hex(int(labels[0, labelers.MASK_NAMES.index("threat_us")]))
((1, 20), '0x80')

Entry points: :func:`label_boards` (planes in, the fast path), :func:`label_fens`
(python-chess edge), :func:`canonical_planes` (python-chess bitboards in bulk).
``labelers.reference`` is the slow python-chess twin the tests compare against.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from . import kernels
from .boards import canonical_planes, check_array, planes_from_board, planes_from_fens

__all__ = [
    "MASK_NAMES",
    "N_MASKS",
    "N_PLANES",
    "TASKS",
    "canonical_planes",
    "label_boards",
    "label_fens",
    "planes_from_board",
    "planes_from_fens",
]

#: The stored label record, in LABELS.md section 3 order.
MASK_NAMES: tuple[str, ...] = (
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

#: Task name -> indices of its masks in the record. ``piece`` has none: it is
#: derived from the 12 piece planes.
TASKS: dict[str, tuple[int, ...]] = {
    "piece": (),
    "threat": (0, 1),
    "pin": (2, 3),
    "fork": (4, 5),
    "control": (6, 7),
    "pawn_structure": tuple(range(8, 16)),
    "king_safety": (16, 17, 18, 19),
}

N_MASKS: int = kernels.N_MASKS
N_PLANES: int = kernels.N_PLANES


def label_boards(planes: np.ndarray, *, parallel: bool = True) -> np.ndarray:
    """The 20 label masks of each position: ``(N, 12)`` planes -> ``(N, 20)`` uint64.

    ``planes`` must be a C-contiguous uint64 array of canonical piece planes
    (see :func:`planes_from_board`); anything else raises ``ValueError``.
    The positions are trusted to be valid (LABELS.md section 4); check that
    before, as :func:`label_fens` does. ``parallel`` spreads the rows over numba's
    threads (``numba.set_num_threads``); the result is the same either way.

    >>> import chess
    >>> planes = planes_from_board(chess.Board())[None, :]
    >>> out = label_boards(planes)
    >>> out.shape, out.dtype.name
    ((1, 20), 'uint64')
    >>> hex(int(out[0, MASK_NAMES.index("shield_us")]))  # d2, e2, f2 in front of Ke1
    '0x3800'
    """
    check_array("planes", planes, np.uint64, 2, N_PLANES)
    out = np.empty((planes.shape[0], N_MASKS), dtype=np.uint64)
    if planes.shape[0]:
        driver = kernels.label_parallel if parallel else kernels.label_serial
        driver(planes, out)
    return out


def label_fens(fens: Iterable[str]) -> np.ndarray:
    """Parse, check, canonicalise and label each FEN: ``(N, 20)`` uint64.

    Raises ``ValueError`` quoting the FEN when it does not parse or the
    position is not ``chess.Board.is_valid()``.

    >>> out = label_fens(["4k3/8/8/3q4/8/2N5/8/4K2R w K - 0 1"])
    >>> [name for name, mask in zip(MASK_NAMES, out[0]) if mask and "control" not in name]
    ['threat_us', 'threat_them', 'kingzone_attacked_us']
    """
    return label_boards(planes_from_fens(fens, require_valid=True))
