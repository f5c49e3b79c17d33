"""python -m train.gauntlet: a candidate engine against Stockfish levels and other players, and its Elo.

    python -m train.gauntlet --checkpoint checkpoints/pretrained.pt --games 20 \\
        --stockfish-elo 1350,1500,1700 --opponent material --tc 10+0.1 \\
        --pgn games/gauntlet.pgn --report gauntlet.json

The candidate (by default the UCI engine of --checkpoint, `python -m train.uci
--checkpoint CKPT`; any UCI command with --engine) plays --games games against each
opponent, from book openings (each line twice, colours swapped). Every UCI engine is
driven through python-chess's `SimpleEngine.popen_uci`, as a tournament manager
would: each of --concurrency workers plays its games one after another with its own
engine processes, and python-chess sends `ucinewgame` when a new game starts.

Players (--engine, --opponent; --stockfish-elo adds `sf:ELO` opponents):
  random, material        the in-process baselines of train/evaluation/players.py
  sf:ELO                  Stockfish with UCI_LimitStrength and UCI_Elo ELO: an anchor
                          of the Elo fit at ELO (Debian's 15.1 takes 1350-2850)
  PATH                    a checkpoint, played by `python -m train.uci --checkpoint PATH`
  "cmd=COMMAND [name=NAME] [nodes=N] [anchor=ELO] [option.NAME=VALUE ...]"
                          any UCI engine (cutechess-style keys; quote a COMMAND with
                          spaces: cmd='python -m engine'); anchor=ELO makes it an anchor

Time: --tc BASE+INC (seconds; default 10+0.1): the gauntlet keeps each side's clock,
sends it with every `go` (wtime/btime/winc/binc), measures each move's wall time and
scores a loss on time when a clock falls below zero (a draw if the opponent has no
mating material, as under FIDE rules); an engine silent past its clock is stopped.
On a busy machine engines flag at short time controls: --move-overhead MS gives them
a margin (their `Move Overhead` option).
Or --nodes N: every UCI engine searches N nodes a move (no clock; an engine silent
for --move-timeout seconds loses). A player's nodes=N caps it under either.

A game ends by the rules (checkmate, stalemate, insufficient material, a threefold
repetition or the 50-move rule as soon as it stands on the board, as cutechess
adjudicates them) or at --max-plies plies, book moves included (adjudicated a draw). An engine that plays an
illegal move, no move, crashes or stalls loses the game; every such loss is counted.

The report: per opponent the candidate's W/D/L and score, the time forfeits and
illegal or missing moves of each side, the games stopped at the ply cap; then one
Elo estimate of every free player (the candidate, checkpoints, baselines) fitted to
all the games at once, anchored on the Stockfish levels (train/elo.py: logistic
maximum likelihood, 95% profile-likelihood intervals, one-sided bounds at 0%/100%).

Exit status 2 with a one-line `error: ...` for a missing checkpoint or Stockfish, a
bad --tc, an engine that does not start, an unreadable opening book.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import queue
import re
import shlex
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import chess
import chess.engine
import chess.pgn

from dataengine.teacher import EngineNotFound, find_stockfish
from train.elo import ANCHOR, fit_ratings
from train.evaluation.match import GameBoard, Opening, read_openings, schedule
from train.evaluation.players import EvalError, MaterialPlayer, Player, RandomPlayer
from train.evaluation.report import json_safe

__all__ = [
    "GameRecord",
    "GauntletError",
    "PlayerSpec",
    "Settings",
    "main",
    "parse_player",
    "parse_tc",
    "run_gauntlet",
    "summarize",
]

DEFAULT_BOOK = str(Path(__file__).resolve().parents[1] / "dataengine" / "sample_data"
                   / "openings_a.tsv")
DEFAULT_TC = "10+0.1"
BASELINES = {"random": RandomPlayer, "material": MaterialPlayer}

#: seconds an engine may take past its clock before it is stopped (it lost anyway)
CLOCK_GRACE = 0.25
#: seconds a starting engine has to answer `uci` and `isready` (torch imports are slow)
START_TIMEOUT = 120.0
#: seconds a started engine has to answer a command other than `go` (`quit`, `isready`)
COMMAND_TIMEOUT = 10.0

#: how a game ended, beyond python-chess's Termination names
TIME_FORFEIT, ILLEGAL_MOVE, NO_MOVE, ADJUDICATION = \
    "time_forfeit", "illegal_move", "no_move", "adjudication"
_PGN_TERMINATION = {TIME_FORFEIT: "time forfeit", ILLEGAL_MOVE: "rules infraction",
                    NO_MOVE: "rules infraction", ADJUDICATION: "adjudication"}


class GauntletError(EvalError):
    """The gauntlet cannot run (one line): exit status 2."""


# ----------------------------------------------------------------------------- players


@dataclass
class PlayerSpec:
    """One player of the gauntlet: a UCI command or an in-process baseline."""

    name: str
    command: list[str] = field(default_factory=list)
    """The UCI engine's command line (empty for a baseline)."""
    baseline: str = ""
    """``random`` or ``material`` for an in-process baseline."""
    options: dict[str, str | int | bool] = field(default_factory=dict)
    anchor: float | None = None
    """The rating this player is held at in the Elo fit (None: fitted)."""
    nodes: int | None = None
    """Nodes a move for this player (over --nodes; a cap under --tc)."""

    @property
    def is_uci(self) -> bool:
        return not self.baseline

    def describe(self) -> str:
        if self.baseline:
            return f"in-process baseline {self.baseline!r}"
        opts = "".join(f" {k}={v}" for k, v in self.options.items())
        nodes = f", {self.nodes} nodes a move" if self.nodes else ""
        return f"{shlex.join(self.command)}{opts and ' (options' + opts + ')'}{nodes}"


