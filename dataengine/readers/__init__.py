"""Input readers: PGN games, Lichess puzzles, opening lines, FEN/EPD positions and the
Lichess evaluation database.

Each reader is a generator over one file that yields, in file order, a
:class:`Unit` for every good game/puzzle/line and a :class:`Skip` for every bad
one; a :class:`Note` right after a Unit says what was changed to keep it (a game
cut short at a bad move, a game read from another encoding). Bad content never
raises; only a file that cannot be opened does (:class:`ReaderError`). A :class:`Unit` holds all of its positions as flat
columns in python-chess's absolute orientation, so that the shard builder can
turn them into arrays without touching python-chess again.

One module per input format (``pgn``, ``puzzles``, ``openings``, ``epd``, ``evaldb``, all
built on ``base``), registered here in :data:`FORMATS` by file suffix, as
nnue-pytorch registers its feature sets: :func:`detect_kind` and :func:`read`
look a file's name up there, :func:`split_ranges` cuts it where that format's
units start. A new format is a module with a reader and a unit-start finder,
and one line in :data:`FORMATS`.

>>> from dataengine.readers import read, split_ranges
>>> for start, end in split_ranges("games.pgn"):         # doctest: +SKIP
...     for unit in read("games.pgn", start, end):
...         ...

Skip reasons (``Skip.reason``), stable keys for reports:

============================  =================================================
``bad_encoding``              a CSV/TSV/FEN/EPD line has bytes that are not
                              UTF-8 (PGN games are recoded instead, see below)
``variant``                   PGN ``Variant`` tag other than standard chess
``bad_fen``                   FEN tag / puzzle FEN / FEN or EPD line unparsable
``invalid_position``          FEN parses but ``not board.is_valid()``
``illegal_move``              a SAN/UCI move that is illegal, unparsable or
                              null in its position: the whole puzzle or opening
                              line is skipped, a PGN game only when it is its
                              first move (else it is truncated, see below)
``bad_move``                  malformed puzzle UCI move, EPD ``bm`` unusable
``no_moves``                  game, puzzle or opening line without moves
``truncated``                 file ends inside a tag section, or a compressed
                              stream ends early / is corrupt
``bad_columns``               CSV/TSV header lacks a required column (then the
                              reader stops), or a row has the wrong column count
``bad_rating``                puzzle rating is not an integer
``empty``                     the file has no bytes at all
``bad_json``                  an eval-database line is not a JSON object
``no_evals``                  an eval-database line without an analysis with a
                              pv, or whose deepest pv has no usable cp/mate
                              (``bad_fen``: no 4-field ``fen``; ``bad_move``:
                              the deepest pv's first move is not legal)
``filtered_rating``           a PGN game left out by ``pgn_filters.min_rating``:
                              WhiteElo or BlackElo below it, missing or ``?``
``filtered_time_control``     ... by ``pgn_filters.min_base_seconds``: the base
                              time of ``TimeControl`` (``600+5``: 600) below
                              it, or none (missing, ``-``, unparsable)
``filtered_termination``      ... by ``pgn_filters.skip_abandoned``:
                              ``Termination`` is ``Abandoned``
============================  =================================================

Notes (``Note.reason``), about the Unit just before them; the Unit is kept:

============================  =================================================
``truncated``                 a PGN game has an illegal, unparsable or null
                              (``--``, ``Z0``) move after its first: its
                              positions before that move are kept (the board
                              before the bad move as the last one, without a
                              target, as a game's final board)
``recoded``                   a PGN game is not UTF-8: it was read as cp1252
                              (Latin-1 for the bytes cp1252 leaves undefined)
============================  =================================================

PGN handling follows ``chess.pgn.read_game`` (same tag regex, same SAN
leniency, a blank line ends a game's movetext, lines starting with ``%`` are
ignored; an illegal move ends the mainline there, as python-chess's does) with
deliberate differences: a null move ends the mainline too (python-chess plays
it and goes on), tokens python-chess silently drops (e.g. a SAN cut in half,
``Nf``) count as unparsable moves, and a game that is not UTF-8 is read as
cp1252.
"""


from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dataengine.readers.base import (
    _COMPRESSED,
    RESULT_UNKNOWN,
    Note,
    ReaderError,
    Skip,
    Unit,
    _check_args,
    _compression,
    _line_start_at_or_after,
)
from dataengine.readers.epd import read_positions
from dataengine.readers.evaldb import read_evals
from dataengine.readers.openings import read_openings
from dataengine.readers.pgn import _game_start_at_or_after, read_pgn
from dataengine.readers.puzzles import read_puzzles

