"""The trainer's only view of data: batches of compact records, mixed by curriculum,
deterministic and exactly resumable.

Design (see DESIGN.md on why webdataset's own shuffling cannot resume exactly):

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
* DataLoader worker w of n makes batches k = w, w + n, ...; PyTorch hands them to
  the main process in order. Shards are read with webdataset and decoded with the
  schema module; batches are dicts of torch tensors of the compact columns (uint64
  bitboards as int64 bit patterns): expansion to float planes happens on the
  device (train.expand).
* A shard that cannot be read (corrupt, truncated, wrong version) is reported by
  name once, counted, and left out of its window; a manifest that names missing
  files is an error at start-up.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from dataengine import schema
from train.curriculum import STREAMS, Curriculum, Schedule

log = logging.getLogger(__name__)

# the columns a training batch carries, and the torch dtype each becomes
BATCH_COLUMNS: dict[str, torch.dtype] = {
    "planes": torch.int64,  # uint64 bit patterns
    "labels": torch.int64,  # uint64 bit patterns
    "castling": torch.uint8,
    "ep_file": torch.int8,
    "halfmove": torch.int32,
    "move": torch.int64,
    "result": torch.int8,
    "teacher_cp": torch.int16,
    "teacher_mate": torch.int16,
    "teacher_move": torch.int64,
    "flags": torch.uint8,
    "bucket": torch.uint8,
}


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
    blocks = list(dataset.map(schema.decode_sample))
    if not blocks:
        raise schema.ShardFormatError(f"{path}: no blocks")
    return schema.concat_blocks(blocks)


def shard_index(shards_dir: str | Path, split: str = "train") -> list[ShardInfo]:
    """The shards of a split with their per-stream record counts, from the manifest: each
    shard's records per bucket, split by its ``teacher`` counts (records with a teacher
    eval, written by the build and kept current by `make teacher`)."""
    root = Path(shards_dir)
    manifest_path = root / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise DataError(f"no manifest at {str(manifest_path)!r}: run `make shards` first") from None
    except ValueError as e:
        raise DataError(f"{str(manifest_path)!r} is not valid JSON: {e}") from None
    if manifest.get("format_version") != schema.FORMAT_VERSION:
        raise DataError(f"{manifest_path}: format version {manifest.get('format_version')!r}, "
                        f"this trainer reads {schema.FORMAT_VERSION}")
    shards = manifest["splits"][split]["shards"]
    missing = [s["path"] for s in shards if not (root / s["path"]).is_file()]
    if missing:
        raise DataError(f"the manifest names {len(missing)} missing shard file(s) under "
                        f"{str(root)!r}, e.g. {missing[:3]}")
    infos = []
    for s in shards:
        teacher = s.get("teacher", {})
        counts = []
        for b in schema.BUCKETS:
            t = int(teacher.get(b, 0))
            counts += [t, int(s["buckets"][b]) - t]
        infos.append(ShardInfo(str(root / s["path"]), tuple(counts)))
    if not infos or sum(sum(i.counts) for i in infos) == 0:
        raise DataError(f"no {split} records under {str(root)!r}")
    return infos


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(list(key))))


# The second key of every stream RNG. It once held the process rank; every process now
# draws the same streams, and a constant 0 keeps the data order of earlier runs.
_RNG_SLOT = 0


class StreamReader:
    """Random access into the endless, shuffled streams of a set of shards."""

    def __init__(self, shards: list[ShardInfo], seed: int,
                 window_shards: int = 4, cache_windows: int = 16,
                 cache_records: int = 2_000_000):
        self.shards, self.seed = shards, seed
        self.window_shards = window_shards
        self.cache: OrderedDict[tuple, schema.Block] = OrderedDict()
        self.cache_windows = cache_windows
        self.shard_cache: OrderedDict[str, dict] = OrderedDict()
        self.cache_records = cache_records
        self.cached_records = 0
        self.bad_shards: dict[str, str] = {}
        self._epochs: dict[tuple[int, int], tuple[list[list[int]], np.ndarray]] = {}
        counts = np.array([s.counts for s in shards], dtype=np.int64).reshape(len(shards), -1)
        self.per_shard = counts
        self.totals = counts.sum(axis=0)

    def available(self) -> np.ndarray:
        return self.totals > 0

    def _epoch(self, stream: int, epoch: int) -> tuple[list[list[int]], np.ndarray]:
        """The windows (lists of shard indices) of a stream's epoch and their cumulative ends."""
        key = (stream, epoch)
        if key not in self._epochs:
            holding = np.flatnonzero(self.per_shard[:, stream] > 0)
            order = holding[_rng(self.seed, _RNG_SLOT, stream, epoch).permutation(len(holding))]
            windows = [order[i : i + self.window_shards].tolist()
                       for i in range(0, len(order), self.window_shards)]
            ends = np.cumsum([self.per_shard[w, stream].sum() for w in windows])
            if len(self._epochs) > 64:
                self._epochs.clear()
            self._epochs[key] = (windows, ends)
        return self._epochs[key]

    def _window(self, stream: int, epoch: int, w: int) -> schema.Block:
        key = (stream, epoch, w)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        windows, _ = self._epoch(stream, epoch)
        parts = []
        for i in windows[w]:
            by_stream = self._read(self.shards[i].path)
            if by_stream is not None and stream in by_stream:
                parts.append(by_stream[stream])
        records = None
        if parts:
            records = {c: np.concatenate([p[c] for p in parts]) for c in BATCH_COLUMNS}
            perm = _rng(self.seed, _RNG_SLOT, stream, epoch, w, 1).permutation(
                schema.block_len(records))
            records = {c: records[c][perm] for c in BATCH_COLUMNS}
        self.cache[key] = records
        if len(self.cache) > self.cache_windows:
            self.cache.popitem(last=False)
        return records

    def _read(self, path: str) -> dict[int, dict[str, np.ndarray]] | None:
        """A shard's records split by stream (cached), None for a bad shard."""
        if path in self.bad_shards:
            return None
        if path in self.shard_cache:
            self.shard_cache.move_to_end(path)
            return self.shard_cache[path]
        try:
            block = read_shard(path)
        except Exception as e:  # a bad shard must not stop training: report and skip it
            self.bad_shards[path] = str(e)
            log.warning("skipping unreadable shard %s: %s", path, e)
            return None
        streams = stream_of(block)
        by_stream = {}
        for s in np.unique(streams):
            pick = streams == s
            by_stream[int(s)] = {c: block[c][pick] for c in BATCH_COLUMNS}
        self.shard_cache[path] = by_stream
        self.cached_records += len(streams)
        while self.cached_records > self.cache_records and len(self.shard_cache) > 1:
            _, old = self.shard_cache.popitem(last=False)
            self.cached_records -= sum(len(r["planes"]) for r in old.values())
        return by_stream

    def take(self, stream: int, start: int, n: int) -> list[dict[str, np.ndarray]]:
        """Records [start, start + n) of a stream, as column pieces."""
        total = int(self.totals[stream])
        pieces, pos, left = [], start, n
        guard = 0
        while left > 0:
            epoch, offset = divmod(pos, total)
            windows, ends = self._epoch(stream, epoch)
            w = int(np.searchsorted(ends, offset, side="right"))
            begin = int(ends[w - 1]) if w else 0
            records = self._window(stream, epoch, w)
            planned = int(ends[w]) - begin
            k = min(left, planned - (offset - begin))
            have = schema.block_len(records) if records is not None else 0
            if have:
                a = offset - begin
                if a + k <= have:
                    pieces.append({c: records[c][a : a + k] for c in BATCH_COLUMNS})
                else:  # a shard missing from the window: wrap around what is left of it
                    idx = np.arange(a, a + k) % have
                    pieces.append({c: records[c][idx] for c in BATCH_COLUMNS})
                left -= k
            else:
                guard += 1
                if guard > len(windows) * 2 + 2:
                    raise DataError(f"no readable shard holds stream {STREAMS.names[stream]}: "
                                    f"{self.bad_shards}")
            pos += k
        return pieces


