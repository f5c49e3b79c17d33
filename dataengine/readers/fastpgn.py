"""PGN movetext decoded in numba: a fast path for `dataengine.readers.pgn`.

:func:`decode_game` plays the mainline of one game's movetext (the bytes after
its tag section, as `pgn.py` joins them) on bitboards and returns, per
position, the columns a :class:`~dataengine.readers.Unit` holds: the 8
bitboards, turn, castling rights, legal en passant square, halfmove clock,
packed target move and ``[%eval]``. :func:`decode_games` does the same for many
games in one call.

Contract: a game is either decoded exactly as ``read_pgn`` decodes it
(``status == OK``), or rejected (``REJECT``, with the ply where decoding
stopped) and then left to python-chess. Everything unusual is rejected rather
than guessed at: SAN that python-chess would only resolve through
``Board.find_move`` (``e2e4``), null moves, anything illegal or ambiguous, any
non-ASCII byte outside comments (Python's ``\\s`` and ``\\d`` take some
non-ASCII characters), a non-ASCII byte where ``[%eval`` would read a space or
digit, mate distances of more than 15 digits, and games without moves.

The tokens follow ``pgn._TOKEN_RE`` and ``pgn._play`` exactly: move numbers
(``12.``, ``12...``; a number without a dot is dropped too), ``{...}``
comments (the first one holding ``[%eval`` after each move evaluates the
position after it, parsed as ``pgn._EVAL_RE`` does: pawns with up to two
decimals or ``#N``, White's view, ``#0`` gives no eval), ``(...)`` variations
(nested, skipped), ``;`` line comments, NAGs (``$1``), annotations (``!``,
``?``...; also as suffixes), the results and the leniency of
``Board.parse_san`` (``x``/``-`` optional, ``=`` optional, ``+``/``#`` not
checked, ``0-0`` castling, redundant disambiguation). Legality is decided by
making the move and testing whether the mover's king is attacked, which is what
python-chess's pin and evasion logic computes for valid positions; castling is
checked as ``Board.generate_castling_moves`` checks it.

Only ASCII bytes carry meaning here, so the movetext may be in any
ASCII-compatible encoding (UTF-8, cp1252, Latin-1): whatever ``pgn.py`` decides
about a game's encoding (its notes included) stays its own business; a
non-ASCII byte outside a comment is rejected anyway.

The start position comes from :func:`start_from_board` (the board of a ``FEN``
tag, after ``pgn.py`` checked ``is_valid()``) or is the standard one.
Throughput (bench/bench_dataengine.py, 1,500 Stockfish games): about 3-5 M
positions/s for the decode alone on one core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import chess
import numpy as np
from numba import config, njit

from labelers import tables
from labelers.kernels import _bishop_attacks, _rook_attacks, _tzcnt

OK = 0
REJECT = 1

# The tables below are frozen into the compiled code and numba's cache does not see
# labelers/tables.py: pin them, as labelers/kernels.py does.
_TABLES_SHA256 = "30389b8d4fbc7f16c014c57bc2c3dc0bf0373574bfca76b78f84e14a2389d3db"
tables.require_digest(_TABLES_SHA256, __file__, "the PGN decoder")

_JIT = {"cache": True, "nogil": True}

_U64 = np.uint64
_ZERO = _U64(0)
_ONE = _U64(1)
_KNIGHT_ATTACKS = tables.KNIGHT_ATTACKS
_KING_ATTACKS = tables.KING_ATTACKS
_BETWEEN = tables.BETWEEN

_BIT = np.array([1 << s for s in range(64)], dtype=np.uint64)
_RANKS = np.array([0xFF << (8 * r) for r in range(8)], dtype=np.uint64)
_FILES = np.array([0x0101010101010101 << f for f in range(8)], dtype=np.uint64)


def _pawn_attack_table() -> np.ndarray:
    """[color, square]: the squares a pawn of that colour (1 = White) on it attacks."""
    table = np.zeros((2, 64), dtype=np.uint64)
    for sq in range(64):
        file, rank = sq & 7, sq >> 3
        for color, dr in ((1, 1), (0, -1)):
            for df in (-1, 1):
                f, r = file + df, rank + dr
                if 0 <= f < 8 and 0 <= r < 8:
                    table[color, sq] |= np.uint64(1 << (8 * r + f))
    return table


_PAWN_ATTACKS = _pawn_attack_table()

# Byte classes: token characters, whitespace (Python's ASCII \s), the characters
# that end a token ({ } ( ) ;), and non-ASCII.
_TOKEN, _SPACE, _STOP, _HIGH = 0, 1, 2, 3
_CLASS = np.zeros(256, dtype=np.uint8)
_CLASS[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = _SPACE
_CLASS[[ord(c) for c in "{}();"]] = _STOP
_CLASS[128:] = _HIGH

# Piece letters (SAN, upper case) and promotion letters (either case) -> piece type.
_PIECE = np.zeros(256, dtype=np.int8)
for _t, _c in enumerate("PNBRQK", start=1):
    if _c != "P":
        _PIECE[ord(_c)] = _t
_PROMO = np.zeros(256, dtype=np.int8)
for _t, _c in enumerate("pnbrqk", start=1):
    if _c != "p":
        _PROMO[ord(_c)] = _PROMO[ord(_c.upper())] = _t

_PAWN, _KNIGHT, _BISHOP, _ROOK, _QUEEN, _KING = 1, 2, 3, 4, 5, 6

# Eval match outcomes.
_NO_MATCH, _MATCH, _BAD = 0, 1, 2


# --------------------------------------------------------------------------
# Attacks: the labelers' kindergarten sliders (labelers.kernels), on the same tables.


@njit(**_JIT)
def _attacked(sq, occ, pawns, knights, bishops, rooks, queens, kings, enemy, white):
    """Whether the `enemy` pieces (of the side that is not `white`) attack `sq` with
    occupancy `occ`."""
    a = _KNIGHT_ATTACKS[sq] & knights
    a |= _KING_ATTACKS[sq] & kings
    a |= _PAWN_ATTACKS[white, sq] & pawns
    a |= _rook_attacks(sq, occ) & (rooks | queens)
    a |= _bishop_attacks(sq, occ) & (bishops | queens)
    return (a & enemy) != _ZERO


@njit(**_JIT)
def _legal(p, n, b, r, q, k, w, bl, white, frm, to, ep_capture):
    """Whether moving our piece `frm` -> `to` (capturing whatever enemy piece is on
    `to`, or the pawn on `ep_capture` >= 0) leaves our king safe."""
    own = w if white else bl
    enemy = bl if white else w
    fb = _BIT[frm]
    tb = _BIT[to]
    occ = ((w | bl) & ~fb) | tb
    enemy &= ~tb
    if ep_capture >= 0:
        occ &= ~_BIT[ep_capture]
        enemy &= ~_BIT[ep_capture]
    king = k & own
    ksq = to if king & fb else _tzcnt(king)
    return not _attacked(ksq, occ, p, n, b, r, q, k, enemy, white)


@njit(**_JIT)
def _legal_ep(p, n, b, r, q, k, w, bl, white, ep):
    """`ep` if a legal en passant capture onto it exists, else -1 (has_legal_en_passant)."""
    if ep <= 0 or (w | bl) & _BIT[ep]:
        return -1
    own = w if white else bl
    capturers = _PAWN_ATTACKS[1 - white, ep] & p & own & _RANKS[4 if white else 3]
    captured = ep - 8 if white else ep + 8
    while capturers:
        frm = _tzcnt(capturers)
        capturers &= capturers - _ONE
        if _legal(p, n, b, r, q, k, w, bl, white, frm, ep, captured):
            return ep
    return -1


@njit(**_JIT)
def _resolve(p, n, b, r, q, k, w, bl, white, ep, piece, from_mask, to, promo):
    """(from square, number of legal moves) of the legal moves of `piece` to `to`
    from `from_mask` with promotion `promo` (Board.parse_san's filter)."""
    own = w if white else bl
    occ = w | bl
    tb = _BIT[to]
    if own & tb:
        return -1, 0
    if piece == _PAWN:
        last = (to >> 3) == (7 if white else 0)
        if last != (promo != 0) or promo == _KING:
            return -1, 0
        pawns = p & own & from_mask
        cands = _ZERO
        if occ & tb:
            cands = _PAWN_ATTACKS[1 - white, to] & pawns
        else:
            one = to - 8 if white else to + 8
            if 0 <= one < 64:
                if pawns & _BIT[one]:
                    cands |= _BIT[one]
                elif not occ & _BIT[one] and (to >> 3) == (3 if white else 4):
                    two = to - 16 if white else to + 16
                    if pawns & _BIT[two]:
                        cands |= _BIT[two]
            if to == ep and ep > 0:
                cands |= _PAWN_ATTACKS[1 - white, to] & pawns & _RANKS[4 if white else 3]
    else:
        if promo != 0:
            return -1, 0
        if piece == _KNIGHT:
            reach = _KNIGHT_ATTACKS[to] & n
        elif piece == _BISHOP:
            reach = _bishop_attacks(to, occ) & b
        elif piece == _ROOK:
            reach = _rook_attacks(to, occ) & r
        elif piece == _QUEEN:
            reach = (_rook_attacks(to, occ) | _bishop_attacks(to, occ)) & q
        else:
            reach = _KING_ATTACKS[to] & k
        cands = reach & own & from_mask
    found = -1
    count = 0
    while cands:
        frm = _tzcnt(cands)
        cands &= cands - _ONE
        ep_capture = -1
        if piece == _PAWN and to == ep and not occ & tb and (frm & 7) != (to & 7):
            ep_capture = to - 8 if white else to + 8
        if _legal(p, n, b, r, q, k, w, bl, white, frm, to, ep_capture):
            found = frm
            count += 1
    return found, count


@njit(**_JIT)
def _attacked_any(path, occ, p, n, b, r, q, k, enemy, white):
    while path:
        sq = _tzcnt(path)
        path &= path - _ONE
        if _attacked(sq, occ, p, n, b, r, q, k, enemy, white):
            return True
    return False


@njit(**_JIT)
def _castle(p, n, b, r, q, k, w, bl, white, castling, kingside):
    """(king square, rook square) of the legal castling move to that side, or (-1, -1)."""
    own = w if white else bl
    enemy = bl if white else w
    occ = w | bl
    back = _RANKS[0] if white else _RANKS[7]
    king = own & k & back
    if not king:
        return -1, -1
    ksq = _tzcnt(king)
    base = 0 if white else 56
    rsq = base + 7 if kingside else base
    rights = castling & back
    # Standard chess only: clean rights are the corner rooks with the king on e1/e8.
    if ksq != base + 4 or rights & ~(_BIT[base] | _BIT[base + 7]):
        return -1, -1
    rook = _BIT[rsq]
    if not rights & rook or not r & own & rook:
        return -1, -1
    kto = base + 6 if kingside else base + 2
    rto = base + 5 if kingside else base + 3
    king_path = _BETWEEN[ksq, kto]
    rook_path = _BETWEEN[rsq, rto]
    if (occ ^ king ^ rook) & (king_path | rook_path | _BIT[kto] | _BIT[rto]):
        return -1, -1
    if _attacked_any(king_path | king, occ ^ king, p, n, b, r, q, k, enemy, white):
        return -1, -1
    if _attacked(kto, occ ^ king ^ rook ^ _BIT[rto], p, n, b, r, q, k, enemy, white):
        return -1, -1
    return ksq, rsq


# --------------------------------------------------------------------------
# Text.


@njit(**_JIT)
def _is_digit(c):
    return 48 <= c <= 57


@njit(**_JIT)
def _digits_end(buf, i, hi):
    while i < hi and _is_digit(buf[i]):
        i += 1
    return i


@njit(**_JIT)
def _eval_tail(buf, q, hi):
    """``(?:,\\d+)?\\]`` at `q`."""
    if q >= hi:
        return _NO_MATCH
    c = buf[q]
    if c == 93:  # ]
        return _MATCH
    if c == 44:  # ,
        e = _digits_end(buf, q + 1, hi)
        if e < hi and buf[e] >= 128:
            return _BAD  # maybe a non-ASCII digit
        if e > q + 1 and e < hi and buf[e] == 93:
            return _MATCH
    return _NO_MATCH


@njit(**_JIT)
def _signed_digits(buf, q, hi):
    """``[+-]?\\d*`` at `q`: (negative, first digit, end of the digits, bad), bad when a
    non-ASCII byte (maybe a non-ASCII digit) ends the digits."""
    negative = False
    if q < hi and (buf[q] == 43 or buf[q] == 45):
        negative = buf[q] == 45
        q += 1
    e = _digits_end(buf, q, hi)
    return negative, q, e, e < hi and buf[e] >= 128


@njit(**_JIT)
def _eval_at(buf, q, hi):
    """pgn._EVAL_RE matched just after a ``[%eval`` ending before `q`:
    (outcome, cp, mate); mate 0 with a cp of 0 for ``#0`` is (MATCH, 0, 0) and
    carries no eval (`has` is the fourth value)."""
    if q >= hi:
        return _NO_MATCH, 0, 0, False
    c = buf[q]
    if c >= 128:
        return _BAD, 0, 0, False  # maybe non-ASCII whitespace
    if _CLASS[c] != _SPACE:
        return _NO_MATCH, 0, 0, False
    q += 1
    if q < hi and buf[q] == 35:  # '#': the cp branch cannot start here
        negative, q, e, bad = _signed_digits(buf, q + 1, hi)
        if bad:
            return _BAD, 0, 0, False
        if e == q:
            return _NO_MATCH, 0, 0, False
        tail = _eval_tail(buf, e, hi)
        if tail != _MATCH:
            return tail, 0, 0, False
        if e - q > 15:
            return _BAD, 0, 0, False
        mate = 0
        for i in range(q, e):
            mate = mate * 10 + (buf[i] - 48)
        if mate == 0:
            return _MATCH, 0, 0, False
        return _MATCH, 0, -mate if negative else mate, True
    negative, q, e, bad = _signed_digits(buf, q, hi)
    if bad:
        return _BAD, 0, 0, False
    d = e - q
    whole = 0
    for i in range(q, min(e, q + 10)):
        whole = whole * 10 + (buf[i] - 48)
    # \d{0,10}\.\d{1,2}
    if d <= 10 and e < hi and buf[e] == 46:
        f = _digits_end(buf, e + 1, hi)
        if f < hi and buf[f] >= 128:
            return _BAD, 0, 0, False
        nf = f - (e + 1)
        if 1 <= nf <= 2:
            tail = _eval_tail(buf, f, hi)
            if tail == _BAD:
                return _BAD, 0, 0, False
            if tail == _MATCH:
                frac = (buf[e + 1] - 48) * 10
                if nf == 2:
                    frac += buf[e + 2] - 48
                cp = whole * 100 + frac
                return _MATCH, -cp if negative else cp, 0, True
    # \d{1,10}\.?
    if 1 <= d <= 10:
        cp = whole * 100
        if e < hi and buf[e] == 46:
            tail = _eval_tail(buf, e + 1, hi)
            if tail == _BAD:
                return _BAD, 0, 0, False
            if tail == _MATCH:
                return _MATCH, -cp if negative else cp, 0, True
        tail = _eval_tail(buf, e, hi)
        if tail == _BAD:
            return _BAD, 0, 0, False
        if tail == _MATCH:
            return _MATCH, -cp if negative else cp, 0, True
    return _NO_MATCH, 0, 0, False


@njit(**_JIT)
def _comment_eval(buf, lo, hi):
    """The eval of a comment's text buf[lo:hi]: (found "[%eval", bad, cp, mate, has)."""
    found = False
    i = lo
    while i + 6 <= hi:
        if (buf[i] == 91 and buf[i + 1] == 37 and buf[i + 2] == 101 and buf[i + 3] == 118
                and buf[i + 4] == 97 and buf[i + 5] == 108):  # "[%eval"
            found = True
            outcome, cp, mate, has = _eval_at(buf, i + 6, hi)
            if outcome == _BAD:
                return True, True, 0, 0, False
            if outcome == _MATCH:
                return True, False, cp, mate, has
        i += 1
    return found, False, 0, 0, False


@njit(**_JIT)
def _is_result(buf, a, j):
    length = j - a
    if length == 3:  # 1-0, 0-1
        return buf[a + 1] == 45 and (
            (buf[a] == 49 and buf[a + 2] == 48) or (buf[a] == 48 and buf[a + 2] == 49)
        )
    if length == 7:  # 1/2-1/2
        return (buf[a] == 49 and buf[a + 1] == 47 and buf[a + 2] == 50 and buf[a + 3] == 45
                and buf[a + 4] == 49 and buf[a + 5] == 47 and buf[a + 6] == 50)
    return False


@njit(**_JIT)
def _castling_side(buf, s, e):
    """1 kingside, 2 queenside, 0 not castling (parse_san's exact strings)."""
    if e > s and (buf[e - 1] == 43 or buf[e - 1] == 35):  # + #
        e -= 1
    length = e - s
    if length != 3 and length != 5:
        return 0
    o = buf[s]
    if o != 79 and o != 48:  # O or 0
        return 0
    for i in range(s, e):
        if (i - s) % 2 == 0:
            if buf[i] != o:
                return 0
        elif buf[i] != 45:
            return 0
    return 1 if length == 3 else 2


# --------------------------------------------------------------------------
# The game.


@njit(**_JIT)
def _record(out_bb, out_turn, out_castling, out_ep, out_halfmove, out_cp, out_mate, out_has,
            i, p, n, b, r, q, k, w, bl, white, castling, ep, halfmove):
    out_bb[i, 0] = p
    out_bb[i, 1] = n
    out_bb[i, 2] = b
    out_bb[i, 3] = r
    out_bb[i, 4] = q
    out_bb[i, 5] = k
    out_bb[i, 6] = w
    out_bb[i, 7] = bl
    out_turn[i] = white == 1
    out_castling[i] = castling
    out_ep[i] = _legal_ep(p, n, b, r, q, k, w, bl, white, ep)
    out_halfmove[i] = halfmove
    out_cp[i] = 0
    out_mate[i] = 0
    out_has[i] = False


@njit(**_JIT)
def _decode(buf, lo, hi, start_bb, start_turn, start_castling, start_ep, start_halfmove,
            out_bb, out_turn, out_castling, out_ep, out_halfmove, out_move,
            out_cp, out_mate, out_has, base):
    """Decode buf[lo:hi] into the outputs from row `base`: (status, plies).

    On OK, rows base .. base + plies hold the plies + 1 positions (the last
    with move -1). On REJECT, `plies` is the ply where decoding stopped and
    the rows are garbage.
    """
    p = start_bb[0]
    n = start_bb[1]
    b = start_bb[2]
    r = start_bb[3]
    q = start_bb[4]
    k = start_bb[5]
    w = start_bb[6]
    bl = start_bb[7]
    white = 1 if start_turn else 0
    castling = start_castling
    ep = start_ep
    halfmove = start_halfmove
    cap = out_move.shape[0] - base
    ply = 0
    _record(out_bb, out_turn, out_castling, out_ep, out_halfmove, out_cp, out_mate, out_has,
            base, p, n, b, r, q, k, w, bl, white, castling, ep, halfmove)
    depth = 0
    evaluated = -1  # the last position index that took its "[%eval" comment
    after_number = False  # a move number was just read: the next token is whole
    i = lo
    while i < hi:
        c = buf[i]
        cls = _CLASS[c]
        if cls == _SPACE:
            i += 1
            continue
        if cls == _HIGH:
            return REJECT, ply  # maybe non-ASCII whitespace: python's tokens differ
        if cls == _STOP:
            after_number = False
            if c == 123:  # {
                j = i + 1
                while j < hi and buf[j] != 125:
                    j += 1
                if depth == 0 and evaluated != ply:
                    found, bad, cp, mate, has = _comment_eval(buf, i + 1, j)
                    if bad:
                        return REJECT, ply
                    if found:
                        evaluated = ply
                        out_cp[base + ply] = cp
                        out_mate[base + ply] = mate
                        out_has[base + ply] = has
                i = j + 1
            elif c == 59:  # ;
                while i < hi and buf[i] != 10:
                    i += 1
            elif c == 40:  # (
                depth += 1
                i += 1
            elif c == 41:  # )
                if depth:
                    depth -= 1
                i += 1
            else:  # a stray }
                i += 1
            continue
        # A token: up to whitespace or { } ( ) ;.
        a = i
        j = i
        while j < hi and _CLASS[buf[j]] == _TOKEN:
            j += 1
        if j < hi and _CLASS[buf[j]] == _HIGH:
            return REJECT, ply
        i = j
        if not after_number and _is_digit(c):
            d = _digits_end(buf, a, j)
            if d < j and buf[d] == 46:  # a move number: digits, dots
                while d < j and buf[d] == 46:
                    d += 1
                if d == j:
                    after_number = True  # the next token (after spaces) is whole
                    continue
                a = d  # "12.e4": the rest is the token
        after_number = False
        if depth:
            continue
        c = buf[a]
        if c == 36 or c == 33 or c == 63 or c == 42:  # $ ! ? *
            continue
        s = a
        if _is_digit(c) or c == 46:
            if _is_result(buf, a, j):
                continue
            if not (j - a >= 3 and c == 48 and buf[a + 1] == 45 and buf[a + 2] == 48):
                s = _digits_end(buf, a, j)
                while s < j and buf[s] == 46:
                    s += 1
                if s == j:
                    continue
        e = j
        while e > s and (buf[e - 1] == 33 or buf[e - 1] == 63):  # rstrip("!?")
            e -= 1
        if ply + 2 > cap:
            return REJECT, ply
        own = w if white else bl
        side = _castling_side(buf, s, e)
        if side:
            ksq, rsq = _castle(p, n, b, r, q, k, w, bl, white, castling, side == 1)
            if ksq < 0:
                return REJECT, ply
            kto = ksq + 2 if side == 1 else ksq - 2
            rto = ksq + 1 if side == 1 else ksq - 1
            kb = _BIT[ksq]
            rb = _BIT[rsq]
            moved = _BIT[kto] | _BIT[rto]
            k = (k & ~kb) | _BIT[kto]
            r = (r & ~rb) | _BIT[rto]
            own = (own & ~kb & ~rb) | moved
            if white:
                w = own
            else:
                bl = own
            castling &= ~kb & ~rb & ~(_RANKS[0] if white else _RANKS[7])
            halfmove += 1
            ep = -1
            out_move[base + ply] = ksq | kto << 6
        else:
            # SAN_REGEX, right to left: [NBKRQ]?[a-h]?[1-8]?[-x]?[a-h][1-8](=?[nbrqkNBRQK])?[+#]?
            t = e
            if t > s and (buf[t - 1] == 43 or buf[t - 1] == 35):
                t -= 1
            promo = 0
            if t > s and _PROMO[buf[t - 1]]:
                promo = np.int64(_PROMO[buf[t - 1]])
                t -= 1
                if t > s and buf[t - 1] == 61:  # =
                    t -= 1
            if t - s < 2 or not (97 <= buf[t - 2] <= 104 and 49 <= buf[t - 1] <= 56):
                return REJECT, ply
            to = (buf[t - 2] - 97) + 8 * (buf[t - 1] - 49)
            t -= 2
            if t > s and (buf[t - 1] == 45 or buf[t - 1] == 120):  # - x
                t -= 1
            u = s
            piece = 0
            if u < t and _PIECE[buf[u]]:
                piece = np.int64(_PIECE[buf[u]])
                u += 1
            file = -1
            if u < t and 97 <= buf[u] <= 104:
                file = buf[u] - 97
                u += 1
            rank = -1
            if u < t and 49 <= buf[u] <= 56:
                rank = buf[u] - 49
                u += 1
            if u != t:
                return REJECT, ply
            from_mask = ~_ZERO
            if file >= 0:
                from_mask &= _FILES[file]
            if rank >= 0:
                from_mask &= _RANKS[rank]
            if piece == 0:
                if file >= 0 and rank >= 0:
                    return REJECT, ply  # parse_san's find_move path
                piece = _PAWN
                if file < 0:
                    from_mask &= _FILES[to & 7]
            frm, count = _resolve(p, n, b, r, q, k, w, bl, white, ep, piece, from_mask, to,
                                  promo)
            if count != 1:
                return REJECT, ply
            # Board.push.
            enemy = bl if white else w
            fb = _BIT[frm]
            tb = _BIT[to]
            captured = (enemy & tb) != _ZERO
            if piece == _PAWN or captured:
                halfmove = 0
            else:
                halfmove += 1
            castling &= ~fb & ~tb
            if piece == _KING:
                castling &= ~(_RANKS[0] if white else _RANKS[7])
            if captured:
                p &= ~tb
                n &= ~tb
                b &= ~tb
                r &= ~tb
                q &= ~tb
                enemy &= ~tb
            elif piece == _PAWN and to == ep and (frm & 7) != (to & 7):
                gone = _BIT[to - 8 if white else to + 8]
                p &= ~gone
                enemy &= ~gone
            new_ep = -1
            if piece == _PAWN and (to - frm == 16 or frm - to == 16):
                new_ep = (frm + to) // 2
            ep = new_ep
            if piece == _PAWN:
                p &= ~fb
            elif piece == _KNIGHT:
                n &= ~fb
            elif piece == _BISHOP:
                b &= ~fb
            elif piece == _ROOK:
                r &= ~fb
            elif piece == _QUEEN:
                q &= ~fb
            else:
                k &= ~fb
            lands = promo if promo else piece
            if lands == _PAWN:
                p |= tb
            elif lands == _KNIGHT:
                n |= tb
            elif lands == _BISHOP:
                b |= tb
            elif lands == _ROOK:
                r |= tb
            elif lands == _QUEEN:
                q |= tb
            else:
                k |= tb
            own = (own & ~fb) | tb
            if white:
                w = own
                bl = enemy
            else:
                bl = own
                w = enemy
            out_move[base + ply] = frm | to << 6 | promo << 12
        white = 1 - white
        ply += 1
        _record(out_bb, out_turn, out_castling, out_ep, out_halfmove, out_cp, out_mate,
                out_has, base + ply, p, n, b, r, q, k, w, bl, white, castling, ep, halfmove)
    if ply == 0:
        return REJECT, 0
    out_move[base + ply] = -1
    return OK, ply


def _bytes(data: bytes) -> np.ndarray:
    buf = np.frombuffer(data, dtype=np.uint8)
    # Without the JIT (coverage runs), numpy's uint8 scalars would wrap where compiled
    # code computes in int64.
    return buf.astype(np.int64) if config.DISABLE_JIT else buf


def _outputs(rows: int) -> tuple[np.ndarray, ...]:
    return (
        np.empty((rows, 8), dtype=np.uint64),
        np.empty(rows, dtype=np.bool_),
        np.empty(rows, dtype=np.uint64),
        np.empty(rows, dtype=np.int64),
        np.empty(rows, dtype=np.int64),
        np.empty(rows, dtype=np.int64),
        np.empty(rows, dtype=np.int64),
        np.empty(rows, dtype=np.int64),
        np.empty(rows, dtype=np.bool_),
    )


def _capacity(n_bytes: int) -> int:
    """Rows enough for any movetext of `n_bytes`: each move is a run of >= 2 token bytes
    (a run holds one move at most) and runs are >= 1 byte apart, so m moves take
    >= 3m - 1 bytes and m + 1 <= n_bytes // 3 + 2 (`_decode` checks it anyway)."""
    return n_bytes // 3 + 2


@njit(**_JIT)
def _decode_batch(buf, offsets, start_bb, start_turn, start_castling, start_ep,
                  start_halfmove, out_bb, out_turn, out_castling, out_ep, out_halfmove,
                  out_move, out_cp, out_mate, out_has, status, plies, first):
    """Decode game g = buf[offsets[g]:offsets[g + 1]] for every g; accepted games'
    positions are packed one after another (first[g] is game g's first row)."""
    row = 0
    for g in range(offsets.shape[0] - 1):
        st, ply = _decode(buf, offsets[g], offsets[g + 1], start_bb[g], start_turn[g],
                          start_castling[g], start_ep[g], start_halfmove[g], out_bb,
                          out_turn, out_castling, out_ep, out_halfmove, out_move, out_cp,
                          out_mate, out_has, row)
        status[g] = st
        plies[g] = ply
        first[g] = row
        if st == OK:
            row += ply + 1
    return row


# --------------------------------------------------------------------------
# Python side.


@dataclass(frozen=True, slots=True)
class Start:
    """A start position as the decoder takes it (see :func:`start_from_board`)."""

    bitboards: np.ndarray
    """(8,) uint64: pawns, knights, bishops, rooks, queens, kings, white, black."""
    turn: bool
    castling: int
    """board.castling_rights (clean on a valid board)."""
    ep_square: int
    """board.ep_square, -1 when None (whether a capture is legal is decided here)."""
    halfmove: int


def start_from_board(board: chess.Board) -> Start | None:
    """The start position of a valid standard `board`, or None where the fast path does
    not apply (chess960, promoted-piece marks, a halfmove clock beyond int64)."""
    if board.chess960 or board.promoted or type(board) is not chess.Board:
        return None
    if not 0 <= board.halfmove_clock < 1 << 62:
        return None
    for color in chess.COLORS:
        if chess.popcount(board.kings & board.occupied_co[color]) != 1:
            return None
    if board.castling_rights != board.clean_castling_rights():
        return None  # not on a valid board, which the caller should have checked
    bitboards = np.array(
        [board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings,
         board.occupied_co[chess.WHITE], board.occupied_co[chess.BLACK]], dtype=np.uint64,
    )
    ep = -1 if board.ep_square is None else board.ep_square
    return Start(bitboards, board.turn, board.castling_rights, ep, board.halfmove_clock)


STANDARD_START = start_from_board(chess.Board())


@dataclass(frozen=True, slots=True)
class Decoded:
    """One game's positions (Unit's columns as arrays); empty arrays on REJECT."""

    status: int
    """OK or REJECT."""
    ply: int
    """OK: the number of moves (positions: ply + 1). REJECT: the ply where it stopped."""
    bitboards: np.ndarray  # (ply + 1, 8) uint64
    turn: np.ndarray  # bool
    castling: np.ndarray  # uint64
    ep_square: np.ndarray  # int64, -1 none
    halfmove: np.ndarray  # int64
    move: np.ndarray  # int64, from | to << 6 | promotion << 12; -1 for the final board
    eval_cp: np.ndarray  # int64
    eval_mate: np.ndarray  # int64
    has_eval: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.move)


