"""The trained network as a UCI engine: ``python -m train.uci --checkpoint CKPT``.

A GUI, a tournament manager (cutechess, fastchess) or lichess-bot drives it through the
UCI protocol on stdin/stdout. The loop is a small dispatcher over each line's first word
(sunfish's ``tools/uci.py``); stdin is read by the main thread, a search runs in a worker
thread, and every line out goes through one lock-protected writer, so that ``isready``
and ``stop`` are answered while a search runs. The search itself never prints: it calls
back with :class:`~train.engine.search.SearchInfo`, which becomes ``info`` lines here.

Every tunable is a named UCI option with a documented default (lc0's ``params.cc``):
see :data:`OPTIONS`. Bad input (an unknown command, a malformed FEN, an illegal move, a
bad option value) is answered by an ``info string`` saying what was wrong; the engine
keeps answering and never prints a traceback on stdout (those go to stderr).

The network loads in a background thread from the start, so that ``uci`` answers at
once; ``isready`` and ``go`` wait for it (``Weights``, ``Device`` and ``Threads`` reload
it on the next of them). A checkpoint given on the command line that does not load ends
the engine with exit status 2 at that point, after an ``info string`` with the reason.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import chess

from train.engine.timeman import Allotment, allot, stop_early

NAME = "chess-ssl-pretrain"
AUTHOR = "the chess-ssl-pretrain authors"

INFO_PERIOD = 1.0
"""Seconds between two ``info`` lines of a running search (the last one always comes
just before ``bestmove``)."""

CHECK_PERIOD = 0.05
"""Seconds between two looks of a timed search at its clock (the search's callback)."""


# ----------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Option:
    """One UCI option: its declaration and how a ``setoption`` value is read."""

    name: str
    kind: str
    """``spin`` (int), ``check`` (bool), ``combo`` (one of ``choices``) or ``float``
    (declared as ``string``: UCI has no real type, and lc0 declares its own so)."""
    default: object
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""

    def declaration(self) -> str:
        kind = "string" if self.kind == "float" else self.kind
        default = str(self.default).lower() if self.kind == "check" else self.default
        line = f"option name {self.name} type {kind} default {default}"
        if self.kind == "spin":
            line += f" min {self.low} max {self.high}"
        return line + "".join(f" var {choice}" for choice in self.choices)

    def parse(self, text: str) -> object:
        """The value of ``text``; a ValueError quoting it when it does not fit."""
        if self.kind == "check":
            if text.lower() not in ("true", "false"):
                raise ValueError(f"{self.name} takes true or false, got {text!r}")
            return text.lower() == "true"
        if self.kind == "combo":
            match = [c for c in self.choices if c.lower() == text.lower()]
            if not match:
                raise ValueError(f"{self.name} takes one of {', '.join(self.choices)}, "
                                 f"got {text!r}")
            return match[0]
        try:
            value = int(text) if self.kind == "spin" else float(text)
        except ValueError:
            what = "an integer" if self.kind == "spin" else "a number"
            raise ValueError(f"{self.name} takes {what}, got {text!r}") from None
        if not (self.low <= value <= self.high):  # also rejects nan
            raise ValueError(f"{self.name} takes a value in [{self.low}, {self.high}], "
                             f"got {text!r}")
        return value


OPTIONS = (
    Option("Weights", "combo", "ema", choices=("ema", "raw"),
           doc="the checkpoint's EMA weights or its raw trained ones (reloads the network)"),
    Option("Device", "combo", "cpu", choices=("cpu", "cuda", "mps"),
           doc="where the network runs (reloads the network)"),
    Option("Threads", "spin", 0, 0, 256,
           doc="torch CPU threads for the network; 0: torch's default (reloads the network)"),
    Option("CPuct", "float", 1.5, 0.01, 100.0,
           doc="PUCT exploration constant: U = CPuct * P * sqrt(N_parent) / (1 + N)"),
    Option("FPU Reduction", "float", 0.0, 0.0, 9.99,
           doc="an unvisited move's Q is its parent's minus this times sqrt(visited policy)"),
    Option("Batch Size", "spin", 32, 1, 4096, doc="leaves gathered per network call"),
    Option("Virtual Loss", "float", 1.0, 0.0, 100.0,
           doc="visits, each counted as a loss, that a leaf waiting in a batch adds"),
    Option("Move Overhead", "spin", 100, 0, 10000,
           doc="milliseconds the GUI and the pipe lose per move, kept off the clock"),
    Option("Nodes", "spin", 0, 0, 1_000_000_000,
           doc="visits per move when `go` names no nodes, depth or infinite; 0: by the "
               "clock (with a clock, the clock still caps the search)"),
    Option("MultiPV", "spin", 1, 1, 256, doc="root moves reported in `info` lines"),
    Option("Ponder", "check", False,
           doc="the GUI may send `go ponder` (this engine ponders whatever its value)"),
    Option("UCI_ShowWDL", "check", True,
           doc="`wdl` in `info` lines, where the network has a W/D/L head"),
)
"""The engine's options, as ``uci`` declares them (names are matched without case)."""

_SEARCH = {"cpuct": "cpuct", "fpu reduction": "fpu_reduction", "batch size": "batch_size",
           "virtual loss": "virtual_loss"}


# ----------------------------------------------------------------------------- go


@dataclass
class GoLimits:
    """What a ``go`` command asked for (times in seconds)."""

    time_left: dict[bool, float] = field(default_factory=dict)
    increment: dict[bool, float] = field(default_factory=dict)
    movestogo: int | None = None
    movetime: float | None = None
    nodes: int | None = None
    depth: int | None = None
    infinite: bool = False
    ponder: bool = False

    def allotment(self, turn: chess.Color, overhead: float) -> Allotment | None:
        return allot(time_left=self.time_left.get(turn), increment=self.increment.get(turn, 0.0),
                     movestogo=self.movestogo, movetime=self.movetime, overhead=overhead)


# word: (attribute, the colour it is for, seconds per unit, least value); a negative
# clock, as some GUIs send after a lag, is taken (the time manager reads it as none left)
_GO_NUMBERS = {"wtime": ("time_left", chess.WHITE, 1e-3, None),
               "btime": ("time_left", chess.BLACK, 1e-3, None),
               "winc": ("increment", chess.WHITE, 1e-3, None),
               "binc": ("increment", chess.BLACK, 1e-3, None),
               "movestogo": ("movestogo", None, None, 1), "movetime": ("movetime", None, 1e-3, 0),
               "nodes": ("nodes", None, None, 0), "depth": ("depth", None, None, 1)}
_GO_WORDS = set(_GO_NUMBERS) | {"infinite", "ponder", "searchmoves", "mate"}


def parse_go(words: list[str]) -> tuple[GoLimits, list[str]]:
    """The limits of ``go``'s arguments and the complaints about those it skipped."""
    limits, complaints = GoLimits(), []
    i = 0
    while i < len(words):
        word = words[i].lower()
        i += 1
        if word in ("infinite", "ponder"):
            setattr(limits, word, True)
        elif word in _GO_NUMBERS:
            attribute, colour, scale, least = _GO_NUMBERS[word]
            text = words[i] if i < len(words) else ""
            try:
                number = int(text)
                i += 1
            except ValueError:
                complaints.append(f"go: {word} takes an integer, got {text!r}; ignored")
                i += 1 if text and text.lower() not in _GO_WORDS else 0
                continue
            if least is not None and number < least:
                complaints.append(f"go: {word} {number} is out of range; ignored")
            elif colour is None:
                setattr(limits, attribute, number * scale if scale else number)
            else:
                getattr(limits, attribute)[colour] = number * scale
        elif word == "searchmoves":
            while i < len(words) and words[i].lower() not in _GO_WORDS:
                i += 1
            complaints.append("go: searchmoves is not supported; searching every move")
        elif word == "mate":
            i += 1 if i < len(words) and words[i].lstrip("-").isdigit() else 0
            complaints.append("go: mate is not supported; searching without it")
        else:
            complaints.append(f"go: unknown argument {words[i - 1]!r}; ignored")
    return limits, complaints


# ----------------------------------------------------------------------------- position


_FATAL_STATUS = (chess.STATUS_NO_WHITE_KING | chess.STATUS_NO_BLACK_KING
                 | chess.STATUS_TOO_MANY_KINGS | chess.STATUS_PAWNS_ON_BACKRANK
                 | chess.STATUS_OPPOSITE_CHECK | chess.STATUS_EMPTY)


def parse_position(words: list[str]) -> chess.Board:
    """The board of ``position startpos|fen FEN [moves ...]`` with its moves on the stack;
    a ValueError that quotes the bad part otherwise."""
    if "moves" in words:
        at = words.index("moves")
        words, moves = words[:at], words[at + 1:]
    else:
        moves = []
    if words[:1] == ["startpos"] and len(words) == 1:
        board = chess.Board()
    elif words[:1] == ["fen"]:
        fen = " ".join(words[1:])
        try:
            board = chess.Board(fen)
        except ValueError as e:
            raise ValueError(f"invalid fen {fen!r}: {e}") from None
        status = board.status()
        if status & _FATAL_STATUS:
            flags = [f.name.lower() for f in chess.Status if f & status & _FATAL_STATUS]
            raise ValueError(f"impossible fen {fen!r}: {', '.join(flags)}")
    else:
        raise ValueError(f"position takes startpos or fen FEN, then moves; got "
                         f"{' '.join(words)!r}")
    for ply, uci in enumerate(moves):
        try:
            move = chess.Move.from_uci(uci)
        except ValueError:
            raise ValueError(f"invalid move {uci!r} (move {ply + 1} of the list)") from None
        if not move or not board.is_legal(move):
            raise ValueError(f"illegal move {uci!r} (move {ply + 1} of the list) in "
                             f"{board.fen()}")
        board.push(move)
    return board


# ----------------------------------------------------------------------------- output


class Writer:
    """One line at a time to the GUI, from any thread, flushed at once."""

    def __init__(self, stream) -> None:
        self.stream, self.lock, self.closed = stream, threading.Lock(), False

    def __call__(self, line: str) -> None:
        with self.lock:
            if self.closed:
                return
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                self.closed = True  # the GUI has gone: the loop ends at stdin's EOF


def info_lines(info, multipv: int, show_wdl: bool) -> list[str]:
    """The ``info`` lines of a :class:`~train.engine.search.SearchInfo` (one per PV)."""
    head = (f"info depth {max(1, info.depth)} seldepth {max(1, info.seldepth)} "
            f"time {int(info.elapsed * 1000)} nodes {info.nodes} nps {info.nps}")
    wdl = f" wdl {' '.join(map(str, info.wdl))}" if show_wdl and info.wdl else ""
    pv = " ".join(m.uci() for m in info.pv)
    if multipv <= 1 or not info.multipv:
        return [f"{head} score cp {info.cp}{wdl}" + (f" pv {pv}" if pv else "")]
    from train.engine.search import value_to_cp

    lines = []
    for rank, (move, visits, value) in enumerate(info.multipv[:multipv], start=1):
        if rank > 1 and visits == 0:
            break
        if rank == 1 and info.pv and info.pv[0] == move:
            lines.append(f"{head} multipv 1 score cp {info.cp}{wdl} pv {pv}")
        else:
            lines.append(f"{head} multipv {rank} score cp {value_to_cp(value)} pv {move.uci()}")
    return lines


# ----------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class Timing:
    """When a running search stops, as its callback checks it."""

    origin: float
    """``time.monotonic()`` when the clock started: `go` received, or `ponderhit`."""
    allotment: Allotment | None
    flexible: bool
    """Stop at the soft target, or before it when the best move is settled (a clock); else
    at the hard deadline only (a movetime, or a clock capping a node budget or a depth)."""
    nodes: int | None

    @property
    def deadline(self) -> float | None:
        return self.origin + self.allotment.hard if self.allotment else None

    def should_stop(self, now: float, info) -> bool:
        if self.nodes is not None and info.nodes >= self.nodes:
            return True
        if self.allotment is None:
            return False
        elapsed = now - self.origin
        if elapsed >= self.allotment.hard:
            return True
        return self.flexible and stop_early(
            elapsed=elapsed, allotment=self.allotment, nodes=info.nodes,
            root=[(visits, value) for _, visits, value in info.multipv])


@dataclass
class _Loaded:
    key: tuple
    evaluator: object
    search: object


class Engine:
    """The UCI state machine: :meth:`handle` takes one line from the GUI and returns
    False on ``quit``."""

    def __init__(self, checkpoint: str, write: Callable[[str], None], *, weights: str = "ema",
                 device: str = "cpu", threads: int = 0, nodes: int = 0) -> None:
        self.checkpoint, self.write = checkpoint, write
        defaults = {"weights": weights, "device": device, "threads": threads, "nodes": nodes}
        self.options = {o.name.lower(): replace(o, default=defaults.get(o.name.lower(), o.default))
                        for o in OPTIONS}
        self.values = {name: o.default for name, o in self.options.items()}
        self.board: chess.Board | None = None
        self.position_error: str | None = None
        self.debug = False
        self.loaded: _Loaded | None = None
        self.load_error: str | None = None
        # one long-lived thread does all the network's work (load, warm-up, searches): with
        # a loader thread and a thread per search, the first search after the warm-up took
        # ~2 s on 2 busy cores (0.05 s later on); torch keeps some state per thread
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uci-search")
        self.loading: Future | None = None
        self.worker: Future | None = None
        self.stop_event = threading.Event()
        self.release = threading.Event()  # `stop` or `ponderhit` after an unlimited go
        self.ponderhit_clock: tuple[GoLimits, chess.Color] | None = None  # `go ponder`'s
        self.timing: Timing | None = None  # of the running search, None: until `stop`
        self.search_config = None
        self.handlers: dict[str, Callable[[list[str]], bool | None]] = {
            "uci": self.uci, "isready": self.isready, "ucinewgame": self.ucinewgame,
            "position": self.position, "go": self.go, "stop": self.stop,
            "ponderhit": self.ponderhit, "setoption": self.setoption, "debug": self.set_debug,
            "register": lambda words: None, "quit": lambda words: False,
        }

    # --- the dispatcher

    def handle(self, line: str) -> bool:
        words = line.split()
        # UCI: an unknown token is skipped, and the rest of the line read ("joho debug on")
        skipped = []
        while words and words[0] not in self.handlers:
            skipped.append(words.pop(0))
        if skipped:
            what = " ".join(skipped)
            self.say(f"unknown command {what!r}" + (f"; ignored before {words[0]!r}" if words else
                                                    f" (commands: {', '.join(self.handlers)})"))
        if not words:
            return True
        try:
            return self.handlers[words[0]](words[1:]) is not False
        except Exception as e:  # a bug of ours: say it, keep answering
            traceback.print_exc(file=sys.stderr)
            self.say(f"error: {words[0]} failed: {type(e).__name__}: {e}")
            return True

    def say(self, text: str) -> None:
        self.write("info string " + " ".join(text.split()))

    # --- commands

    def uci(self, words: list[str]) -> None:
        self.write(f"id name {NAME}")
        self.write(f"id author {AUTHOR}")
        for option in self.options.values():
            self.write(option.declaration())
        self.write("uciok")

    def isready(self, words: list[str]) -> None:
        if not self.searching():
            self.ensure_loaded()
        self.write("readyok")

    def ucinewgame(self, words: list[str]) -> None:
        self.finish_search("ucinewgame")
        self.board, self.position_error = None, None
        if self.loaded:
            self.loaded.search.new_game()

    def position(self, words: list[str]) -> None:
        self.finish_search("position")
        try:
            self.board, self.position_error = parse_position(words), None
        except ValueError as e:
            self.board, self.position_error = None, str(e)
            self.say(f"error: {e}; `go` answers bestmove 0000 until a valid position")

    def setoption(self, words: list[str]) -> None:
        text = " ".join(words)
        lowered = text.lower()
        if not lowered.startswith("name "):
            self.say(f"error: setoption takes name NAME [value VALUE], got {text!r}")
            return
        name, _, value = text[5:].partition(" value ")
        if lowered.endswith(" value") and not value:
            name = name[:-len(" value")]
        option = self.options.get(" ".join(name.split()).lower())
        if option is None:
            self.say(f"error: no option {name.strip()!r} (options: "
                     f"{', '.join(o.name for o in self.options.values())})")
            return
        try:
            parsed = option.parse(value.strip())
        except ValueError as e:
            self.say(f"error: {e}; {option.name} stays {self.values[option.name.lower()]}")
            return
        self.finish_search("setoption")
        self.values[option.name.lower()] = parsed
        if self.debug:
            self.say(f"{option.name} = {parsed}")

    def set_debug(self, words: list[str]) -> None:
        if words[:1] not in (["on"], ["off"]):
            self.say(f"error: debug takes on or off, got {' '.join(words)!r}")
            return
        self.debug = words[0] == "on"

    def stop(self, words: list[str]) -> None:
        self.finish_search(None)

    def ponderhit(self, words: list[str]) -> None:
        clock = self.ponderhit_clock
        if clock is None or not self.searching():
            return
        self.ponderhit_clock = None
        limits, turn = clock
        _, timing, _ = self.plan(limits, turn, time.monotonic())
        if timing is not None:  # else `go ponder infinite`: on until `stop`
            self.timing = timing
            self.release.set()

    def go(self, words: list[str]) -> None:
        received = time.monotonic()  # the GUI's clock runs from here, loading included
        self.finish_search("go")
        limits, complaints = parse_go(words)
        for complaint in complaints:
            self.say(complaint)
        if self.board is None and self.position_error is not None:
            self.say(f"error: no valid position ({self.position_error}); bestmove 0000")
            self.write("bestmove 0000")
            return
        if self.board is None:
            self.say("go before position: searching the start position")
            self.board = chess.Board()
        board = self.board.copy()
        if not any(board.generate_legal_moves()):
            ending = "checkmate" if board.is_check() else "stalemate"
            self.say(f"no legal move: {ending}; bestmove 0000")
            self.write("bestmove 0000")
            return
        if not self.ensure_loaded():
            self.write("bestmove 0000")
            return
        self.configure_search()
        self.start_search(board, limits, received)

    # --- the network

    def load_key(self) -> tuple:
        return (self.checkpoint, self.values["weights"], self.values["device"],
                self.values["threads"])

    def start_loading(self) -> None:
        """Load the network in the background (the GUI's handshake goes on meanwhile)."""
        key = self.load_key()
        self.loading = self.pool.submit(self._load_into, key)

    def _load_into(self, key: tuple) -> None:
        try:
            self.loaded, self.load_error = self._load(key), None
        except Exception as e:  # a bad file (EvalError), a device torch lacks (AssertionError
            # "Torch not compiled with CUDA enabled"), ...: a reason, and the engine goes on
            if self.debug:
                traceback.print_exc(file=sys.stderr)
            self.load_error = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)

    def _load(self, key: tuple) -> _Loaded:
        from train.engine.net import Evaluator
        from train.engine.search import Search

        checkpoint, weights, device, threads = key
        evaluator = Evaluator.from_checkpoint(checkpoint, device=device, weights=weights,
                                              threads=threads or None)
        search = Search(evaluator, self.make_search_config())
        # warm up now, not on the clock: numba's kernels load (or compile, after an edit),
        # and TorchScript optimises the network only after a few calls of each batch shape
        # (the first 200-node search after a 2-node one took 1.6 s, the next ones 0.02 s);
        # a game's history and the tree's reuse take paths of their own
        board = chess.Board()
        for _ in range(2):
            board.push(next(iter(board.legal_moves)))
            search.set_position(board)
            result = search.run(nodes=2 * search.config.batch_size)
            board.push(result.move)
        search.new_game()
        return _Loaded(key, evaluator, search)

    def ensure_loaded(self) -> bool:
        """Wait for the background load; reload if an option changed since. False (after
        an info string) when no network can search."""
        if self.loading is not None:
            self.loading.result()
            self.loading = None
            if self.load_error is not None:  # the command line's own checkpoint
                self.say(f"error: cannot load the network: {self.load_error}")
                print(f"train.uci: {self.load_error}", file=sys.stderr)
                sys.stderr.flush()
                os._exit(2)
        key = self.load_key()
        if self.loaded is not None and self.loaded.key == key:
            return True
        started = time.monotonic()
        self.pool.submit(self._load_into, key).result()
        if self.load_error is not None:
            self.say(f"error: cannot load the network with Weights {key[1]}, Device {key[2]}, "
                     f"Threads {key[3]}: {self.load_error}")
            if self.loaded is None:
                return False
            _, self.values["weights"], self.values["device"], self.values["threads"] = \
                self.loaded.key
            self.say("keeping the network loaded before")
            return True
        self.search_config = None
        if self.debug:
            self.say(f"loaded {self.loaded.evaluator.description} in "
                     f"{time.monotonic() - started:.1f} s")
        return True

    def make_search_config(self):
        from train.engine.search import SearchConfig

        return SearchConfig(**{field_name: self.values[option]
                               for option, field_name in _SEARCH.items()})

    def configure_search(self) -> None:
        try:
            config = self.make_search_config()
        except ValueError as e:
            self.say(f"error: {e}; the search keeps its settings")
            return
        if config != self.search_config:
            self.loaded.search.configure(config)
            self.search_config = config

    # --- the search

    def searching(self) -> bool:
        return self.worker is not None and not self.worker.done()

    def finish_search(self, reason: str | None) -> None:
        """Stop a running search and wait for its bestmove (``reason``: the command that
        came during it, said in an info string; None for ``stop``)."""
        if self.worker is None:
            return
        if not self.worker.done() and reason is not None:
            self.say(f"{reason} during a search: the search stops first")
        self.stop_event.set()
        self.release.set()
        self.worker.result()
        self.worker = None

    def plan(self, limits: GoLimits, turn: chess.Color,
             origin: float) -> tuple[int | None, Timing | None, bool]:
        """The node budget, the timing and whether the search waits for `stop` (nothing
        but `stop` ends it) of a `go` received at ``origin``."""
        nodes = limits.nodes
        if nodes is None and limits.depth is None and not limits.infinite:
            nodes = self.values["nodes"] or None
        allotment = None if limits.infinite else limits.allotment(
            turn, self.values["move overhead"] / 1000)
        # only a clock's budget is a target to stop at, or before when the best move is
        # settled; a movetime or a depth is searched to its end, a node budget exactly,
        # and a clock given with them only caps them
        flexible = nodes is None and limits.movetime is None and limits.depth is None
        timing = Timing(origin, allotment, flexible, nodes) if allotment or nodes else None
        unlimited = limits.infinite or (allotment is None and nodes is None
                                        and limits.depth is None)
        return nodes, timing, unlimited

    def start_search(self, board: chess.Board, limits: GoLimits, received: float) -> None:
        nodes, timing, unlimited = self.plan(limits, board.turn, received)
        self.stop_event.clear()
        self.release.clear()
        if limits.ponder:  # no limit until `ponderhit` (then the clock's, from then on)
            self.ponderhit_clock, self.timing = (limits, board.turn), None
            run_args, unlimited = {}, True
        else:
            self.ponderhit_clock, self.timing = None, timing
            run_args = {"nodes": nodes, "depth": limits.depth,
                        "deadline": timing.deadline if timing else None}
        if self.debug:
            self.say(f"search: nodes {nodes}, depth {limits.depth}, {timing}, "
                     f"{'ponder' if limits.ponder else 'until stop' if unlimited else ''}")
        self.worker = self.pool.submit(self._search, board, run_args, unlimited)

    def _search(self, board: chess.Board, run_args: dict, unlimited: bool) -> None:
        search = self.loaded.search
        multipv, show_wdl = self.values["multipv"], self.values["uci_showwdl"]
        last_info = [time.monotonic()]

        def on_info(info) -> None:
            now = time.monotonic()
            if now - last_info[0] >= INFO_PERIOD:
                last_info[0] = now
                for line in info_lines(info, multipv, show_wdl):
                    self.write(line)
            timing = self.timing
            if timing is not None and timing.should_stop(now, info):
                self.stop_event.set()

        result = None
        try:
            search.set_position(board)
            timed = self.timing is not None or unlimited
            result = search.run(stop=self.stop_event, on_info=on_info,
                                info_every=CHECK_PERIOD if timed else INFO_PERIOD, **run_args)
        except Exception as e:  # a bug of ours: a legal move all the same, never a hang
            traceback.print_exc(file=sys.stderr)
            self.say(f"error: the search failed: {type(e).__name__}: {e}")
        if unlimited:  # UCI: no bestmove before `stop` (or `ponderhit`)
            self.release.wait()
        if result is not None:
            for line in info_lines(result, multipv, show_wdl):
                self.write(line)
        move = result.move if result is not None else None
        if move is None:
            move = next(iter(board.legal_moves), None)
            self.say("no search result: playing the first legal move")
        if move is None:
            self.write("bestmove 0000")
            return
        ponder = result.ponder if result is not None else None
        after = board.copy(stack=False)
        after.push(move)
        suffix = f" ponder {ponder.uci()}" if ponder and after.is_legal(ponder) else ""
        self.write(f"bestmove {move.uci()}{suffix}")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """The engine on stdin/stdout until `quit` or EOF; the process then ends at once
    (os._exit). Returns 2 only when the checkpoint file does not exist."""
    parser = argparse.ArgumentParser(prog="python -m train.uci", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a trainer checkpoint (.pt)")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema",
                        help="the EMA weights (default) or the raw ones; UCI option Weights")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), default="cpu",
                        help="UCI option Device (default cpu)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads, 0: torch's default; UCI option Threads")
    parser.add_argument("--nodes", type=int, default=0,
                        help="visits per move when go names no limit but the clock; "
                             "UCI option Nodes (default 0: by the clock)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        print(f"train.uci: checkpoint not found: {args.checkpoint!r}", file=sys.stderr)
        return 2
    # the UCI stream is ours alone: whatever else prints (a library, a stray print)
    # goes to stderr, where GUIs log it, instead of corrupting the protocol
    write = Writer(sys.stdout)
    sys.stdout = sys.stderr
    engine = Engine(args.checkpoint, write, weights=args.weights, device=args.device,
                    threads=max(0, args.threads), nodes=max(0, args.nodes))
    engine.start_loading()
    for line in iter(sys.stdin.readline, ""):
        if not engine.handle(line):
            break
    engine.finish_search(None)
    # at once, without the interpreter's shutdown: it would wait for a network still
    # loading (or fail its imports) and for torch's threads, seconds after `quit`
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
