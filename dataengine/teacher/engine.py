"""The engine client: Stockfish found, started and configured, one search per position,
and a pool of worker processes with one engine each.

Every position goes to one Stockfish per worker process (Threads=1, small hash,
``ucinewgame`` before every position), so that an answer depends on the position alone
and not on what the engine searched before: with 1 thread and a node limit Stockfish is
then deterministic. An engine that crashes or hangs is restarted and the position tried
once more, then skipped and counted (`Analyst`). Positions travel in chunks of a few
(`CHUNK`), one cache transaction each (see :mod:`dataengine.teacher.cache`).

`find_stockfish`, `open_engine` and `worker_lifetime` serve the self-play games too
(:mod:`dataengine.selfplay`).
"""

from __future__ import annotations

import multiprocessing.util
import os
import re
import shutil
import signal
import threading
import time
import typing
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context

import chess
import chess.engine

from dataengine.progress import progress

ENGINE_OPTIONS = {"Threads": 1, "Hash": 4}
"""One thread makes a node-limited search deterministic. A 4 MB hash because `ucinewgame`
clears it (and the history tables) before every position: the bare command then costs
0.8 ms against 3.0 ms at 16 MB; through python-chess, with the cold tables after it, a
4,000-node position costs ~12.9 ms of CPU with it and ~10.7 ms without (Stockfish 15.1)."""
ENGINE_CANDIDATES = ("stockfish", "/usr/games/stockfish")
"""Where to look when no path is given: PATH, then Debian's location (not on PATH for
non-root users)."""
CHUNK = 16
"""Positions per worker task: one cache transaction each (~0.2 s of work at 4,000 nodes)."""


class TeacherError(RuntimeError):
    """A problem with the shards, the settings or the engine, explained in the message."""


class EngineNotFound(TeacherError):
    """No Stockfish binary where we looked."""


def find_stockfish(path: str | None = None) -> str:
    """The Stockfish binary: `path` if given, else `stockfish` on PATH or /usr/games/stockfish.

    >>> find_stockfish("/nonexistent/sf")
    Traceback (most recent call last):
    ...
    dataengine.teacher.engine.EngineNotFound: stockfish not found at '/nonexistent/sf' (apt-get install stockfish)
    """
    for candidate in [path] if path else ENGINE_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    where = f" at {path!r}" if path else ""
    raise EngineNotFound(f"stockfish not found{where} (apt-get install stockfish)")


def open_engine(path: str, options: dict | None = None) -> chess.engine.SimpleEngine:
    """Start a UCI engine with `options` (default ENGINE_OPTIONS); TeacherError if it won't."""
    try:
        engine = chess.engine.SimpleEngine.popen_uci(path)
    except (OSError, chess.engine.EngineError, TimeoutError) as exc:
        raise TeacherError(f"cannot start the engine {path!r}: {exc!r}") from exc
    try:
        engine.configure(ENGINE_OPTIONS if options is None else options)
    except (chess.engine.EngineError, TimeoutError) as exc:
        engine.close()
        raise TeacherError(f"cannot configure the engine {path!r}: {exc}") from exc
    return engine


def worker_lifetime(close_engine: Callable[[], None]) -> None:
    """Call in a worker process's initializer, with what closes its engine.

    - The worker exits as soon as its parent is gone, so that a SIGKILLed run leaves no
      engines searching for nobody (Stockfish itself exits on stdin EOF).
    - The engine is closed when the worker exits normally: python-chess's event-loop
      thread is not a daemon, and a process waits for it forever. multiprocessing runs
      its finalisers before it joins the process's threads; atexit would be too late.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
    multiprocessing.util.Finalize(None, close_engine, exitpriority=10)


def wdl_model(engine_name: str) -> str:
    """python-chess's WDL model for an engine name ("Stockfish 15.1" -> "sf15.1")."""
    match = re.search(r"Stockfish (\d+(?:\.\d+)?)", engine_name)
    model = f"sf{match.group(1)}" if match else "sf"
    return model if model in typing.get_args(chess.engine.WdlModel) else "sf"


@dataclass(frozen=True, slots=True)
class Analysis:
    """The engine's answer for one position, from the side to move's view."""

    cp: int
    """Centipawns; 0 when the score is a mate."""
    mate: int
    """Signed mate distance in moves (positive: the side to move mates); 0 when none."""
    move: str
    """Best move (first move of the principal variation), UCI."""
    depth: int

    def score(self) -> chess.engine.Score:
        return chess.engine.Mate(self.mate) if self.mate else chess.engine.Cp(self.cp)