def decode_game(movetext: bytes, start: Start | None = None) -> Decoded:
    """Play the mainline of one game's movetext (UTF-8 bytes) from `start` (the
    standard start position by default)."""
    if start is None:
        start = STANDARD_START
    buf = _bytes(movetext)
    outs = _outputs(_capacity(len(buf)))
    status, ply = _decode(
        buf, 0, len(buf), start.bitboards, start.turn, _U64(start.castling), start.ep_square,
        start.halfmove, *outs, 0,
    )
    rows = ply + 1 if status == OK else 0
    return Decoded(status, ply, *(a[:rows] for a in outs))


# UCI promotion letters by the packed move's promotion (a python-chess piece type):
# 0 and 1 (pawn) write none, as `base._uci_line`'s table.
_UCI_PROMOTION = np.zeros(8, dtype=np.uint8)
_UCI_PROMOTION[2:6] = np.frombuffer(b"nbrq", dtype=np.uint8)


@njit(**_JIT)
def _uci_text(move, first, plies, status, out, ends):
    """The UCI text of each accepted game's known moves (>= 0), space separated, the
    games one after another in `out` (6 bytes a row suffice); ``ends[g]``: where game
    g's text ends (a rejected game's is empty). `base._uci_line`, for a batch."""
    at = 0
    for g in range(status.shape[0]):
        if status[g] == OK:
            start = at
            for i in range(first[g], first[g] + plies[g] + 1):
                m = move[i]
                if m < 0:
                    continue
                if at > start:
                    out[at] = 32
                    at += 1
                frm, to, promotion = m & 63, (m >> 6) & 63, m >> 12
                out[at] = 97 + (frm & 7)
                out[at + 1] = 49 + (frm >> 3)
                out[at + 2] = 97 + (to & 7)
                out[at + 3] = 49 + (to >> 3)
                at += 4
                if 0 <= promotion < 8 and _UCI_PROMOTION[promotion]:
                    out[at] = _UCI_PROMOTION[promotion]
                    at += 1
        ends[g] = at


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """Many games: per game status/ply/first row; the accepted games' positions packed
    in game order (rows first[g] .. first[g] + ply[g] of the arrays)."""

    status: np.ndarray  # (games,) int64
    ply: np.ndarray  # (games,) int64
    first: np.ndarray  # (games,) int64
    bitboards: np.ndarray
    turn: np.ndarray
    castling: np.ndarray
    ep_square: np.ndarray
    halfmove: np.ndarray
    move: np.ndarray
    eval_cp: np.ndarray
    eval_mate: np.ndarray
    has_eval: np.ndarray

    def game(self, g: int) -> Decoded:
        status, ply = int(self.status[g]), int(self.ply[g])
        lo = int(self.first[g])
        hi = lo + ply + 1 if status == OK else lo
        return Decoded(status, ply, *(
            a[lo:hi] for a in (self.bitboards, self.turn, self.castling, self.ep_square,
                               self.halfmove, self.move, self.eval_cp, self.eval_mate,
                               self.has_eval)
        ))  # fmt: skip

    def uci_lines(self) -> list[str]:
        """Each game's known moves as UCI text, space separated ("" for a rejected
        game): what `base._uci_line` gives for its moves, in one compiled call."""
        out = np.empty(6 * len(self.move) + 1, dtype=np.uint8)
        ends = np.empty(len(self.status), dtype=np.int64)
        _uci_text(self.move, self.first, self.ply, self.status, out, ends)
        text = out[: ends[-1] if len(ends) else 0].tobytes().decode("ascii")
        bounds = [0, *ends.tolist()]
        return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def decode_games(movetexts: Sequence[bytes], starts: Sequence[Start | None] | None = None
                 ) -> DecodedBatch:
    """:func:`decode_game` for many games in one compiled call."""
    games = len(movetexts)
    lengths = np.fromiter((len(m) for m in movetexts), dtype=np.int64, count=games)
    offsets = np.zeros(games + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    buf = _bytes(b"".join(movetexts))
    if starts is None:
        starts = [None] * games
    resolved = [STANDARD_START if s is None else s for s in starts]
    start_bb = np.array([s.bitboards for s in resolved], dtype=np.uint64).reshape(games, 8)
    start_turn = np.array([s.turn for s in resolved], dtype=np.bool_)
    start_castling = np.array([s.castling for s in resolved], dtype=np.uint64)
    start_ep = np.array([s.ep_square for s in resolved], dtype=np.int64)
    start_halfmove = np.array([s.halfmove for s in resolved], dtype=np.int64)
    outs = _outputs(int(lengths.sum()) // 3 + 2 * games + 1)
    status = np.empty(games, dtype=np.int64)
    plies = np.empty(games, dtype=np.int64)
    first = np.empty(games, dtype=np.int64)
    rows = _decode_batch(buf, offsets, start_bb, start_turn, start_castling, start_ep,
                         start_halfmove, *outs, status, plies, first)
    # copies: the capacity is several times what real games use
    return DecodedBatch(status, plies, first, *(a[:rows].copy() for a in outs))