_NUMPY_OF = {torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16,
             torch.int8: np.int8, torch.uint8: np.uint8}


def pack(columns: dict[str, np.ndarray]) -> np.ndarray:
    """A batch's columns, converted to their batch dtypes, as one byte array: one object
    to pickle through the worker pipe instead of twelve."""
    parts = []
    for name, dtype in BATCH_COLUMNS.items():
        a = columns[name]
        a = a.view(np.int64) if a.dtype == np.uint64 else a.astype(_NUMPY_OF[dtype], copy=False)
        parts.append(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
    return np.concatenate(parts)


def unpack(buffer: np.ndarray, n: int) -> dict[str, torch.Tensor]:
    """The inverse of `pack` for n records, as torch tensors viewing the buffer."""
    out, offset = {}, 0
    for name, dtype in BATCH_COLUMNS.items():
        width = int(np.prod(schema.COLUMN_BY_NAME[name].shape, dtype=np.int64))
        np_dtype = np.dtype(_NUMPY_OF[dtype])
        size = n * width * np_dtype.itemsize
        a = buffer[offset : offset + size].view(np_dtype)
        out[name] = torch.from_numpy(a.reshape(n, width) if width > 1 else a)
        offset += size
    return out


class CurriculumBatches(torch.utils.data.IterableDataset):
    """Endless batches of compact records, from `start` on; worker w makes every W-th.

    Each is rows [rows[0], rows[1]) of the global batch of `batch_size` records (all
    of it by default)."""

    def __init__(self, shards: list[ShardInfo], curriculum: Curriculum, steps: int,
                 batch_size: int, seed: int, start: int = 0,
                 rows: tuple[int, int] | None = None,
                 window_shards: int = 4, cache_records: int = 2_000_000):
        super().__init__()
        self.shards, self.curriculum, self.steps = shards, curriculum, steps
        self.batch_size, self.seed, self.start = batch_size, seed, start
        self.rows = rows or (0, batch_size)
        self.window_shards, self.cache_records = window_shards, cache_records

    def reader(self) -> StreamReader:
        return StreamReader(self.shards, self.seed, self.window_shards,
                            cache_records=self.cache_records)

    def schedule(self, reader: StreamReader) -> Schedule:
        return Schedule(self.curriculum, self.steps, reader.available())

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        reader = self.reader()
        cursor = np.zeros(len(STREAMS.names), dtype=np.int64)
        first, stop = self.rows
        for step, counts in self.schedule(reader).counts(self.batch_size):
            if step >= self.start and (step - self.start) % nw == wid:
                # the global batch is the streams' records one after another (STREAMS
                # order); take the part of each stream's run that falls in our rows
                pieces, begin = [], 0
                for s in np.flatnonzero(counts):
                    end = begin + int(counts[s])
                    lo, hi = max(begin, first), min(end, stop)
                    if lo < hi:
                        pieces += reader.take(int(s), int(cursor[s]) + lo - begin, hi - lo)
                    begin = end
                batch = {c: np.concatenate([p[c] for p in pieces]) for c in BATCH_COLUMNS}
                # one numpy byte array, not torch tensors: a pickled array crosses the
                # worker pipe faster than torch's shared-memory tensors at these sizes
                yield step, len(batch["planes"]), pack(batch)
            cursor += counts


@dataclass(kw_only=True)
class LoaderConfig:
    """How batches are read (the data itself is chosen by the curriculum)."""

    workers: int = 2
    """DataLoader worker processes (0 = read in the training process)."""
    window_shards: int = 4
    """Shards pooled and shuffled together per stream (the shuffle buffer)."""
    prefetch: int = 4
    """Batches each worker prepares ahead."""
    cache_records: int = 2_000_000
    """Decoded records each worker keeps in memory (about 280 bytes each). Data that fits
    is decoded once; beyond it, a shard may be decoded once per stream that visits it."""


def _keep_numpy(batch):
    return batch


class BatchLoader:
    """Iterates (step, batch) from the current step on; state_dict() is the step.

    With ``world`` processes, batch k of rank ``rank`` is rows [rank * batch_size,
    (rank + 1) * batch_size) of global batch k, which has ``world * batch_size`` records
    and is exactly the batch one process with that batch size gets (module doc)."""

    def __init__(self, shards_dir: str | Path, curriculum: Curriculum, *, steps: int,
                 batch_size: int, seed: int, cfg: LoaderConfig | None = None,
                 rank: int = 0, world: int = 1, pin_memory: bool = False):
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, world={world}), got {rank!r}")
        self.cfg = cfg or LoaderConfig()
        shards = shard_index(shards_dir)
        self.shards, self.curriculum, self.steps = shards, curriculum, steps
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.global_batch_size = batch_size * world
        self.pin_memory = pin_memory
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
        now = {"seed": self.seed, "batch_size": self.global_batch_size, "steps": self.steps}
        for key, value in now.items():
            if key in state and state[key] != value:
                log.warning("loader state was saved with %s=%s, now %s: the batch sequence "
                            "differs from the original run", key, state[key], value)
        self.step = int(state["step"])

    def __iter__(self):
        first = self.rank * self.batch_size
        dataset = CurriculumBatches(self.shards, self.curriculum, self.steps,
                                    self.global_batch_size, self.seed, start=self.step,
                                    rows=(first, first + self.batch_size),
                                    window_shards=self.cfg.window_shards,
                                    cache_records=self.cfg.cache_records)
        workers = self.cfg.workers
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=None, num_workers=workers, pin_memory=self.pin_memory,
            collate_fn=_keep_numpy,
            prefetch_factor=self.cfg.prefetch if workers else None,
            multiprocessing_context="spawn" if workers else None,
        )
        for step, n, buffer in loader:
            batch = unpack(buffer, n)
            assert step == self.step, f"loader out of order: got batch {step}, expected {self.step}"
            self.step += 1
            yield step, batch
