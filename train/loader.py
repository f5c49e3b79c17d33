"""The trainer's only view of data: batches of compact records, mixed by curriculum,
deterministic and exactly resumable.

Design (webdataset's shuffle buffers cannot resume exactly mid-epoch with
workers; its maintainers recommend resampling instead, webdataset issues 177,
234 and 271, so the order is this module's own):

* A *stream* is one bucket's teacher-annotated or other records (``STREAMS``).
  Each stream is an endless sequence: epoch e visits the shards that hold the
  stream in an order drawn from (seed, stream, e); consecutive groups of
  ``window_shards`` shards form a *window* whose records of the stream are
  pooled and shuffled (a shuffle buffer across many blocks and games).
* Batch k takes ``counts[k][s]`` records from every stream s (curriculum.Schedule:
  deterministic largest-remainder rounding), at the stream's cursor, which is the
  sum of the counts of the batches before k. So batch k is a pure function of
  (seed, k, curriculum, shards, batch size), and the loader's state is just k.
* Several processes (torchrun, ``world`` > 1) share one sequence of *global*
  batches of ``world * batch_size`` records, drawn exactly as one process with that
  batch size draws them: rank r materialises rows [r * B, (r + 1) * B) of global
  batch k. Every rank plans the whole batch (cheap: counts and cursors) but takes
  only its rows from the streams; it still reads and decodes the shards those rows
  come from, so shard decoding is not divided between ranks (the record cache
  amortises it). Because the state is the global k, a checkpoint resumes on any
  number of processes with the same global batch (2 x 256 -> 1 x 512 and back).
  A rank's rows follow the stream order, so they are not a sample of the whole
  mix; that is harmless because the trainer takes losses, gradients and BatchNorm
  statistics over the global batch (train.distributed).
* Batches travel in *chunks* of consecutive steps (``chunk_positions`` records,
  at least one batch) as one array of fixed-size rows (``to_rows``: every compact
  column at a fixed byte offset, uint64 bitboards as int64 bit patterns).
  DataLoader worker w of n makes chunks w, w + n, ...; PyTorch hands them to the
  main process in order. A worker writes its chunks into a ring of shared-memory
  slots and only the slot number crosses the pipe. Shards are read with
  webdataset and decoded with the schema module. The trainer copies a chunk to
  the device in one go and expands it there (train.expand.device_batches): the
  per-batch costs of the hand-over, the copy and the expansion's small kernels are
  paid once per chunk, and the batches the trainer gets are views of it. This
  module knows nothing of the expansion's targets. Chunks do not change what batch
  k is, so resuming at any step still gives exactly the batches of the
  uninterrupted run.
* A shard that cannot be read (corrupt, truncated, wrong version) is reported by
  name once, counted, and left out of its window; a manifest that names missing
  files is an error at start-up.
"""

from __future__ import annotations

import logging
import os
import re
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from dataengine import manifest as manifests
from dataengine import schema
from dataengine.fileio import shard_file_problem
from train.batch import ROW_BYTES, columns_of, to_rows
from train.curriculum import STREAMS, Curriculum, Schedule
from train.malloc import retain_freed_memory

log = logging.getLogger(__name__)


class DataError(RuntimeError):
    """The shards cannot feed training: missing files, no records, bad manifest."""


@dataclass(frozen=True)
class ShardInfo:
    path: str
    counts: tuple[int, ...]  # records per stream (STREAMS order)


def stream_of(block: schema.Block) -> np.ndarray:
    """Stream index (STREAMS order) of every record: bucket * 2 + (0 teacher, 1 other)."""
    teacher = (block["flags"] & schema.HAS_TEACHER_EVAL) != 0
    return block["bucket"].astype(np.int64) * 2 + np.where(teacher, 0, 1)


def read_shard(path: str) -> schema.Block:
    """All records of one shard, decoded (raises on a bad shard)."""
    # every process reads whole shards itself: no webdataset splitting by node or worker
    dataset = wds.WebDataset(path, shardshuffle=False, empty_check=False,
                             nodesplitter=None, workersplitter=None)
    try:
        blocks = list(dataset.map(schema.decode_sample))
    except tarfile.TarError as e:
        raise schema.ShardFormatError(f"{path}: not a whole tar file ({_tar_reason(e)})") from None
    if not blocks:
        raise schema.ShardFormatError(f"{path}: no blocks")
    return schema.concat_blocks(blocks)


