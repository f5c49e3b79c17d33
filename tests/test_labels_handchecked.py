"""Hand-checked label masks for all 20 masks of LABELS.md (format version 1).

Every expected square below was worked out by hand from the spec, square by
square, never copied from an implementation's output. Each position asserts all
20 masks: a mask missing from a case's dict is expected to be empty.

Both implementations are checked against the same expectations:

- ``reference``: ``labelers.reference.label_fen(fen)``, the python-chess twin;
- ``numba``: ``labelers.label_fens([fen])[0]``; skipped until it exists.

Orientation: labels are always for the *canonical* board (LABELS.md section 1):
``us`` = side to move = White. For a Black-to-move FEN the board is mirrored
first (ranks flipped, colours swapped), so its expected squares are squares of
the mirrored board: Black's pieces become ``us`` and move to the mirrored rank
(a black pawn on f7 becomes our pawn on f2). Those cases quote the canonical
FEN in a comment, and ``test_canonical_fen_of_black_to_move_cases`` checks it.

Notation in the comments: ``A_w(t)`` / ``A_b(t)`` are White's / Black's pieces
attacking square ``t`` on the canonical board; "W2 B1" means two white and one
black attacker.
"""

from __future__ import annotations

import chess
import numpy as np
import pytest

import labelers
from labelers import reference