def _option_value(text: str) -> str | int | bool:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return text


def checkpoint_command(path: str, weights: str | None = None) -> list[str]:
    """The UCI engine of a checkpoint (train/uci.py)."""
    return [sys.executable, "-m", "train.uci", "--checkpoint", path,
            *(["--weights", weights] if weights else [])]


def parse_player(spec: str, *, stockfish: str | None = None,
                 weights: str | None = None) -> PlayerSpec:
    """A player from its command-line text (see the module doc for the forms).

    >>> parse_player("sf:1500", stockfish="/usr/games/stockfish").options
    {'UCI_LimitStrength': True, 'UCI_Elo': 1500}
    >>> p = parse_player("cmd='/usr/games/stockfish' name=sf64 nodes=64 option.Hash=8")
    >>> p.name, p.command, p.nodes, p.options
    ('sf64', ['/usr/games/stockfish'], 64, {'Hash': 8})
    """
    text = spec.strip()
    if text in BASELINES:
        return PlayerSpec(name=text, baseline=text)
    sf = re.fullmatch(r"(?:sf|stockfish):(\d+)", text)
    if sf:
        if stockfish is None:
            raise GauntletError(f"player {spec!r} needs Stockfish: none found "
                                "(apt-get install stockfish, or --stockfish PATH)")
        elo = int(sf.group(1))
        return PlayerSpec(name=f"sf{elo}", command=[stockfish], anchor=float(elo),
                          options={"UCI_LimitStrength": True, "UCI_Elo": elo})
    if text.startswith("cmd="):
        return _parse_cmd_spec(spec)
    path = Path(text)
    if not path.is_file():
        raise GauntletError(f"player {spec!r}: no such checkpoint file (or: random, material, "
                            "sf:ELO, \"cmd=COMMAND ...\")")
    if importlib.util.find_spec("train.uci") is None:
        raise GauntletError(f"player {spec!r}: a checkpoint plays through train.uci, which "
                            "is not installed here (use --engine 'cmd=...')")
    return PlayerSpec(name=path.stem, command=checkpoint_command(text, weights))


def _parse_cmd_spec(spec: str) -> PlayerSpec:
    try:
        tokens = shlex.split(spec)
    except ValueError as e:
        raise GauntletError(f"player {spec!r}: {e}") from None
    p = PlayerSpec(name="")
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not value:
            raise GauntletError(f"player {spec!r}: {token!r} is not KEY=VALUE")
        if key == "cmd":
            p.command = shlex.split(value)
        elif key == "name":
            p.name = value
        elif key in ("nodes", "anchor"):
            try:
                number = int(value) if key == "nodes" else float(value)
            except ValueError:
                raise GauntletError(f"player {spec!r}: {key} must be a number, "
                                    f"got {value!r}") from None
            if key == "nodes":
                if number < 1:
                    raise GauntletError(f"player {spec!r}: nodes must be >= 1, got {value!r}")
                p.nodes = number
            else:
                p.anchor = number
        elif key.startswith("option.") and len(key) > len("option."):
            p.options[key[len("option."):]] = _option_value(value)
        else:
            raise GauntletError(f"player {spec!r}: unknown key {key!r} (cmd, name, nodes, "
                                "anchor, option.NAME)")
    if not p.command:
        raise GauntletError(f"player {spec!r}: cmd= is empty")
    p.name = p.name or Path(p.command[0]).name
    return p