def _tar_reason(e: Exception) -> str:
    """tarfile's reason in words: webdataset re-raises it with its args as a tuple
    (message @ stream, stream, url), whose repr is no message for a person."""
    first = e.args[0] if e.args else str(e)
    return str(first).split(" @ ")[0] if isinstance(first, str) else str(e)


def worker_error_message(e: BaseException) -> str:
    """The message of an error raised in a DataLoader worker, without the worker's
    traceback that PyTorch puts around it ("Caught X in DataLoader worker process 0.
    Original Traceback ...: X: message")."""
    text = str(e)
    if "Original Traceback" not in text:
        return text
    name = re.escape(type(e).__name__)
    found = list(re.finditer(rf"^(?:[\w.]+\.)?{name}: ", text, re.M))
    return text[found[-1].end():].strip() if found else text.strip().splitlines()[-1]


def read_manifest(root: Path) -> manifests.Manifest:
    """The manifest of a shards directory, checked for its format version."""
    try:
        return manifests.read(root)
    except manifests.ManifestMissing as e:
        raise DataError(f"no manifest at {str(e.path)!r}: run `make shards` first") from None
    except manifests.ManifestVersionError as e:
        raise DataError(f"{e.path}: format version {e.found!r}, "
                        f"this trainer reads {schema.FORMAT_VERSION}") from None
    except manifests.ManifestError as e:
        raise DataError(str(e)) from None


def verify_shards(shards_dir: str | Path) -> int:
    """Check every shard file of every split against the manifest's size and sha256 (what
    ``--verify-shards`` does before the first step). Returns the number of files checked;
    raises DataError naming each bad file."""
    root = Path(shards_dir)
    entries = read_manifest(root).shards()
    problems = [p for p in map(lambda e: shard_file_problem(root, e), entries) if p]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                           if len(problems) > 5 else "")
        raise DataError(f"{len(problems)} of {len(entries)} shard files under {str(root)!r} "
                        f"do not match the manifest: {shown} (rebuild: make shards, or "
                        "python -m dataengine.inspect verify for details)")
    return len(entries)


def shard_index(shards_dir: str | Path, split: str = "train") -> list[ShardInfo]:
    """The shards of a split with their per-stream record counts, from the manifest: each
    shard's records per bucket, split by its ``teacher`` counts (records with a teacher
    eval, written by the build and kept current by `make teacher`)."""
    root = Path(shards_dir)
    shards = read_manifest(root).shards(split)
    missing = [s.path for s in shards if not (root / s.path).is_file()]
    if missing:
        raise DataError(f"the manifest names {len(missing)} missing shard file(s) under "
                        f"{str(root)!r}, e.g. {missing[:3]}")
    infos = [ShardInfo(str(root / s.path), s.stream_counts()) for s in shards]
    if not infos or sum(sum(i.counts) for i in infos) == 0:
        raise DataError(f"no {split} records under {str(root)!r}")
    return infos


class _Draws:
    """The random orders of one stream, each drawn at its own Philox counter.

    Philox is counter-based: the numbers drawn from counter c are a function of (key, c)
    alone, so the order of (epoch, window) is made by setting the counter, in 3 us,
    instead of seeding a generator, 21 us (a stream of a few records starts several
    epochs a chunk). The key comes from (seed, stream); counter words 1..3 name the
    draw (kind, window, epoch) and a permutation only advances word 0."""

    def __init__(self, seed: int, stream: int):
        self.bits = np.random.Philox(np.random.SeedSequence([seed, stream]))
        self.key = self.bits.state["state"]["key"]
        self.generator = np.random.Generator(self.bits)

    def permutation(self, n: int, epoch: int, window: int = -1) -> np.ndarray:
        """Shard order of `epoch` (window -1) or record order of a window of it."""
        self.bits.state = {
            "bit_generator": "Philox",
            "state": {"counter": np.array([0, window >= 0, max(window, 0), epoch],
                                          dtype=np.uint64), "key": self.key},
            "buffer": np.zeros(4, dtype=np.uint64), "buffer_pos": 4,
            "has_uint32": 0, "uinteger": 0,
        }
        return self.generator.permutation(n)


