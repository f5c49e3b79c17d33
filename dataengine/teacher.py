"""Stockfish as teacher: annotate built shards with the engine's eval and best move.

    python -m dataengine.teacher SHARDS_DIR [--nodes 4000] [--fraction 1.0] [--workers K]
        [--cache PATH] [--overwrite] [--engine PATH]

Stages:

1. **select**: a deterministic share (``--fraction``) of the records, chosen by a hash
   of the position, so that every run picks the same records (and a smaller fraction
   picks a subset of a larger one).
2. **analyse**: every selected position that the cache does not hold yet goes to one
   Stockfish per worker process (Threads=1, small hash, ``ucinewgame`` before every
   position, so that an answer depends on the position alone and not on what the engine
   searched before: with 1 thread and a node limit Stockfish is then deterministic).
   Answers go into an sqlite cache keyed by (engine, nodes, position), committed per
   chunk of a few positions: a killed run loses only the chunks in flight, and a second
   run does no engine work. An engine that crashes or hangs is restarted and the
   position tried once more, then skipped and counted.
3. **rewrite**: each shard's blocks are decoded, the teacher columns filled, re-encoded
   at the build's zstd level and the tar replaced atomically. The manifest is written
   *before* the tar, with the new sha256/bytes and the shard marked done: after a crash
   the manifest either describes the new tar or names a sha256 that the old tar does not
   have, and then that shard is simply done again. ``val.zarr`` is rewritten from the
   validation shards at the end, so that it keeps matching them.

Conventions (schema.py): evals are from the side to move's view (= canonical view):
centipawns in ``teacher_cp``, or a signed mate distance in moves in ``teacher_mate``
(cp 0). The best move is stored as the policy index of the engine's move on the real
board. A record that already has an eval (a PGN ``[%eval]``, an EPD ``ce``/``dm``)
keeps it unless ``--overwrite``, and gets the teacher move all the same. Positions
without a legal move are not searched: a stalemate gets eval 0 and no move; a
checkmated side to move gets nothing (mate 0 has no encoding).

The cache key is the EPD plus the halfmove clock: Stockfish damps its eval as the
fifty-move counter grows (at 4,000 nodes 48 of 50 sample positions changed eval when
the clock went 0 -> 60 -> 95), so the clock is part of the question. The fullmove
number changes nothing in a node-limited search and is left out.

Shards that a teacher pass with other settings (engine, nodes, fraction, overwrite)
already annotated are refused: which evals came from the PGN would no longer be known.
Rebuild them (``python -m dataengine.build ... --force``) and annotate again; the cache
keeps what was already analysed. Positions skipped after a failed retry stay without
annotation in a finished shard; they are searched again after such a rebuild.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing.util
import os
import re
import shutil
import signal
import sqlite3
import sys
import tarfile
import threading
import time
import typing
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import chess
import chess.engine
import numpy as np

from dataengine import schema
from dataengine.fileio import atomic_write, sha256_file, tar_bytes
from dataengine.progress import progress, tqdm
from dataengine.shm import remove_stale_semaphores

ENGINE_OPTIONS = {"Threads": 1, "Hash": 4}
"""One thread makes a node-limited search deterministic. A 4 MB hash because `ucinewgame`
clears it (and the history tables) before every position: the bare command then costs
0.8 ms against 3.0 ms at 16 MB; through python-chess, with the cold tables after it, a
4,000-node position costs ~12.9 ms of CPU with it and ~10.7 ms without (Stockfish 15.1)."""
DEFAULT_NODES = 4000
"""The budget of the sample self-play games' evals, so that kept PGN evals and teacher
evals are alike."""
DEFAULT_CACHE = "teacher.sqlite"
"""The cache's file name inside SHARDS_DIR when --cache is not given."""
ENGINE_CANDIDATES = ("stockfish", "/usr/games/stockfish")
"""Where to look when no path is given: PATH, then Debian's location (not on PATH for
non-root users)."""
CHUNK = 16
"""Positions per worker task: one cache transaction each (~0.2 s of work at 4,000 nodes)."""