def parse_tc(text: str) -> tuple[float, float]:
    """``BASE+INC`` (or ``BASE``) in seconds.

    >>> parse_tc("10+0.1"), parse_tc("60")
    ((10.0, 0.1), (60.0, 0.0))
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:\+\s*(\d+(?:\.\d*)?|\.\d+)\s*)?", text)
    if not m or float(m.group(1)) <= 0:
        raise GauntletError(f"bad --tc {text!r}: expected BASE+INC in seconds, base > 0 "
                            "(e.g. 10+0.1)")
    return float(m.group(1)), float(m.group(2) or 0.0)


# ----------------------------------------------------------------------------- games


@dataclass(frozen=True)
class Settings:
    base: float | None
    """Seconds on each clock at the start (None: --nodes, no clock)."""
    inc: float
    nodes: int | None
    max_plies: int
    move_timeout: float
    """Seconds a move may take under --nodes before the engine loses."""
    threads: int | None
    """`Threads` of every UCI engine that has that option, unless its spec sets it."""
    move_overhead: int | None
    """`Move Overhead` (ms) of every UCI engine that has it, unless its spec sets it."""
    seed: int

    @property
    def tc_text(self) -> str:
        """The PGN TimeControl tag: ``10+0.1``, or ``-`` (none) under --nodes."""
        return f"{self.base:g}+{self.inc:g}" if self.base is not None else "-"


@dataclass
class GameRecord:
    number: int
    opening: Opening
    candidate: str
    opponent: str
    candidate_white: bool
    moves: list[chess.Move]
    clocks: list[float | None]
    """Each move's mover's clock after it (None: a book move, or no clock)."""
    result: str
    termination: str
    """python-chess's Termination name, or time_forfeit, illegal_move, no_move, adjudication."""
    offender: str = ""
    """The player whose time forfeit, illegal or missing move ended the game."""
    note: str = ""

    @property
    def white(self) -> str:
        return self.candidate if self.candidate_white else self.opponent

    @property
    def black(self) -> str:
        return self.opponent if self.candidate_white else self.candidate

    @property
    def white_score(self) -> float:
        return {"1-0": 1.0, "0-1": 0.0, "1/2-1/2": 0.5}[self.result]

    @property
    def candidate_score(self) -> float:
        return self.white_score if self.candidate_white else 1.0 - self.white_score


class _Forfeit(Exception):
    def __init__(self, kind: str, note: str) -> None:
        super().__init__(note)
        self.kind, self.note = kind, note


class Seats:
    """One worker's players: an engine process per UCI player, started when first
    needed and kept for the worker's later games (restarted after a crash or a stall),
    and its own baseline objects."""

    def __init__(self, specs: dict[str, PlayerSpec], settings: Settings) -> None:
        self.specs, self.settings = specs, settings
        self.engines: dict[str, chess.engine.SimpleEngine] = {}
        self.baselines: dict[str, Player] = {}
        self.ids: dict[str, str] = {}

    def start(self, name: str) -> None:
        """Start ``name``'s engine if it is not running; raises GauntletError."""
        spec = self.specs[name]
        if not spec.is_uci:
            if name not in self.baselines:
                self.baselines[name] = BASELINES[spec.baseline](name=name, seed=self.settings.seed)
            return
        if name in self.engines:
            return
        cmd = shlex.join(spec.command)
        try:
            # its own process group: Ctrl-C stops the gauntlet, which then closes the
            # engines, instead of killing them mid-game (bogus losses in the report)
            engine = chess.engine.SimpleEngine.popen_uci(spec.command, timeout=START_TIMEOUT,
                                                         setpgrp=True)
        except (OSError, chess.engine.EngineError, chess.engine.EngineTerminatedError,
                TimeoutError) as e:
            raise GauntletError(f"engine {name!r} ({cmd}) did not start: "
                                f"{e or type(e).__name__}") from None
        try:
            options = dict(spec.options)
            for key, value in (("Threads", self.settings.threads),
                               ("Move Overhead", self.settings.move_overhead)):
                if (value is not None and key in engine.options
                        and not any(k.lower() == key.lower() for k in options)):
                    options[key] = value
            _check_options(name, engine, options)
            engine.configure(options)
            engine.ping()  # an engine that loads its network on `isready` does it now
        except (chess.engine.EngineError, chess.engine.EngineTerminatedError,
                TimeoutError) as e:
            engine.close()
            raise GauntletError(f"engine {name!r} ({cmd}): {e or type(e).__name__}") from None
        except BaseException:
            engine.close()  # an engine left open keeps the interpreter from exiting
            raise
        engine.timeout = COMMAND_TIMEOUT  # started: `quit` and the like answer at once
        self.ids[name] = engine.id.get("name", "?")
        self.engines[name] = engine

    def drop(self, name: str) -> None:
        """Kill ``name``'s engine (it stalled or died): the next game starts a new one."""
        engine = self.engines.pop(name, None)
        if engine is not None:
            engine.close()

    def close(self, kill: bool = False) -> None:
        """Quit every engine (``kill``: close them at once, without waiting on them)."""
        for name in list(self.engines):
            engine = self.engines.pop(name)
            if not kill:
                try:
                    engine.quit()
                    continue
                except (chess.engine.EngineError, chess.engine.EngineTerminatedError,
                        TimeoutError):
                    pass
            engine.close()

    def move(self, name: str, board: chess.Board, limit: chess.engine.Limit, game: int,
             timeout: float) -> chess.Move:
        """``name``'s move; raises :class:`_Forfeit` for no move, an illegal one, a crash
        or no answer within ``timeout`` seconds."""
        if name in self.baselines:
            return self.baselines[name].choose([board])[0]
        engine = self.engines[name]
        # SimpleEngine.play has no timeout when the limit is a clock: a watchdog kills
        # the engine instead, which ends the call with EngineTerminatedError
        fired = threading.Event()

        def stop() -> None:
            fired.set()
            engine.close()

        watchdog = threading.Timer(timeout, stop)
        watchdog.start()
        try:
            result = engine.play(board, limit, game=game)
        except chess.engine.EngineTerminatedError as e:
            self.drop(name)
            if fired.is_set():
                raise _Forfeit(TIME_FORFEIT if self.settings.base is not None else NO_MOVE,
                               f"{name} gave no move within {timeout:.1f} s") from None
            raise _Forfeit(NO_MOVE, f"{name} died: {e}") from None
        except chess.engine.EngineError as e:
            bad = re.search(r"(?:illegal|invalid) uci: '([^']*)'", str(e))
            if bad:
                raise _Forfeit(ILLEGAL_MOVE, f"{name} played the illegal move "
                                             f"{bad.group(1)!r}") from None
            self.drop(name)
            raise _Forfeit(NO_MOVE, f"{name}: {e}") from None
        finally:
            watchdog.cancel()
        if fired.is_set():  # answered as the watchdog fired: the move stands, the engine not
            self.drop(name)
        if not result.move:  # bestmove (none) or 0000 in a position with legal moves
            raise _Forfeit(NO_MOVE, f"{name} answered no move")
        return result.move