class StreamReader:
    """Random access into the endless, shuffled streams of a set of shards."""

    def __init__(self, shards: list[ShardInfo], seed: int,
                 window_shards: int = 4, cache_windows: int = 2,
                 cache_records: int = 2_000_000):
        self.shards, self.seed = shards, seed
        self.window_shards = window_shards
        # per stream, the windows it used last: a stream reads its windows in order, and a
        # stream of a few records, going through several windows a chunk, must not push
        # the windows of the other streams out (a shared cache rebuilt them every chunk)
        self.cache: dict[int, OrderedDict[tuple[int, int], tuple | None]] = {}
        self.cache_windows = cache_windows
        self.shard_cache: OrderedDict[str, dict] = OrderedDict()
        self.cache_records = cache_records
        self.cached_records = 0
        self.bad_shards: dict[str, str] = {}
        self.draws: dict[int, _Draws] = {}
        self._epochs: dict[tuple[int, int], tuple[list[list[int]], np.ndarray]] = {}
        counts = np.array([s.counts for s in shards], dtype=np.int64).reshape(len(shards), -1)
        self.per_shard = counts
        self.totals = counts.sum(axis=0)

    def _draws(self, stream: int) -> _Draws:
        if stream not in self.draws:
            self.draws[stream] = _Draws(self.seed, stream)
        return self.draws[stream]

    def available(self) -> np.ndarray:
        return self.totals > 0

    def _epoch(self, stream: int, epoch: int) -> tuple[list[list[int]], np.ndarray]:
        """The windows (lists of shard indices) of a stream's epoch and their cumulative ends."""
        key = (stream, epoch)
        if key not in self._epochs:
            holding = np.flatnonzero(self.per_shard[:, stream] > 0)
            order = holding[self._draws(stream).permutation(len(holding), epoch)]
            windows = [order[i : i + self.window_shards].tolist()
                       for i in range(0, len(order), self.window_shards)]
            ends = np.cumsum([self.per_shard[w, stream].sum() for w in windows])
            if len(self._epochs) > 64:
                self._epochs.clear()
            self._epochs[key] = (windows, ends)
        return self._epochs[key]

    def _window(self, stream: int, epoch: int, w: int) -> tuple[np.ndarray, np.ndarray] | None:
        """A window's records of a stream and their shuffled order (cached): record j of
        the window is ``records[order[j]]``. The order is applied as records are taken,
        so a process copies only the records it uses (a worker uses 1 / workers of them)."""
        cache = self.cache.setdefault(stream, OrderedDict())
        key = (epoch, w)
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        windows, _ = self._epoch(stream, epoch)
        parts = []
        for i in windows[w]:
            by_stream = self._read(self.shards[i].path)
            if by_stream is not None and stream in by_stream:
                parts.append(by_stream[stream])
        window = None
        if parts:
            records = np.concatenate(parts) if len(parts) > 1 else parts[0]
            order = self._draws(stream).permutation(len(records), epoch, w)
            window = (records, order)
        cache[key] = window
        if len(cache) > self.cache_windows:
            cache.popitem(last=False)
        return window

    def _read(self, path: str) -> dict[int, np.ndarray] | None:
        """A shard's records as rows (`to_rows`) split by stream (cached), None for a bad
        shard."""
        if path in self.bad_shards:
            return None
        if path in self.shard_cache:
            self.shard_cache.move_to_end(path)
            return self.shard_cache[path]
        try:
            block = read_shard(path)
        except Exception as e:  # a bad shard must not stop training: report and skip it
            self.bad_shards[path] = str(e) if path in str(e) else f"{path}: {e}"
            log.warning("skipping unreadable shard %s: %s", path, e)
            return None
        streams = stream_of(block)
        rows = to_rows(block)
        by_stream = {int(s): rows[streams == s] for s in np.unique(streams)}
        self.shard_cache[path] = by_stream
        self.cached_records += len(streams)
        while self.cached_records > self.cache_records and len(self.shard_cache) > 1:
            _, old = self.shard_cache.popitem(last=False)
            self.cached_records -= sum(len(r) for r in old.values())
        return by_stream

    def take(self, stream: int, start: int, n: int) -> list[np.ndarray]:
        """Records [start, start + n) of a stream, as pieces of rows (`to_rows`)."""
        total = int(self.totals[stream])
        pieces, pos, left = [], start, n
        guard = 0
        while left > 0:
            epoch, offset = divmod(pos, total)
            windows, ends = self._epoch(stream, epoch)
            w = int(np.searchsorted(ends, offset, side="right"))
            begin = int(ends[w - 1]) if w else 0
            window = self._window(stream, epoch, w)
            planned = int(ends[w]) - begin
            k = min(left, planned - (offset - begin))
            if window is not None and len(window[1]):
                records, order = window
                a = offset - begin
                if a + k <= len(order):
                    pieces.append(records[order[a : a + k]])
                else:  # a shard missing from the window: wrap around what is left of it
                    pieces.append(records[order[np.arange(a, a + k) % len(order)]])
                left -= k
            else:
                guard += 1
                if guard > len(windows) * 2 + 2:
                    raise DataError(f"no readable shard holds stream {STREAMS.names[stream]}; "
                                    f"unreadable: {'; '.join(self.bad_shards.values())}")
            pos += k
        return pieces