Answer = typing.Union["Analysis", str]
"""An engine answer, or one of the markers below for a position without one."""

_STALEMATE = "stalemate"  # not searched: no legal move, not in check
_CHECKMATED = "checkmated"  # not searched: mate 0 has no encoding
_FAILED = "failed"  # the engine crashed or hung twice


class TeacherError(RuntimeError):
    """A problem with the shards, the settings or the engine, explained in the message."""


class EngineNotFound(TeacherError):
    """No Stockfish binary where we looked."""


# ----------------------------------------------------------------------------- the engine


def find_stockfish(path: str | None = None) -> str:
    """The Stockfish binary: `path` if given, else `stockfish` on PATH or /usr/games/stockfish.

    >>> find_stockfish("/nonexistent/sf")
    Traceback (most recent call last):
    ...
    dataengine.teacher.EngineNotFound: stockfish not found at '/nonexistent/sf' (apt-get install stockfish)
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


# ----------------------------------------------------------------------------- the cache


class Cache:
    """Engine answers in sqlite, keyed by (engine, nodes, position).

    WAL journal: a committed chunk survives a killed process, and another process may
    read the file while a run writes it.
    """

    def __init__(self, path: Path, engine: str, nodes: int) -> None:
        self.engine, self.nodes = engine, nodes
        try:
            self.db = sqlite3.connect(path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS evals (engine TEXT NOT NULL, nodes INTEGER NOT NULL,"
                " position TEXT NOT NULL, cp INTEGER NOT NULL, mate INTEGER NOT NULL,"
                " move TEXT NOT NULL, depth INTEGER NOT NULL,"
                " PRIMARY KEY (engine, nodes, position)) WITHOUT ROWID"
            )
            self.db.commit()
        except sqlite3.Error as exc:
            raise TeacherError(f"cannot use the cache {str(path)!r}: {exc}") from exc

    def get(self, keys: list[str]) -> dict[str, Analysis]:
        found = {}
        for i in range(0, len(keys), 500):
            batch = keys[i : i + 500]
            rows = self.db.execute(
                "SELECT position, cp, mate, move, depth FROM evals WHERE engine = ? AND nodes = ?"
                f" AND position IN ({','.join('?' * len(batch))})",
                [self.engine, self.nodes, *batch],
            )
            for position, cp, mate, move, depth in rows:
                found[position] = Analysis(cp, mate, move, depth)
        return found

    def put(self, answers: list[tuple[str, Analysis]]) -> None:
        """Store `answers` in one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO evals VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(self.engine, self.nodes, k, a.cp, a.mate, a.move, a.depth) for k, a in answers],
            )

    def close(self) -> None:
        self.db.close()


# ----------------------------------------------------------------------------- records


def position_key(board: chess.Board) -> str:
    """What the engine is asked: EPD (legal en passant only) and the halfmove clock.

    >>> position_key(chess.Board())
    'rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0'
    """
    return f"{board.epd()} {board.halfmove_clock}"


_SALT = np.uint64(0x5EED_7EAC_4E12_0001)


def select(block: schema.Block, fraction: float) -> np.ndarray:
    """Bool mask of the records to annotate: a hash of the position below `fraction`.

    All copies of a position are chosen together, and the records chosen at a fraction
    are a subset of those chosen at any larger one.
    """
    n = schema.block_len(block)
    if fraction >= 1.0:
        return np.ones(n, dtype=bool)
    from dataengine.records import position_keys

    h = position_keys(block) ^ _SALT
    with np.errstate(over="ignore"):  # murmur3's finaliser: every bit depends on every bit
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return (h >> np.uint64(11)).astype(np.float64) < fraction * 2.0**53


COUNT_KEYS = ("records", "selected", "annotated", "moves", "evals_written", "evals_kept",
              "no_legal_move", "failed", "wdl_permille_sum")
