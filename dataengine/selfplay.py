"""Stockfish self-play games with an ``[%eval]`` on every engine move: input for `make shards`.

    python -m dataengine.selfplay --games N --out games.pgn [--nodes 4000]
        [--multipv-prob 0.15] [--openings FILE.tsv ...] [--workers K] [--seed S]
        [--max-plies 500] [--engine PATH]
    python -m dataengine.selfplay --opponent random --games N --out conversions.epd ...
        [--starts FILE.epd ...]

Game i (0-based, ``Round`` i + 1) starts from a line of the opening book (TSV with
columns ``eco``, ``name``, ``pgn``) chosen with ``random.Random(seed + i)``; then
Stockfish plays both sides at a node budget per move. With probability
``--multipv-prob`` a move is instead drawn (same generator) from lines 2-3 of a
MultiPV 3 search, so that some games contain real mistakes. Each engine move carries
``{ [%eval X] }``: the score of the line it was chosen from, White's view, pawns with
two decimals or ``#N``. A game ends at checkmate, stalemate, insufficient material,
the fifty-move rule or threefold repetition (``board.outcome(claim_draw=True)``), or
at ``--max-plies`` with result ``*``.

With ``--opponent random`` (conversion games) Stockfish plays one side (White in even
rounds i, Black in odd ones) and the other side plays a uniformly random legal move
from the same generator. Engine-vs-engine games stop short of the positions such a game
reaches (three queens against a bare king): these games show how a won position is
converted into mate without stalemating. The output is then EPD, not PGN: one line per
position where Stockfish is to move and plays its best line (MultiPV draws are played
but not written), ``bm`` the move, ``ce`` (or ``dm``, mate in n) its score from the side
to move's view, ``hmvc``/``fmvn`` the counters and ``id "<White> vs <Black> r<round>"``
(one id per game: the build's split keeps a game's positions together); then a line
``# round <i+1> <White> vs <Black>: <termination> <result>`` ends the game. With
``--starts FILE.epd ...`` conversion games start from those positions instead of the
book (game i from position i modulo their number; Stockfish plays the side to move
there): e.g. from ``python -m dataengine.traps`` endgames, to show how a won ending
is played out to mate against a king that moves at random.

A game is a pure function of (seed, i, nodes, multipv-prob, max-plies, opponent, book,
engine):
one thread, ``ucinewgame`` at its start, and the engine is given the whole move list.
Games are appended in round order, each flushed as soon as it and all before it are
done, so the file does not depend on the number of workers; a killed run keeps every
game written, and running again with the same --out continues from the number of games
in the file up to --games. (The seed is not in the file: continue with the same one.)
The output is exactly the format of the project's sample ``sf_selfplay_*.pgn``.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import chess
import chess.engine
import chess.pgn

from dataengine.progress import progress, tqdm
from dataengine.shm import remove_stale_semaphores
from dataengine.teacher import TeacherError, find_stockfish, open_engine, worker_lifetime

DEFAULT_OPENINGS = Path(__file__).resolve().parent / "sample_data" / "openings_a.tsv"
ENGINE_OPTIONS = {"Threads": 1, "Hash": 16}
"""One thread: deterministic games. The hash is kept across the moves of a game, so a
little more than the teacher's (which clears it before every position)."""
HEADERS = {"Event": "self-play", "Site": "local", "Date": "????.??.??"}
_RESULTS = ("1-0", "0-1", "1/2-1/2", "*")
OPPONENTS = ("stockfish", "random")


class SelfPlayError(RuntimeError):
    """A problem with the arguments, the book or the output file, explained in the message."""


@dataclass(frozen=True, slots=True)
class Opening:
    eco: str
    name: str
    moves: tuple[str, ...]
    """UCI moves from the start position."""
    fen: str | None = None
    """The position the game starts from (``--starts``); None: the standard one."""

    def board(self) -> chess.Board:
        """The position after the line."""
        board = chess.Board(self.fen) if self.fen else chess.Board()
        for uci in self.moves:
            board.push(chess.Move.from_uci(uci))
        return board


