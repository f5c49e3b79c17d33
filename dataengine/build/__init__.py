"""`make shards`: games, puzzles, opening lines and FEN/EPD files -> labelled,
compressed WebDataset shards, a zarr validation store and a manifest.

    python -m dataengine.build INPUT [INPUT ...] --out shards [--workers N] [--config config.yaml]

Stages:

1. **plan**: list the input files (directories are searched for known
   extensions), hash them, cut plain files into byte ranges at game/row
   boundaries: one task per range.
2. **parse + label** (parallel over processes): each task reads its range,
   turns units into record columns and writes one *part* under ``OUT/.work``:
   its records in pieces of about ``PIECE_RECORDS`` (so that no range, not even a
   whole compressed file, is held in memory at once), their position keys and game
   ids, the skips (counted, the first ``skip_log_limit`` in full), and last the
   part's marker (atomically; a finished part is never redone, which is what
   makes an interrupted build resumable). Inputs that gave no position at all stop
   the build here, with the reasons (`empty_inputs`), before anything is written.
3. **merge** (deterministic): cap repeats of a position (keys spilled to disk:
   ``dataengine.spill``; with a pool, counted in memory while the parse runs:
   `EarlyCap`), choose the validation games, and count each part's kept
   train records; then each part, on the same processes (``merge_task``), a piece
   at a time: its repeats dropped, buckets assigned, train/val split by game id,
   its train records cut into blocks at the build's block boundaries and compressed;
   this process joins the records at the parts' edges, writes the shards in order
   and the zarr validation store (as it comes), and the manifest last.

The result depends only on the inputs and the config, never on the number of
workers or on interruptions.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import (
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path

import numpy as np

from dataengine import manifest as manifests
from dataengine import readers, schema, spill
from dataengine.buckets import assign_buckets
from dataengine.config import BuildConfig, ConfigError, PgnFilters, load_build_config, to_dict
from dataengine.fileio import atomic_write, sha256_file, tar_bytes
from dataengine.progress import progress, tqdm
from dataengine.records import RepeatCounter
from dataengine.shm import remove_stale_semaphores

MANIFEST = manifests.MANIFEST_NAME
SKIP_LOG = "skipped.log"
VAL_ZARR = "val.zarr"
#: Layout of the files a task leaves in the work directory (part_paths); parts of
#: another layout, left by an older build, are not reused.
WORK_VERSION = 6
#: A task writes its records in pieces of about this many (a piece is one block in
#: memory, at parse and at merge), so a range of any size, such as a whole compressed
#: file, is never held at once.
PIECE_RECORDS = 1 << 18
#: Columns a piece leaves out: the label masks (160 of a record's 320 bytes) are
#: computed again from the planes at merge rather than shuffled, compressed,
#: decompressed and unshuffled on the way through the work directory. (The stalemating
#: and mating moves, slower to find and nearly all NO_MOVE, are found by the parallel
#: tasks and kept.)
PIECE_OMITS = ("labels",)
#: Validation games are those with ``game_id % VAL_BUCKETS`` under a threshold.
VAL_BUCKETS = 1_000_000
WORK = ".work"


class BuildError(RuntimeError):
    """A problem with the inputs or the output directory, explained in the message."""


@dataclass(frozen=True)
class InputFile:
    path: str
    kind: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Task:
    file_id: int
    index: int  # range index within the file
    path: str
    start: int
    end: int | None
    size: int  # bytes, for progress
    key: str  # the part's file name stem: identifies its content
    limit: int = 0  # read at most this many units (games/rows/lines) of the file; 0: all
    filters: PgnFilters | None = None  # for PGN files
    piece_records: int = PIECE_RECORDS  # records per piece of the part
    log_limit: int = 1000  # skips and notes kept in full (the rest only counted)

    @property
    def order(self) -> tuple[int, int]:
        return (self.file_id, self.index)


# ----------------------------------------------------------------------------- helpers


# ----------------------------------------------------------------------------- plan


def find_inputs(paths: list[str]) -> list[str]:
    """Files named directly, plus files with known extensions under named directories."""
    found: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            if not os.access(path, os.R_OK | os.X_OK):
                raise BuildError(f"cannot read directory {p!r}")
            inside = []
            for f in sorted(path.rglob("*")):
                if f.is_file() and not f.name.startswith("."):
                    try:
                        readers.detect_kind(str(f))
                    except readers.ReaderError:
                        continue
                    inside.append(str(f))
            if not inside:
                raise BuildError(
                    f"no input files (.pgn, .csv, .tsv, .fen, .epd, .jsonl) under {p!r}")
            found += inside
        elif path.is_file():
            try:
                readers.detect_kind(str(path))
            except readers.ReaderError as e:
                raise BuildError(str(e)) from None
            if not os.access(path, os.R_OK):
                raise BuildError(f"cannot read input file {p!r}")
            found.append(str(path))
        else:
            raise BuildError(f"input not found: {p!r}")
    if len(set(found)) != len(found):
        raise BuildError("an input file is named twice")
    return found


def plan(paths: list[str], cfg: BuildConfig) -> tuple[list[InputFile], list[Task]]:
    files, tasks = [], []
    for file_id, path in enumerate(find_inputs(paths)):
        kind = readers.detect_kind(path)
        info = InputFile(path, kind, sha256_file(path), os.path.getsize(path))
        files.append(info)
        # a limit counts units from the file's start: one task reads them
        ranges = [(0, None)] if cfg.limit else readers.split_ranges(path, cfg.chunk_bytes)
        filters = cfg.pgn_filters if kind == "pgn" else None
        # what else decides a part's content: the limit, and the filters of a PGN
        extra = f"|log={cfg.skip_log_limit}" + (f"|limit={cfg.limit}" if cfg.limit else "")
        if filters is not None:
            extra += "|filters=" + json.dumps(dataclasses.asdict(filters), sort_keys=True)
        for index, (start, end) in enumerate(ranges):
            stop = info.size if end is None else end
            key = hashlib.sha256(
                f"{WORK_VERSION}|{schema.FORMAT_VERSION}|{schema.LABEL_SPEC_VERSION}|{info.sha256}|"
                f"{file_id}|{start}|{end}{extra}".encode()
            ).hexdigest()[:24]
            tasks.append(Task(file_id, index, path, start, end, stop - start, key,
                              cfg.limit, filters, PIECE_RECORDS, cfg.skip_log_limit))
    return files, tasks


# ----------------------------------------------------------------------------- parse + label


def part_paths(work: Path, key: str) -> tuple[Path, Path, Path, Path]:
    """The part (JSON: its number of pieces and records; written last, the marker of a
    finished task), its skips (counts, and the first ones in full), its position keys,
    and the game id of each of its records."""
    return (work / f"{key}.part", work / f"{key}.skips.json", work / f"{key}.keys",
            work / f"{key}.games")


def piece_path(work: Path, key: str, index: int) -> Path:
    """Piece `index` of a part: one encoded block of its records, in order."""
    return work / f"{key}.{index:06d}.piece"


def read_piece(work: Path, key: str, index: int) -> schema.Block:
    """Piece `index` of a finished part, its labels computed."""
    path = piece_path(work, key, index)
    return decode_piece(path.read_bytes(), str(path))


def encode_piece(block: schema.Block) -> bytes:
    """Records on their way through the work directory: quickly compressed, no labels."""
    return schema.encode_block(block, level=1, omit=PIECE_OMITS)


def decode_piece(data: bytes, name: str) -> schema.Block:
    """`encode_piece` undone, the labels computed again from the planes."""
    import labelers

    block = schema.decode_block(data, name, omit=PIECE_OMITS)
    block["labels"] = labelers.label_boards(block["planes"], parallel=False)
    return block


def read_pieces(work: Path, key: str) -> Iterator[schema.Block]:
    """The blocks of a finished part, one at a time, labels computed."""
    pieces = json.loads(part_paths(work, key)[0].read_text())["pieces"]
    for index in range(pieces):
        yield read_piece(work, key, index)


def run_task(task: Task, work: str, root: str | None = None) -> dict:
    """Read one range, label it and write its part, a piece of at most about
    ``task.piece_records`` records at a time. Returns the part's summary.

    `root`: the directory relative input paths are read from (a cluster worker's
    working directory may differ); skips still name the path as given."""
    from dataengine.records import position_keys, units_to_block  # in the worker process

    part, skip_file, keys_file, games_file = part_paths(Path(work), task.key)
    counts: Counter = Counter()  # (reason, kept) -> skips (kept: a Note, unit kept)
    first: list[list] = []  # [reason, path, line, detail, kept] in file order, capped
    units, positions, pieces, records = [], 0, 0, 0
    source = str(Path(root) / task.path) if root else task.path
    keys_tmp, games_tmp = (p.with_name(f".{p.name}.tmp") for p in (keys_file, games_file))

    def flush() -> None:
        nonlocal units, positions, pieces, records
        block = units_to_block(units, task.file_id, labels=False)  # computed at merge
        keys.write(position_keys(block).astype("<u8").tobytes())
        games.write(block["game_id"].astype("<u8").tobytes())
        atomic_write(piece_path(Path(work), task.key, pieces), encode_piece(block))
        pieces, records = pieces + 1, records + schema.block_len(block)
        units, positions = [], 0

    items = readers.read(source, task.start, task.end, filters=task.filters, arrays=True)
    read = 0  # units and skips (not notes: they belong to the unit before them)
    try:
        with open(keys_tmp, "wb") as keys, open(games_tmp, "wb") as games:
            for item in items:
                if not isinstance(item, readers.Note):
                    if task.limit and read == task.limit:
                        break  # the rest of the file is not read
                    read += 1
                if isinstance(item, readers.Unit):
                    units.append(item)
                    positions += len(item.turn)
                    if positions >= task.piece_records:
                        flush()
                else:  # a Skip, or a Note about the unit before it (kept)
                    kept = isinstance(item, readers.Note)
                    counts[item.reason, kept] += 1
                    if len(first) < task.log_limit:
                        first.append([item.reason, task.path, item.line, item.detail, kept])
            if units or not pieces:
                flush()
    finally:
        items.close()
    os.replace(keys_tmp, keys_file)
    os.replace(games_tmp, games_file)
    atomic_write(skip_file, json.dumps(
        {"counts": [[r, k, c] for (r, k), c in counts.items()], "first": first}).encode())
    # the part file last: it is the marker that the task is complete
    atomic_write(part, json.dumps({"pieces": pieces, "records": records}).encode())
    return {"key": task.key, "records": records,
            "skipped": sum(c for (_, kept), c in counts.items() if not kept)}


def run_on_dask(todo: list[Task], work: Path, scheduler: str, workers: int, advance) -> None:
    """The same tasks on a Dask cluster: `scheduler` is an address (tcp://host:8786) or
    "local" for a LocalCluster of `workers` processes. Workers must see the input files
    and the output directory at the same paths (a shared filesystem)."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise BuildError("--scheduler needs dask.distributed: pip install 'dask[distributed]' "
                         "(or the project's [cluster] extra)") from None
    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1,
                               processes=True, dashboard_address=None)
    try:
        client = Client(cluster if cluster is not None else scheduler, timeout="10s")
    except OSError as e:
        raise BuildError(f"cannot reach the Dask scheduler at {scheduler!r}: {e}") from None
    root, out = os.getcwd(), str(work.resolve())
    try:
        futures = {client.submit(run_task, t, out, root, key=f"part-{t.key}", pure=False): t
                   for t in todo}
        for fut in as_completed(futures):
            advance(futures[fut], fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def parse_all(tasks: list[Task], work: Path, workers: int, quiet: bool,
              scheduler: str | None = None, pool: Executor | None = None,
              finished: Callable[[Task], None] | None = None) -> None:
    """Run the tasks whose part is not finished: on the Dask `scheduler`, else on `pool`
    (processes), else here. `finished(task)`: called here for each task whose part is
    finished, those of an earlier run first."""
    todo = [t for t in tasks if not part_paths(work, t.key)[0].exists()]
    if finished is not None:
        pending = set(todo)
        for t in tasks:
            if t not in pending:
                finished(t)
    done_bytes = sum(t.size for t in tasks) - sum(t.size for t in todo)
    bar = progress(
        total=sum(t.size for t in tasks), initial=done_bytes, unit="B", unit_scale=True,
        desc="parse+label", disable=quiet, dynamic_ncols=True,
    )
    if len(todo) < len(tasks) and not quiet:
        tqdm.write(f"resuming: {len(tasks) - len(todo)} of {len(tasks)} tasks already done")
    records, t0 = 0, time.perf_counter()

    def advance(task: Task, summary: dict) -> None:
        nonlocal records
        if finished is not None:
            finished(task)
        records += summary["records"]
        bar.update(task.size)
        bar.set_postfix(pos_s=f"{records / max(time.perf_counter() - t0, 1e-9):,.0f}")

    try:
        if scheduler:
            run_on_dask(todo, work, scheduler, workers, advance)
        elif pool is None or len(todo) <= 1:
            for t in todo:
                advance(t, run_task(t, str(work)))
        else:
            # the largest first, so that the last to finish is a small one (parts are
            # keyed: the order they finish in changes nothing)
            futures = {pool.submit(run_task, t, str(work)): t
                       for t in sorted(todo, key=lambda t: -t.size)}
            for fut in as_completed(futures):
                advance(futures[fut], fut.result())
    finally:
        bar.close()


# ----------------------------------------------------------------------------- merge


BlockCounts = tuple[int, list[int], list[int]]
"""A block's records, and its records per bucket with and without a teacher eval."""


def block_counts(block: schema.Block) -> BlockCounts:
    buckets = np.bincount(block["bucket"], minlength=len(schema.BUCKETS))
    teacher = (block["flags"] & schema.HAS_TEACHER_EVAL) != 0
    t_counts = np.bincount(block["bucket"][teacher], minlength=len(schema.BUCKETS))
    return schema.block_len(block), buckets.tolist(), t_counts.tolist()


class ShardWriter:
    """Cuts a stream of records into blocks and blocks into shard tars; blocks are
    compressed on a thread pool (zstd and the byte shuffle release the GIL)."""

    def __init__(self, out: Path, split: str, cfg: BuildConfig, pool: ThreadPoolExecutor):
        self.dir = out / split
        self.split, self.cfg, self.pool = split, cfg, pool
        self.buffer: schema.Block | None = None  # records not yet in a block
        self.members: list[tuple[str, Future]] = []
        self.member_buckets = Counter()
        self.member_teacher = Counter()
        self.shards: list[manifests.ShardEntry] = []
        self.blocks_written = 0
        self.records_in_shard = 0
        self.dir.mkdir(parents=True, exist_ok=True)

    def add(self, block: schema.Block) -> None:
        if schema.block_len(block) == 0:
            return
        self.buffer = block if self.buffer is None else schema.concat_blocks([self.buffer, block])
        n, size, start = schema.block_len(self.buffer), self.cfg.block_records, 0
        while n - start >= size:
            self._emit_block(schema.take(self.buffer, slice(start, start + size)))
            start += size
        self.buffer = schema.take(self.buffer, slice(start, None)) if start < n else None

    def close(self) -> list[manifests.ShardEntry]:
        if self.buffer is not None:
            self._emit_block(self.buffer)
            self.buffer = None
        if self.members:
            self._write_shard()
        return self.shards

    def add_encoded(self, data: bytes, counts: BlockCounts) -> None:
        """A whole block (`block_records` records) encoded elsewhere (`merge_task`), in
        its place in the stream: the records added before it filled their blocks."""
        if self.buffer is not None:
            raise AssertionError(f"{self.split}: an encoded block after "
                                 f"{schema.block_len(self.buffer)} records of a partial one")
        done: Future = Future()
        done.set_result(data)
        self._emit(done, counts)

    def _emit_block(self, block: schema.Block) -> None:
        self._emit(self.pool.submit(schema.encode_block, block, self.cfg.zstd_level),
                   block_counts(block))

    def _emit(self, encoded: Future, counts: BlockCounts) -> None:
        key = f"{self.blocks_written:08d}"
        self.blocks_written += 1
        self.members.append((f"{key}.{schema.MEMBER_EXT}", encoded))
        records, buckets, teacher = counts
        for name, c, t in zip(schema.BUCKETS, buckets, teacher, strict=True):
            self.member_buckets[name] += c
            self.member_teacher[name] += t
        self.records_in_shard += records
        if len(self.members) == self.cfg.blocks_per_shard:
            self._write_shard()

    def _write_shard(self) -> None:
        name = f"shard-{len(self.shards):06d}.tar"
        data = tar_bytes([(member, future.result()) for member, future in self.members])
        atomic_write(self.dir / name, data)
        self.shards.append(manifests.ShardEntry(
            path=f"{self.split}/{name}",
            sha256=hashlib.sha256(data).hexdigest(),
            bytes=len(data),
            blocks=len(self.members),
            records=self.records_in_shard,
            buckets={b: self.member_buckets[b] for b in schema.BUCKETS},
            # records with a teacher eval, per bucket: the loader's teacher streams
            teacher={b: self.member_teacher[b] for b in schema.BUCKETS},
        ))
        self.members, self.records_in_shard = [], 0
        self.member_buckets, self.member_teacher = Counter(), Counter()


VAL_CHUNK = 1 << 14
"""Records per zarr chunk of the validation store (~5 MB of columns; zarr 3 is slow with
small chunks, and the writer holds one chunk, and copies of it, at a time)."""


class ValZarrWriter:
    """The validation split written into one zarr store as it comes, a chunk at a time,
    so that memory holds at most one chunk of records however large the split is.

    `n`, the number of records in all, is known before the first one (the merge counts
    them in its first pass). ``themes_id`` indexes the sorted table of the split's
    distinct theme strings (the store's ``themes`` attribute): records are first written
    with ids in the order their strings were first seen, renumbered chunk by chunk at
    `close`. The store is built under a temporary name and renamed into place at
    `close`; it is the same, byte for byte, whether the records come in one block or many.
    """

    def __init__(self, path: Path, n: int, chunk: int = VAL_CHUNK) -> None:
        import zarr

        self.path, self.n = Path(path), int(n)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.root = zarr.open_group(str(self.tmp), mode="w")
        self.rows = max(1, min(self.n, chunk))
        self.arrays = {c.name: self.root.create_array(c.name, shape=(self.n, *c.shape),
                                                      dtype=c.dtype, chunks=(self.rows, *c.shape))
                       for c in schema.COLUMNS}
        self.first_seen: dict[str, int] = {}
        self.pending: list[schema.Block] = []
        self.pending_n = self.written = 0

    def add(self, block: schema.Block) -> None:
        m = schema.block_len(block)
        if not m:
            return
        if self.written + self.pending_n + m > self.n:
            raise ValueError(f"{self.path}: more than the {self.n} records announced")
        strings, inverse = np.unique(np.asarray(block["themes"], dtype=str), return_inverse=True)
        ids = np.asarray([self.first_seen.setdefault(str(t), len(self.first_seen))
                          for t in strings], dtype=np.int64)
        if len(self.first_seen) > 0xFFFF:
            raise ValueError(f"{self.path}: the validation split has more than 65535 distinct "
                             "theme strings (themes_id is 16-bit)")
        columns = {c.name: block[c.name] for c in schema.COLUMNS if c.name != "themes_id"}
        columns["themes_id"] = ids[inverse].astype("<u2")
        self.pending.append(columns)
        self.pending_n += m
        if self.pending_n >= self.rows:
            self._flush(whole_chunks=True)

    def _flush(self, whole_chunks: bool) -> None:
        if not self.pending_n:
            return
        data = {k: np.concatenate([b[k] for b in self.pending]) for k in self.pending[0]}
        count = self.pending_n - self.pending_n % self.rows if whole_chunks else self.pending_n
        for name, arr in self.arrays.items():
            arr[self.written : self.written + count] = data[name][:count]
        self.written += count
        rest = {k: v[count:] for k, v in data.items()}
        self.pending_n -= count
        self.pending = [rest] if self.pending_n else []

    def close(self) -> None:
        self._flush(whole_chunks=False)
        if self.written != self.n:
            raise ValueError(f"{self.path}: {self.written} records written, {self.n} announced")
        order = sorted(self.first_seen, key=str)  # np.unique's order: code points
        table = np.asarray(order, dtype=str)
        renumber = np.zeros(max(1, len(order)), dtype="<u2")
        renumber[[self.first_seen[t] for t in order]] = np.arange(len(order), dtype="<u2")
        ids = self.arrays["themes_id"]
        for i in range(0, self.n, self.rows):
            ids[i : i + self.rows] = renumber[ids[i : i + self.rows]]
        self.root.attrs.update({
            "format_version": schema.FORMAT_VERSION,
            "label_spec_version": schema.LABEL_SPEC_VERSION,
            "records": self.n,
            "themes": [str(t) for t in table],
            "columns": {c.name: c.doc for c in schema.COLUMNS},
        })
        shutil.rmtree(self.path, ignore_errors=True)
        os.replace(self.tmp, self.path)


def write_val_zarr(path: Path, block: schema.Block) -> None:
    """The validation split, given as one block, as one zarr store (`ValZarrWriter`)."""
    writer = ValZarrWriter(path, schema.block_len(block))
    writer.add(block)
    writer.close()


def read_val_zarr(path: str | Path, indices: np.ndarray | None = None) -> schema.Block:
    """Read the validation store back as one block: all of it, or the records at the
    sorted ``indices``."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    if indices is None:
        block = {c.name: np.asarray(root[c.name][...]) for c in schema.COLUMNS}
    else:
        block = {c.name: np.asarray(root[c.name].oindex[indices]) for c in schema.COLUMNS}
    table = np.asarray(root.attrs["themes"] or [""], dtype=str)
    block["themes"] = table[block["themes_id"]]
    return block


def val_threshold(game_ids: np.ndarray, cfg: BuildConfig) -> int:
    """The game-id bucket threshold of the validation split: games whose ``game_id %
    VAL_BUCKETS`` is below it are validation games. It is ``val_fraction`` of the buckets,
    raised (whole buckets at a time, so whole games) until the split holds at least
    ``val_min_positions`` of the records, but never more than ``val_max_fraction`` of them.
    ``game_ids``: the game id of every record that is kept."""
    return val_threshold_of_counts(game_bucket_counts(game_ids), cfg)


def is_val_game(game_ids: np.ndarray, threshold: int) -> np.ndarray:
    """Whether each record's game is a validation game (`val_threshold`)."""
    return (game_ids % np.uint64(VAL_BUCKETS)) < np.uint64(threshold)


def game_bucket_counts(game_ids: np.ndarray) -> np.ndarray:
    """Records per game-id bucket (``game_id % VAL_BUCKETS``)."""
    return np.bincount((game_ids % np.uint64(VAL_BUCKETS)).astype(np.int64),
                       minlength=VAL_BUCKETS)


def add_game_bucket_counts(per_bucket: np.ndarray, game_ids: np.ndarray) -> None:
    """``per_bucket += game_bucket_counts(game_ids)``, without a table of every bucket
    for each slice of records (half the time for a slice of ~88k)."""
    np.add.at(per_bucket, (game_ids % np.uint64(VAL_BUCKETS)).astype(np.int64), 1)


def val_threshold_of_counts(per_bucket: np.ndarray, cfg: BuildConfig) -> int:
    """`val_threshold` from the kept records per game-id bucket (summed part by part, so
    no list of every game id is needed)."""
    base = round(cfg.val_fraction * VAL_BUCKETS)
    records = int(per_bucket.sum())
    if cfg.val_fraction == 0 or records == 0:
        return base
    below = np.concatenate([[0], np.cumsum(per_bucket)])  # below[t]: records under t
    want = min(cfg.val_min_positions, int(cfg.val_max_fraction * records))
    if below[base] >= want:
        return base
    # the smallest threshold with `want` records below it, unless that passes the cap
    t = int(np.searchsorted(below, want, side="left"))
    while t > base and below[t] > cfg.val_max_fraction * records:
        t -= 1
    return max(base, t)


class EarlyCap:
    """The merge's first pass (the repeat cap's mask and the kept records per game-id
    bucket), done while the pool parses (this process waits then): each part's keys are
    counted as soon as it and every part before it are finished (`parse_all`'s
    `finished`), in input order, in memory. Past `cfg.spill_pairs` records it stops and
    the merge caps them on disk instead (`spill.keep_mask`, the same mask)."""

    def __init__(self, tasks: list[Task], work: Path, cfg: BuildConfig) -> None:
        self.ordered = sorted(tasks, key=lambda t: t.order)
        self.work, self.budget = work, cfg.spill_pairs
        self.counter: RepeatCounter | None = RepeatCounter(cfg.max_repeats)
        self.done: set[str] = set()
        self.next = 0  # the first part (in input order) not counted yet
        self.records = 0
        self.per_bucket = np.zeros(VAL_BUCKETS, dtype=np.int64)
        self.tmp = work / f".{spill.KEEP_NAME}.early"
        self.tmp.unlink(missing_ok=True)

    def finished(self, task: Task) -> None:
        self.done.add(task.key)
        while (self.counter is not None and self.next < len(self.ordered)
               and self.ordered[self.next].key in self.done):
            self._count(self.ordered[self.next])
            self.next += 1

    def _count(self, task: Task) -> None:
        _, _, keys_file, games_file = part_paths(self.work, task.key)
        size = keys_file.stat().st_size // 8
        self.records += size
        if self.records > self.budget:  # the keys would not fit one partition
            self.counter = None
            self.tmp.unlink(missing_ok=True)
            return
        with open(keys_file, "rb") as keys, open(games_file, "rb") as games, \
                open(self.tmp, "ab") as out:
            for start in range(0, size, PIECE_RECORDS):  # a slice at a time
                count = min(PIECE_RECORDS, size - start)
                keep = self.counter.add(np.fromfile(keys, dtype="<u8", count=count))
                out.write(keep.tobytes())
                add_game_bucket_counts(self.per_bucket,
                                       np.fromfile(games, dtype="<u8", count=count)[keep])

    def result(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(the keep mask as `spill.keep_mask` gives it, kept records per bucket), or None
        where the merge must make them."""
        if self.counter is None or self.next < len(self.ordered):
            return None
        out = self.work / spill.KEEP_NAME
        if not self.records:
            return np.zeros(0, dtype=bool), self.per_bucket
        self.tmp.replace(out)
        return np.memmap(out, dtype=bool, mode="r", shape=(self.records,)), self.per_bucket


@dataclass(frozen=True)
class MergeJob:
    """One task's part at merge (`merge_task`), with what it needs of the whole build."""

    work: str
    key: str
    offset: int  # index of the part's first record among all records read (keep.bool)
    size: int  # the part's records, before the repeat cap
    total: int  # all records read
    threshold: int  # the validation split's game-id bucket threshold
    train_start: int  # train records of the parts before this one
    cfg: BuildConfig


def merge_paths(work: Path, key: str) -> tuple[Path, Path]:
    """A part's whole train blocks (encoded for the shards) and its validation pieces
    (`encode_piece`), each file the blocks one after another, written by `merge_task`."""
    return work / f"{key}.train.blocks", work / f"{key}.val.pieces"


def merge_task(job: MergeJob) -> dict:
    """One part's records at merge, on any process: the repeat cap, buckets and the
    train/validation split; its train records cut at the build's block boundaries
    (every `block_records` train records, counted from the first part's), the whole
    blocks encoded for the shards into a file, the records before the first boundary
    ("head") and after the last ("tail") returned for the merge to join with their
    neighbours'; its validation records into a file of pieces. Returns the heads, tails,
    and each file's block sizes (with each train block's counts)."""
    work, cfg, size = Path(job.work), job.cfg, job.cfg.block_records
    keep = np.memmap(work / spill.KEEP_NAME, dtype=bool, mode="r", shape=(job.total,)) \
        if job.size else np.zeros(0, dtype=bool)
    head_left = -job.train_start % size  # train records until the first boundary
    heads: list[schema.Block] = []
    carry: schema.Block | None = None  # after the last whole block, under `size` records
    offset = 0
    train_blocks, val_pieces = [], []
    train_path, val_path = merge_paths(work, job.key)
    train_tmp, val_tmp = (p.with_name(f".{p.name}.tmp") for p in (train_path, val_path))
    with open(train_tmp, "wb") as train_file, open(val_tmp, "wb") as val_file:

        def whole_block(records: schema.Block) -> None:
            data = schema.encode_block(records, cfg.zstd_level)
            train_file.write(data)
            train_blocks.append((len(data), block_counts(records)))

        for block in read_pieces(work, job.key):
            m = schema.block_len(block)
            kept = np.asarray(keep[job.offset + offset : job.offset + offset + m])
            offset += m
            block["bucket"] = assign_buckets(block, cfg.buckets)  # (a record's own)
            is_val = is_val_game(block["game_id"], job.threshold)
            if (kept & is_val).any():
                data = encode_piece(schema.take(block, kept & is_val))
                val_file.write(data)
                val_pieces.append(len(data))
            # the train records, taken from the piece a block at a time (no copy of them all)
            train, at = np.flatnonzero(kept & ~is_val), 0
            if head_left:
                at = min(head_left, len(train))
                heads.append(schema.take(block, train[:at]))
                head_left -= at
            if carry is not None and at < len(train):
                more = min(size - schema.block_len(carry), len(train) - at)
                carry = schema.concat_blocks([carry, schema.take(block, train[at : at + more])])
                at += more
                if schema.block_len(carry) == size:
                    whole_block(carry)
                    carry = None
            while len(train) - at >= size:
                whole_block(schema.take(block, train[at : at + size]))
                at += size
            if at < len(train):  # (carry is None: it would have taken these)
                carry = schema.take(block, train[at:])
    os.replace(train_tmp, train_path)
    os.replace(val_tmp, val_path)
    return {
        "head": schema.concat_blocks(heads) if heads else None,
        "tail": carry,
        "train_blocks": train_blocks,
        "val_pieces": val_pieces,
    }


def _in_order(jobs: list[MergeJob], pool: Executor | None, ahead: int) -> Iterator[dict]:
    """`merge_task` of each job, in order: on `pool` with at most `ahead` jobs submitted
    and not yet handed back (what they return waits in memory; the first ones are
    submitted at once, before the first is asked for), else here."""
    if pool is None:
        return map(merge_task, jobs)
    queue = deque(pool.submit(merge_task, job) for job in jobs[:ahead])

    def results() -> Iterator[dict]:
        for job in jobs[ahead:]:
            done = queue.popleft().result()
            queue.append(pool.submit(merge_task, job))
            yield done
        while queue:
            yield queue.popleft().result()

    return results()


def merge(
    files: list[InputFile], tasks: list[Task], out: Path, cfg: BuildConfig, quiet: bool,
    threads: int | None = None, pool: Executor | None = None, early: EarlyCap | None = None,
) -> manifests.Manifest:
    """The parts -> shards, val.zarr and the manifest. Each part's records are capped,
    split and compressed by `merge_task`, on `pool` (processes) when given; this process
    joins the blocks at the parts' edges and writes the shards in order, compressing the
    joined and validation blocks on `threads` threads (default: every core). `early`: the
    first pass, if done during the parse."""
    work = out / WORK
    ordered = sorted(tasks, key=lambda t: t.order)

    # pass 1: which records survive the repeat cap (every key, in input order, on disk:
    # dataengine.spill), the validation threshold from the kept records' game ids, and
    # then each part's kept train records (where its records fall in the train stream)
    key_files = [part_paths(work, t.key)[2] for t in ordered]
    sizes = [f.stat().st_size // 8 for f in key_files]
    done = early.result() if early is not None else None
    if done is not None:
        keep, per_bucket = done
    else:
        keep = spill.keep_mask(key_files, cfg.max_repeats, work, cfg.spill_pairs)

    def kept_games(task: Task, size: int, offset: int) -> Iterator[np.ndarray]:
        if not size:
            return
        games = np.memmap(part_paths(work, task.key)[3], dtype="<u8", mode="r", shape=(size,))
        for i in range(0, size, PIECE_RECORDS):  # a slice at a time: bounded memory
            j = min(size, i + PIECE_RECORDS)
            yield games[i:j][keep[offset + i : offset + j]]

    offsets = (np.cumsum(sizes, dtype=np.int64) - sizes).tolist()  # each part's first record
    if done is None:
        per_bucket = np.zeros(VAL_BUCKETS, dtype=np.int64)
        for task, size, offset in zip(ordered, sizes, offsets, strict=True):
            for games in kept_games(task, size, offset):
                add_game_bucket_counts(per_bucket, games)
    threshold = val_threshold_of_counts(per_bucket, cfg)
    train_start, jobs = 0, []
    for task, size, offset in zip(ordered, sizes, offsets, strict=True):
        jobs.append(MergeJob(str(work), task.key, offset, size, len(keep), threshold,
                             train_start, cfg))
        for games in kept_games(task, size, offset):
            train_start += int((~is_val_game(games, threshold)).sum())

    # pass 2: per part (merge_task), then blocks and shards here, in order; the pool
    # works up to 3 parts a core (and 4) ahead of the writing, whose results wait in
    # memory (a part's heads and tails: at most 2 blocks' records), so that the
    # writing's slow moments (the shards' fsyncs) do not leave the pool idle
    results = _in_order(jobs, pool, ahead=4 + 3 * max(1, threads or 1))
    for split in schema.SPLITS:  # stale shards of an earlier build must not linger
        for old in (out / split).glob("shard-*.tar") if (out / split).exists() else []:
            old.unlink()
    compress = ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1)
    writers = {s: ShardWriter(out, s, cfg, compress) for s in schema.SPLITS}
    val_zarr = ValZarrWriter(out / VAL_ZARR, int(per_bucket[:threshold].sum()))
    skip_counts, note_counts, first = Counter(), Counter(), []
    per_file = {i: Counter() for i in range(len(files))}
    for task, size, done in zip(progress(ordered, desc="write", disable=quiet), sizes, results,
                                strict=True):
        task_skips = json.loads(part_paths(work, task.key)[1].read_text())
        for reason, kept, count in task_skips["counts"]:
            (note_counts if kept else skip_counts)[reason] += count
            per_file[task.file_id]["notes" if kept else "skipped"] += count
        first += task_skips["first"][: max(0, cfg.skip_log_limit - len(first))]
        per_file[task.file_id]["positions"] += size
        train_path, val_path = merge_paths(work, task.key)
        with open(val_path, "rb") as f:
            for nbytes in done["val_pieces"]:
                val = decode_piece(f.read(nbytes), str(val_path))
                writers["val"].add(val)
                val_zarr.add(val)
        train = writers["train"]
        if done["head"] is not None:
            train.add(done["head"])
        with open(train_path, "rb") as f:
            for nbytes, counts in done["train_blocks"]:
                train.add_encoded(f.read(nbytes), counts)
        if done["tail"] is not None:
            train.add(done["tail"])
        train_path.unlink()
        val_path.unlink()

    splits = {}
    for split, writer in writers.items():
        shards = writer.close()
        if split == schema.SPLITS[-1]:
            compress.shutdown()
        splits[split] = manifests.SplitEntry.of(shards)
    val_zarr.close()
    splits["val"] = dataclasses.replace(splits["val"], zarr=VAL_ZARR)

    log = "".join(f"{'kept:' if kept else ''}{r}\t{p}:{line}\t{d}\n"
                  for r, p, line, d, kept in first)
    atomic_write(out / SKIP_LOG, log.encode())
    return manifests.Manifest(
        format_version=schema.FORMAT_VERSION,
        label_spec_version=schema.LABEL_SPEC_VERSION,
        build_config=to_dict(cfg),
        inputs=tuple(
            manifests.InputEntry(
                path=f.path, kind=f.kind, sha256=f.sha256, bytes=f.size,
                positions=per_file[i]["positions"], skipped=per_file[i]["skipped"],
                notes=per_file[i]["notes"],
            )
            for i, f in enumerate(files)
        ),
        positions_read=int(len(keep)),
        repeats_dropped=int((~keep).sum()),
        records=sum(sp.records for sp in splits.values()),
        bytes_per_record=manifests.shard_bytes_per_record(
            s for sp in splits.values() for s in sp.shards),
        skipped=dict(sorted(skip_counts.items())),
        # units kept with a change (readers.Note): games cut short, recoded games
        notes=dict(sorted(note_counts.items())),
        splits=splits,
    )


# ----------------------------------------------------------------------------- entry point


def build_key(files: list[InputFile], cfg: BuildConfig) -> str:
    """What the build depends on: versions, inputs and the whole config (its `limit` and
    `pgn_filters` too, so a build with another --limit is never taken for this one)."""
    spec = {
        "format": schema.FORMAT_VERSION, "labels": schema.LABEL_SPEC_VERSION,
        "config": to_dict(cfg), "inputs": [(f.path, f.sha256) for f in files],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def is_up_to_date(out: Path, key: str) -> bool:
    try:
        manifest = manifests.read(out, check_version=False)
    except manifests.ManifestError:
        return False
    if manifest.build_key != key:
        return False
    return all(
        (out / s.path).is_file() and (out / s.path).stat().st_size == s.bytes
        for s in manifest.shards()
    ) and (out / VAL_ZARR).is_dir()


#: One short game (mate included) that `warm_up` takes through a task's steps.
_WARM_UP_PGN = '[Result "1-0"]\n\n1. e4 e5 2. Bc4 Nc6 3. Qh5 Nf6 4. Qxf7# 1-0\n'


def warm_up() -> int:
    """A pool process's first call: one game through the reader, the records, a piece's
    encoding and the merge's steps, so that the imports and numba's cache loads (most of
    a second, that the first task would wait for) overlap the plan. Returns the
    process id."""
    import tempfile

    from dataengine.records import position_keys, units_to_block

    with tempfile.TemporaryDirectory(prefix="dataengine-warm-up-") as tmp:
        path = Path(tmp) / "warm-up.pgn"
        path.write_text(_WARM_UP_PGN, encoding="utf-8")
        units = [u for u in readers.read(str(path), arrays=True) if isinstance(u, readers.Unit)]
    block = units_to_block(units, 0, labels=False)
    position_keys(block)
    block = decode_piece(encode_piece(block), "warm-up")
    block["bucket"] = assign_buckets(block, BuildConfig().buckets)
    schema.encode_block(block)
    return os.getpid()


def _pool_context() -> BaseContext:
    """How the pool's processes start: forked from a fork server that imported their
    modules and loaded their numba caches once (`dataengine.forkserver_preload`), where
    the platform has one; else spawned, each loading its own. Never forked from this
    process, whose threads (numba's parallel kernels, a caller's) do not survive a fork."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload(["dataengine.forkserver_preload"])
    return context


@contextmanager
def _process_pool(workers: int) -> Iterator[Executor | None]:
    """`workers` processes (`_pool_context`), None for one: then everything runs in this
    process. Each starts with `warm_up` at once."""
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        for _ in range(workers):
            pool.submit(warm_up)
        yield pool


def check_out(out: Path) -> None:
    """Refuse an output path that is, or lies under, an existing file (before anything
    starts: `mkdir` would fail only once the inputs are hashed)."""
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == out else f"lies under the file {str(path)!r}"
                raise BuildError(f"the output {str(out)!r} {what}: --out takes a directory")
            return


def empty_inputs(files: list[InputFile], tasks: list[Task], work: Path) -> dict[int, str]:
    """Each input file that gave no position, by file id, and why: how many of its units
    were skipped for which reasons, and the first skip in full (from the finished parts)."""
    records: Counter = Counter()
    skips: dict[int, Counter] = {f: Counter() for f in range(len(files))}
    first: dict[int, list] = {}
    for task in sorted(tasks, key=lambda t: t.order):
        part, skip_file, _, _ = part_paths(work, task.key)
        records[task.file_id] += json.loads(part.read_text())["records"]
        task_skips = json.loads(skip_file.read_text())
        for reason, kept, count in task_skips["counts"]:
            if not kept:
                skips[task.file_id][reason] += count
        for entry in task_skips["first"]:
            if not entry[4]:  # a skip, not a kept unit's note
                first.setdefault(task.file_id, entry)
                break
    reasons = {}
    for file_id, f in enumerate(files):
        if records[file_id]:
            continue
        if not skips[file_id]:
            reasons[file_id] = (f"{f.path} gave no positions: it holds no "
                                f"{_UNITS_OF_KIND.get(f.kind, 'units')}")
            continue
        why = f"{f.path} gave no positions: {_count_units(skips[file_id], 'skipped')}"
        if file_id in first:
            _, path, line, detail, _ = first[file_id]
            why += f", the first at {path}:{line}: {detail}"
        reasons[file_id] = why
    return reasons


_UNITS_OF_KIND = {"pgn": "games", "puzzle": "puzzle rows", "opening": "opening lines",
                  "fen": "FEN/EPD lines", "evaldb": "evaluation lines"}


def _count_units(counts: dict[str, int], what: str, more: str = "") -> str:
    """``{"bad_fen": 2, "illegal_move": 1}, "skipped"`` ->
    ``"3 units skipped (bad_fen 2, illegal_move 1)"``; `more` goes inside the brackets."""
    total = sum(counts.values())
    by_reason = ", ".join(f"{reason} {count:,}" for reason, count in counts.items())
    return f"{total:,} unit{'s' if total != 1 else ''} {what} ({by_reason}{more})"


def build(
    inputs: list[str], out: str | Path, *, workers: int = 1, cfg: BuildConfig | None = None,
    force: bool = False, quiet: bool = False, keep_work: bool = False,
    scheduler: str | None = None,
) -> dict:
    """Build shards from `inputs` into `out`; returns the manifest."""
    cfg = cfg or BuildConfig()
    out = Path(out)
    t0 = time.perf_counter()
    # `workers` local processes (started once, for the parse and the merge, while the
    # inputs are hashed and cut) and as many compression threads in the merge:
    # the number of cores the build keeps busy (with a cluster the parse is elsewhere and
    # the merge uses every local core)
    local = (os.cpu_count() or 1) if scheduler else max(1, workers)
    check_out(out)
    existed = out.exists()
    with _process_pool(local) as pool:
        files, tasks = plan(inputs, cfg)
        key = build_key(files, cfg)
        if not force and is_up_to_date(out, key):
            if not quiet:
                print(f"{out}/{MANIFEST} is up to date with the inputs (use --force to rebuild)")
            return manifests.read(out, check_version=False).to_json()
        work = out / WORK
        resumed = work.exists()
        work.mkdir(parents=True, exist_ok=True)
        # with a pool (or a cluster) this process would wait during the parse: it does
        # the merge's first pass then; alone it gains nothing by doing it earlier
        early = EarlyCap(tasks, work, cfg) if pool is not None or scheduler else None
        parse_all(tasks, work, workers, quiet, scheduler, pool,
                  early.finished if early is not None else None)
        empty = empty_inputs(files, tasks, work)
        if len(empty) == len(files):  # before the merge: an earlier build's shards stay
            if not (keep_work or resumed):  # (another build's parts may wait there)
                shutil.rmtree(work if existed else out, ignore_errors=True)
            reasons = list(empty.values())
            raise BuildError("nothing built: " + (
                reasons[0] if len(reasons) == 1
                else "no input gave a position:\n  " + "\n  ".join(reasons)))
        for reason in empty.values():
            print(f"warning: {reason}", file=sys.stderr)
        merged = merge(files, tasks, out, cfg, quiet, local, pool, early)
    built = dataclasses.replace(merged, build_key=key)
    manifests.write(out, built)
    manifest = built.to_json()
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    if not quiet:
        dt = time.perf_counter() - t0
        sp = manifest["splits"]
        skipped = (_count_units(manifest["skipped"], "skipped", f"; see {out}/{SKIP_LOG}")
                   + "; " if manifest["skipped"] else "")
        kept = (_count_units(manifest["notes"], "kept with a change") + "; "
                if manifest["notes"] else "")
        print(
            f"built {manifest['records']:,} records ({sp['train']['records']:,} train, "
            f"{sp['val']['records']:,} val) from {manifest['positions_read']:,} positions in "
            f"{dt:.1f} s ({manifest['positions_read'] / dt:,.0f} pos/s); "
            f"{manifest['bytes_per_record']} B/record; {skipped}{kept}"
            f"{manifest['repeats_dropped']:,} repeats dropped -> {out}/{MANIFEST}"
        )
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dataengine.build",
        description="Turn PGN games, puzzle CSVs, opening TSVs, FEN/EPD files and the Lichess "
        "evaluation database (.jsonl) into labelled WebDataset shards.",
    )
    ap.add_argument("inputs", nargs="+", help="input files or directories")
    ap.add_argument("--out", default="shards", help="output directory (default: shards)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes for the parse and the merge, and the merge's compression threads (default: all cores)")
    ap.add_argument("--config", default=None,
                    help="YAML config whose `data:` section sets the build (default: built-in)")
    ap.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="run the parse+label tasks on a Dask cluster (tcp://host:8786, or "
                    "'local' for a LocalCluster of --workers processes); needs a shared "
                    "filesystem")
    ap.add_argument("--limit", type=int, default=None, metavar="N",
                    help="read at most N games/rows/lines (kept or skipped) from the start of "
                    "each input file and not the rest, e.g. to try a month of Lichess games "
                    "in a minute; compressed files are decompressed only that far; sets the "
                    "config's `limit`, part of the build key and the manifest (default: the "
                    "config's, 0: all)")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    ap.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    args = ap.parse_args(argv)
    remove_stale_semaphores()  # left by killed runs (kill -9 takes the tracker too)
    try:
        cfg = load_build_config(args.config)
        if args.limit is not None:
            if args.limit < 0:
                raise ConfigError(f"--limit must be >= 0, got {args.limit}")
            cfg = dataclasses.replace(cfg, limit=args.limit)
        build(args.inputs, args.out, workers=args.workers, cfg=cfg, force=args.force,
              quiet=args.quiet, scheduler=args.scheduler)
    except (BuildError, ConfigError, readers.ReaderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only output: the build resumes when rerun
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot write{where}: {e.strerror or e}; what was built is kept, the "
              "same command resumes", file=sys.stderr)
        return 2
    return 0