class CurriculumBatches(torch.utils.data.IterableDataset):
    """Endless chunks of batches of compact records, from step `start` on.

    A chunk is `chunk_steps` consecutive batches as one array of rows (`to_rows`), the
    unit a worker ships and the device expands; worker w of W makes chunks w, w + W, ...
    Each batch is rows [rows[0], rows[1]) of the global batch of `batch_size` records
    (all of it by default). Items are (first step, steps, rows), or with a `ring` (a
    shared-memory tensor of `slots` chunks per worker) (first step, steps, slot): the
    rows are written into ``ring[slot]`` and only the slot number crosses the pipe."""

    def __init__(self, shards: list[ShardInfo], curriculum: Curriculum, steps: int,
                 batch_size: int, seed: int, start: int = 0,
                 rows: tuple[int, int] | None = None, chunk_steps: int = 1,
                 window_shards: int = 4, cache_records: int = 2_000_000,
                 ring: torch.Tensor | None = None, slots: int = 0):
        super().__init__()
        self.shards, self.curriculum, self.steps = shards, curriculum, steps
        self.batch_size, self.seed, self.start = batch_size, seed, start
        self.rows = rows or (0, batch_size)
        self.chunk_steps = chunk_steps
        self.window_shards, self.cache_records = window_shards, cache_records
        self.ring, self.slots = ring, slots

    def reader(self) -> StreamReader:
        return StreamReader(self.shards, self.seed, self.window_shards,
                            cache_records=self.cache_records)

    def schedule(self, reader: StreamReader) -> Schedule:
        return Schedule(self.curriculum, self.steps, reader.available())

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        reader = self.reader()
        blocks = self.schedule(reader).blocks(self.batch_size, self.chunk_steps, self.start)
        made = 0  # chunks this worker has made
        for index, (first, counts, cursor) in enumerate(blocks):
            if index % nw != wid:
                continue
            if self.ring is None:
                yield first, self.chunk_steps, self._chunk(reader, cursor, counts)
            else:
                slot = wid * self.slots + made % self.slots
                self._chunk(reader, cursor, counts, out=self.ring[slot].numpy())
                yield first, self.chunk_steps, slot
            made += 1

    def _chunk(self, reader: StreamReader, cursor: np.ndarray, counts: np.ndarray,
               out: np.ndarray | None = None) -> np.ndarray:
        """Our rows of the global batches whose per-stream counts are `counts` (steps x
        streams), the streams' records starting at `cursor`. A global batch is the
        streams' records one after another (STREAMS order); each stream's records for the
        whole chunk are taken at once and scattered to their rows with one gather."""
        ends = counts.cumsum(axis=1)  # where each stream's records end in its batch
        begins = ends - counts
        earlier = counts.cumsum(axis=0) - counts  # a stream's records in earlier steps
        position = np.arange(*self.rows)  # our rows of a global batch
        stream = (position >= ends[:, :, None]).sum(axis=1)  # (steps, rows)
        step = np.arange(len(counts))[:, None]
        # row -> index of its record among the chunk's records of its stream
        local = earlier[step, stream] + position - begins[step, stream]
        pieces, base, taken = [], np.zeros(len(cursor), dtype=np.int64), 0
        for s in np.unique(stream):
            mine = local[stream == s]  # with several ranks, a span that includes others' rows
            lo, hi = int(mine.min()), int(mine.max()) + 1
            pieces += reader.take(int(s), int(cursor[s]) + lo, hi - lo)
            base[s] = taken - lo
            taken += hi - lo
        return np.take(np.concatenate(pieces), (base[stream] + local).reshape(-1), axis=0,
                       out=out)