@dataclass(frozen=True, kw_only=True)
class SelfPlayConfig:
    """What a game depends on, besides the book and the engine."""

    nodes: int = 4000
    """Node budget per engine move."""
    multipv_prob: float = 0.15
    """Probability that a move is drawn from lines 2-3 of a MultiPV 3 search."""
    max_plies: int = 500
    """Games still running after this many plies (opening line included) end with `*`."""
    seed: int = 0
    """Game i draws its opening and its variety moves from random.Random(seed + i)."""
    opponent: str = "stockfish"
    """"stockfish": self-play, written as PGN; "random": Stockfish against a uniformly
    random mover, Stockfish's positions written as EPD (conversion games)."""

    def __post_init__(self) -> None:
        if self.opponent not in OPPONENTS:
            raise SelfPlayError(f"opponent must be one of {OPPONENTS}, got {self.opponent!r}")
        if self.nodes < 1:
            raise SelfPlayError(f"nodes must be >= 1, got {self.nodes!r}")
        if not 0.0 <= self.multipv_prob <= 1.0:
            raise SelfPlayError(f"multipv_prob must be in [0, 1], got {self.multipv_prob!r}")
        if self.max_plies < 1:
            raise SelfPlayError(f"max_plies must be >= 1, got {self.max_plies!r}")