"""Per-shard counts kept in the manifest (all but `records` count selected records):
annotated = got a teacher move or an eval from this pass; moves = got a teacher move;
evals_written / evals_kept = eval written / existing eval kept (no --overwrite);
no_legal_move = checkmate or stalemate (not searched); failed = the engine failed twice;
wdl_permille_sum = [W, D, L] of the engine's score, summed over `moves` records."""


def read_tar(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]


def read_blocks(path: Path) -> list[tuple[str, schema.Block]]:
    try:
        members = read_tar(path)
        return [(name, schema.decode_block(data, f"{path}:{name}")) for name, data in members]
    except (OSError, tarfile.TarError, schema.ShardFormatError) as exc:
        raise TeacherError(f"cannot read shard {str(path)!r}: {exc}") from exc


# ----------------------------------------------------------------------------- annotate


@dataclass
class _Run:
    """State shared by the shards of one run."""

    cache: Cache
    engines: Engines
    bar: tqdm
    overwrite: bool
    model: str
    stats: Counter
    t0: float


def _shard_work(blocks: list[schema.Block], fraction: float):
    """Selected records as (block, record, board, key), and the distinct keys' boards."""
    from dataengine import views

    picked, boards = [], {}
    for b, block in enumerate(blocks):
        for i in np.flatnonzero(select(block, fraction)):
            board = views.real_board(block, int(i))
            key = position_key(board)
            picked.append((b, int(i), board, key))
            boards.setdefault(key, board)
    return picked, boards


def _answers(boards: dict[str, chess.Board], records: Counter, run: _Run) -> dict[str, Answer]:
    """Answers for every key: terminal positions, the cache, then the engines."""
    answers: dict[str, Answer] = {}
    for key, board in boards.items():
        if not any(board.generate_legal_moves()):
            answers[key] = _CHECKMATED if board.is_check() else _STALEMATE
    cached = run.cache.get([k for k in boards if k not in answers])
    answers.update(cached)
    run.stats["cache_hits"] += len(cached)
    run.bar.update(sum(records[k] for k in answers))
    todo = [(k, b.fen()) for k, b in boards.items() if k not in answers]
    for done, failed, calls, restarts in run.engines.run(todo):
        run.cache.put(done)  # commit now: a kill loses only the chunks in flight
        answers.update(done)
        answers.update((key, _FAILED) for key, _ in failed)
        run.stats.update(analysed=len(done), failed=len(failed), engine_calls=calls,
                         restarts=restarts)
        for key, reason in failed:
            tqdm.write(f"skipped after a retry: {boards[key].fen()!r}: {reason}")
        run.bar.update(sum(records[k] for k, _ in done + failed))
        rate = run.stats["analysed"] / (time.perf_counter() - run.t0)
        run.bar.set_postfix(engine_pos_s=f"{rate:,.0f}")
    return answers


def teacher_buckets(blocks: list[schema.Block]) -> dict[str, int]:
    """Records with a teacher eval per bucket: the manifest's per-shard `teacher` counts,
    from which the loader plans its teacher streams."""
    counts = np.zeros(len(schema.BUCKETS), dtype=np.int64)
    for b in blocks:
        has = (b["flags"] & schema.HAS_TEACHER_EVAL) != 0
        counts += np.bincount(b["bucket"][has], minlength=len(schema.BUCKETS))
    return {name: int(c) for name, c in zip(schema.BUCKETS, counts, strict=True)}