def _check_options(name: str, engine: chess.engine.SimpleEngine,
                   options: dict[str, str | int | bool]) -> None:
    for key, value in options.items():
        option = engine.options.get(key)
        if option is None:
            raise GauntletError(f"engine {name!r} has no UCI option {key!r}")
        if option.type == "spin" and isinstance(value, int) and not (
                option.min is None or option.min <= value <= (option.max or value)):
            raise GauntletError(f"engine {name!r}: option {key} {value} is outside "
                                f"{option.min}-{option.max}")


def play_game(number: int, opening: Opening, candidate: str, opponent: str,
              candidate_white: bool, seats: Seats) -> GameRecord:
    """One game from ``opening`` to its end (see the module doc)."""
    s = seats.settings
    white, black = (candidate, opponent) if candidate_white else (opponent, candidate)
    names = {chess.WHITE: white, chess.BLACK: black}
    for name in (white, black):
        seats.start(name)
        baseline = seats.baselines.get(name)
        if baseline is not None:  # reproducible games, whoever plays them
            baseline.rng.seed(s.seed * 1_000_003 + number)
    gb = GameBoard()
    for move in opening.moves:
        gb.push(move)
    board = gb.board
    clocks: list[float | None] = [None] * len(opening.moves)
    clock = {chess.WHITE: s.base, chess.BLACK: s.base}
    result, termination, offender, note = "*", "", "", ""
    while True:
        outcome = game_over(gb)
        if outcome is not None:
            result, termination = outcome.result(), outcome.termination.name.lower()
            break
        if board.ply() >= s.max_plies:
            result, termination = "1/2-1/2", ADJUDICATION
            note = f"ply cap {s.max_plies}: adjudicated a draw"
            break
        side, name = board.turn, names[board.turn]
        nodes = seats.specs[name].nodes or s.nodes
        if s.base is None:
            limit, timeout = chess.engine.Limit(nodes=nodes), s.move_timeout
        else:
            limit = chess.engine.Limit(white_clock=clock[chess.WHITE],
                                       black_clock=clock[chess.BLACK],
                                       white_inc=s.inc, black_inc=s.inc, nodes=nodes)
            timeout = clock[side] + CLOCK_GRACE
        start = time.perf_counter()
        try:
            move = seats.move(name, board, limit, number, timeout)
            if not board.is_legal(move):
                raise _Forfeit(ILLEGAL_MOVE, f"{name} played the illegal move {move.uci()!r}")
        except _Forfeit as f:
            termination, offender, note = f.kind, name, f.note
            result = _loss(board, side, termination)
            if termination == TIME_FORFEIT and s.base is not None:
                clock[side] -= time.perf_counter() - start
            break
        if s.base is not None:
            clock[side] -= time.perf_counter() - start
            if clock[side] < 0:
                termination, offender = TIME_FORFEIT, name
                result = _loss(board, side, termination)
                note = f"{name} lost on time ({clock[side]:+.3f} s after {move.uci()})"
                break
            clock[side] += s.inc
        gb.push(move)
        clocks.append(clock[side])
    if termination == TIME_FORFEIT and result == "1/2-1/2":
        note += "; a draw: the opponent has no mating material"
    return GameRecord(number=number, opening=opening, candidate=candidate, opponent=opponent,
                      candidate_white=candidate_white, moves=list(board.move_stack),
                      clocks=clocks, result=result, termination=termination,
                      offender=offender, note=note)