__all__ = [
    "FORMATS",
    "RESULT_UNKNOWN",
    "Format",
    "Note",
    "ReaderError",
    "Skip",
    "Unit",
    "detect_kind",
    "read",
    "read_evals",
    "read_openings",
    "read_pgn",
    "read_positions",
    "read_puzzles",
    "split_ranges",
]


@dataclass(frozen=True)
class Format:
    """An input format: its kind, the file suffixes it is known by (before an optional
    compression suffix), its reader, and where its next unit starts at or after a byte
    offset of an uncompressed file (None: no unit starts there). `filtered`: its reader
    takes ``filters=`` (a `dataengine.config.PgnFilters`) and ``arrays=`` (see `read`)."""

    kind: str
    suffixes: tuple[str, ...]
    read: Callable[..., Iterator[Unit | Skip | Note]]
    next_start: Callable[[BinaryIO, int], int | None]
    filtered: bool = False


#: Every input format, by kind; the suffixes of all of them are distinct.
FORMATS: dict[str, Format] = {f.kind: f for f in (
    Format("pgn", (".pgn",), read_pgn, _game_start_at_or_after, filtered=True),
    Format("puzzle", (".csv",), read_puzzles, _line_start_at_or_after),
    Format("opening", (".tsv",), read_openings, _line_start_at_or_after),
    Format("fen", (".fen", ".epd"), read_positions, _line_start_at_or_after),
    Format("evaldb", (".jsonl",), read_evals, _line_start_at_or_after),
)}
_BY_SUFFIX = {suffix: f for f in FORMATS.values() for suffix in f.suffixes}


def _format_of(path: str) -> Format:
    name = os.fspath(path).lower()
    stem = name[: len(name) - len(_compression(name))]
    for suffix, fmt in _BY_SUFFIX.items():
        if stem.endswith(suffix):
            return fmt
    raise ReaderError(
        f"cannot read {os.fspath(path)!r}: unknown kind of file; expected a name ending in "
        f"{', '.join(_BY_SUFFIX)} ({', '.join(FORMATS)}), optionally followed by "
        f"{', '.join(_COMPRESSED)}"
    )


def detect_kind(path: str) -> str:
    """The kind of file, from its name: "pgn", "puzzle", "opening", "fen" or "evaldb".

    >>> detect_kind("lichess_db_standard_rated_2013-01.pgn.zst")
    'pgn'
    >>> detect_kind("lichess_db_eval.jsonl.zst")
    'evaldb'
    """
    return _format_of(path).kind


def read(
    path: str, start: int = 0, end: int | None = None, *, filters=None, arrays: bool = False
) -> Iterator[Unit | Skip | Note]:
    """Read `path` with the reader its name asks for (see `detect_kind`). `filters`
    (a `dataengine.config.PgnFilters`) go to the formats that take them (PGN); the
    others ignore them. `arrays`: a Unit the numba PGN decoder made keeps its columns as
    the decoder's numpy arrays instead of lists (the same values; what the build wants:
    no Python object per position); other Units hold lists either way."""
    fmt = _format_of(path)
    if fmt.filtered and (filters is not None or arrays):
        return fmt.read(path, start, end, filters=filters, arrays=arrays)
    return fmt.read(path, start, end)


def split_ranges(path: str, target_bytes: int = 8 << 20) -> list[tuple[int, int | None]]:
    """Byte ranges of about `target_bytes` that tile `path`, each cut at a unit start.

    The first range starts at 0, the last ends at None (end of file); reading
    every range in order yields exactly what reading the whole file yields.
    Compressed files cannot be cut: ``[(0, None)]``.
    """
    fmt = _format_of(path)
    if target_bytes <= 0:
        raise ValueError(f"target_bytes must be positive, not {target_bytes!r}")
    _check_args(path, 0, None)
    if _compression(path):
        return [(0, None)]
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as f:
        while cuts[-1] + target_bytes < size:
            cut = fmt.next_start(f, cuts[-1] + target_bytes)
            if cut is None or cut >= size:
                break
            cuts.append(cut)
    return list(zip(cuts, [*cuts[1:], None], strict=True))