def _annotate_shard(
    path: Path, fraction: float, level: int, run: _Run
) -> tuple[dict, bytes | None, dict[str, int]]:
    """Counts for one shard, its new tar bytes (None when nothing changed), and its
    teacher-annotated records per bucket."""
    from dataengine import policy

    named = read_blocks(path)
    blocks = [block for _, block in named]
    picked, boards = _shard_work(blocks, fraction)
    answers = _answers(boards, Counter(key for *_, key in picked), run)

    counts = dict.fromkeys(COUNT_KEYS, 0)
    counts["records"] = sum(schema.block_len(b) for b in blocks)
    counts["selected"] = len(picked)
    wdl = np.zeros(3, dtype=np.int64)
    before = [{c: b[c].copy() for c in ("teacher_cp", "teacher_mate", "teacher_move", "flags")}
              for b in blocks]
    for b, i, board, key in picked:
        block, answer = blocks[b], answers[key]
        flags = block["flags"]
        if answer is _FAILED:
            counts["failed"] += 1
            continue
        if answer is _CHECKMATED:
            counts["no_legal_move"] += 1
            continue
        if answer is _STALEMATE:
            counts["no_legal_move"] += 1
            cp, mate = 0, 0
        else:
            move = chess.Move.from_uci(answer.move)
            block["teacher_move"][i] = policy.move_to_index(move, board.turn)
            flags[i] |= schema.HAS_TEACHER_MOVE
            counts["moves"] += 1
            cp = int(np.clip(answer.cp, -schema.TEACHER_CP_LIMIT, schema.TEACHER_CP_LIMIT))
            mate = int(np.clip(answer.mate, -32767, 32767))
            w = answer.score().wdl(model=run.model, ply=board.ply())
            wdl += (w.wins, w.draws, w.losses)
        if run.overwrite or not flags[i] & schema.HAS_TEACHER_EVAL:
            block["teacher_cp"][i], block["teacher_mate"][i] = cp, mate
            flags[i] |= schema.HAS_TEACHER_EVAL
            counts["evals_written"] += 1
        else:
            counts["evals_kept"] += 1
        counts["annotated"] += 1
    counts["wdl_permille_sum"] = [int(x) for x in wdl]

    pairs = list(zip(before, blocks, strict=True))
    if all(np.array_equal(old[c], block[c]) for old, block in pairs for c in old):
        return counts, None, teacher_buckets(blocks)
    return counts, tar_bytes([(name, schema.encode_block(block, level)) for (name, _), block
                              in zip(named, blocks, strict=True)]), teacher_buckets(blocks)


def _split_totals(manifest: dict, shards: dict) -> dict:
    totals = {}
    for split, info in manifest["splits"].items():
        total = dict.fromkeys(COUNT_KEYS, 0)
        total["wdl_permille_sum"] = [0, 0, 0]
        for entry in info["shards"]:
            counts = shards.get(entry["path"])
            if counts is None:
                continue
            for k in COUNT_KEYS:
                if k == "wdl_permille_sum":
                    total[k] = [a + b for a, b in zip(total[k], counts[k], strict=True)]
                else:
                    total[k] += counts[k]
        wdl = total.pop("wdl_permille_sum")
        n = total["moves"]
        total["wdl_mean"] = [round(x / 1000 / n, 4) for x in wdl] if n else None
        totals[split] = total
    return totals


def _is_done(out: Path, previous: dict | None, entry: dict) -> bool:
    """Whether a previous run of the same settings finished this shard (and the file is
    the tar it wrote)."""
    if not previous or entry["path"] not in previous.get("shards", {}):
        return False
    path = out / entry["path"]
    return (path.is_file() and path.stat().st_size == entry["bytes"]
            and sha256_file(path) == entry["sha256"])


def _write_manifest(out: Path, manifest: dict) -> None:
    from dataengine.build import MANIFEST

    shards = [s for sp in manifest["splits"].values() for s in sp["shards"]]
    records = sum(s["records"] for s in shards)
    if records:
        manifest["bytes_per_record"] = round(sum(s["bytes"] for s in shards) / records, 2)
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def _rewrite_val_zarr(out: Path, manifest: dict) -> None:
    from dataengine.build import VAL_ZARR, write_val_zarr

    val = manifest["splits"].get("val", {})
    if not val.get("records") or not (out / VAL_ZARR).exists():
        return
    blocks = [b for s in val["shards"] for _, b in read_blocks(out / s["path"])]
    write_val_zarr(out / VAL_ZARR, schema.concat_blocks(blocks))