def game_over(gb: GameBoard) -> chess.Outcome | None:
    """The game's end by the rules, as an arbiter sees the board: checkmate, stalemate,
    insufficient material, and a threefold repetition or the 50-move rule once it has
    happened on the board. Not ``board.outcome(claim_draw=True)``: that also ends the
    game when the side to move *could* repeat a third time (or reach 50 moves) with its
    next move, which a side playing to win would not do."""
    board = gb.board
    outcome = board.outcome()  # also the automatic fivefold and 75-move draws
    if outcome is not None:
        return outcome
    if board.halfmove_clock >= 100:
        return chess.Outcome(chess.Termination.FIFTY_MOVES, None)
    # GameBoard.repeated: some position occurred twice since the last irreversible move,
    # which a threefold needs (is_repetition walks the move stack)
    if gb.repeated and board.is_repetition(3):
        return chess.Outcome(chess.Termination.THREEFOLD_REPETITION, None)
    return None


def _loss(board: chess.Board, side: chess.Color, termination: str) -> str:
    # FIDE 6.9: a flag fall is a draw when the opponent cannot mate by any legal series
    if termination == TIME_FORFEIT and board.has_insufficient_material(not side):
        return "1/2-1/2"
    return "0-1" if side == chess.WHITE else "1-0"


# ----------------------------------------------------------------------------- the gauntlet


@dataclass
class _Job:
    number: int
    opening: Opening
    opponent: str
    candidate_white: bool


def make_jobs(openings: list[Opening], opponents: list[str], games: int,
              seed: int) -> list[_Job]:
    """``games`` a opponent (each opening twice, colours swapped), interleaved so that
    every opponent has played about as many as the others at any time."""
    per = {name: schedule(openings, games, seed) for name in opponents}
    jobs = []
    for i in range(games):
        for name in opponents:
            opening, white = per[name][i]
            jobs.append(_Job(len(jobs) + 1, opening, name, white))
    return jobs


@dataclass
class Outcome:
    """What :func:`run_gauntlet` played."""

    records: list[GameRecord]
    """The finished games, in game order."""
    ids: dict[str, str]
    """Each UCI engine's `id name`."""
    stopped: str = ""
    """Why it stopped before the last game (``interrupted``, or an error), else empty."""


def run_gauntlet(candidate: PlayerSpec, opponents: list[PlayerSpec], openings: list[Opening],
                 games: int, settings: Settings, concurrency: int, on_game=None) -> Outcome:
    """Play every game. ``on_game(record, done, total)`` is called in the calling thread
    as each game ends. An engine that does not start before the first game raises
    :class:`GauntletError`; later (a restart failing) or on Ctrl-C the games finished
    so far come back with the reason in ``stopped``."""
    specs = {p.name: p for p in (candidate, *opponents)}
    jobs = make_jobs(openings, [p.name for p in opponents], games, settings.seed)
    workers = max(1, min(concurrency, len(jobs)))
    seats = [Seats(specs, settings) for _ in range(workers)]
    todo: queue.Queue[_Job] = queue.Queue()
    for job in jobs:
        todo.put(job)
    done: queue.Queue[GameRecord | BaseException] = queue.Queue()
    stop = threading.Event()

    def work(seat: Seats) -> None:
        try:
            while not stop.is_set():
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                done.put(play_game(job.number, job.opening, candidate.name, job.opponent,
                                   job.candidate_white, seat))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            done.put(e)

    records: dict[int, GameRecord] = {}
    threads, stopped = [], ""
    try:
        for name, spec in specs.items():  # a bad command fails now, before any game
            if spec.is_uci:
                seats[0].start(name)
        for seat in seats:
            t = threading.Thread(target=work, args=(seat,), daemon=True)
            t.start()
            threads.append(t)
        while len(records) < len(jobs):
            try:
                item = done.get(timeout=0.5)
            except queue.Empty:
                if not any(t.is_alive() for t in threads) and done.empty():
                    stopped = "the workers ended early"
                    break
                continue
            if isinstance(item, BaseException):
                stopped = f"{' '.join(str(item).split()) or type(item).__name__}"
                break
            records[item.number] = item
            if on_game is not None:
                on_game(item, len(records), len(jobs))
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        stop.set()
        for seat in seats:  # kills what a worker still waits on: it ends at once
            seat.close(kill=bool(stopped) or not threads)
        for t in threads:
            t.join(timeout=5.0)
    ids = {}
    for seat in seats:
        ids.update(seat.ids)
    return Outcome([records[k] for k in sorted(records)], ids, stopped)