class Analyst:
    """One engine at a fixed node budget, restarted when it crashes or hangs."""

    def __init__(self, path: str, nodes: int, timeout_s: float,
                 engine: chess.engine.SimpleEngine | None = None) -> None:
        self.path, self.timeout_s = path, timeout_s
        self.limit = chess.engine.Limit(nodes=nodes)
        self.engine = engine or open_engine(path)
        self.calls = 0
        self.restarts = 0

    def analyse(self, fen: str) -> Analysis | str:
        """The engine's answer for `fen`, or why there is none after a retry."""
        board = chess.Board(fen)
        reason = ""
        for _ in range(2):
            self.calls += 1
            try:
                return self._search(board)
            except (chess.engine.EngineError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self.restart()
        return reason

    def _search(self, board: chess.Board) -> Analysis:
        # SimpleEngine.analyse applies no timeout to a node limit, and cancelling
        # python-chess's coroutine leaves an engine that never shuts down (python-chess
        # 1.11): a hung engine is killed instead, which ends the search with
        # EngineTerminatedError. game=object(): python-chess sends `ucinewgame` first.
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            try:
                os.kill(self.engine.transport.get_pid(), signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                pass

        timer = threading.Timer(self.timeout_s, kill)
        timer.daemon = True
        timer.start()
        try:
            info = self.engine.analyse(board, self.limit, game=object())
        except chess.engine.EngineTerminatedError:
            if fired.is_set():
                raise TimeoutError(f"no answer within {self.timeout_s:g} s") from None
            raise
        finally:
            timer.cancel()
            timer.join()
        if fired.is_set():  # answered just as the timer fired: the process is gone
            self.restart()
        score, pv = info.get("score"), info.get("pv")
        if score is None or not pv:
            raise chess.engine.EngineError(f"no score or pv for {board.fen()!r}: {info!r}")
        relative = score.relative
        mate = relative.mate()
        if mate == 0:
            raise chess.engine.EngineError(f"mate 0 with legal moves: {board.fen()!r}")
        cp = 0 if mate is not None else relative.score()
        return Analysis(cp, mate or 0, pv[0].uci(), int(info.get("depth", 0)))

    def restart(self) -> None:
        self.restarts += 1
        self.engine.close()  # kills the process if it still runs
        self.engine = open_engine(self.path)

    def close(self) -> None:
        try:
            self.engine.quit()
        except (chess.engine.EngineError, TimeoutError, RuntimeError):
            self.engine.close()


ChunkResult = tuple[list[tuple[str, Analysis]], list[tuple[str, str]], int, int]
"""(answers, failures (key, reason), engine calls, restarts) for one chunk."""


def analyse_chunk(analyst: Analyst, items: list[tuple[str, str]]) -> ChunkResult:
    """Analyse (key, fen) pairs in order."""
    calls, restarts = analyst.calls, analyst.restarts
    done, failed = [], []
    for key, fen in items:
        result = analyst.analyse(fen)
        if isinstance(result, Analysis):
            done.append((key, result))
        else:
            failed.append((key, result))
    return done, failed, analyst.calls - calls, analyst.restarts - restarts


_WORKER: Analyst | None = None


def _worker_init(path: str, nodes: int, timeout_s: float) -> None:
    global _WORKER
    _WORKER = Analyst(path, nodes, timeout_s)
    worker_lifetime(lambda: _WORKER.engine.close())


def _worker_chunk(items: list[tuple[str, str]]) -> ChunkResult:
    return analyse_chunk(_WORKER, items)


class Engines:
    """Runs chunks of positions: in this process with one worker, else on a process pool
    (started on first use, one engine per process)."""

    def __init__(self, path: str, nodes: int, timeout_s: float, workers: int,
                 probe: chess.engine.SimpleEngine) -> None:
        self.path, self.nodes, self.timeout_s, self.workers = path, nodes, timeout_s, workers
        self.local = Analyst(path, nodes, timeout_s, engine=probe) if workers == 1 else None
        if self.local is None:
            probe.quit()
        self.pool: ProcessPoolExecutor | None = None

    def run(self, items: list[tuple[str, str]]) -> Iterator[ChunkResult]:
        size = max(1, min(CHUNK, -(-len(items) // self.workers)))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        if self.local is not None:
            for chunk in chunks:
                yield analyse_chunk(self.local, chunk)
            return
        if self.pool is None:
            self.pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=get_context("spawn"),
                initializer=_worker_init, initargs=(self.path, self.nodes, self.timeout_s),
            )
        futures: list[Future] = [self.pool.submit(_worker_chunk, c) for c in chunks]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def analyse_all(items: list[tuple[str, str]], path: str, nodes: int, workers: int, *,
                timeout_s: float = 60.0, quiet: bool = False
                ) -> tuple[dict[str, Analysis], dict[str, str]]:
    """Stockfish's answer to every (key, FEN) of `items` on `workers` engines, with a
    progress bar: the answers by key, and the reasons of the keys without one."""
    engines = Engines(path, nodes, timeout_s, workers, probe=open_engine(path))
    answers: dict[str, Analysis] = {}
    failed: dict[str, str] = {}
    try:
        with progress(total=len(items), desc="stockfish", unit="pos", disable=quiet,
                      dynamic_ncols=True) as bar:
            for done, bad, _, _ in engines.run(items):
                answers.update(done)
                failed.update(bad)
                bar.update(len(done) + len(bad))
    finally:
        engines.close()
    return answers, failed


def answer_epd(board: chess.Board, answer: Analysis, id_: str) -> str:
    """`board` as an EPD line with Stockfish's answer: ``bm``, ``dm`` (a mate) or ``ce``,
    the board's ``hmvc``/``fmvn`` and ``id``."""
    value = {"dm": answer.mate} if answer.mate else {"ce": answer.cp}
    return board.epd(bm=chess.Move.from_uci(answer.move), **value, hmvc=board.halfmove_clock,
                     fmvn=board.fullmove_number, id=id_)