def annotate(
    out_dir: str | Path, *, nodes: int = DEFAULT_NODES, fraction: float = 1.0,
    workers: int | None = None, cache: str | Path | None = None, overwrite: bool = False,
    engine: str | None = None, timeout_s: float | None = None, quiet: bool = False,
) -> dict:
    """Annotate the shards in `out_dir` (a `make shards` output) in place; returns a summary.

    nodes: Stockfish's node budget per position. fraction: share of the positions to
    annotate (chosen by hash, see `select`). workers: engine processes (default: cores).
    cache: the sqlite cache (default OUT_DIR/teacher.sqlite). overwrite: replace evals the
    records already have. engine: the Stockfish binary (default: see `find_stockfish`).
    timeout_s: per position, after which the engine counts as hung (default 10 s + 1 s
    per 50,000 nodes).

    The summary has the settings, ``engine_calls`` (searches started this run, retries
    included), ``analysed``, ``cache_hits``, ``failed``, ``restarts``, ``shards_rewritten``,
    ``shards_already_done``, ``seconds`` and the manifest's per-split counts (``splits``).
    """
    from dataengine.build import MANIFEST

    t0 = time.perf_counter()
    out = Path(out_dir)
    path = find_stockfish(engine)
    if nodes < 1:
        raise TeacherError(f"nodes must be >= 1, got {nodes!r}")
    if not 0.0 <= fraction <= 1.0:
        raise TeacherError(f"fraction must be in [0, 1], got {fraction!r}")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise TeacherError(f"workers must be >= 1, got {workers!r}")
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except FileNotFoundError:
        raise TeacherError(
            f"no {MANIFEST} in {str(out)!r}: build the shards first (make shards)"
        ) from None
    except (OSError, ValueError) as exc:
        raise TeacherError(f"cannot read {str(out / MANIFEST)!r}: {exc}") from exc
    timeout_s = timeout_s or 10.0 + nodes / 50_000

    probe = open_engine(path)
    name = probe.id.get("name", Path(path).name)
    settings = {"engine": name, "engine_options": ENGINE_OPTIONS, "nodes": nodes,
                "fraction": fraction, "overwrite": overwrite}
    previous = manifest.get("teacher")
    if previous and {k: previous.get(k) for k in settings} != settings:
        probe.quit()
        changed = ", ".join(f"{k} {previous.get(k)!r} (now {v!r})" for k, v in settings.items()
                            if previous.get(k) != v)
        raise TeacherError(
            f"the shards in {str(out)!r} were annotated with other settings: {changed}; "
            "rebuild them (python -m dataengine.build ... --force) to annotate them again"
        )
    level = manifest.get("build_config", {}).get("zstd_level", schema.ZSTD_LEVEL)
    entries = [(split, e) for split, info in manifest["splits"].items() for e in info["shards"]]
    todo = [(split, e) for split, e in entries if not _is_done(out, previous, e)]
    teacher = {**settings, "complete": False,
               "shards": dict(previous["shards"]) if previous else {}}
    summary = {**settings, "shards_rewritten": 0, "shards_already_done": len(entries) - len(todo)}
    stats = Counter(engine_calls=0, analysed=0, cache_hits=0, failed=0, restarts=0)

    engines = Engines(path, nodes, timeout_s, workers, probe)
    db = None
    try:
        if todo:
            total = sum(e["records"] if fraction >= 1.0 else
                        sum(int(select(b, fraction).sum()) for _, b in read_blocks(out / e["path"]))
                        for _, e in todo)
            db = Cache(Path(cache) if cache else out / DEFAULT_CACHE, f"{name} {ENGINE_OPTIONS}",
                       nodes)
            with progress(total=total, unit="pos", desc="teacher", disable=quiet,
                      dynamic_ncols=True) as bar:
                run = _Run(db, engines, bar, overwrite, wdl_model(name), stats, time.perf_counter())
                for _, entry in todo:
                    counts, data, buckets = _annotate_shard(out / entry["path"], fraction,
                                                            level, run)
                    teacher["shards"][entry["path"]] = counts
                    entry["teacher"] = buckets
                    for sp in manifest["splits"].values():
                        sp["teacher"] = {b: sum(e.get("teacher", {}).get(b, 0)
                                                for e in sp["shards"]) for b in schema.BUCKETS}
                    if data is not None:
                        entry["sha256"] = hashlib.sha256(data).hexdigest()
                        entry["bytes"] = len(data)
                    teacher["splits"] = _split_totals(manifest, teacher["shards"])
                    manifest["teacher"] = teacher
                    _write_manifest(out, manifest)  # first: see the module docstring
                    if data is not None:
                        atomic_write(out / entry["path"], data)
                        summary["shards_rewritten"] += 1
        if not (previous or {}).get("complete") or todo:
            _rewrite_val_zarr(out, manifest)
            teacher["complete"] = True
            teacher["splits"] = _split_totals(manifest, teacher["shards"])
            manifest["teacher"] = teacher
            _write_manifest(out, manifest)
    finally:
        engines.close()
        if db is not None:
            db.close()
    summary.update(stats)
    summary["splits"] = manifest["teacher"]["splits"]
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


