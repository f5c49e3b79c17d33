"""``verify``: check a shards directory against its manifest, record by record.

Reports every problem as one line naming the shard (and the block key and record
where there is one) and goes on; exit status 1 if there was any. Checks:

* the manifest: versions this reader reads, split totals equal to the shards' sums;
* each shard file: present, size and sha256 as in the manifest, a readable tar
  whose members all decode (``schema.decode_block``), block/record/bucket counts
  as in the manifest; no shard files that the manifest does not list;
* each record: the canonical board (White to move) is ``is_valid()``, its piece
  planes do not overlap, the target and teacher moves (when present) decode and
  are legal on the real board, flags agree with the move column, bucket, source
  and file id are in range;
* labels: recomputed with ``labelers.label_boards`` (and the stalemating moves with
  ``labelers.stalemate``) for a deterministic sample of records per split (all with
  ``--full``) and compared mask by mask;
* ``val.zarr``: as many records as the val shards, and the same columns.
"""

from __future__ import annotations

import tarfile
from collections import Counter

import numpy as np

import labelers
from dataengine import schema, views
from dataengine.build import VAL_ZARR
from dataengine.fileio import shard_file_problem
from dataengine.inspect.records import move_of, name_of, popcount
from dataengine.inspect.shards import BlockRef, Shards, decode, read_members
from dataengine.manifest import ShardEntry
from dataengine.progress import progress, tqdm
from labelers import MASK_NAMES
from labelers.mates import mate_moves
from labelers.stalemate import stalemate_moves

DEFAULT_SAMPLE = 2000
SAMPLE_SEED = 0
RECORD_PROBLEMS_PER_SHARD = 20  # then one line with how many more