# ----------------------------------------------------------------------------- report


def summarize(records: list[GameRecord], candidate: PlayerSpec,
              opponents: list[PlayerSpec]) -> dict:
    """Per-opponent and total counts (the candidate's view) and the joint Elo fit."""
    rows = []
    for spec in opponents:
        rows.append({"opponent": spec.name, "anchor": spec.anchor,
                     **_counts([r for r in records if r.opponent == spec.name],
                               candidate.name, spec.name)})
    total = _counts(records, candidate.name, None)
    anchors = {p.name: p.anchor for p in (candidate, *opponents) if p.anchor is not None}
    fit = fit_ratings([(r.white, r.black, r.white_score) for r in records], anchors)
    ratings = {name: r.as_dict() for name, r in fit.ratings.items() if r.status != ANCHOR}
    order = [candidate.name] + [p.name for p in opponents]
    return {"opponents": rows, "total": total,
            "elo": {"method": fit.method, "anchors": anchors,
                    "ratings": {n: ratings[n] for n in order if n in ratings}}}


def _counts(records: list[GameRecord], candidate: str, opponent: str | None) -> dict:
    n = len(records)
    wins = sum(r.candidate_score == 1.0 for r in records)
    losses = sum(r.candidate_score == 0.0 for r in records)
    draws = n - wins - losses

    def by(kind: str, who: str | None) -> int:
        return sum(r.termination == kind and (who is None and r.offender != candidate
                                              or r.offender == who) for r in records)

    return {
        "games": n, "wins": wins, "draws": draws, "losses": losses,
        "points": wins + 0.5 * draws, "score": (wins + 0.5 * draws) / n if n else None,
        "time_forfeits": {"candidate": by(TIME_FORFEIT, candidate),
                          "opponent": by(TIME_FORFEIT, opponent)},
        "illegal_moves": {"candidate": by(ILLEGAL_MOVE, candidate),
                          "opponent": by(ILLEGAL_MOVE, opponent)},
        "no_moves": {"candidate": by(NO_MOVE, candidate), "opponent": by(NO_MOVE, opponent)},
        "adjudicated": sum(r.termination == ADJUDICATION for r in records),
        "terminations": dict(sorted(Counter(r.termination for r in records).items())),
        "mean_plies": sum(len(r.moves) for r in records) / n if n else None,
    }


def format_report(report: dict) -> str:
    c = report["candidate"]
    s = report["settings"]
    how = f"tc {s['tc']}" if s["nodes"] is None else f"{s['nodes']} nodes a move"
    out = [f"candidate: {c['name']}: {c['describe']}" + (f" [{c['id']}]" if c.get("id") else ""),
           f"{report['games']} games: {s['games']} against each of {len(report['opponents'])} "
           f"opponents, {how}, openings from {s['book']} (each twice, colours swapped), "
           f"ply cap {s['max_plies']}, {s['concurrency']} at a time"]
    if report.get("stopped"):
        out.append(f"stopped ({report['stopped']}): {report['games']} of "
                   f"{report['games_planned']} games played")
    header = ["opponent", "anchor", "games", "W", "D", "L", "score",
              "time forfeits", "illegal", "no move", "capped"]
    rows = []
    for row in [*report["opponents"], {"opponent": "total", "anchor": None, **report["total"]}]:
        pair = "{candidate}/{opponent}".format
        rows.append([row["opponent"], "" if row["anchor"] is None else f"{row['anchor']:g}",
                     str(row["games"]), str(row["wins"]), str(row["draws"]), str(row["losses"]),
                     f"{row['points']:g} = {row['score']:.3f}" if row["games"] else "-",
                     pair(**row["time_forfeits"]), pair(**row["illegal_moves"]),
                     pair(**row["no_moves"]), str(row["adjudicated"])])
    out += _table(header, rows)
    out.append("(time forfeits, illegal and missing moves: candidate/opponent; capped: "
               "games stopped at the ply cap, drawn)")
    elo = report["elo"]
    anchors = ", ".join(f"{k} {v:g}" for k, v in elo["anchors"].items()) or "none"
    out.append("")
    out.append(f"Elo, fitted to all {report['games']} games at once (anchors: {anchors})")
    out.append(f"  {elo['method']}")
    for name, r in elo["ratings"].items():
        score = f"{r['points']:g}/{r['games']}" if r["games"] else "no games"
        out.append(f"  {name:<{max(map(len, elo['ratings']))}}  {r['text']}  ({score})")
    if report.get("pgn"):
        out.append(f"games written to {report['pgn']}")
    return "\n".join(out)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def to_pgn(record: GameRecord, tc: str, date: str) -> chess.pgn.Game:
    game = chess.pgn.Game()
    for key, value in (("Event", "gauntlet"), ("Site", "?"), ("Date", date),
                       ("Round", str(record.number)), ("White", record.white),
                       ("Black", record.black), ("Result", record.result),
                       ("ECO", record.opening.eco or "?"), ("Opening", record.opening.name or "?"),
                       ("TimeControl", tc), ("PlyCount", str(len(record.moves))),
                       ("Termination", _PGN_TERMINATION.get(record.termination, "normal"))):
        game.headers[key] = value
    node = game
    for move, left in zip(record.moves, record.clocks, strict=True):
        node = node.add_variation(move)
        if left is not None:
            node.set_clock(left)
    ending = record.note or record.termination
    if node is game:
        game.comment = ending
    else:
        node.comment = f"{node.comment} {ending}".strip()
    return game