@dataclass(kw_only=True)
class LoaderConfig:
    """How batches are read (the data itself is chosen by the curriculum)."""

    workers: int = 2
    """DataLoader worker processes (0 = read in the training process)."""
    window_shards: int = 4
    """Shards pooled and shuffled together per stream (the shuffle buffer)."""
    chunk_positions: int = 4096
    """Consecutive batches travel and are expanded on the device together, as many as
    fit in this many positions (at least one batch): per-batch costs are paid once.
    Workers hand chunks over in shared memory (/dev/shm): workers x (prefetch + 2)
    chunks of 312 bytes a position, 9.8 MiB with the defaults."""
    prefetch: int = 2
    """Chunks each worker prepares ahead."""
    cache_records: int = 2_000_000
    """Decoded records each worker keeps in memory (about 312 bytes each). Data that fits
    is decoded once; beyond it, a shard may be decoded once per stream that visits it."""
    expand_overlap: bool | None = None
    """On a CPU device, expand each chunk in a second thread while the training process
    reads the next one and hands out batches. None: when a core is left beyond the
    workers and the training process (on 2 cores, with 0 workers only)."""
    retain_freed_memory: bool = True
    """Linux: keep memory freed by the loading and training processes for reuse instead
    of returning it to the OS (train.malloc): fresh pages for every chunk cost more
    page faults than the expansion itself."""

    def __post_init__(self) -> None:
        for name in ("window_shards", "chunk_positions", "prefetch", "cache_records"):
            if getattr(self, name) < 1:
                raise ValueError(f"loader.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.workers < 0:
            raise ValueError(f"loader.workers must be >= 0, got {self.workers!r}")


def _clean_worker_errors(source):
    """``source``'s items; a DataError from a worker re-raised as one clean message."""
    try:
        yield from source
    except DataError as e:
        raise DataError(worker_error_message(e)) from None


def _as_is(chunk):  # DataLoader's collate_fn: chunks are made whole by the dataset
    return chunk


def _init_worker(_worker_id: int) -> None:
    retain_freed_memory()


class BatchLoader:
    """Iterates batches from the current step on; state_dict() is the step.

    ``iter(loader)`` gives (step, compact batch: `columns_of` views, on the CPU);
    :meth:`chunks` gives whole chunks of rows, which `train.expand.device_batches`
    expands on a device for the trainer, handing the batches out with :meth:`hand_out`.

    With ``world`` processes, batch k of rank ``rank`` is rows [rank * batch_size,
    (rank + 1) * batch_size) of global batch k, which has ``world * batch_size`` records
    and is exactly the batch one process with that batch size gets (module doc)."""

    def __init__(self, shards_dir: str | Path, curriculum: Curriculum, *, steps: int,
                 batch_size: int, seed: int, cfg: LoaderConfig | None = None,
                 rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, world={world}), got {rank!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.cfg = cfg or LoaderConfig()
        shards = shard_index(shards_dir)
        self.shards, self.curriculum, self.steps = shards, curriculum, steps
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.global_batch_size = batch_size * world
        self.chunk_steps = max(1, self.cfg.chunk_positions // batch_size)
        self.step = 0
        probe = StreamReader(shards, seed)
        self.schedule = Schedule(curriculum, steps, probe.available())
        for w in self.schedule.warnings:
            log.warning("%s", w)

    def state_dict(self) -> dict:
        # the global batch size: the same on every rank, and what a resume must match
        return {"step": self.step, "seed": self.seed, "batch_size": self.global_batch_size,
                "steps": self.steps, "world": self.world}

    def load_state_dict(self, state: dict) -> None:
        # not "steps": more steps stretch the curriculum's phases, which extending a run
        # means to do (the trainer says so); a new seed or batch is another data stream
        now = {"seed": self.seed, "batch_size": self.global_batch_size}
        for key, value in now.items():
            if key in state and state[key] != value:
                log.warning("loader state was saved with %s=%s, now %s: the batch sequence "
                            "differs from the original run", key, state[key], value)
        self.step = int(state["step"])

    def chunks(self):
        """(first step, number of steps, rows) from the current step on: each chunk is
        that many consecutive batches of `batch_size` rows (`to_rows` layout), as one
        CPU uint8 tensor. With workers, the rows are a slot of shared memory that a
        worker refills later: use or copy them before asking for the next chunk but one.
        Does not move the state: the per-batch iterators do."""
        workers = self.cfg.workers
        if self.cfg.retain_freed_memory:
            retain_freed_memory()
        ring, slots = None, 0
        if workers:
            # Chunks cross from the workers through a ring of shared-memory slots, only
            # slot numbers through the pipe (a 1 MB chunk took 1.5-1.9 ms to receive
            # through it). A worker reuses a slot `slots` chunks later; it can be at most
            # `prefetch` chunks ahead of what this process has received, so the chunk
            # received last and the one before it are never overwritten.
            slots = self.cfg.prefetch + 2
            shape = (workers * slots, self.chunk_steps * self.batch_size, ROW_BYTES)
            ring = torch.empty(shape, dtype=torch.uint8).share_memory_()
        first = self.rank * self.batch_size
        dataset = CurriculumBatches(self.shards, self.curriculum, self.steps,
                                    self.global_batch_size, self.seed, start=self.step,
                                    rows=(first, first + self.batch_size),
                                    chunk_steps=self.chunk_steps,
                                    window_shards=self.cfg.window_shards,
                                    cache_records=self.cfg.cache_records,
                                    ring=ring, slots=slots)
        if workers:
            source = torch.utils.data.DataLoader(
                dataset, batch_size=None, num_workers=workers, collate_fn=_as_is,
                worker_init_fn=_init_worker if self.cfg.retain_freed_memory else None,
                prefetch_factor=self.cfg.prefetch, multiprocessing_context="spawn")
        else:
            source = iter(dataset)
        expected = self.step
        for start, n, rows in _clean_worker_errors(source):
            assert start == expected, f"loader out of order: got step {start}, not {expected}"
            expected += n
            yield start, n, torch.from_numpy(rows) if ring is None else ring[rows]

    def __iter__(self):
        """(step, compact batch) from the current step on (CPU views of the chunk rows)."""
        for start, n, rows in self.chunks():
            if self.cfg.workers:  # the caller may keep batches: copy them out of the ring
                # (with numpy: torch would copy 1 MB in its thread pool, whose threads
                # then spin on the cores the workers need)
                rows = torch.from_numpy(rows.numpy().copy())
            yield from self.hand_out(start, n, columns_of(rows))

    def hand_out(self, start: int, n: int, tensors: dict[str, torch.Tensor]):
        """(step, views of `tensors`' rows of that step) for the n batches of a chunk
        from step `start`, moving the state as each is handed out: a checkpoint taken
        after batch k resumes at batch k + 1."""
        parts = {k: v.split(self.batch_size) for k, v in tensors.items()}
        for i in range(n):
            self.step = start + i + 1
            yield start + i, {k: v[i] for k, v in parts.items()}

    def expand_in_background(self, device: torch.device) -> bool:
        """Whether chunks for `device` are expanded in a second thread
        (``LoaderConfig.expand_overlap``; None: on a CPU when a core is spare)."""
        if device.type != "cpu":
            return False
        if self.cfg.expand_overlap is not None:
            return self.cfg.expand_overlap
        return (os.cpu_count() or 1) - self.cfg.workers >= 2
