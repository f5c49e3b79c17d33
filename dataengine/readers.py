"""Input readers: PGN games, Lichess puzzles, opening lines and FEN/EPD positions.

Each reader is a generator over one file that yields, in file order, a
:class:`Unit` for every good game/puzzle/line and a :class:`Skip` for every bad
one. Bad content never raises; only a file that cannot be opened does
(:class:`ReaderError`). A :class:`Unit` holds all of its positions as flat
columns in python-chess's absolute orientation, so that the shard builder can
turn them into arrays without touching python-chess again.

>>> from dataengine.readers import read, split_ranges
>>> for start, end in split_ranges("games.pgn"):         # doctest: +SKIP
...     for unit in read("games.pgn", start, end):
...         ...

Skip reasons (``Skip.reason``), stable keys for reports:

============================  =================================================
``bad_encoding``              the unit contains bytes that are not UTF-8
``variant``                   PGN ``Variant`` tag other than standard chess
``bad_fen``                   FEN tag / puzzle FEN / FEN or EPD line unparsable
``invalid_position``          FEN parses but ``not board.is_valid()``
``illegal_move``              a SAN/UCI move that is illegal or unparsable in
                              its position (the whole unit is skipped)
``bad_move``                  malformed puzzle UCI move, EPD ``bm`` unusable
``no_moves``                  game, puzzle or opening line without moves
``truncated``                 file ends inside a tag section, or a compressed
                              stream ends early / is corrupt
``bad_columns``               CSV/TSV header lacks a required column (then the
                              reader stops), or a row has the wrong column count
``bad_rating``                puzzle rating is not an integer
``empty``                     the file has no bytes at all
============================  =================================================

PGN handling follows ``chess.pgn.read_game`` (same tag regex, same SAN
leniency, a blank line ends a game's movetext, lines starting with ``%`` are
ignored) with two deliberate differences: an illegal or unparsable move skips
the whole game instead of cutting it short, and tokens python-chess silently
drops (e.g. a SAN cut in half, ``Nf``) count as unparsable moves.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import chess
import zstandard

__all__ = [
    "RESULT_UNKNOWN",
    "ReaderError",
    "Skip",
    "Unit",
    "detect_kind",
    "read",
    "read_openings",
    "read_pgn",
    "read_positions",
    "read_puzzles",
    "split_ranges",
]

Square = int
Bitboard = int

RESULT_UNKNOWN = 2
"""``Unit.result`` when the result is unknown ("*", puzzles, openings, FEN)."""

_DETAIL_CHARS = 200


@dataclass(slots=True)
class Unit:
    """Positions that belong together (a game, a puzzle, an opening line, one
    FEN/EPD line) and are never split across train/validation.

    Per-position columns are parallel lists, one entry per position
    (``bitboards``: 8 entries per position), boards in python-chess's absolute
    orientation BEFORE the target move.
    """

    source: str
    """"pgn" | "puzzle" | "opening" | "fen"."""
    identity: str
    """Stable, content-derived identity, independent of the file position."""
    line: int
    """1-based line number in the file where the unit starts."""
    result: int
    """White's point of view: 1 win, 0 draw, -1 loss, RESULT_UNKNOWN (2) unknown."""
    rating: int
    """Puzzle rating, 0 when none."""
    themes: str
    """Puzzle themes as in the CSV (space separated), "" when none."""
    bitboards: list[int]
    """8 per position: pawns, knights, bishops, rooks, queens, kings,
    occupied_co[WHITE], occupied_co[BLACK]."""
    turn: list[bool]
    """board.turn (True = White to move)."""
    castling: list[int]
    """board.clean_castling_rights() (rook-square mask)."""
    ep_square: list[int]
    """En passant square if a legal en passant capture exists, else -1."""
    halfmove: list[int]
    """board.halfmove_clock."""
    ply: list[int]
    """Ply index from the unit's first board (puzzles: first solver move is ply 1)."""
    move: list[int]
    """Target move: from | to << 6 | promotion << 12 (piece type 2..5, 0 none); -1 unknown."""
    eval_cp: list[int]
    """Engine eval in centipawns from White's point of view, 0 when unknown or mate."""
    eval_mate: list[int]
    """Signed mate distance in moves from White's point of view, 0 when not a mate score."""
    has_eval: list[bool]
    """Whether eval_cp/eval_mate hold an eval for this position."""

    def __len__(self) -> int:
        return len(self.move)


@dataclass(slots=True, frozen=True)
class Skip:
    """A unit (or a line) that was left out, and why."""

    reason: str
    """Short stable key, see the module docstring."""
    path: str
    line: int
    """1-based line number where the bad unit starts (or the bad line)."""
    detail: str
    """Human readable, quoting the bad input (about 200 characters at most)."""


class ReaderError(OSError):
    """A file that cannot be read at all (missing, unreadable, unknown kind)."""


# --------------------------------------------------------------------------
# Files: opening, compression, byte ranges, line numbers.

_COMPRESSED = (".gz", ".bz2", ".zst")
_KINDS = {".pgn": "pgn", ".csv": "puzzle", ".tsv": "opening", ".fen": "fen", ".epd": "fen"}
_BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20


