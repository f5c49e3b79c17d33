"""What every reader shares: the Unit and Skip records, opening (and decompressing) a
file, lines with their numbers, seeking to a line or a byte range, and the columns a
unit is built from. The underscored helpers are the format modules' (pgn, puzzles,
openings, epd), not the package's public API (dataengine.readers)."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import chess
import numpy as np
import zstandard

Square = int
Bitboard = int

RESULT_UNKNOWN = 2
"""``Unit.result`` when the result is unknown ("*", puzzles, openings, FEN)."""

_DETAIL_CHARS = 200


@dataclass(slots=True)
class Unit:
    """Positions that belong together (a game, a puzzle, an opening line, one
    FEN/EPD line) and are never split across train/validation.

    Per-position columns are parallel lists, or 1-D numpy arrays (the numba PGN
    decoder's; the same values), one entry per position (``bitboards``: 8 entries per
    position), boards in python-chess's absolute
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


@dataclass(slots=True, frozen=True)
class Note:
    """Something about the Unit yielded just before it: kept, but not as the file has it
    (a game cut short at a bad move, a game decoded from another encoding)."""

    reason: str
    """Short stable key, see the package docstring."""
    path: str
    line: int
    """1-based line number where the unit starts."""
    detail: str
    """Human readable (about 200 characters at most)."""


class ReaderError(OSError):
    """A file that cannot be read at all (missing, unreadable, unknown kind)."""


# --------------------------------------------------------------------------
# Files: opening, compression, byte ranges, line numbers.

_COMPRESSED = (".gz", ".bz2", ".zst")
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


# UCI text of packed moves, for identities without a python-chess call per move: the
# text of every packed move (from | to << 6 | promotion << 12), indexed by it.
_UCI_SQUARES = [a + b for b in chess.SQUARE_NAMES for a in chess.SQUARE_NAMES]  # from | to << 6
_UCI_PROMOTIONS = ("", "", "n", "b", "r", "q")
_UCI_MOVES = [squares + promotion for promotion in _UCI_PROMOTIONS for squares in _UCI_SQUARES]


def _uci_line(moves: list[int] | np.ndarray) -> str:
    """The known moves (>= 0) as UCI text, space separated."""
    known = moves[moves >= 0].tolist() if isinstance(moves, np.ndarray) else \
        [m for m in moves if m >= 0]
    return " ".join(map(_UCI_MOVES.__getitem__, known))



# --------------------------------------------------------------------------
# Line-based files: puzzles (CSV), openings (TSV), FEN/EPD.


def _line_units(
    path: str, start: int, end: int | None, parse: Callable[[str, int, str], Unit | Skip],
    comment: str | None = None,
) -> Iterator[Unit | Skip]:
    """``parse(path, line, text)`` of every non-blank line starting in [start, end) of a
    file of one position per line (lines starting with `comment` ignored); undecodable
    lines, a cut-off stream and an empty file are Skips."""
    empty = True
    try:
        for line, raw in _line_records(path, start, end, header=False):
            empty = False
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                yield Skip("bad_encoding", path, line, _encoding_detail(exc))
                continue
            if text and not (comment and text.startswith(comment)):
                yield parse(path, line, text)
    except _Truncated as exc:
        yield exc.skip(path)
    if empty and not start and (end is None or end > 0):
        yield Skip("empty", path, 1, "the file is empty")


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


def _board_or_skip(fen: str, path: str, line: int, what: str) -> chess.Board | Skip:
    try:
        board = chess.Board(fen)
    except ValueError as exc:
        return Skip("bad_fen", path, line, _clip(f"{what}FEN {fen!r}: {exc}"))
    if not board.is_valid():
        return Skip("invalid_position", path, line, _clip(f"{what}FEN {fen!r}: {board.status()!r}"))
    return board