# The record order, copied from the table in LABELS.md section 3.
MASK_NAMES = (
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


# --- the hand-checked positions -----------------------------------------------
#
# Long square lists are grouped one board rank per line (rank 1 first), which a
# formatter would undo: hence fmt: off.

# fmt: off

# LABELS.md section 5, the worked example, all 20 masks.
# White Ke1 Rh1 Nc3; Black ke8 qd5. White to move (already canonical).
# Attacks:  Ke1: d1 d2 e2 f2 f1.  Rh1: g1 f1 e1 (stops at own king) + h2..h8.
#           Nc3: a2 a4 b1 b5 d1 d5 e2 e4.  ke8: d8 f8 d7 e7 f7.
#           qd5: a5 b5 c5 e5 f5 g5 h5, d6 d7 d8, d4 d3 d2 d1, c6 b7 a8, e6 f7 g8,
#                c4 b3 a2, e4 f3 g2 h1 (stops at the rook).
WORKED_EXAMPLE = {
    # Rh1: A_b = {qd5}, A_w empty (the king on e1 is two files away).
    # Nc3 is not attacked at all.
    "threat_us": ["h1"],
    # qd5: A_w = {Nc3}, 3 < 9.
    "threat_them": ["d5"],
    # fork_us: Nc3 reaches only one black piece (d5); fork_them: the queen
    # reaches only one white piece (h1; e1 and c3 are not on its lines).
    # control: d1 is W2 (K, N) vs B1 (q) -> ours; d2, a2, b5, e4, h5 are 1:1.
    "control_us": [
        "b1", "d1", "e1", "f1", "g1",
        "e2", "f2",
        "h2", "h3", "a4", "h4", "d5",
        "h6", "h7", "h8",
    ],
    "control_them": [
        "h1", "g2", "b3", "d3", "f3", "c4", "d4",
        "a5", "c5", "e5", "f5", "g5",
        "c6", "d6", "e6",
        "b7", "d7", "e7", "f7",
        "a8", "d8", "f8", "g8",
    ],
    # The queen's d-file reaches d2 and d1; e1 e2 f1 f2 are not attacked.
    "kingzone_attacked_us": ["d1", "d2"],
}

# Pinned pieces still attack and defend; sliders stop at the first blocker.
# White Ke1 Ne3 Bd5 Bb2; Black kh8 re8 rd7 ng4 bf6. White to move.
#   Ne3 is pinned by re8 to Ke1; bf6 is pinned by Bb2 to kh8.
# Attacks:  Ke1: d1 d2 e2 f2 f1.  Ne3: c2 c4 d1 d5 f1 f5 g2 g4.
#           Bd5: c6 b7 a8, e6 f7 g8, c4 b3 a2, e4 f3 g2 h1.  Bb2: a3, c3 d4 e5 f6, a1, c1.
#           kh8: g8 g7 h7.  re8: d8 c8 b8 a8, f8 g8 h8, e7 e6 e5 e4 e3 (stops at Ne3).
#           rd7: c7 b7 a7, e7 f7 g7 h7, d8, d6 d5 (stops at Bd5).
#           ng4: e3 e5 f2 f6 h2 h6.  bf6: e7 d8, g7 h8, e5 d4 c3 b2, g5 h4.
PINS_AND_XRAYS = {
    # Ne3: attacked by re8 and ng4, no white piece defends e3.
    # Bb2: attacked by the *pinned* bf6 (pinned pieces still attack), undefended.
    # Bd5 is NOT here: attacked by rd7 (5, not < 3) but defended by the pinned Ne3.
    "threat_us": ["b2", "e3"],
    # ng4: attacked by the pinned Ne3, defended by nothing (bf6 reaches g5, not g4).
    # bf6 is not here: attacked by Bb2 (3, not < 3) and defended by ng4.
    "threat_them": ["g4"],
    "pin_us": ["e3"],
    "pin_them": ["f6"],
    # No forks: re8 and ng4 each reach only e3; rd7 reaches only d5 (defended,
    # cheaper than the rook); bf6 reaches only b2; Ne3 reaches only g4 and Bb2
    # only f6.
    "control_us": [
        "a1", "c1", "d1", "f1", "h1",
        "a2", "c2", "d2", "e2", "g2",
        "a3", "b3", "f3",
        "c4", "g4",
        "f5",
        "c6",
    ],
    # d5 is W1 (Ne3) vs B1 (rd7): neither. e5 is W1 (Bb2) vs B3 (re8, ng4, bf6).
    # d7 is attacked by nobody (rd7 does not attack its own square).
    "control_them": [
        "b2", "h2",
        "e3",
        "h4",
        "e5", "g5",
        "d6", "h6",
        "a7", "c7", "e7", "g7", "h7",
        "b8", "c8", "d8", "f8", "g8", "h8",
    ],
    # f2 by ng4. No x-ray: re8 stops at Ne3, so e2 and e1 are not attacked.
    "kingzone_attacked_us": ["f2"],
    # g8 by Bd5. Bb2 stops at bf6, so g7 and h8 are not attacked by it.
    "kingzone_attacked_them": ["g8"],
}

# Forks: a king as forker, a knight forking defended but more valuable pieces.
# White Kb4 Ra3 Ne5; Black ke8 qd7 rf7 na5 nc5 nc2. White to move (in check).
# Attacks:  Kb4: a3 b3 c3 a4 c4 a5 b5 c5.  Ra3: b3..h3, a4 a5 (stops at na5), a2 a1.
#           Ne5: c4 c6 d3 d7 f3 f7 g4 g6.  ke8: d8 f8 d7 e7 f7.
#           qd7: c7 b7 a7, e7 f7, d8, d6 d5 d4 d3 d2 d1, c8, e8, c6 b5 a4, e6 f5 g4 h3.
#           rf7: e7 d7, g7 h7, f8, f6 f5 f4 f3 f2 f1.
#           na5: b3 b7 c4 c6.  nc5: a4 a6 b3 b7 d3 d7 e4 e6.  nc2: a1 a3 b4 d4 e1 e3.
FORKS = {
    # Ra3: attacked by nc2 (3 < 5) although the king defends it.
    "threat_us": ["a3"],
    # qd7 and rf7 are attacked by the cheaper Ne5; na5 and nc5 are attacked and
    # undefended (qd7's diagonal is c6-b5-a4, not a5; c5 is a knight's move away).
    "threat_them": ["a5", "c5", "d7", "f7"],
    # Kb4: na5 and nc5 in reach, both undefended. Ne5: qd7 and rf7 in reach, both
    # defended (by ke8 and each other) but worth more than a knight.
    # Ra3 is no fork: it reaches only na5.
    "fork_us": ["b4", "e5"],
    # nc2: the white king, and Ra3 (defended by Kb4 but 5 > 3).
    "fork_them": ["c2"],
    # a3 is W1 (K) vs B1 (nc2); b3 W2 (K, R) vs B2 (na5, nc5); a4, d3 are 2:2.
    "control_us": ["a2", "c3", "f3", "g3", "c4", "a5", "c5", "g6"],
    "control_them": [
        "d1", "e1", "f1",
        "d2", "f2",
        "b4", "d4", "e4", "f4",
        "d5", "f5",
        "a6", "c6", "d6", "e6", "f6",
        "a7", "b7", "c7", "d7", "e7", "f7", "g7", "h7",
        "c8", "d8", "e8", "f8",
    ],
    # Zone b4 a3 b3 c3 a4 c4 a5 b5 c5: c3, a5, c5 are attacked by no black piece.
    "kingzone_attacked_us": ["a3", "b3", "a4", "b4", "c4", "b5"],
    # Zone e8 d8 f8 d7 e7 f7: only the knight reaches in (d7, f7).
    "kingzone_attacked_them": ["d7", "f7"],
}

# Pawn structure from White's side, and a shield two ranks ahead.
# White Kg1, pawns a5 c2 c3 c4 d3 f2 g3 h4; Black ke8, pawns b4 e6 h7. White to move.
PAWNS_WHITE = {
    # c3 is attacked by pb4 and no white pawn defends it (b2, d2 are empty).
    "threat_us": ["c3"],
    # pb4 is attacked by Pc3; no black pawn on a5 or c5 defends it.
    "threat_them": ["b4"],
    # Pawn attacks: a5 b6; c2 b3 d3; c3 b4 d4; c4 b5 d5; d3 c4 e4; f2 e3 g3; g3 f4 h4;
    # h4 g5; Kg1 f1 h1 f2 g2 h2. Black: b4 a3 c3; e6 d5 f5; h7 g6; ke8 d8 f8 d7 e7 f7.
    # d5 is 1:1 (Pc4 vs pe6).
    "control_us": [
        "f1", "h1",
        "f2", "g2", "h2",
        "b3", "d3", "e3", "g3",
        "b4", "c4", "d4", "e4", "f4", "h4",
        "b5", "g5",
        "b6",
    ],
    "control_them": ["a3", "c3", "f5", "g6", "d7", "e7", "f7", "d8", "f8"],
    # a5: pb4 is on an adjacent file but behind it, so it is still passed.
    # c4: pb4 is on the same rank, not strictly ahead.
    # c2 and c3 are not passed: pb4 is on the adjacent b-file ahead of them.
    # d3, f2 (pe6) and g3, h4 (ph7) are stopped on an adjacent or the same file.
    "passed_us": ["a5", "c4"],
    # passed_them is empty: pb4 has Pc2 and Pc3 ahead of it (lower ranks) on the
    # adjacent c-file; pe6 has Pd3 and Pf2; ph7 has Pg3 and Ph4.
    "isolated_us": ["a5"],
    "isolated_them": ["b4", "e6", "h7"],
    # Three pawns on the c-file: every one is marked.
    "doubled_us": ["c2", "c3", "c4"],
    # c3 (d3, same rank), c4 (d3, one behind), d3 (c3 same rank, c2 one behind),
    # g3 (f2 one behind), h4 (g3 one behind).
    # c2 is not: its only neighbour d3 is one rank *ahead*. f2 likewise (g3 ahead).
    "connected_us": ["c3", "d3", "g3", "c4", "h4"],
    # Kg1: f2 is one rank ahead, g3 two; h4 is three ranks ahead, not a shield.
    "shield_us": ["f2", "g3"],
    # ke8: pe6 is two ranks ahead of it from Black's view.
    "shield_them": ["e6"],
}

# Black to move, mirrored. Original: Black kg8 rd3, pawns f7 g7 h5; White Kg1 Bb3,
# pawns b4 b5 e5 f2 g3 h2; White's Bb3 pins Black's f7 pawn to the king on g8.
# Canonical board: 6k1/5p1p/1b1R2p1/1p6/1p2p2P/8/5PP1/6K1 w
# (us: Kg1 Rd6, pawns f2 g2 h4; them: kg8 bb6, pawns b5 b4 e4 f7 g6 h7), i.e. the
# original Black king g8 is our Kg1, the original White Bb3 is their bb6, and so on.
# Attacks:  Kg1: f1 h1 f2 g2 h2.  Rd6: c6 b6 (stop), e6 f6 g6 (stop), d7 d8, d5..d1.
#           Pf2: e3 g3.  Pg2: f3 h3.  Ph4: g5.  kg8: f8 h8 f7 g7 h7.
#           bb6: a7, c7 d8, a5, c5 d4 e3 f2 (stops at Pf2).
#           pb5: a4 c4.  pb4: a3 c3.  pe4: d3 f3.  pf7: e6 g6.  pg6: f5 h5.  ph7: g6.
BLACK_TO_MOVE_PAWNS = {
    # Pf2 is attacked by bb6 but defended by the king, and 3 is not < 1.
    # bb6: attacked by Rd6 along the rank, undefended.
    # pg6 is attacked by Rd6 but defended by pf7 and ph7 (5 is not < 1).
    "threat_them": ["b6"],
    # Pf2 is pinned by bb6 to Kg1 (c5 d4 e3 empty).
    "pin_us": ["f2"],
    # f2 is W1 (K) vs B1 (b); d3 e3 f3 d4 e6 d8 are 1:1; g6 is W1 vs B2.
    "control_us": [
        "d1", "f1", "h1",
        "d2", "g2", "h2",
        "g3", "h3",
        "d5", "g5",
        "b6", "c6", "f6",
        "d7",
    ],
    "control_them": [
        "a3", "c3",
        "a4", "c4",
        "a5", "c5", "f5", "h5",
        "g6",
        "a7", "c7", "f7", "g7", "h7",
        "f8", "h8",
    ],
    # pb4, pb5: no white pawn on the a, b or c files at all.
    "passed_them": ["b4", "b5"],
    "isolated_them": ["b4", "b5"],
    "doubled_them": ["b4", "b5"],
    # f2 and g2 connect on the same rank; h4's only neighbour g2 is behind it but
    # two ranks, not one.
    "connected_us": ["f2", "g2"],
    # pg6: pf7 and ph7 are one rank *behind* it from Black's view (rank 7).
    # pf7, ph7: their only neighbour pg6 is one rank *ahead* (rank 6), so no.
    # pe4: its neighbour pf7 is three ranks away.
    "connected_them": ["g6"],
    "kingzone_attacked_us": ["f2"],
    "shield_us": ["f2", "g2"],
    # kg8: pf7 and ph7 are one rank ahead, pg6 two ranks ahead.
    "shield_them": ["f7", "g6", "h7"],
}

# En passant is not an attack. White Ke1 Pe5; Black ke8 pd5 (just played d7-d5),
# en passant square d6. White to move.
# Pe5 attacks d6 and f6 only: pd5 is capturable en passant but not attacked.
EN_PASSANT = {
    # So pd5 is not threatened and d5 is nobody's square. d6 is ours only because
    # Pe5 attacks it as an ordinary pawn capture square.
    "control_us": ["d1", "f1", "d2", "e2", "f2", "d6", "f6"],
    "control_them": ["c4", "e4", "d7", "e7", "f7", "d8", "f8"],
    # Side by side on the same rank: neither pawn has an enemy pawn strictly ahead.
    "passed_us": ["e5"],
    "passed_them": ["d5"],
    "isolated_us": ["e5"],
    "isolated_them": ["d5"],
}

# Black to move, mirrored, with a pawn fork and a queen fork. Original: Black kh8
# ba5 bb7, pawns c6 d7 d5; White Ke1 Qb2 Nd2 Nc4 Be4, pawns g2 h2 h3; Black is in
# check from Qb2. Canonical board: 4k3/1q1n2pp/7p/2n1b3/B2P4/2P5/1B1P4/7K w
# (us: Kh1 Ba4 Bb2, pawns c3 d2 d4; them: ke8 qb7 nd7 nc5 be5, pawns g7 h7 h6).
# Our king h1 is in check from qb7 along b7-h1.
# Attacks:  Kh1: g1 g2 h2.  Ba4: b5 c6 d7 (stop), b3 c2 d1.  Bb2: a3, c3 (stop), a1, c1.
#           Pc3: b4 d4.  Pd2: c3 e3.  Pd4: c5 e5.  ke8: d8 f8 d7 e7 f7.
#           qb7: a7, c7 d7 (stop), b8, b6 b5 b4 b3 b2 (stop), a8, c8, a6,
#                c6 d5 e4 f3 g2 h1 (stop).
#           nd7: b6 b8 c5 e5 f6 f8.  nc5: a4 a6 b3 b7 d3 d7 e4 e6.
#           be5: d6 c7 b8, f6 g7 (stop), d4 (stop), f4 g3 h2.
#           pg7: f6 h6.  ph7: g6.  ph6: g5.
BLACK_TO_MOVE_FORKS = {
    # Ba4 (attacked by nc5) and Bb2 (by qb7) are undefended.
    # Pd4 is attacked by be5 but defended by Pc3, and 3 is not < 1.
    "threat_us": ["b2", "a4"],
    # nc5 and be5 are attacked by the cheaper Pd4. nd7 is attacked by Ba4
    # (3, not < 3) and defended by ke8, qb7 and nc5.
    "threat_them": ["c5", "e5"],
    # nd7 is pinned by Ba4 to ke8 (b5 c6 empty).
    "pin_them": ["d7"],
    # Pd4 forks nc5 and be5: both worth more than a pawn.
    "fork_us": ["d4"],
    # qb7: the king h1 and the undefended Bb2. Not forks: nc5 reaches only Ba4;
    # be5 reaches only Pd4 (defended and cheaper than a bishop).
    "fork_them": ["b7"],
    # c3 is W2 (Bb2, Pd2) vs B0; g2, h2, b4, d4, b5, c5, e5, c6 are 1:1.
    "control_us": ["a1", "c1", "d1", "g1", "c2", "a3", "c3", "e3"],
    "control_them": [
        "h1",
        "b2",
        "b3", "d3", "f3", "g3",
        "a4", "e4", "f4",
        "d5", "g5",
        "a6", "b6", "d6", "e6", "f6", "g6", "h6",
        "a7", "b7", "c7", "d7", "e7", "f7", "g7",
        "a8", "b8", "c8", "d8", "f8",
    ],
    # Black has no pawns on the b-e files, White none on the f-h files.
    "passed_us": ["d2", "c3", "d4"],
    "passed_them": ["g7", "h7", "h6"],
    "doubled_us": ["d2", "d4"],
    "doubled_them": ["h7", "h6"],
    # c3 (d2 one behind), d4 (c3 one behind); d2's neighbour c3 is ahead: no.
    "connected_us": ["c3", "d4"],
    # g7 and h7 on the same rank; ph6 has pg7 one rank behind it (rank 7).
    "connected_them": ["g7", "h7", "h6"],
    "kingzone_attacked_us": ["h1", "g2", "h2"],
    "kingzone_attacked_them": ["d7"],
}

# Doubled rooks: the rear rook's attack is blocked by the front one (no x-ray).
# White Kg1 Rd1 Rd2; Black kg8 rd7. White to move.
# Attacks:  Kg1: f1 h1 f2 g2 h2.  Rd1: a1 b1 c1, e1 f1 g1 (stop), d2 (stop).
#           Rd2: a2 b2 c2, e2 f2 g2 h2, d3 d4 d5 d6 d7 (stop), d1 (stop).
#           kg8: f8 h8 f7 g7 h7.  rd7: a7 b7 c7, e7 f7 g7 h7, d8, d6 d5 d4 d3 d2 (stop).
ROOK_BATTERY = {
    # rd7: attacked by Rd2, undefended. Rd2 is defended by Rd1 (5 is not < 5).
    # Rd1 is not attacked: rd7 stops at Rd2.
    "threat_them": ["d7"],
    # d3..d6 are W1 (Rd2 only; Rd1 is blocked) vs B1: neither. d2 is W1 (Rd1) vs B1.
    "control_us": [
        "a1", "b1", "c1", "d1", "e1", "f1", "g1", "h1",
        "a2", "b2", "c2", "e2", "f2", "g2", "h2",
        "d7",
    ],
    "control_them": ["a7", "b7", "c7", "e7", "f7", "g7", "h7", "d8", "f8", "h8"],
}
# fmt: on

CASES = [
    pytest.param("4k3/8/8/3q4/8/2N5/8/4K2R w K - 0 1", WORKED_EXAMPLE, id="worked_example"),
    pytest.param("4r2k/3r4/5b2/3B4/6n1/4N3/1B6/4K3 w - - 0 1", PINS_AND_XRAYS, id="pins_and_xrays"),
    pytest.param("4k3/3q1r2/8/n1n1N3/1K6/R7/2n5/8 w - - 0 1", FORKS, id="forks"),
    pytest.param("4k3/7p/4p3/P7/1pP4P/2PP2P1/2P2P2/6K1 w - - 0 1", PAWNS_WHITE, id="pawns_white"),
    pytest.param(
        "6k1/5pp1/8/1P2P2p/1P6/1B1r2P1/5P1P/6K1 b - - 0 1",
        BLACK_TO_MOVE_PAWNS,
        id="black_to_move_pawns",
    ),
    pytest.param("4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 1", EN_PASSANT, id="en_passant"),
    pytest.param(
        "7k/1b1p4/2p5/b2p4/2N1B3/7P/1Q1N2PP/4K3 b - - 0 1",
        BLACK_TO_MOVE_FORKS,
        id="black_to_move_forks",
    ),
    pytest.param("6k1/3r4/8/8/8/8/3R4/3R2K1 w - - 0 1", ROOK_BATTERY, id="rook_battery"),
]

# Canonical boards of the Black-to-move cases, as quoted in their comments.
CANONICAL_FENS = {
    "6k1/5pp1/8/1P2P2p/1P6/1B1r2P1/5P1P/6K1 b - - 0 1": (
        "6k1/5p1p/1b1R2p1/1p6/1p2p2P/8/5PP1/6K1 w - - 0 1"
    ),
    "7k/1b1p4/2p5/b2p4/2N1B3/7P/1Q1N2PP/4K3 b - - 0 1": (
        "4k3/1q1n2pp/7p/2n1b3/B2P4/2P5/1B1P4/7K w - - 0 1"
    ),
}


# --- the two implementations ----------------------------------------------------


def _label_reference(fen: str) -> np.ndarray:
    return reference.label_fen(fen)


def _label_numba(fen: str) -> np.ndarray:
    label_fens = getattr(labelers, "label_fens", None)
    if label_fens is None:
        pytest.skip("labelers.label_fens is not written yet")
    return np.asarray(label_fens([fen]))[0]


IMPLEMENTATIONS = {"reference": _label_reference, "numba": _label_numba}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def label(request):
    """``fen -> (20,) uint64 masks`` for one implementation."""
    return IMPLEMENTATIONS[request.param]


def _names(mask: int) -> list[str]:
    return [chess.square_name(s) for s in chess.SquareSet(mask)]


def _mask(names: list[str]) -> int:
    assert len(set(names)) == len(names), f"duplicate square in {names}"
    return int(chess.SquareSet(chess.parse_square(n) for n in names))


# --- tests ----------------------------------------------------------------------


def test_mask_names_follow_the_spec_table():
    assert reference._ORDER == MASK_NAMES
    assert tuple(reference.label_masks(chess.Board())) == MASK_NAMES
    if not hasattr(labelers, "MASK_NAMES"):
        pytest.skip("labelers.MASK_NAMES is not written yet")
    assert tuple(labelers.MASK_NAMES) == MASK_NAMES


@pytest.mark.parametrize(("fen", "expected"), CASES)
def test_handchecked_position(label, fen, expected):
    assert set(expected) <= set(MASK_NAMES), f"unknown mask name in {sorted(expected)}"
    row = label(fen)
    assert row.shape == (20,)
    assert row.dtype == np.uint64
    got = {name: _names(int(row[i])) for i, name in enumerate(MASK_NAMES)}
    want = {name: _names(_mask(expected.get(name, []))) for name in MASK_NAMES}
    assert got == want


def test_every_mask_is_nonempty_in_at_least_two_cases():
    # Guards the suite itself: an all-empty expectation checks little.
    for name in MASK_NAMES:
        cases = [case.id for case in CASES if case.values[1].get(name)]
        assert len(cases) >= 2, f"{name} is non-empty only in {cases}"


@pytest.mark.parametrize(("fen", "canonical_fen"), CANONICAL_FENS.items())
def test_canonical_fen_of_black_to_move_cases(fen, canonical_fen):
    board = chess.Board(fen)
    assert reference.canonical(board).fen() == canonical_fen
    assert board.fen() == fen  # canonical() copies, it does not mirror in place
    np.testing.assert_array_equal(reference.label_fen(fen), reference.label_fen(canonical_fen))


def test_canonical_of_white_to_move_is_an_equal_copy():
    board = chess.Board("4k3/8/8/3q4/8/2N5/8/4K2R w K - 0 1")
    copy = reference.canonical(board)
    assert copy is not board
    assert copy.fen() == board.fen()


def test_label_board_and_label_masks_agree_with_label_fen():
    fen = "4r2k/3r4/5b2/3B4/6n1/4N3/1B6/4K3 w - - 0 1"
    board = chess.Board(fen)
    row = reference.label_board(board)
    np.testing.assert_array_equal(row, reference.label_fen(fen))
    masks = reference.label_masks(board)
    assert [masks[name] for name in MASK_NAMES] == [int(x) for x in row]


def test_label_board_rejects_black_to_move():
    board = chess.Board("6k1/5pp1/8/1P2P2p/1P6/1B1r2P1/5P1P/6K1 b - - 0 1")
    with pytest.raises(ValueError, match="Black to move"):
        reference.label_board(board)


@pytest.mark.parametrize(
    "fen",
    [
        pytest.param("not a fen", id="not_a_fen"),
        # Two white kings.
        pytest.param("4k3/8/8/8/8/8/8/3KK3 w - - 0 1", id="two_white_kings"),
        # White to move while Black's king is in check from Re1.
        pytest.param("4k3/8/8/8/8/8/8/4R1K1 w - - 0 1", id="side_not_to_move_in_check"),
        # A pawn on the back rank.
        pytest.param("4k3/8/8/8/8/8/8/P3K3 w - - 0 1", id="pawn_on_back_rank"),
    ],
)
def test_label_fen_rejects_bad_input_quoting_the_fen(fen):
    with pytest.raises(ValueError) as excinfo:
        reference.label_fen(fen)
    assert repr(fen) in str(excinfo.value)