# What gzip, bz2 and zstandard raise on a cut-off or corrupt stream.
_STREAM_ERRORS = (EOFError, OSError, zstandard.ZstdError)


class _Truncated(Exception):
    """A compressed stream ended early or is corrupt (raised from `_lines`)."""

    def __init__(self, lineno: int, error: BaseException) -> None:
        super().__init__(lineno, error)
        self.lineno = lineno
        self.error = error

    def skip(self, path: str) -> Skip:
        detail = f"compressed stream is cut off or corrupt: {self.error}"
        return Skip("truncated", path, self.lineno, _clip(detail))


class _ZstdRaw(io.RawIOBase):
    """Streaming zstd decompression, frame by frame, that notices a cut-off last frame.

    zstandard's own `stream_reader` silently returns a truncated stream's
    prefix; a truncated download must instead be reported.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._frame = None  # decompressobj of the frame in progress
        self._out = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._pos >= len(self._out):
            data = self._raw.read(_CHUNK)
            if not data:
                if self._frame is not None:
                    raise EOFError("zstd stream ended in the middle of a frame")
                return 0
            parts = []
            while data:
                if self._frame is None:
                    self._frame = self._dctx.decompressobj()
                parts.append(self._frame.decompress(data))
                data = b""
                if self._frame.eof:
                    data = self._frame.unused_data
                    self._frame = None
            self._out = b"".join(parts)
            self._pos = 0
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def _compression(path: str) -> str:
    name = os.fspath(path).lower()
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            return suffix
    return ""


def _open(path: str) -> BinaryIO:
    """Open `path` for binary reading, decompressing by its name."""
    try:
        compression = _compression(path)
        if compression == ".gz":
            return gzip.open(path, "rb")
        if compression == ".bz2":
            return bz2.open(path, "rb")
        raw = open(path, "rb")
        if compression == ".zst":
            return io.BufferedReader(_ZstdRaw(raw), buffer_size=_CHUNK)
        return raw
    except OSError as exc:
        raise ReaderError(f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}") from exc


def _check_args(path: str, start: int, end: int | None) -> None:
    """Fail early (before the first `next()`) on an unreadable file or a bad range."""
    _open(path).close()
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"bad byte range [{start}, {end}) for {os.fspath(path)!r}")
    if _compression(path) and (start != 0 or end is not None):
        raise ValueError(
            f"{os.fspath(path)!r} is compressed: it is read whole (start=0, end=None), "
            f"not [{start}, {end})"
        )


def _lines(f: BinaryIO, offset: int, lineno: int) -> Iterator[tuple[int, int, bytes]]:
    """Yield (byte offset, 1-based line number, line) from the current position of `f`.

    A leading UTF-8 byte order mark is dropped (offsets still count it).
    Decompression errors become `_Truncated`.
    """
    try:
        for line in f:
            if offset == 0 and line.startswith(_BOM):
                yield 0, lineno, line[3:]
            else:
                yield offset, lineno, line
            offset += len(line)
            lineno += 1
    except _STREAM_ERRORS as exc:
        raise _Truncated(lineno, exc) from exc


# Line numbers at known line starts of plain files, by file identity, so that
# a process reading a big file's ranges one after another counts newlines from
# the end of its previous range instead of from the start of the file (which
# made reading all ranges quadratic in the file size).
_LINE_MARKS: dict[tuple[int, ...], dict[int, int]] = {}
_MAX_MARKED_FILES = 64
_MAX_MARKS = 100_000


def _file_key(f: BinaryIO) -> tuple[int, ...]:
    st = os.fstat(f.fileno())
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _mark_line(f: BinaryIO, offset: int, lineno: int) -> None:
    """Remember that the line starting at `offset` of the plain file `f` is line `lineno`."""
    if len(_LINE_MARKS) >= _MAX_MARKED_FILES:
        _LINE_MARKS.clear()
    marks = _LINE_MARKS.setdefault(_file_key(f), {0: 1})
    if len(marks) < _MAX_MARKS:
        marks[offset] = lineno


def _line_number(f: BinaryIO, pos: int) -> int:
    """1-based line number of the line starting at `pos` of the plain file `f`."""
    marks = _LINE_MARKS.get(_file_key(f), {0: 1})
    base, lineno = max((o, n) for o, n in marks.items() if o <= pos)
    f.seek(base)
    left = pos - base
    while left > 0:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            break
        lineno += chunk.count(b"\n")
        left -= len(chunk)
    _mark_line(f, pos, lineno)
    return lineno


def _line_start_at_or_after(f: BinaryIO, pos: int) -> int:
    """Offset of the first line start >= `pos` in the plain file `f` (maybe EOF)."""
    if pos <= 0:
        return 0
    f.seek(pos - 1)
    if f.read(1) == b"\n":
        return pos
    f.readline()
    return f.tell()


def _seek_lines(f: BinaryIO, pos: int) -> Iterator[tuple[int, int, bytes]]:
    """`_lines` from the line start `pos` of the plain file `f`, with correct line numbers."""
    lineno = _line_number(f, pos) if pos else 1
    f.seek(pos)
    return _lines(f, pos, lineno)


def _clip(text: str) -> str:
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


def _encoding_detail(exc: UnicodeDecodeError) -> str:
    bad = exc.object[max(0, exc.start - 40) : exc.end + 40]
    return _clip(f"not UTF-8 ({exc.reason}) near {bad!r}")


# --------------------------------------------------------------------------
# Position columns.


@dataclass(slots=True)
class _Columns:
    """Per-position columns while a unit is read (turn and ply come later)."""

    bitboards: list[int] = field(default_factory=list)
    castling: list[int] = field(default_factory=list)
    ep_square: list[int] = field(default_factory=list)
    halfmove: list[int] = field(default_factory=list)
    move: list[int] = field(default_factory=list)

    def add(self, board: chess.Board) -> None:
        """Append `board`; its target goes to `move` separately.

        The castling rights are taken as they are: they are clean on a board
        that passed is_valid() and after any push() from one.
        """
        occupied_co = board.occupied_co
        self.bitboards.extend((
            board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings,
            occupied_co[chess.WHITE], occupied_co[chess.BLACK],
        ))  # fmt: skip
        self.castling.append(board.castling_rights)
        ep = board.ep_square
        self.ep_square.append(-1 if ep is None or not board.has_legal_en_passant() else ep)
        self.halfmove.append(board.halfmove_clock)


def _pack(move: chess.Move) -> int:
    return move.from_square | move.to_square << 6 | (move.promotion or 0) << 12


def _alternating(first: bool, n: int) -> list[bool]:
    turns = [first, not first] * ((n + 1) // 2)
    del turns[n:]
    return turns


def _make_unit(
    source: str,
    identity: str,
    line: int,
    cols: _Columns,
    turn: list[bool],
    ply: list[int],
    *,
    result: int = RESULT_UNKNOWN,
    rating: int = 0,
    themes: str = "",
    evals: dict[int, tuple[int, int]] | None = None,
) -> Unit:
    n = len(cols.move)
    eval_cp = [0] * n
    eval_mate = [0] * n
    has_eval = [False] * n
    for index, (cp, mate) in (evals or {}).items():
        eval_cp[index] = cp
        eval_mate[index] = mate
        has_eval[index] = True
    return Unit(
        source, identity, line, result, rating, themes, cols.bitboards, turn,
        cols.castling, cols.ep_square, cols.halfmove, ply, cols.move, eval_cp, eval_mate, has_eval,
    )  # fmt: skip


# UCI text of packed moves, for identities without a python-chess call per move.
_UCI_SQUARES = [a + b for b in chess.SQUARE_NAMES for a in chess.SQUARE_NAMES]  # from | to << 6
_UCI_PROMOTIONS = ("", "", "n", "b", "r", "q")


def _uci_line(moves: list[int]) -> str:
    return " ".join([_UCI_SQUARES[m & 4095] + _UCI_PROMOTIONS[m >> 12] for m in moves if m >= 0])


# --------------------------------------------------------------------------
# SAN: a fast path for the common moves, python-chess's parse_san for the rest.
#
# `Board.parse_san` generates every legal move of the filtered pieces (~7-10 us
# here). The fast path looks up the few pseudo-legal candidates in the attack
# tables; when there is exactly one, the caller pushes it and checks
# `was_into_check()` (a pseudo-legal move is legal iff it leaves the king safe).
# A move is taken only when it is the one legal move among ALL candidates, so
# the fast path never accepts what parse_san rejects; anything else (castling,
# en passant, ambiguity, errors, odd notations) falls back to parse_san, which
# then returns or raises exactly as read_game would.

# SAN -> (piece type, from-mask, to-square, promotion), or None for "ask parse_san".
_SanInfo = tuple[int, Bitboard, Square, int]
_SAN_CACHE: dict[str, _SanInfo | None] = {}
_SAN_CACHE_MAX = 200_000
_UNSEEN = object()


def _san_info(san: str) -> _SanInfo | None:
    match = chess.SAN_REGEX.match(san)
    if match is None:
        return None
    piece, file, rank, target, promotion = match.groups()
    to_square = chess.SQUARE_NAMES.index(target)
    promo = chess.PIECE_SYMBOLS.index(promotion[-1].lower()) if promotion else 0
    from_mask = chess.BB_ALL
    if file:
        from_mask &= chess.BB_FILES[ord(file) - ord("a")]
    if rank:
        from_mask &= chess.BB_RANKS[int(rank) - 1]
    if piece:
        if promo:
            return None
        return chess.PIECE_SYMBOLS.index(piece.lower()), from_mask, to_square, 0
    # Pawn moves: a plain push ("e4") or a capture from the adjacent file ("exd5").
    if rank or promo in (chess.KING, chess.PAWN):
        return None
    if file and abs((ord(file) - ord("a")) - chess.square_file(to_square)) != 1:
        return None
    if not file:
        from_mask = 0  # marks a push
    return chess.PAWN, from_mask, to_square, promo


def _san_candidate(board: chess.Board, info: _SanInfo) -> chess.Move | None:
    """The only pseudo-legal move matching `info` (legality NOT checked), the
    only legal one when there are several, or None (ask parse_san)."""
    piece, from_mask, to, promo = info
    white = board.turn
    ours = board.occupied_co[white]
    to_bb = chess.BB_SQUARES[to]
    if ours & to_bb:
        return None
    occupied = board.occupied
    if piece == chess.PAWN:
        last_rank = 7 if white else 0
        if (chess.square_rank(to) == last_rank) != bool(promo):
            return None
        step = -8 if white else 8
        if not 0 <= to + step < 64:
            return None
        pawns = board.pawns & ours
        if from_mask:  # capture
            if not occupied & to_bb:
                return None  # en passant or illegal: parse_san decides
            source = chess.lsb(from_mask & chess.BB_RANKS[chess.square_rank(to + step)])
            if not pawns & chess.BB_SQUARES[source]:
                return None
        else:  # push
            if occupied & to_bb:
                return None
            source = to + step
            if not pawns & chess.BB_SQUARES[source]:
                if occupied & chess.BB_SQUARES[source] or chess.square_rank(to) != (
                    3 if white else 4
                ):
                    return None
                source += step
                if not pawns & chess.BB_SQUARES[source]:
                    return None
        return chess.Move(source, to, promo or None)
    if piece == chess.KNIGHT:
        attackers = chess.BB_KNIGHT_ATTACKS[to] & board.knights
    elif piece == chess.KING:
        attackers = chess.BB_KING_ATTACKS[to] & board.kings
    else:
        attackers = 0
        if piece != chess.ROOK:
            attackers = chess.BB_DIAG_ATTACKS[to][chess.BB_DIAG_MASKS[to] & occupied]
        if piece != chess.BISHOP:
            attackers |= (
                chess.BB_RANK_ATTACKS[to][chess.BB_RANK_MASKS[to] & occupied]
                | chess.BB_FILE_ATTACKS[to][chess.BB_FILE_MASKS[to] & occupied]
            )
        attackers &= board.pieces_mask(piece, white)
    candidates = attackers & ours & from_mask
    if not candidates:
        return None
    if not candidates & (candidates - 1):
        return chess.Move(candidates.bit_length() - 1, to)
    found = None  # several pieces reach `to`: at most one may move legally
    for source in chess.scan_reversed(candidates):
        move = chess.Move(source, to)
        if not board.is_into_check(move):
            if found is not None:
                return None  # ambiguous: parse_san raises
            found = move
    return found


# --------------------------------------------------------------------------
# Movetext.

# Words of movetext: comments, line comments, parentheses, everything else
# between whitespace and those (SAN, NAGs, results); move numbers ("12.",
# "12...") are dropped by the regex itself.
_TOKEN_RE = re.compile(r"(?:\d+\.+\s*)?(\{[^}]*\}?|;[^\n]*|[()]|[^\s{}();]+)")
_RESULTS = {"1-0": 1, "0-1": -1, "1/2-1/2": 0, "*": RESULT_UNKNOWN}
# python-chess's EVAL_REGEX (chess.pgn), without the prefix/suffix groups.
_EVAL_RE = re.compile(
    r"\[%eval\s(?:\#([+-]?\d+)|([+-]?(?:\d{0,10}\.\d{1,2}|\d{1,10}\.?)))(?:,\d+)?\]"
)


class _BadMove(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _play(board: chess.Board, movetext: str, cols: _Columns) -> dict[int, str]:
    """Play the mainline of `movetext` on `board`, recording each position before its move.

    Returns the first comment holding ``[%eval`` after each move, keyed by the
    index of the position it evaluates (the one after that move). Raises
    `_BadMove` on the first bad move.
    """
    evals: dict[int, str] = {}
    add = cols.add
    moves = cols.move.append
    push = board.push
    was_into_check = board.was_into_check
    san_cache = _SAN_CACHE
    n = 0
    depth = 0
    for token in _TOKEN_RE.findall(movetext):
        c = token[0]
        if c == "{":
            if not depth and "[%eval" in token and n not in evals:
                evals[n] = token
            continue
        if c == "(":
            depth += 1
            continue
        if c == ")":
            if depth:
                depth -= 1
            continue
        if depth or c in ";$!?*":  # "*": the unknown result
            continue
        if "0" <= c <= "9" or c == ".":
            if token in _RESULTS:
                continue
            if not token.startswith("0-0"):
                token = token.lstrip("0123456789").lstrip(".")  # "12." / "12...Nf6" / "12.e4"
                if not token:
                    continue
        san = token.rstrip("!?")
        add(board)
        info = san_cache.get(san, _UNSEEN)
        if info is _UNSEEN:
            info = _san_info(san)
            if len(san_cache) < _SAN_CACHE_MAX:
                san_cache[san] = info
        move = None if info is None else _san_candidate(board, info)
        if move is not None:
            push(move)
            if was_into_check():
                board.pop()
                move = None
        if move is None:
            try:
                move = board.parse_san(san)
            except ValueError as exc:
                raise _BadMove(f"ply {n}: {exc}") from None
            if not move:
                raise _BadMove(f"ply {n}: null move {san!r} is not a training target")
            push(move)
        moves(_pack(move))
        n += 1
    return evals


def _parse_evals(comments: dict[int, str]) -> dict[int, tuple[int, int]]:
    """(cp, mate) from White's view per position; as python-chess's `GameNode.eval`."""
    evals = {}
    for index, comment in comments.items():
        match = _EVAL_RE.search(comment)
        if match is None:
            continue
        mate, cp = match.groups()
        if mate is not None:
            if int(mate) != 0:  # "#0" (side to move is mated) has no signed encoding
                evals[index] = (0, int(mate))
        else:
            evals[index] = (round(float(cp) * 100), 0)
    return evals


# --------------------------------------------------------------------------
# PGN.

# python-chess's TAG_REGEX, per line of a tag section.
_TAG_RE = re.compile(r'^\[([A-Za-z0-9][A-Za-z0-9_+#=:-]*)\s+"([^\r\n]*)"\]\s*$', re.MULTILINE)
# What makes a line a tag line (and so maybe the start of a game): "[" and the
# first character of a tag name, so that a malformed or cut-off tag ("[Site ")
# still belongs to its tag section but a wrapped comment line like
# "[%clk 0:01:00] }" does not.
_TAG_LINE_RE = re.compile(rb"\[[A-Za-z0-9]")
_ROSTER = ("Event", "Site", "Date", "Round", "White", "Black", "Result")
_STANDARD_VARIANTS = {alias.lower() for alias in chess.Board.aliases}


def _is_tag_line(line: bytes) -> bool:
    return _TAG_LINE_RE.match(line) is not None


def _prev_nonblank_is_tag(f: BinaryIO, pos: int) -> bool:
    """Whether the last non-blank line before the line start `pos` is a tag line."""
    tail = b""
    while pos > 0:
        size = min(1 << 16, pos)
        pos -= size
        f.seek(pos)
        lines = (f.read(size) + tail).split(b"\n")
        tail = lines[0] if pos else b""
        for line in reversed(lines if not pos else lines[1:]):
            if line.strip():
                return _is_tag_line(line.removeprefix(_BOM) if pos == 0 else line)
    return False


def _game_start_at_or_after(f: BinaryIO, pos: int) -> int | None:
    """Offset of the first game start >= `pos` in the plain PGN `f`, None if none.

    A game starts at a tag line whose previous non-blank line is not a tag line.
    """
    offset = _line_start_at_or_after(f, pos)
    prev_tag = _prev_nonblank_is_tag(f, offset)
    f.seek(offset)
    for line in f:
        if _is_tag_line(line):
            if not prev_tag:
                return offset
            prev_tag = True
        elif not line.isspace():
            prev_tag = False
        offset += len(line)
    return None


def _comment_open_after(line: bytes, in_comment: bool) -> bool:
    """Whether a `{` comment is still open after this movetext line."""
    if not in_comment and b";" not in line:
        return line.rfind(b"{") > line.rfind(b"}")
    for char in re.findall(rb"[{};]", line):
        if in_comment:
            in_comment = char != b"}"
        elif char == b"{":
            in_comment = True
        elif char == b";":
            break
    return in_comment


def read_pgn(path: str, start: int = 0, end: int | None = None) -> Iterator[Unit | Skip]:
    """Yield a Unit per mainline game of a PGN file (plain, .gz, .bz2, .zst) in file order.

    Positions: every board before a mainline move (target: that move) and the
    final board (target -1). A ``[%eval]`` after move k evaluates the board
    after it (position k + 1). With a byte range, yields exactly the games
    that start in ``[start, end)`` of the plain file; `split_ranges` gives
    ranges that tile the file.
    """
    _check_args(path, start, end)
    return _read_pgn(os.fspath(path), start, end)


def _read_pgn(path: str, start: int, end: int | None) -> Iterator[Unit | Skip]:
    with _open(path) as f:
        if start:
            first = _game_start_at_or_after(f, start)
            if first is None:
                return
            lines = _seek_lines(f, first)
        else:
            lines = _lines(f, 0, 1)
        game_line = 0  # 0: no game yet
        tags: list[bytes] = []
        movetext: list[bytes] = []
        prev_tag = blank = in_comment = False
        empty = True
        try:
            for offset, lineno, line in lines:
                empty = False
                if _is_tag_line(line):
                    if not prev_tag:
                        if game_line:
                            yield _pgn_unit(path, game_line, tags, movetext, False)
                        if end is not None and offset >= end:
                            _mark_line(f, offset, lineno)  # where the next range starts
                            return
                        game_line, tags, movetext = lineno, [], []
                        blank = in_comment = False
                    tags.append(line)
                    prev_tag = True
                    continue
                if line.isspace():
                    blank = blank or (bool(movetext) and not in_comment)
                    continue
                prev_tag = False
                if not in_comment and (
                    line[:1] == b"%" or (line[:1] == b";" and (blank or not movetext))
                ):
                    continue  # escape line, or a comment line outside movetext
                if not game_line or blank:  # movetext without tags: a game of its own
                    if game_line:
                        yield _pgn_unit(path, game_line, tags, movetext, False)
                    game_line, tags, movetext = lineno, [], []
                    blank = False
                movetext.append(line)
                in_comment = _comment_open_after(line, in_comment)
        except _Truncated as exc:
            if game_line:
                yield _pgn_unit(path, game_line, tags, movetext, True)
            yield exc.skip(path)
            return
        if game_line:
            yield _pgn_unit(path, game_line, tags, movetext, True)
        elif empty and not start:
            yield Skip("empty", path, 1, "the file is empty")


def _pgn_unit(
    path: str, line: int, tag_lines: list[bytes], movetext_lines: list[bytes], at_eof: bool
) -> Unit | Skip:
    try:
        tag_text = b"".join(tag_lines).decode("utf-8")
        movetext = b"".join(movetext_lines).decode("utf-8")
    except UnicodeDecodeError as exc:
        return Skip("bad_encoding", path, line, _encoding_detail(exc))
    headers = dict(_TAG_RE.findall(tag_text))
    variant = headers.get("Variant")
    if variant is not None and variant.lower() not in _STANDARD_VARIANTS:
        return Skip("variant", path, line, _clip(f"Variant {variant!r} is not standard chess"))
    fen = headers.get("FEN")
    if fen is None:
        board = chess.Board()
    else:
        try:
            board = chess.Board(fen)
        except ValueError as exc:
            return Skip("bad_fen", path, line, _clip(f"FEN tag {fen!r}: {exc}"))
        if not board.is_valid():
            return Skip(
                "invalid_position", path, line, _clip(f"FEN tag {fen!r}: {board.status()!r}")
            )
    if not movetext_lines:
        if at_eof:
            return Skip(
                "truncated",
                path,
                line,
                _clip(f"file ends after the tag section: {tag_text[-80:]!r}"),
            )
        return Skip("no_moves", path, line, "game has no movetext")
    first_turn = board.turn
    cols = _Columns()
    try:
        comments = _play(board, movetext, cols)
    except _BadMove as exc:
        return Skip("illegal_move", path, line, _clip(exc.detail))
    n = len(cols.move)
    if not n:
        return Skip("no_moves", path, line, _clip(f"no moves in {movetext.strip()!r}"))
    cols.add(board)
    cols.move.append(-1)
    identity = "|".join(
        [headers.get(tag, "") for tag in _ROSTER] + ([fen] if fen is not None else [])
    )
    identity += "|" + _uci_line(cols.move)
    return _make_unit(
        "pgn", identity, line, cols, _alternating(first_turn, n + 1), list(range(n + 1)),
        result=_RESULTS.get(headers.get("Result", "*"), RESULT_UNKNOWN),
        evals=_parse_evals(comments),
    )  # fmt: skip


# --------------------------------------------------------------------------
# Line-based files: puzzles (CSV), openings (TSV), FEN/EPD.


def _line_records(
    path: str, start: int, end: int | None, header: bool
) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line) for the lines starting in [start, end).

    With `header`, the first line is yielded first as (1, header) whatever the
    range; it belongs to no range. Raises `_Truncated`.
    """
    with _open(path) as f:
        offset = 0
        lineno = 1
        if header:
            try:
                first = f.readline()
            except _STREAM_ERRORS as exc:
                raise _Truncated(1, exc) from exc
            if not first:
                return
            yield 1, first.removeprefix(_BOM)
            offset, lineno = len(first), 2
        if _compression(path):
            lines = _lines(f, offset, lineno)
        else:
            lines = _seek_lines(f, _line_start_at_or_after(f, max(start, offset)))
        for offset, lineno, line in lines:
            if end is not None and offset >= end:
                _mark_line(f, offset, lineno)  # where the next range starts
                return
            yield lineno, line


def _table(
    path: str, start: int, end: int | None, required: tuple[str, ...], separator: str
) -> Iterator[tuple[int, list[str]] | Skip]:
    """Rows of a CSV/TSV with a header: (line, the `required` fields in that order), or a Skip.

    Header problems are reported once (by the range that starts at 0) and end
    the iteration.
    """
    records = _line_records(path, start, end, header=True)
    try:
        first = next(records, None)
        if first is None:
            if not start:
                yield Skip("empty", path, 1, "the file is empty")
            return
        try:
            names = _split_row(first[1].decode("utf-8").rstrip("\r\n"), separator)
        except UnicodeDecodeError as exc:
            if not start:
                yield Skip("bad_encoding", path, 1, _encoding_detail(exc))
            return
        columns = {name.strip(): i for i, name in reversed(list(enumerate(names)))}
        missing = [name for name in required if name not in columns]
        if missing:
            if not start:
                detail = f"header lacks {', '.join(missing)}: {first[1][:150]!r}"
                yield Skip("bad_columns", path, 1, _clip(detail))
            return
        wanted = [columns[name] for name in required]
        for lineno, raw in records:
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield Skip("bad_encoding", path, lineno, _encoding_detail(exc))
                continue
            if not text.strip():
                continue
            fields = _split_row(text, separator)
            if len(fields) != len(names):
                detail = f"{len(fields)} columns, header has {len(names)}: {text!r}"
                yield Skip("bad_columns", path, lineno, _clip(detail))
                continue
            yield lineno, [fields[i] for i in wanted]
    except _Truncated as exc:
        yield exc.skip(path)


def _split_row(text: str, separator: str) -> list[str]:
    if separator == "," and '"' in text:
        return next(csv.reader([text]))
    return text.split(separator)


_PUZZLE_COLUMNS = ("PuzzleId", "FEN", "Moves", "Rating", "Themes")


def read_puzzles(path: str, start: int = 0, end: int | None = None) -> Iterator[Unit | Skip]:
    """Yield a Unit per row of a Lichess puzzle CSV (columns found by header name).

    The FEN is the position before the opponent's setup move ``Moves[0]``; the
    positions are the solver's turns (``Moves[1]``, ``Moves[3]``, ... as
    targets) with ply counted from the FEN (the first is ply 1).
    """
    _check_args(path, start, end)
    return _read_puzzles(os.fspath(path), start, end)


def _read_puzzles(path: str, start: int, end: int | None) -> Iterator[Unit | Skip]:
    for row in _table(path, start, end, _PUZZLE_COLUMNS, ","):
        yield row if isinstance(row, Skip) else _puzzle_unit(path, *row)


def _puzzle_unit(path: str, line: int, fields: list[str]) -> Unit | Skip:
    puzzle_id, fen, moves_text, rating_text, themes = fields
    what = f"puzzle {puzzle_id!r}: "
    try:
        rating = int(rating_text)
    except ValueError:
        return Skip("bad_rating", path, line, _clip(f"{what}rating {rating_text!r}"))
    board = _board_or_skip(fen, path, line, what)
    if isinstance(board, Skip):
        return board
    ucis = moves_text.split()
    if len(ucis) < 2:
        return Skip("no_moves", path, line, _clip(f"{what}moves {moves_text!r}"))
    solver = not board.turn
    cols = _Columns()
    for ply, uci in enumerate(ucis):
        try:
            move = board.parse_uci(uci)
        except chess.IllegalMoveError as exc:
            return Skip("illegal_move", path, line, _clip(f"{what}{exc}"))
        except ValueError as exc:
            return Skip("bad_move", path, line, _clip(f"{what}{exc}"))
        if not move:
            return Skip("bad_move", path, line, _clip(f"{what}null move {uci!r}"))
        if ply % 2:
            cols.add(board)
            cols.move.append(_pack(move))
        board.push(move)
    n = len(cols.move)
    return _make_unit(
        "puzzle", "puzzle:" + puzzle_id, line, cols, [solver] * n, list(range(1, 2 * n, 2)),
        rating=rating, themes=themes,
    )  # fmt: skip


def _board_or_skip(fen: str, path: str, line: int, what: str) -> chess.Board | Skip:
    try:
        board = chess.Board(fen)
    except ValueError as exc:
        return Skip("bad_fen", path, line, _clip(f"{what}FEN {fen!r}: {exc}"))
    if not board.is_valid():
        return Skip("invalid_position", path, line, _clip(f"{what}FEN {fen!r}: {board.status()!r}"))
    return board


_OPENING_COLUMNS = ("eco", "name", "pgn")


def read_openings(path: str, start: int = 0, end: int | None = None) -> Iterator[Unit | Skip]:
    """Yield a Unit per line of an opening TSV (columns ``eco``, ``name``, ``pgn`` by name).

    Positions: every board along the line with the next move as target (the
    board after the last move has no target and is left out).
    """
    _check_args(path, start, end)
    return _read_openings(os.fspath(path), start, end)


def _read_openings(path: str, start: int, end: int | None) -> Iterator[Unit | Skip]:
    for row in _table(path, start, end, _OPENING_COLUMNS, "\t"):
        yield row if isinstance(row, Skip) else _opening_unit(path, *row)


def _opening_unit(path: str, line: int, fields: list[str]) -> Unit | Skip:
    eco, name, movetext = fields
    cols = _Columns()
    try:
        _play(chess.Board(), movetext, cols)
    except _BadMove as exc:
        return Skip("illegal_move", path, line, _clip(f"{eco} {name!r}: {exc.detail}"))
    n = len(cols.move)
    if not n:
        return Skip("no_moves", path, line, _clip(f"{eco} {name!r}: no moves in {movetext!r}"))
    identity = f"opening:{eco}|{name}|{movetext}"
    return _make_unit("opening", identity, line, cols, _alternating(chess.WHITE, n), list(range(n)))


_COUNTERS_RE = re.compile(r"(\d+)(?:\s+(\d+))?(?:\s+|$)")


def read_positions(path: str, start: int = 0, end: int | None = None) -> Iterator[Unit | Skip]:
    """Yield a Unit per FEN (4-6 fields) or EPD line; blank and ``#`` lines are ignored.

    EPD ``bm`` (first move) is the target; ``ce`` (side to move's view) and
    ``dm`` (mate in n for the side to move) become White's-view evals; ``id``
    names the unit.
    """
    _check_args(path, start, end)
    return _read_positions(os.fspath(path), start, end)


def _read_positions(path: str, start: int, end: int | None) -> Iterator[Unit | Skip]:
    records = _line_records(path, start, end, header=False)
    empty = True
    try:
        for line, raw in records:
            empty = False
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                yield Skip("bad_encoding", path, line, _encoding_detail(exc))
                continue
            if text and not text.startswith("#"):
                yield _position_unit(path, line, text)
    except _Truncated as exc:
        yield exc.skip(path)
    if empty and not start and (end is None or end > 0):
        yield Skip("empty", path, 1, "the file is empty")


def _position_unit(path: str, line: int, text: str) -> Unit | Skip:
    parts = text.split(None, 4)
    if len(parts) < 4:
        return Skip("bad_fen", path, line, _clip(f"not a FEN or EPD line: {text!r}"))
    placement = " ".join(parts[:4])
    rest = parts[4] if len(parts) > 4 else ""
    counters = _COUNTERS_RE.match(rest)
    halfmove, fullmove = (counters.group(1), counters.group(2) or "1") if counters else ("0", "1")
    operations = rest[counters.end() :] if counters else rest
    board = _board_or_skip(f"{placement} {halfmove} {fullmove}", path, line, "")
    if isinstance(board, Skip):
        return board
    ops: dict = {}
    if operations.strip():
        epd_board = chess.Board(None)
        try:
            ops = epd_board.set_epd(f"{placement} {operations}")
        except (chess.IllegalMoveError, chess.InvalidMoveError, chess.AmbiguousMoveError) as exc:
            return Skip("bad_move", path, line, _clip(f"{exc} in {text!r}"))
        except ValueError as exc:
            return Skip("bad_fen", path, line, _clip(f"bad EPD operations ({exc}): {text!r}"))
        if "hmvc" in ops:
            board.halfmove_clock = epd_board.halfmove_clock
    target = -1
    best = ops.get("bm")
    if best is not None:
        if not isinstance(best, list) or not best:
            return Skip("bad_move", path, line, _clip(f"bm without a move: {text!r}"))
        if not best[0] or not board.is_legal(best[0]):
            return Skip("bad_move", path, line, _clip(f"bm {best[0]} is not legal: {text!r}"))
        target = _pack(best[0])
    evals = None
    sign = 1 if board.turn else -1
    for opcode in ("dm", "ce"):
        value = ops.get(opcode)
        if value is None:
            continue
        if type(value) is not int or (opcode == "dm" and value == 0):
            return Skip("bad_fen", path, line, _clip(f"{opcode} {value!r} is not usable: {text!r}"))
        evals = {0: (0, sign * value) if opcode == "dm" else (sign * value, 0)}
        break
    cols = _Columns()
    cols.add(board)
    cols.move.append(target)
    identity = "fen:" + (str(ops["id"]) if "id" in ops else " ".join(text.split()))
    return _make_unit("fen", identity, line, cols, [board.turn], [0], evals=evals)


# --------------------------------------------------------------------------
# Dispatch and ranges.

_READERS = {
    "pgn": read_pgn,
    "puzzle": read_puzzles,
    "opening": read_openings,
    "fen": read_positions,
}


def detect_kind(path: str) -> str:
    """The kind of file, from its name: "pgn", "puzzle", "opening" or "fen".

    >>> detect_kind("lichess_db_standard_rated_2013-01.pgn.zst")
    'pgn'
    """
    name = os.fspath(path).lower()
    compression = _compression(name)
    stem = name[: len(name) - len(compression)]
    for suffix, kind in _KINDS.items():
        if stem.endswith(suffix):
            return kind
    raise ReaderError(
        f"cannot read {os.fspath(path)!r}: unknown kind of file; expected a name ending in "
        f"{', '.join(_KINDS)} (pgn, puzzle, opening, fen), optionally followed by "
        f"{', '.join(_COMPRESSED)}"
    )


def read(path: str, start: int = 0, end: int | None = None) -> Iterator[Unit | Skip]:
    """Read `path` with the reader its name asks for (see `detect_kind`)."""
    return _READERS[detect_kind(path)](path, start, end)


def split_ranges(path: str, target_bytes: int = 8 << 20) -> list[tuple[int, int | None]]:
    """Byte ranges of about `target_bytes` that tile `path`, each cut at a unit start.

    The first range starts at 0, the last ends at None (end of file); reading
    every range in order yields exactly what reading the whole file yields.
    Compressed files cannot be cut: ``[(0, None)]``.
    """
    kind = detect_kind(path)
    if target_bytes <= 0:
        raise ValueError(f"target_bytes must be positive, not {target_bytes!r}")
    _check_args(path, 0, None)
    if _compression(path):
        return [(0, None)]
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as f:
        while cuts[-1] + target_bytes < size:
            pos = cuts[-1] + target_bytes
            cut = (
                _game_start_at_or_after(f, pos)
                if kind == "pgn"
                else _line_start_at_or_after(f, pos)
            )
            if cut is None or cut >= size:
                break
            cuts.append(cut)
    return list(zip(cuts, [*cuts[1:], None], strict=True))