def load_openings(paths: list[str | Path]) -> tuple[list[Opening], list[str]]:
    """Opening lines of the TSV files, in file order, and the rows left out, each as
    ``"FILE:LINE: why"`` (a move that is not legal, no moves, or the game over)."""
    openings, bad = [], []
    for path in paths:
        try:
            with open(path, encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f, delimiter="\t")
                rows = [(reader.line_num, row) for row in reader]
        except OSError as exc:
            raise SelfPlayError(f"cannot read opening book {str(path)!r}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise SelfPlayError(f"opening book {str(path)!r} is not UTF-8: {exc}") from exc
        if rows and not {"eco", "name", "pgn"} <= rows[0][1].keys():
            raise SelfPlayError(f"opening book {str(path)!r} lacks the columns eco, name, pgn")
        for line, row in rows:
            where = f"{_shown(path)}:{line}: {row['eco'] or '?'} {row['name'] or '?'!r}"
            board = chess.Board()
            try:
                for token in (row["pgn"] or "").split():
                    if not token[0].isdigit():  # move numbers "1." / "1..."
                        board.push_san(token)
            except ValueError as exc:
                bad.append(f"{where}: {exc}")
                continue
            if not board.move_stack:
                bad.append(f"{where}: no moves")
            elif board.outcome() is not None:
                bad.append(f"{where}: the game is over after the line "
                           f"({_termination(board)})")
            else:
                moves = tuple(m.uci() for m in board.move_stack)
                openings.append(Opening(row["eco"] or "?", row["name"] or "?", moves))
    if not openings:
        raise SelfPlayError(f"no usable opening line in {[str(p) for p in paths]}"
                            + _first_of(bad))
    return openings, bad


def load_starts(paths: list[str | Path]) -> tuple[list[Opening], list[str]]:
    """Start positions of EPD files (``--starts``): the first four fields of each line
    (operations and ``#`` lines ignored), in file order, and the lines left out, each as
    ``"FILE:LINE: why"`` (not a legal position, or the game already over)."""
    starts, bad = [], []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SelfPlayError(f"cannot read start positions {str(path)!r}: "
                                f"{exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise SelfPlayError(f"start positions {str(path)!r} are not UTF-8: {exc}") from exc
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split()[:4]
            where = f"{_shown(path)}:{number}"
            try:
                board = chess.Board(" ".join(fields) + " 0 1")
            except ValueError as exc:
                bad.append(f"{where}: {exc}")
                continue
            if not board.is_valid():
                bad.append(f"{where}: not a legal position ({_status(board)})")
            elif board.outcome() is not None:
                bad.append(f"{where}: the game is already over ({_termination(board)})")
            else:
                starts.append(Opening("EPD", f"{Path(path).name}:{number}", (), board.fen()))
    if not starts:
        raise SelfPlayError(f"no usable start position in {[str(p) for p in paths]}"
                            + _first_of(bad))
    return starts, bad


def _shown(path: str | Path) -> str:
    """`path` as a user would name it: relative to the working directory when under it."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd())) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def _termination(board: chess.Board) -> str:
    return board.outcome().termination.name.lower().replace("_", " ")


def _status(board: chess.Board) -> str:
    """``chess.STATUS_NO_WHITE_KING | ...`` -> ``"no white king, ..."``."""
    status = board.status()
    return ", ".join(s.name.lower().replace("_", " ") for s in chess.Status
                     if s and s in status) or "invalid"


def _first_of(bad: list[str]) -> str:
    return f"; the first left out: {bad[0]}" if bad else ""


def start_position(openings: list[Opening], index: int) -> Opening | None:
    """Game `index`'s start when the book is ``--starts``: position `index` modulo their
    number, so that each is played once before any twice; None for an opening book."""
    if openings and openings[0].fen is not None:
        return openings[index % len(openings)]
    return None


def pick_opening(openings: list[Opening], index: int, rng: random.Random) -> Opening:
    """Game `index`'s line: its start position (``--starts``), or drawn from the book."""
    return start_position(openings, index) or openings[rng.randrange(len(openings))]


def format_eval(score: chess.engine.PovScore) -> str:
    """The `[%eval]` comment of an engine score: White's view, pawns or mate in moves.

    >>> format_eval(chess.engine.PovScore(chess.engine.Cp(15), chess.BLACK))
    '[%eval -0.15]'
    >>> format_eval(chess.engine.PovScore(chess.engine.Mate(-1), chess.WHITE))
    '[%eval #-1]'
    """
    white = score.white()
    mate = white.mate()
    return f"[%eval #{mate}]" if mate is not None else f"[%eval {white.score() / 100:.2f}]"


def player(nodes: int) -> str:
    return f"Stockfish nodes={nodes}"


def play_game(engine: chess.engine.SimpleEngine, index: int, openings: list[Opening],
              cfg: SelfPlayConfig) -> str:
    """Game `index` as PGN text (no trailing blank line)."""
    rng = random.Random(cfg.seed + index)
    opening = openings[rng.randrange(len(openings))]
    game = chess.pgn.Game()
    game.headers.update(HEADERS)
    game.headers["Round"] = str(index + 1)
    game.headers["White"] = game.headers["Black"] = player(cfg.nodes)
    game.headers["ECO"], game.headers["Opening"] = opening.eco, opening.name
    board, node = chess.Board(), game
    for uci in opening.moves:
        move = chess.Move.from_uci(uci)
        node = node.add_main_variation(move)
        board.push(move)

    engine_move = _EngineMoves(engine, cfg, rng)
    while (outcome := board.outcome(claim_draw=True)) is None and board.ply() < cfg.max_plies:
        info, _ = engine_move(board)
        move = info["pv"][0]
        node = node.add_main_variation(move, comment=format_eval(info["score"]))
        board.push(move)
    game.headers["Result"] = outcome.result() if outcome else "*"
    return game.accept(chess.pgn.StringExporter(columns=None))


class _EngineMoves:
    """The engine's move in one game: its best line, or with probability multipv_prob a
    line drawn from 2-3 of a MultiPV 3 search. Calls return (info, is_best_line)."""

    def __init__(self, engine: chess.engine.SimpleEngine, cfg: SelfPlayConfig,
                 rng: random.Random) -> None:
        self.engine, self.rng, self.multipv_prob = engine, rng, cfg.multipv_prob
        self.limit = chess.engine.Limit(nodes=cfg.nodes)
        self.game = object()  # python-chess sends `ucinewgame` when this changes

    def __call__(self, board: chess.Board) -> tuple[dict, bool]:
        best = True
        if self.rng.random() < self.multipv_prob:
            lines = self.engine.analyse(board, self.limit, multipv=3, game=self.game)
            others = [line for line in lines[1:] if line.get("pv") and "score" in line]
            info, best = (self.rng.choice(others), False) if others else (lines[0], True)
        else:
            info = self.engine.analyse(board, self.limit, game=self.game)
        if not info.get("pv") or "score" not in info:
            raise chess.engine.EngineError(f"no move or score for {board.fen()!r}: {info!r}")
        return info, best


def conversion_players(index: int, nodes: int, openings: list[Opening] | None = None
                       ) -> tuple[str, str]:
    """(White, Black) of conversion game `index`: Stockfish is White in even rounds, or,
    from ``--starts`` positions, the side to move in the game's start position."""
    names = (player(nodes), "random")
    start = start_position(openings or [], index)
    white_first = start.board().turn == chess.WHITE if start else index % 2 == 0
    return names if white_first else names[::-1]


def play_conversion(engine: chess.engine.SimpleEngine, index: int, openings: list[Opening],
                    cfg: SelfPlayConfig) -> str:
    """Conversion game `index` (Stockfish against a random mover) as EPD text: the
    engine's best-line positions, then the ``# round`` line (no trailing newline)."""
    rng = random.Random(cfg.seed + index)
    opening = pick_opening(openings, index, rng)
    board = opening.board()
    white, black = conversion_players(index, cfg.nodes, openings)
    engine_side = chess.WHITE if white != "random" else chess.BLACK
    game_id = f"{white} vs {black} r{index + 1}"
    engine_move = _EngineMoves(engine, cfg, rng)
    lines = []
    while (outcome := board.outcome(claim_draw=True)) is None and board.ply() < cfg.max_plies:
        if board.turn != engine_side:
            board.push(rng.choice(list(board.legal_moves)))
            continue
        info, best = engine_move(board)
        move, score = info["pv"][0], info["score"].relative
        if best:
            value = {"dm": score.mate()} if score.is_mate() else {"ce": score.score()}
            lines.append(board.epd(bm=move, **value, hmvc=board.halfmove_clock,
                                   fmvn=board.fullmove_number, id=game_id))
        board.push(move)
    ending = f"{outcome.termination.name.lower()} {outcome.result()}" if outcome \
        else f"ply cap {cfg.max_plies} *"
    lines.append(f"# round {index + 1} {white} vs {black}: {ending}")
    return "\n".join(lines)


PLAY = {"stockfish": play_game, "random": play_conversion}
"""The game function of each opponent."""


# ----------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _worker_init(path: str, openings: list[Opening], cfg: SelfPlayConfig) -> None:
    _WORKER.update(path=path, openings=openings, cfg=cfg, engine=open_engine(path, ENGINE_OPTIONS))
    worker_lifetime(lambda: _WORKER["engine"].close())


def _worker_game(index: int) -> str:
    """Play game `index`; an engine that dies is restarted and the game replayed once."""
    try:
        return PLAY[_WORKER["cfg"].opponent](_WORKER["engine"], index, _WORKER["openings"],
                                             _WORKER["cfg"])
    except chess.engine.EngineError:
        _WORKER["engine"].close()
        _WORKER["engine"] = open_engine(_WORKER["path"], ENGINE_OPTIONS)
    try:
        return PLAY[_WORKER["cfg"].opponent](_WORKER["engine"], index, _WORKER["openings"],
                                             _WORKER["cfg"])
    except chess.engine.EngineError as exc:
        raise SelfPlayError(f"round {index + 1}: the engine failed twice: {exc}") from None


def _games(indices: range, path: str, openings: list[Opening], cfg: SelfPlayConfig,
           workers: int) -> Iterator[str]:
    """PGN texts of `indices`, in order."""
    if workers == 1:  # in this process: no start-up cost
        _WORKER.update(path=path, openings=openings, cfg=cfg,
                       engine=open_engine(path, ENGINE_OPTIONS))
        try:
            yield from map(_worker_game, indices)
        finally:
            _WORKER.pop("engine").quit()
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=_worker_init, initargs=(path, openings, cfg))
    try:
        yield from pool.map(_worker_game, indices)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# ----------------------------------------------------------------------------- the file


_EVENT_RE = re.compile(rb"^\[Event ", re.MULTILINE)
_ROUND_RE = re.compile(rb'^\[Round "([^"]*)"\]', re.MULTILINE)
_WHITE_RE = re.compile(rb'^\[White "([^"]*)"\]', re.MULTILINE)


def games_done(path: Path, nodes: int, quiet: bool = True) -> int:
    """Complete games at the start of `path` (rounds 1..k); a cut-off last game is removed.

    A game is complete when its movetext ends with a result and the file with a blank
    line (each game is written by one write() and flushed, so a kill can cut only the last).
    """
    if not path.exists():
        return 0
    data = path.read_bytes()
    starts = [m.start() for m in _EVENT_RE.finditer(data)]
    if data.strip() and (not starts or data[: starts[0]].strip()):
        raise SelfPlayError(f"{str(path)!r} exists and is not a self-play PGN")
    if starts:
        _, _, movetext = data[starts[-1] :].partition(b"\n\n")
        complete = movetext.rstrip().endswith(tuple(r.encode() for r in _RESULTS))
        if not (complete and data.endswith(b"\n\n")):
            if not quiet:
                print(f"{path}: dropping an incomplete last game ({len(data) - starts[-1]} bytes)")
            with open(path, "r+b") as f:
                f.truncate(starts[-1])
            data = data[: starts.pop()]
    rounds = [int(r) if r.isdigit() else -1 for r in _ROUND_RE.findall(data)][: len(starts)]
    if rounds != list(range(1, len(starts) + 1)):
        raise SelfPlayError(f"{str(path)!r} does not hold rounds 1..{len(starts)} of one run: "
                            "not written by this tool? (use another --out)")
    players = set(_WHITE_RE.findall(data)[: len(starts)])
    if players - {player(nodes).encode()}:
        found = sorted(p.decode() for p in players)
        raise SelfPlayError(f"{str(path)!r} holds games played with {found}, not "
                            f"{player(nodes)!r}: continue with the same --nodes, or use "
                            "another --out")
    return len(starts)


_MARKER_RE = re.compile(rb"^# round (\d+) (.*): \S.*$", re.MULTILINE)
_EPD_ID_RE = re.compile(rb' id "(.*) r(\d+)";$')


def conversions_done(path: Path, nodes: int, quiet: bool = True,
                     openings: list[Opening] | None = None) -> int:
    """Complete conversion games at the start of the EPD `path` (rounds 1..k, each ended
    by its ``# round`` line); the lines of a cut-off last game are removed."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    markers = list(_MARKER_RE.finditer(data))
    end = markers[-1].end() + 1 if markers else 0
    whole_lines = data[: data.rfind(b"\n") + 1].splitlines()  # a cut-off last line aside
    for line in whole_lines:
        if not (_MARKER_RE.match(line) or _EPD_ID_RE.search(line)):
            raise SelfPlayError(f"{str(path)!r} exists and is not a conversion EPD of this "
                                f"tool (line {line[:60]!r})")
    if len(data) > end:
        if not quiet:
            print(f"{path}: dropping an incomplete last game ({len(data) - end} bytes)")
        with open(path, "r+b") as f:
            f.truncate(end)
    rounds = [int(m.group(1)) for m in markers]
    if rounds != list(range(1, len(markers) + 1)):
        raise SelfPlayError(f"{str(path)!r} does not hold rounds 1..{len(markers)} of one run: "
                            "not written by this tool? (use another --out)")
    for m in markers:
        expected = " vs ".join(conversion_players(int(m.group(1)) - 1, nodes,
                                                  openings)).encode()
        if m.group(2) != expected:
            raise SelfPlayError(f"{str(path)!r} holds games played as {m.group(2).decode()!r}, "
                                f"not {expected.decode()!r}: continue with the same --nodes, "
                                "or use another --out")
    return len(markers)


def selfplay(games: int, out: str | Path, *, cfg: SelfPlayConfig | None = None,
             openings: list[str | Path] | None = None, workers: int | None = None,
             engine: str | None = None, quiet: bool = False,
             starts: list[str | Path] | None = None) -> dict:
    """Append games to `out` until it holds `games`; returns a summary. With `starts`
    (EPD files; conversion games only) games start from those positions instead of the
    book's lines, game i from position i modulo their number, Stockfish the side to move."""
    cfg = cfg or SelfPlayConfig()
    out = Path(out)
    workers = workers or os.cpu_count() or 1
    if games < 0 or workers < 1:
        raise SelfPlayError(f"games must be >= 0 and workers >= 1, got {games!r}, {workers!r}")
    if starts and (openings or cfg.opponent != "random"):
        raise SelfPlayError("start positions (--starts) are for conversion games "
                            "(--opponent random) and replace the book (--openings)")
    book, bad = load_starts(starts) if starts else load_openings(openings or [DEFAULT_OPENINGS])
    path = find_stockfish(engine)
    if cfg.opponent == "random" and out.suffix != ".epd":
        raise SelfPlayError(f"conversion games (--opponent random) are EPD: name --out "
                            f"*.epd, not {out.name!r}")
    if cfg.opponent == "random":
        start = conversions_done(out, cfg.nodes, quiet, book)
    else:
        start = games_done(out, cfg.nodes, quiet)
    separator = "\n" if cfg.opponent == "random" else "\n\n"
    todo = range(start, max(start, games))
    results: Counter = Counter()
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8", newline="\n") as f, progress(
        total=games, initial=min(start, games), unit="game", desc="self-play",
        disable=quiet, dynamic_ncols=True,
    ) as bar:
        if start and todo and not quiet:
            tqdm.write(f"{out}: {start} games already there, playing rounds {start + 1}..{games}")
        for text in _games(todo, path, book, cfg, min(workers, len(todo)) or 1):
            f.write(text + separator)
            f.flush()
            results[text.rsplit(maxsplit=1)[-1]] += 1
            bar.update(1)
    dt = time.perf_counter() - t0
    return {"games": max(start, games), "played": len(todo), "already_there": start,
            "seconds": round(dt, 3), "games_per_s": round(len(todo) / dt, 3) if todo else None,
            "results": dict(sorted(results.items())), "bad_openings": bad, "openings": len(book)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dataengine.selfplay",
        description="Stockfish self-play games with [%%eval] comments, appended to a PGN "
                    "(or, with --opponent random, conversion games as EPD).",
    )
    ap.add_argument("--games", type=int, required=True, help="total games the file should hold")
    ap.add_argument("--out", required=True, help="PGN file (appended to; a rerun continues it)")
    ap.add_argument("--nodes", type=int, default=4000, help="node budget per move (default 4000)")
    ap.add_argument("--multipv-prob", type=float, default=0.15,
                    help="probability of a move drawn from MultiPV lines 2-3 (default 0.15)")
    ap.add_argument("--openings", nargs="+", default=None,
                    help=f"opening book TSVs (eco, name, pgn); default {DEFAULT_OPENINGS.name}")
    ap.add_argument("--starts", nargs="+", default=None, metavar="FILE.epd",
                    help="with --opponent random: start from these positions instead of "
                         "the book, game i from position i, Stockfish the side to move")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="engine processes (default: all cores)")
    ap.add_argument("--seed", type=int, default=0, help="game i uses seed + i (default 0)")
    ap.add_argument("--max-plies", type=int, default=500,
                    help="cap per game, result * (default 500)")
    ap.add_argument("--opponent", choices=OPPONENTS, default="stockfish",
                    help="stockfish: self-play PGN (default); random: Stockfish against a "
                         "random mover, its positions as EPD (conversion games)")
    ap.add_argument("--engine", default=None,
                    help="Stockfish binary (default: stockfish on PATH or /usr/games/stockfish)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    args = ap.parse_args(argv)
    remove_stale_semaphores()  # left by killed runs (kill -9 takes the tracker too)
    try:
        cfg = SelfPlayConfig(nodes=args.nodes, multipv_prob=args.multipv_prob,
                             max_plies=args.max_plies, seed=args.seed, opponent=args.opponent)
        summary = selfplay(args.games, args.out, cfg=cfg, openings=args.openings,
                           workers=args.workers, engine=args.engine, quiet=args.quiet,
                           starts=args.starts)
    except (SelfPlayError, TeacherError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: the finished games are in {args.out}; run again to continue",
              file=sys.stderr)
        return 130
    if not args.quiet:
        print(format_summary(summary, args.out, "start positions" if args.starts
                             else "opening lines"))
    return 0


#: Unusable book lines the summary names; the rest are counted.
SHOW_UNUSABLE = 5


def format_summary(summary: dict, out: str, book: str = "opening lines") -> str:
    """A run's summary as the command prints it: the games, their results, and the book
    with each line it could not use (``FILE:LINE: why``)."""
    s = summary
    if s["played"]:
        rate = f" ({s['games_per_s']:.2f} games/s)" if s["games_per_s"] else ""
        there = f", {s['already_there']} were there before" if s["already_there"] else ""
        rows = [f"{out}: {s['games']} games; {s['played']} played now in "
                f"{s['seconds']:.1f} s{rate}{there}"]
        named = {"1-0": "1-0", "0-1": "0-1", "1/2-1/2": "1/2-1/2", "*": "* (cut at --max-plies)"}
        rows.append("results of these: " + ", ".join(
            f"{named[r]} {s['results'][r]}" for r in _RESULTS if r in s["results"]))
    else:
        rows = [f"{out} already holds {s['games']} games: nothing to play (a larger "
                "--games plays more)"]
    bad = s["bad_openings"]
    rows.append(f"{book}: {s['openings']:,} used" + (f", {len(bad)} left out:" if bad else ""))
    rows += [f"  {why}" for why in bad[:SHOW_UNUSABLE]]
    if len(bad) > SHOW_UNUSABLE:
        rows.append(f"  ... and {len(bad) - SHOW_UNUSABLE} more")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