def write_pgn(records: list[GameRecord], path: str, tc: str) -> None:
    date = datetime.date.today().strftime("%Y.%m.%d")
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            print(to_pgn(record, tc, date), file=f, end="\n\n")


# ----------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m train.gauntlet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--checkpoint", help="the candidate: this checkpoint's UCI engine (train.uci)")
    who.add_argument("--engine", help="the candidate as a player spec instead (see above)")
    ap.add_argument("--weights", choices=("ema", "raw"), default=None,
                    help="checkpoints' weights (passed to train.uci; its default if not given)")
    ap.add_argument("--name", default=None, help="the candidate's name (default: file stem)")
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="a UCI option of the candidate (repeatable): CPuct=2, Device=cpu, ...")
    ap.add_argument("--stockfish-elo", default="1350,1500,1700",
                    help="Stockfish UCI_Elo levels to play, the anchors ('' for none)")
    ap.add_argument("--opponent", action="append", default=[], metavar="SPEC",
                    help="another opponent (repeatable): random, material, a checkpoint, "
                         "sf:ELO, \"cmd=...\"")
    ap.add_argument("--stockfish", default=None, help="Stockfish binary (default: PATH, "
                    "/usr/games/stockfish)")
    ap.add_argument("--games", type=int, default=20, help="games against each opponent")
    ap.add_argument("--tc", default=None, help=f"BASE+INC seconds (default {DEFAULT_TC})")
    ap.add_argument("--nodes", type=int, default=None,
                    help="nodes a move for every UCI engine instead of a clock")
    ap.add_argument("--move-timeout", type=float, default=60.0,
                    help="under --nodes, seconds a move may take before the engine loses")
    ap.add_argument("--threads", type=int, default=1,
                    help="`Threads` of every UCI engine that has it (0: the engines' default)")
    ap.add_argument("--move-overhead", type=int, default=None, metavar="MS",
                    help="`Move Overhead` of every UCI engine that has it (default: the "
                         "engines' own); raise it where a busy machine makes engines flag")
    ap.add_argument("--concurrency", type=int, default=os.cpu_count() or 1,
                    help="games played at once (default: the number of cores)")
    ap.add_argument("--book", default=DEFAULT_BOOK, help="opening book TSV (eco, name, pgn)")
    ap.add_argument("--max-plies", type=int, default=400,
                    help="game length cap in plies, book moves included (then a draw)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the opening order and baselines")
    ap.add_argument("--pgn", default=None, help="write every game here")
    ap.add_argument("--report", default=None, help="write the JSON report here")
    ap.add_argument("--quiet", action="store_true", help="no line per game")
    return ap


def _settings(args: argparse.Namespace) -> Settings:
    for name in ("games", "concurrency", "max_plies"):
        if getattr(args, name) < 1:
            raise GauntletError(f"--{name.replace('_', '-')} must be >= 1, "
                                f"got {getattr(args, name)}")
    if args.games % 2:
        raise GauntletError(f"--games must be even (each opening with both colours), "
                            f"got {args.games}")
    if args.nodes is not None and args.nodes < 1:
        raise GauntletError(f"--nodes must be >= 1, got {args.nodes}")
    if args.threads < 0 or args.move_timeout <= 0 or (args.move_overhead or 0) < 0:
        raise GauntletError("--threads and --move-overhead must be >= 0, --move-timeout > 0")
    if args.nodes is not None and args.tc is not None:
        raise GauntletError("--tc and --nodes exclude each other (a clock, or nodes a move)")
    base, inc = (None, 0.0) if args.nodes is not None else parse_tc(args.tc or DEFAULT_TC)
    return Settings(base=base, inc=inc, nodes=args.nodes, max_plies=args.max_plies,
                    move_timeout=args.move_timeout, threads=args.threads or None,
                    move_overhead=args.move_overhead, seed=args.seed)


