"""PGN games: the mainline of each game, ``[%eval]`` comments kept (see the package
doc for how it follows ``chess.pgn.read_game``). A game cut short by a bad move keeps
its positions before that move, a game that is not UTF-8 is read as cp1252 (or
Latin-1); both come with a `Note`.

Movetext is decoded by the numba decoder (`fastpgn`) where it accepts the game, which
gives exactly the Unit python-chess would; the games it rejects (anything unusual, any
bad move) are played by python-chess below. Tags are always read here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import chess
import numpy as np

from dataengine.readers import fastpgn
from dataengine.readers.base import (
    _BOM,
    RESULT_UNKNOWN,
    Bitboard,
    Note,
    Skip,
    Square,
    Unit,
    _alternating,
    _check_args,
    _clip,
    _Columns,
    _encoding_detail,
    _line_start_at_or_after,
    _lines,
    _make_unit,
    _mark_line,
    _open,
    _pack,
    _seek_lines,
    _Truncated,
    _uci_line,
)

if TYPE_CHECKING:
    from dataengine.config import PgnFilters

#: The default of `read_pgn`'s `fast`: decode movetext with `fastpgn` first. Build workers
#: import the reader afresh (in a fork server started with the build's environment, or
#: spawned), so the environment turns it off for them too: ``DATAENGINE_FASTPGN=0``.
FAST = os.environ.get("DATAENGINE_FASTPGN", "1") != "0"

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
    """A move that cannot be played; `comments` are the eval comments read before it."""

    def __init__(self, detail: str, comments: dict[int, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.comments = comments or {}


def _play(board: chess.Board, movetext: str, cols: _Columns) -> dict[int, str]:
    """Play the mainline of `movetext` on `board`, recording each position before its move.

    Returns the first comment holding ``[%eval`` after each move, keyed by the
    index of the position it evaluates (the one after that move). Raises
    `_BadMove` on the first bad move (illegal, unparsable or null); `cols` then
    holds the positions before it with their moves, and the board before the bad
    move without one.
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
                raise _BadMove(f"ply {n}: {exc}", evals) from None
            if not move:
                raise _BadMove(f"ply {n}: null move {san!r} is not a training target", evals)
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


def read_pgn(
    path: str, start: int = 0, end: int | None = None, *, fast: bool | None = None,
    filters: PgnFilters | None = None, arrays: bool = False,
) -> Iterator[Unit | Skip | Note]:
    """Yield a Unit per mainline game of a PGN file (plain, .gz, .bz2, .zst) in file order.

    Positions: every board before a mainline move (target: that move) and the
    final board (target -1). A ``[%eval]`` after move k evaluates the board
    after it (position k + 1). With a byte range, yields exactly the games
    that start in ``[start, end)`` of the plain file; `split_ranges` gives
    ranges that tile the file. `fast` (default `FAST`): try the numba decoder
    before python-chess; the output is the same either way. `filters`: games whose
    tags fail them are Skips (``filtered_*``), decided before their moves are read.
    `arrays`: the Units of games the numba decoder read hold its numpy arrays, not lists.
    """
    _check_args(path, start, end)
    return _read_pgn(os.fspath(path), start, end, FAST if fast is None else fast, filters,
                     arrays)


def _read_pgn(
    path: str, start: int, end: int | None, fast: bool, filters: PgnFilters | None = None,
    arrays: bool = False,
) -> Iterator[Unit | Skip | Note]:
    with _open(path) as f:
        if start:
            first = _game_start_at_or_after(f, start)
            if first is None:
                return
            lines = _seek_lines(f, first)
        else:
            lines = _lines(f, 0, 1)
        pending = _Pending(arrays)  # games waiting for the decoder, in file order
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
                            yield from pending.add(
                                _prepare(path, game_line, tags, movetext, False, fast, filters))
                        if end is not None and offset >= end:
                            _mark_line(f, offset, lineno)  # where the next range starts
                            yield from pending.flush()
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
                        yield from pending.add(
                            _prepare(path, game_line, tags, movetext, False, fast, filters))
                    game_line, tags, movetext = lineno, [], []
                    blank = False
                movetext.append(line)
                in_comment = _comment_open_after(line, in_comment)
        except _Truncated as exc:
            if game_line:
                yield from pending.add(
                    _prepare(path, game_line, tags, movetext, True, fast, filters))
            yield from pending.flush()
            yield exc.skip(path)
            return
        if game_line:
            yield from pending.add(_prepare(path, game_line, tags, movetext, True, fast, filters))
        yield from pending.flush()
        if not game_line and empty and not start:
            yield Skip("empty", path, 1, "the file is empty")


def _decode(tag_bytes: bytes, movetext_bytes: bytes) -> tuple[str, str, str | None]:
    """The game's tag section and movetext as text: UTF-8, else both as cp1252 (what
    Windows chess programs write; Latin-1 where cp1252 has no character for a byte).
    The third item says why and how it was recoded, None when it is UTF-8."""
    try:
        return tag_bytes.decode("utf-8"), movetext_bytes.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        why = _encoding_detail(exc)
    for codec in ("cp1252", "latin-1"):
        try:
            tags, movetext = tag_bytes.decode(codec), movetext_bytes.decode(codec)
        except UnicodeDecodeError:
            continue
        return tags, movetext, f"{why}; read as {'Latin-1' if codec == 'latin-1' else codec}"
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class _Game:
    """A game whose tags were read and passed, its movetext not yet played."""

    path: str
    line: int
    headers: dict[str, str]
    fen: str | None
    board: chess.Board | None  # the FEN tag's start position; None: the standard one
    movetext: str
    movetext_bytes: bytes
    notes: list[Note]
    start: fastpgn.Start | None  # for the numba decoder; None: python-chess plays it


def _prepare(
    path: str,
    line: int,
    tag_lines: list[bytes],
    movetext_lines: list[bytes],
    at_eof: bool,
    fast: bool,
    filters: PgnFilters | None = None,
) -> list[Unit | Skip | Note] | _Game:
    """The game at `line`: [Skip], or the `_Game` to play."""
    movetext_bytes = b"".join(movetext_lines)
    tag_text, movetext, recoded = _decode(b"".join(tag_lines), movetext_bytes)
    notes = [] if recoded is None else [Note("recoded", path, line, _clip(recoded))]
    headers = dict(_TAG_RE.findall(tag_text))
    variant = headers.get("Variant")
    if variant is not None and variant.lower() not in _STANDARD_VARIANTS:
        return [Skip("variant", path, line, _clip(f"Variant {variant!r} is not standard chess"))]
    if filters is not None:
        failed = _filtered(headers, filters)
        if failed is not None:
            return [Skip(failed[0], path, line, _clip(failed[1]))]
    fen = headers.get("FEN")
    board = None  # the standard start, made if python-chess plays the game
    if fen is not None:
        try:
            board = chess.Board(fen)
        except ValueError as exc:
            return [Skip("bad_fen", path, line, _clip(f"FEN tag {fen!r}: {exc}"))]
        if not board.is_valid():
            return [Skip(
                "invalid_position", path, line, _clip(f"FEN tag {fen!r}: {board.status()!r}")
            )]
    if not movetext_lines:
        if at_eof:
            return [Skip(
                "truncated",
                path,
                line,
                _clip(f"file ends after the tag section: {tag_text[-80:]!r}"),
            )]
        return [Skip("no_moves", path, line, "game has no movetext")]
    # The decoder reads only ASCII bytes, so the undecoded bytes do whatever the
    # encoding; what it rejects, python-chess plays (or truncates, or skips).
    start = None
    if fast:
        start = fastpgn.STANDARD_START if fen is None else fastpgn.start_from_board(board)
    return _Game(path, line, headers, fen, board, movetext, movetext_bytes, notes, start)


#: Games the numba decoder takes in one call (`_Pending`): enough that the call's
#: Python (per game a few microseconds) is small next to the decoding, few enough that
#: the games wait in memory only briefly.
_BATCH_GAMES = 256


class _Pending:
    """What `_prepare` gave, in file order, until `_BATCH_GAMES` games are waiting: then
    their movetexts go through `fastpgn.decode_games` in one call, and the items come
    out, in order, as one game at a time would give them."""

    def __init__(self, arrays: bool) -> None:
        self.arrays = arrays
        self.items: list[list[Unit | Skip | Note] | _Game] = []
        self.games = 0

    def add(self, item: list[Unit | Skip | Note] | _Game) -> list[Unit | Skip | Note]:
        if isinstance(item, list) and not self.items:
            return item  # nothing waits before it
        if not isinstance(item, list) and item.start is None and not self.items:
            return _play_game(item)
        self.items.append(item)
        if not isinstance(item, list) and item.start is not None:
            self.games += 1
            if self.games >= _BATCH_GAMES:
                return self.flush()
        return []

    def flush(self) -> list[Unit | Skip | Note]:
        items, self.items, self.games = self.items, [], 0
        games = [g for g in items if not isinstance(g, list) and g.start is not None]
        if games:
            batch = fastpgn.decode_games([g.movetext_bytes for g in games],
                                         [g.start for g in games])
            texts, status = batch.uci_lines(), batch.status.tolist()
        out: list[Unit | Skip | Note] = []
        k = 0  # the next game of the batch
        for item in items:
            if isinstance(item, list):
                out += item
            elif item.start is None:
                out += _play_game(item)
            else:
                if status[k] == fastpgn.OK:
                    unit = _decoded_unit(item.headers, item.fen, item.line, batch.game(k),
                                         self.arrays, texts[k])
                    out += [unit, *item.notes]
                else:  # rejected: python-chess plays it (or truncates, or skips)
                    out += _play_game(item)
                k += 1
        return out


def _play_game(game: _Game) -> list[Unit | Skip | Note]:
    """`game` played by python-chess: [Skip], or [Unit] followed by a Note per change
    made to it."""
    board = chess.Board() if game.board is None else game.board
    path, line, notes = game.path, game.line, game.notes
    first_turn = board.turn
    cols = _Columns()
    try:
        comments = _play(board, game.movetext, cols)
    except _BadMove as exc:
        if not cols.move:  # nothing before the bad move but the first board
            return [Skip("illegal_move", path, line, _clip(exc.detail))]
        comments = exc.comments
        detail = f"{exc.detail}; the {len(cols.move)} moves before it are kept"
        notes = [*notes, Note("truncated", path, line, _clip(detail))]
    else:
        if not cols.move:
            return [Skip("no_moves", path, line,
                         _clip(f"no moves in {game.movetext.strip()!r}"))]
        cols.add(board)
    # the last board (the game's end, or the board before the bad move) has no target
    cols.move.append(-1)
    n = len(cols.move) - 1
    unit = _make_unit(
        "pgn", _identity(game.headers, game.fen, _uci_line(cols.move)), line, cols,
        _alternating(first_turn, n + 1), list(range(n + 1)),
        result=_RESULTS.get(game.headers.get("Result", "*"), RESULT_UNKNOWN),
        evals=_parse_evals(comments),
    )  # fmt: skip
    return [unit, *notes]


_BASE_TIME_RE = re.compile(r"\s*(\d+)(?:\+\d+)?\s*$")


def _filtered(headers: dict[str, str], filters: PgnFilters) -> tuple[str, str] | None:
    """(reason, detail) of the first of `filters` the game's tags fail, None if none."""
    if filters.min_rating:
        for tag in ("WhiteElo", "BlackElo"):
            value = headers.get(tag, "").strip()
            if not value.isdigit() or int(value) < filters.min_rating:
                return ("filtered_rating",
                        f"{tag} {headers.get(tag)!r} is not at least {filters.min_rating}")
    if filters.min_base_seconds:
        control = headers.get("TimeControl", "")
        base = _BASE_TIME_RE.match(control)
        if base is None or int(base.group(1)) < filters.min_base_seconds:
            return ("filtered_time_control", f"TimeControl {headers.get('TimeControl')!r}: "
                    f"base time not at least {filters.min_base_seconds} s")
    if filters.skip_abandoned and headers.get("Termination", "").strip() == "Abandoned":
        return "filtered_termination", "Termination 'Abandoned'"
    return None


def _identity(headers: dict[str, str], fen: str | None, uci: str) -> str:
    """What a game's id is a hash of: its roster tags, its FEN tag, and its moves as UCI
    text (`_uci_line`)."""
    identity = "|".join(
        [headers.get(tag, "") for tag in _ROSTER] + ([fen] if fen is not None else [])
    )
    return identity + "|" + uci


def _decoded_unit(
    headers: dict[str, str], fen: str | None, line: int, decoded: fastpgn.Decoded,
    arrays: bool, uci: str,
) -> Unit:
    """The Unit of a game `fastpgn` accepted: its columns as Python lists, as `_make_unit`
    makes them from the python-chess path, or (`arrays`) the decoder's arrays of them
    (views: `decode_games`' arrays hold exactly the accepted games' positions). `uci`:
    its moves' UCI text (`DecodedBatch.uci_lines`)."""
    columns = (decoded.bitboards.reshape(-1), decoded.turn, decoded.castling,
               decoded.ep_square, decoded.halfmove, np.arange(len(decoded.move)), decoded.move,
               decoded.eval_cp, decoded.eval_mate, decoded.has_eval)
    return Unit(
        "pgn", _identity(headers, fen, uci), line,
        _RESULTS.get(headers.get("Result", "*"), RESULT_UNKNOWN), 0, "",
        *(columns if arrays else (c.tolist() for c in columns)),
    )  # fmt: skip