class Verifier:
    def __init__(self, shards: Shards, *, full: bool, sample: int):
        self.shards, self.full, self.sample = shards, full, sample
        self.problems = 0
        self.shard_problems = 0  # record-level problems of the current shard
        self.counts = Counter()
        self.val_decoded = 0
        self.zarr = None
        # a bar on a terminal; elsewhere (a log, a pipe) a line a minute and one at the end
        self.bar = progress(total=shards.records("all"), unit="rec", unit_scale=True,
                            desc="verify", dynamic_ncols=True, leave=False)

    # ------------------------------------------------------------------ reporting

    def problem(self, line: str) -> None:
        self.problems += 1
        tqdm.write(line)

    def record_problem(self, ref: BlockRef, i: int, what: str) -> None:
        self.shard_problems += 1
        if self.shard_problems <= RECORD_PROBLEMS_PER_SHARD:
            self.problem(f"{ref.name} record {i} ({ref.split} index {ref.start + i}): {what}")
        else:
            self.problems += 1

    # ------------------------------------------------------------------ manifest

    def check_manifest(self) -> None:
        m = self.shards.manifest
        for key, want in (("format_version", schema.FORMAT_VERSION),
                          ("label_spec_version", schema.LABEL_SPEC_VERSION)):
            if getattr(m, key) != want:
                self.problem(f"manifest.json: {key} {getattr(m, key)!r}, this reader reads {want}")
        total = 0
        for sp in schema.SPLITS:
            entry = m.splits[sp]
            listed = sum(s.records for s in entry.shards)
            total += listed
            if entry.records != listed:
                self.problem(f"manifest.json: {sp} records {entry.records!r}, "
                             f"its shards hold {listed}")
        if m.records != total:
            self.problem(f"manifest.json: records {m.records!r}, the splits hold {total}")

    def check_stale(self) -> None:
        listed = {s.path for sp in schema.SPLITS for s in self.shards.shards(sp)}
        for sp in schema.SPLITS:
            folder = self.shards.root / sp
            for path in sorted(folder.glob("*.tar")) if folder.is_dir() else []:
                name = f"{sp}/{path.name}"
                if name not in listed:
                    self.problem(f"{name}: shard file not in the manifest (left from another build?)")

    # ------------------------------------------------------------------ shards

    def label_sample(self, split: str) -> np.ndarray | None:
        """Sorted split indices whose labels are recomputed (None: all)."""
        n = self.shards.records(split)
        if self.full or n <= self.sample:
            return None
        return np.sort(np.random.default_rng(SAMPLE_SEED).choice(n, self.sample, replace=False))

    def check_split(self, split: str) -> None:
        sample = self.label_sample(split)
        if split == "val":
            self.open_zarr()
        start = 0
        for entry in self.shards.shards(split):
            self.check_shard(split, entry, start, sample)
            start += entry.records

    def check_shard(self, split: str, entry: ShardEntry, start: int,
                    sample: np.ndarray | None) -> None:
        name = entry.path
        path = self.shards.root / name
        self.shard_problems = 0
        self.counts["shards"] += 1
        problem = shard_file_problem(self.shards.root, entry)
        if problem:
            self.problem(problem)
        if not path.is_file():
            self.bar.update(entry.records)
            return
        blocks = records = 0
        buckets = Counter()
        complete = True
        try:
            for key, data in read_members(path):
                blocks += 1
                ref = BlockRef(split, name, key, start + records)
                try:
                    block = decode(data, ref.name)
                except schema.ShardFormatError as e:
                    self.problem(str(e))
                    complete = False
                    continue
                n = schema.block_len(block)
                self.check_block(ref, block, sample)
                if split == "val":
                    self.compare_zarr(ref, block)
                    self.val_decoded += n
                records += n
                buckets.update(block["bucket"].tolist())
                self.bar.update(n)
        except FileNotFoundError:
            self.problem(f"{name}: shard file missing")
            complete = False
        except (tarfile.TarError, EOFError) as e:
            self.problem(f"{name}: truncated or corrupt tar ({e}) after {blocks} blocks")
            complete = False
        except schema.ShardFormatError as e:
            self.problem(str(e))
            complete = False
        except OSError as e:
            self.problem(f"{name}: cannot read ({e})")
            complete = False
        if self.shard_problems > RECORD_PROBLEMS_PER_SHARD:
            tqdm.write(f"{name}: ... {self.shard_problems - RECORD_PROBLEMS_PER_SHARD} "
                       "more record problems not shown")
        self.counts["blocks"] += blocks
        self.counts["records"] += records
        if not complete:
            self.bar.update(max(0, entry.records - records))
            return
        named = Counter({name_of(schema.BUCKETS, b): c for b, c in buckets.items()})
        for what, got, want in (
            ("blocks", blocks, entry.blocks),
            ("records", records, entry.records),
            ("bucket counts", dict(sorted(named.items())),
             {k: v for k, v in sorted(entry.buckets.items()) if v}),
        ):
            if got != want:
                self.problem(f"{name}: {what} {got}, the manifest says {want}")

    def check_block(self, ref: BlockRef, block: schema.Block, sample: np.ndarray | None) -> None:
        n = schema.block_len(block)
        inputs = len(self.shards.manifest.inputs)
        flags = block["flags"]
        planes = block["planes"]
        bad = np.zeros(n, dtype=bool)  # records not to label
        for what, wrong in (
            ("source out of range", block["source"] >= len(schema.SOURCES)),
            ("bucket out of range", block["bucket"] >= len(schema.BUCKETS)),
            ("file_id out of range", block["file_id"] >= inputs),
            ("result not in -1, 0, 1", np.abs(block["result"].astype(np.int16)) > 1),
            ("HAS_MOVE flag disagrees with the move column",
             ((flags & schema.HAS_MOVE) != 0) != (block["move"] != schema.NO_MOVE)),
            ("piece planes overlap",
             popcount(planes).sum(axis=1) != popcount(np.bitwise_or.reduce(planes, axis=1))),
        ):
            for i in np.flatnonzero(wrong):
                self.record_problem(ref, int(i), what)
            if what == "piece planes overlap":
                bad |= wrong
        for i in range(n):
            if bad[i]:
                continue
            canonical = views.canonical_board(block, i)
            if not canonical.is_valid():
                bad[i] = True
                self.record_problem(ref, i, f"invalid canonical position {canonical.fen()!r} "
                                            f"(status {canonical.status()!r})")
                continue
            real = canonical.mirror() if flags[i] & schema.MIRRORED else canonical
            moves = [("move", int(block["move"][i]))]
            if flags[i] & schema.HAS_TEACHER_MOVE:
                moves.append(("teacher_move", int(block["teacher_move"][i])))
            for column, index in moves:
                if index == schema.NO_MOVE:
                    if column == "teacher_move":
                        self.record_problem(ref, i, "HAS_TEACHER_MOVE set but no teacher_move")
                    continue
                try:
                    move = move_of(index, real)
                except ValueError as e:
                    self.record_problem(ref, i, f"{column}: {e}")
                    continue
                if not real.is_legal(move):
                    self.record_problem(ref, i, f"{column} {move.uci()} is illegal in "
                                                f"{real.fen()!r}")
        self.check_labels(ref, block, sample, bad)

    def check_labels(self, ref: BlockRef, block: schema.Block, sample: np.ndarray | None,
                     bad: np.ndarray) -> None:
        n = schema.block_len(block)
        if sample is None:
            rows = np.arange(n)
        else:
            lo, hi = np.searchsorted(sample, [ref.start, ref.start + n])
            rows = sample[lo:hi] - ref.start
        rows = rows[~bad[rows]]
        if not len(rows):
            return
        want = labelers.label_boards(np.ascontiguousarray(block["planes"][rows]))
        self.counts["labelled"] += len(rows)
        for r in np.flatnonzero((want != block["labels"][rows]).any(axis=1)):
            i = int(rows[r])
            names = [MASK_NAMES[k] for k in np.flatnonzero(want[r] != block["labels"][i])]
            self.record_problem(ref, i, f"stored labels differ from labelers.label_boards in "
                                        f"{', '.join(names)} ({views.real_board(block, i).fen()!r})")
        planes = np.ascontiguousarray(block["planes"][rows])
        for column, kernel, module in (("stalemate_moves", stalemate_moves, "labelers.stalemate"),
                                       ("mate_moves", mate_moves, "labelers.mates")):
            want = kernel(planes, block["castling"][rows], block["ep_file"][rows])
            for r in np.flatnonzero((want != block[column][rows]).any(axis=1)):
                i = int(rows[r])
                self.record_problem(ref, i, f"stored {column} differ from {module} "
                                            f"({views.real_board(block, i).fen()!r})")

    # ------------------------------------------------------------------ val.zarr

    def open_zarr(self) -> None:
        path = self.shards.root / VAL_ZARR
        if not path.is_dir():
            self.problem(f"{VAL_ZARR}: missing")
            return
        import zarr

        try:
            self.zarr = zarr.open_group(str(path), mode="r")
            self.zarr_themes = np.asarray(self.zarr.attrs["themes"] or [""], dtype=str)
            self.zarr_records = int(self.zarr.attrs["records"])
            lengths = {c.name: self.zarr[c.name].shape[0] for c in schema.COLUMNS}
        except Exception as e:  # zarr raises many kinds of errors for a broken store
            self.problem(f"{VAL_ZARR}: unreadable ({type(e).__name__}: {e})")
            self.zarr = None
            return
        for column, length in lengths.items():
            if length != self.zarr_records:
                self.problem(f"{VAL_ZARR}: column {column!r} has {length} records, "
                             f"its attrs say {self.zarr_records}")

    def compare_zarr(self, ref: BlockRef, block: schema.Block) -> None:
        if self.zarr is None:
            return
        n = schema.block_len(block)
        if ref.start + n > self.zarr_records:
            return  # the count check at the end reports it
        rows = slice(ref.start, ref.start + n)
        differ = [c.name for c in schema.COLUMNS if c.name != "themes_id"
                  and not np.array_equal(np.asarray(self.zarr[c.name][rows]), block[c.name])]
        themes = self.zarr_themes[np.asarray(self.zarr["themes_id"][rows])]
        if not np.array_equal(themes, block["themes"]):
            differ.append("themes")
        if differ:
            self.problem(f"{VAL_ZARR}: records {ref.start}..{ref.start + n - 1} differ from "
                         f"{ref.name} in {', '.join(differ)}")

    def check_zarr_count(self) -> None:
        if self.zarr is None:
            return
        want = self.shards.records("val")
        if self.zarr_records != self.val_decoded or self.zarr_records != want:
            self.problem(f"{VAL_ZARR}: {self.zarr_records:,} records, the val shards hold "
                         f"{self.val_decoded:,} (manifest: {want:,})")


def run(shards: Shards, *, full: bool, sample: int) -> int:
    v = Verifier(shards, full=full, sample=sample)
    try:
        v.check_manifest()
        for split in schema.SPLITS:
            v.check_split(split)
        v.check_zarr_count()
        v.check_stale()
    finally:
        v.bar.close()
    c = v.counts
    what = (f"{c['shards']} shards, {c['blocks']} blocks, {c['records']:,} records; labels "
            f"recomputed for {c['labelled']:,} records "
            f"({'all' if full else f'a sample of up to {sample:,} per split'})")
    if v.problems:
        print(f"FAILED: {v.problems} problem{'s' if v.problems > 1 else ''} ({what})")
        return 1
    zarr_text = f"; {VAL_ZARR} matches the val shards ({v.zarr_records:,} records)"
    print(f"ok: {what}{zarr_text}")
    return 0