def _players(args: argparse.Namespace) -> tuple[PlayerSpec, list[PlayerSpec]]:
    levels = [x.strip() for x in args.stockfish_elo.split(",") if x.strip()]
    if any(not x.isdigit() for x in levels):
        raise GauntletError(f"bad --stockfish-elo {args.stockfish_elo!r}: comma-separated "
                            "integers, e.g. 1350,1500,1700")
    stockfish = None
    if levels or any(re.match(r"(sf|stockfish):", o) for o in [*args.opponent,
                                                               args.engine or ""]):
        try:
            stockfish = find_stockfish(args.stockfish)
        except EngineNotFound as e:
            raise GauntletError(str(e)) from None
    if args.checkpoint is not None:
        if not Path(args.checkpoint).is_file():
            raise GauntletError(f"checkpoint {args.checkpoint!r} not found")
    candidate = parse_player(args.engine or args.checkpoint, stockfish=stockfish,
                             weights=args.weights)
    if args.name:
        candidate.name = args.name
    for text in args.option:
        key, sep, value = text.partition("=")
        if not sep or not key or not candidate.is_uci:
            raise GauntletError(f"bad --option {text!r}: NAME=VALUE, for a UCI candidate")
        candidate.options[key] = _option_value(value)
    opponents = [parse_player(f"sf:{x}", stockfish=stockfish) for x in levels]
    opponents += [parse_player(o, stockfish=stockfish, weights=args.weights)
                  for o in args.opponent]
    if not opponents:
        raise GauntletError("no opponents: give --stockfish-elo levels or --opponent")
    taken = {candidate.name}
    for p in opponents:  # unique names: the PGN and the fit tell players apart by them
        base, k = p.name, 2
        while p.name in taken:
            p.name, k = f"{base}-{k}", k + 1
        taken.add(p.name)
    return candidate, opponents


def _writable(path: str | None) -> None:
    if path:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as e:
            raise GauntletError(f"cannot write {path!r}: {e.strerror or e}") from None


def gauntlet(args: argparse.Namespace) -> dict:
    """Everything the command does, as the report dict (raises GauntletError)."""
    settings = _settings(args)
    candidate, opponents = _players(args)
    openings = read_openings(args.book)
    for path in (args.pgn, args.report):  # a bad output path fails now, not after the games
        _writable(path)
    total = args.games * len(opponents)
    score = Counter()

    def on_game(r: GameRecord, done: int, total: int) -> None:
        score[{1.0: "+", 0.5: "=", 0.0: "-"}[r.candidate_score]] += 1
        if not args.quiet:
            why = r.note or r.termination
            print(f"[{done}/{total}] #{r.number} {r.white} - {r.black} {r.result} ({why}, "
                  f"{len(r.moves)} plies); {candidate.name} +{score['+']} ={score['=']} "
                  f"-{score['-']}", file=sys.stderr, flush=True)

    played = run_gauntlet(candidate, opponents, openings, args.games, settings,
                          args.concurrency, on_game)
    records, ids = played.records, played.ids
    report = {
        "candidate": {"name": candidate.name, "describe": candidate.describe(),
                      "command": candidate.command, "id": ids.get(candidate.name)},
        "settings": {"games": args.games, "tc": settings.tc_text, "nodes": settings.nodes,
                     "book": args.book, "max_plies": settings.max_plies,
                     "concurrency": args.concurrency, "threads": settings.threads,
                     "move_overhead": settings.move_overhead,
                     "seed": settings.seed},
        "players": {p.name: {"describe": p.describe(), "command": p.command,
                             "options": p.options, "anchor": p.anchor, "nodes": p.nodes,
                             "id": ids.get(p.name)} for p in (candidate, *opponents)},
        "games": len(records), "games_planned": total, "stopped": played.stopped or None,
        **summarize(records, candidate, opponents),
        "pgn": args.pgn,
        "games_list": [{"round": r.number, "white": r.white, "black": r.black,
                        "result": r.result, "termination": r.termination,
                        "offender": r.offender or None, "opening": r.opening.name,
                        "plies": len(r.moves), "note": r.note} for r in records],
    }
    if args.pgn:
        write_pgn(records, args.pgn, settings.tc_text)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        report = gauntlet(args)
    except EvalError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)  # always one line
        return 2
    print(format_report(report))
    if args.report:
        Path(args.report).write_text(json.dumps(json_safe(report), indent=1) + "\n")
        print(f"report written to {args.report}")
    stopped = report["stopped"]
    if stopped == "interrupted":
        return 130
    if stopped:
        print(f"error: {stopped}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