# ----------------------------------------------------------------------------- entry point


def format_summary(summary: dict, out: str) -> str:
    rows = [f"{'split':<6} {'records':>9} {'selected':>9} {'annotated':>9} {'moves':>9} "
            f"{'evals new':>9} {'kept':>9} {'no move':>8} {'failed':>7}  W/D/L (side to move)"]
    for split, t in summary["splits"].items():
        wdl = "/".join(f"{x:.2f}" for x in t["wdl_mean"]) if t["wdl_mean"] else "-"
        rows.append(f"{split:<6} {t['records']:>9,} {t['selected']:>9,} {t['annotated']:>9,} "
                    f"{t['moves']:>9,} {t['evals_written']:>9,} {t['evals_kept']:>9,} "
                    f"{t['no_legal_move']:>8,} {t['failed']:>7,}  {wdl}")
    s = summary
    rate = s["analysed"] / s["seconds"] if s["seconds"] else 0.0
    rows.append(
        f"{s['engine']} at {s['nodes']:,} nodes: {s['analysed']:,} positions analysed "
        f"({rate:,.1f}/s), {s['cache_hits']:,} from the cache, {s['engine_calls']:,} engine "
        f"calls, {s['restarts']} restarts, {s['failed']} failed; {s['shards_rewritten']} shards "
        f"rewritten, {s['shards_already_done']} already done; {s['seconds']:.1f} s "
        f"-> {out}/manifest.json"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dataengine.teacher",
        description="Annotate built shards with Stockfish's eval and best move (in place).",
    )
    ap.add_argument("shards", help="a `make shards` output directory (has manifest.json)")
    ap.add_argument("--nodes", type=int, default=DEFAULT_NODES,
                    help=f"node budget per position (default: {DEFAULT_NODES})")
    ap.add_argument("--fraction", type=float, default=1.0,
                    help="share of positions to annotate, chosen by hash (default: 1.0)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="engine processes (default: all cores)")
    ap.add_argument("--cache", default=None,
                    help=f"sqlite cache of engine answers (default: SHARDS/{DEFAULT_CACHE})")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace evals the records already have (from [%%eval] comments)")
    ap.add_argument("--engine", default=None,
                    help="Stockfish binary (default: stockfish on PATH or /usr/games/stockfish)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    args = ap.parse_args(argv)
    remove_stale_semaphores()  # left by killed runs (kill -9 takes the tracker too)
    try:
        summary = annotate(args.shards, nodes=args.nodes, fraction=args.fraction,
                           workers=args.workers, cache=args.cache, overwrite=args.overwrite,
                           engine=args.engine, quiet=args.quiet)
    except TeacherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the cache keeps what was analysed; run again to continue",
              file=sys.stderr)
        return 130
    if not args.quiet:
        print(format_summary(summary, args.shards))
    return 0


if __name__ == "__main__":
    sys.exit(main())
