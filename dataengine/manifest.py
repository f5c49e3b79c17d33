"""The manifest of a shards directory (``manifest.json``): its layout, read and written
in one place.

The build writes it last (:mod:`dataengine.build`), the teacher rewrites it as it
annotates shards (:mod:`dataengine.teacher.rewriter`), the loader plans its streams
from it (:func:`train.loader.shard_index`) and the inspector reports and checks it
(:mod:`dataengine.inspect`). The dataclasses below hold exactly the JSON layout::

    format_version, label_spec_version   schema.FORMAT_VERSION, LABEL_SPEC_VERSION
    build_config                         the BuildConfig as a dict
    build_key                            sha256 of versions, config and inputs
    inputs[]                             InputEntry: path, kind, sha256, bytes, positions,
                                         skipped, notes
    positions_read, repeats_dropped, records, bytes_per_record
    skipped, notes                       units skipped / kept with a change, per reason
    splits{train, val}                   SplitEntry: records, buckets, teacher, shards[],
                                         zarr (val only)
        shards[]                         ShardEntry: path, sha256, bytes, blocks, records,
                                         buckets, teacher
    teacher                              TeacherPass: the settings of `make teacher`,
                                         complete, per-shard and per-split counts

``buckets`` and ``teacher`` count records per bucket (``schema.BUCKETS`` order);
``teacher`` counts those with a teacher eval, from which the loader plans its teacher
streams. The file is ``json.dumps(..., indent=1, sort_keys=True)``: reading and writing
it again gives the same bytes. A key this module does not know is kept (top level) as
it was; a missing optional key stays missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dataengine import schema
from dataengine.fileio import atomic_write

MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """A manifest that cannot be read: missing, not JSON, not this layout, another
    version. The message names the file; ``path`` is the file."""

    def __init__(self, path: str | Path, message: str):
        super().__init__(message)
        self.path = Path(path)


class ManifestMissing(ManifestError):
    """There is no manifest file (no build, or one that did not finish)."""


class ManifestVersionError(ManifestError):
    """The manifest is of another format version than this reader's."""

    def __init__(self, path: str | Path, found: object):
        super().__init__(path, f"{str(path)!r}: format version {found!r}, this reader reads "
                               f"{schema.FORMAT_VERSION} (rebuild the shards: make shards)")
        self.found = found


# ----------------------------------------------------------------------------- parsing


class _Fields:
    """Typed access to the keys of one JSON object, with errors that say where."""

    def __init__(self, obj: object, where: str, path: str):
        self.where, self.path = where, path  # where: "" for the top level
        if not isinstance(obj, dict):
            self.fail(f"{where or 'the manifest'} is not an object")
        self.obj: dict = obj

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, what: str):
        raise ManifestError(self.path, f"{self.path!r} is not a shards manifest: {what}")

    def get(self, key: str, types: type | tuple[type, ...], *, optional: bool = False) -> Any:
        if key not in self.obj:
            if optional:
                return None
            self.fail(f"{self.where or 'the manifest'} has no {key!r}")
        value = self.obj[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
            names = "/".join(t.__name__ for t in _tuple(types))
            self.fail(f"{self.name(key)} is {value!r}, not {names}")
        return value

    def counts(self, key: str, *, optional: bool = False) -> dict[str, int] | None:
        value = self.get(key, dict, optional=optional)
        if value is not None and not all(isinstance(v, int) for v in value.values()):
            self.fail(f"{self.name(key)} has a count that is not an int: {value!r}")
        return value


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _without_none(pairs: dict[str, Any]) -> dict[str, Any]:
    """The JSON object of `pairs`, optional keys (None) left out."""
    return {k: v for k, v in pairs.items() if v is not None}


_NUMBER = (int, float)


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class ShardEntry:
    """One shard tar of a split."""

    path: str  # relative to the shards directory: "<split>/shard-NNNNNN.tar"
    sha256: str
    bytes: int
    blocks: int
    records: int
    buckets: dict[str, int]  # records per bucket
    teacher: dict[str, int] | None = None  # of those, records with a teacher eval

    @property
    def split(self) -> str:
        return self.path.split("/", 1)[0]

    def teacher_count(self, bucket: str) -> int:
        return int((self.teacher or {}).get(bucket, 0))

    def stream_counts(self) -> tuple[int, ...]:
        """Records per loader stream: for each bucket (schema.BUCKETS order) those with a
        teacher eval, then the others."""
        counts: list[int] = []
        for b in schema.BUCKETS:
            t = self.teacher_count(b)
            counts += [t, int(self.buckets[b]) - t]
        return tuple(counts)

    @classmethod
    def from_json(cls, obj: object, where: str, path: str) -> ShardEntry:
        f = _Fields(obj, where, path)
        return cls(path=f.get("path", str), sha256=f.get("sha256", str),
                   bytes=f.get("bytes", int), blocks=f.get("blocks", int),
                   records=f.get("records", int), buckets=f.counts("buckets"),
                   teacher=f.counts("teacher", optional=True))

    def to_json(self) -> dict:
        return _without_none({
            "path": self.path, "sha256": self.sha256, "bytes": self.bytes,
            "blocks": self.blocks, "records": self.records, "buckets": dict(self.buckets),
            "teacher": None if self.teacher is None else dict(self.teacher),
        })


def bucket_counts(shards: Iterable[ShardEntry]) -> dict[str, int]:
    """Records per bucket of `shards`, every bucket named (schema.BUCKETS order)."""
    shards = list(shards)
    return {b: sum(int(s.buckets.get(b, 0)) for s in shards) for b in schema.BUCKETS}


def teacher_counts(shards: Iterable[ShardEntry]) -> dict[str, int]:
    """Records with a teacher eval per bucket of `shards`, every bucket named."""
    shards = list(shards)
    return {b: sum(s.teacher_count(b) for s in shards) for b in schema.BUCKETS}


@dataclass(frozen=True)
class SplitEntry:
    """A split: its totals and its shards in order."""

    records: int
    buckets: dict[str, int]
    teacher: dict[str, int]
    shards: tuple[ShardEntry, ...]
    zarr: str | None = None  # the validation store (val only), relative to the directory

    @classmethod
    def of(cls, shards: Iterable[ShardEntry], zarr: str | None = None) -> SplitEntry:
        """The split of `shards`, its totals summed from them."""
        shards = tuple(shards)
        return cls(records=sum(s.records for s in shards), buckets=bucket_counts(shards),
                   teacher=teacher_counts(shards), shards=shards, zarr=zarr)

    @classmethod
    def from_json(cls, obj: object, where: str, path: str) -> SplitEntry:
        f = _Fields(obj, where, path)
        shards = f.get("shards", list)
        return cls(records=f.get("records", int), buckets=f.counts("buckets"),
                   teacher=f.counts("teacher"),
                   shards=tuple(ShardEntry.from_json(s, f"{where}.shards[{k}]", path)
                                for k, s in enumerate(shards)),
                   zarr=f.get("zarr", str, optional=True))

    def to_json(self) -> dict:
        return _without_none({
            "records": self.records, "buckets": dict(self.buckets),
            "teacher": dict(self.teacher), "shards": [s.to_json() for s in self.shards],
            "zarr": self.zarr,
        })


@dataclass(frozen=True)
class InputEntry:
    """One input file of the build."""

    path: str
    kind: str
    sha256: str
    bytes: int
    positions: int  # positions read from it (before the repeat cap)
    skipped: int  # units skipped
    notes: int | None = None  # units kept with a change (absent in older manifests)

    @classmethod
    def from_json(cls, obj: object, where: str, path: str) -> InputEntry:
        f = _Fields(obj, where, path)
        return cls(path=f.get("path", str), kind=f.get("kind", str),
                   sha256=f.get("sha256", str), bytes=f.get("bytes", int),
                   positions=f.get("positions", int), skipped=f.get("skipped", int),
                   notes=f.get("notes", int, optional=True))

    def to_json(self) -> dict:
        return _without_none({
            "path": self.path, "kind": self.kind, "sha256": self.sha256, "bytes": self.bytes,
            "positions": self.positions, "skipped": self.skipped, "notes": self.notes,
        })


@dataclass(frozen=True)
class TeacherPass:
    """What `make teacher` did to the shards: its settings, whether it finished, and its
    counts per shard (by path) and per split (dataengine.teacher.rewriter.COUNT_KEYS)."""

    engine: str
    engine_options: dict
    nodes: int
    fraction: float
    overwrite: bool
    complete: bool
    shards: dict[str, dict]
    splits: dict[str, dict]

    SETTINGS = ("engine", "engine_options", "nodes", "fraction", "overwrite")

    def settings(self) -> dict:
        """The settings that a later pass must repeat to continue this one."""
        return {k: getattr(self, k) for k in self.SETTINGS}

    @classmethod
    def from_json(cls, obj: object, where: str, path: str) -> TeacherPass:
        f = _Fields(obj, where, path)
        return cls(engine=f.get("engine", str), engine_options=f.get("engine_options", dict),
                   nodes=f.get("nodes", int), fraction=f.get("fraction", _NUMBER),
                   overwrite=f.get("overwrite", bool), complete=f.get("complete", bool),
                   shards=f.get("shards", dict), splits=f.get("splits", dict))

    def to_json(self) -> dict:
        return {
            "engine": self.engine, "engine_options": dict(self.engine_options),
            "nodes": self.nodes, "fraction": self.fraction, "overwrite": self.overwrite,
            "complete": self.complete, "shards": {k: dict(v) for k, v in self.shards.items()},
            "splits": {k: dict(v) for k, v in self.splits.items()},
        }


@dataclass(frozen=True)
class Manifest:
    """The whole manifest. Splits are in ``schema.SPLITS`` order."""

    format_version: int
    label_spec_version: int
    build_config: dict
    inputs: tuple[InputEntry, ...]
    positions_read: int
    repeats_dropped: int
    records: int
    bytes_per_record: float | None  # None: no records
    skipped: dict[str, int]
    notes: dict[str, int] | None  # absent in older manifests
    splits: dict[str, SplitEntry]
    build_key: str | None = None
    teacher: TeacherPass | None = None
    #: top-level keys that this module does not know, kept as they were
    extra: dict[str, Any] = field(default_factory=dict)

    def shards(self, split: str | None = None) -> tuple[ShardEntry, ...]:
        """The shards of `split`, or of every split (in split order) for None."""
        if split is not None:
            return self.splits[split].shards
        return tuple(s for sp in self.splits.values() for s in sp.shards)

    def shard(self, path: str) -> ShardEntry:
        """The entry of the shard at `path` (relative to the directory)."""
        for s in self.shards():
            if s.path == path:
                return s
        raise KeyError(path)

    def teacher_counts(self, split: str | None = None) -> dict[str, int]:
        """Records with a teacher eval per bucket, summed over the shards of `split` (or of
        every split)."""
        return teacher_counts(self.shards(split))

    def input_path(self, file_id: int) -> str | None:
        """The path of input file `file_id` (a record's ``file_id``), None if out of range."""
        return self.inputs[file_id].path if 0 <= file_id < len(self.inputs) else None

    def with_shard(self, entry: ShardEntry) -> Manifest:
        """This manifest with the shard at ``entry.path`` replaced by `entry`: every split's
        teacher totals and ``bytes_per_record`` follow the shards (what the teacher does
        after annotating a shard)."""
        if entry.path not in {s.path for s in self.shards()}:
            raise KeyError(entry.path)
        splits = {}
        for name, sp in self.splits.items():
            shards = tuple(entry if s.path == entry.path else s for s in sp.shards)
            splits[name] = replace(sp, shards=shards, teacher=teacher_counts(shards))
        out = replace(self, splits=splits)
        return replace(out, bytes_per_record=shard_bytes_per_record(out.shards(),
                                                                    self.bytes_per_record))

    @classmethod
    def from_json(cls, obj: object, path: str = MANIFEST_NAME) -> Manifest:
        """The manifest of a parsed ``manifest.json`` (`path` names it in errors)."""
        f = _Fields(obj, "", path)
        splits = f.get("splits", dict)
        teacher = f.get("teacher", dict, optional=True)
        known = {k for k in cls.__dataclass_fields__ if k != "extra"}
        return cls(
            format_version=f.get("format_version", int),
            label_spec_version=f.get("label_spec_version", int),
            build_config=f.get("build_config", dict),
            inputs=tuple(InputEntry.from_json(x, f"inputs[{k}]", path)
                         for k, x in enumerate(f.get("inputs", list))),
            positions_read=f.get("positions_read", int),
            repeats_dropped=f.get("repeats_dropped", int),
            records=f.get("records", int),
            bytes_per_record=f.get("bytes_per_record", (*_NUMBER, type(None))),
            skipped=f.counts("skipped"),
            notes=f.counts("notes", optional=True),
            splits={name: SplitEntry.from_json(sp, f"splits.{name}", path)
                    for name, sp in splits.items()},
            build_key=f.get("build_key", str, optional=True),
            teacher=None if teacher is None else TeacherPass.from_json(teacher, "teacher", path),
            extra={k: v for k, v in f.obj.items() if k not in known},
        )

    def to_json(self) -> dict:
        """The JSON object (fresh dicts and lists: changing it leaves the manifest as it is)."""
        out = {
            "format_version": self.format_version,
            "label_spec_version": self.label_spec_version,
            "build_config": json.loads(json.dumps(self.build_config)),
            "inputs": [x.to_json() for x in self.inputs],
            "positions_read": self.positions_read,
            "repeats_dropped": self.repeats_dropped,
            "records": self.records,
            "bytes_per_record": self.bytes_per_record,
            "skipped": dict(self.skipped),
            "notes": None if self.notes is None else dict(self.notes),
            "splits": {name: sp.to_json() for name, sp in self.splits.items()},
            "build_key": self.build_key,
            "teacher": None if self.teacher is None else self.teacher.to_json(),
        }
        out = {k: v for k, v in out.items() if v is not None or k == "bytes_per_record"}
        return {**json.loads(json.dumps(self.extra)), **out}

    def to_bytes(self) -> bytes:
        """The file's bytes."""
        return json.dumps(self.to_json(), indent=1, sort_keys=True).encode()


def shard_bytes_per_record(shards: Iterable[ShardEntry], default: float | None = None
                           ) -> float | None:
    """Shard bytes per record over `shards`, rounded to 2 decimals; `default` if they
    hold no records."""
    shards = list(shards)
    records = sum(s.records for s in shards)
    return round(sum(s.bytes for s in shards) / records, 2) if records else default


# ----------------------------------------------------------------------------- files


def path_of(directory: str | Path) -> Path:
    return Path(directory) / MANIFEST_NAME


def read(directory: str | Path, *, check_version: bool = True) -> Manifest:
    """The manifest of the shards directory `directory`.

    Raises :class:`ManifestMissing` if there is none, :class:`ManifestVersionError` for
    another ``format_version`` (unless ``check_version`` is false) and
    :class:`ManifestError` for a file that is unreadable, not JSON or not this layout;
    each message names the file.
    """
    path = path_of(directory)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ManifestMissing(path, f"{str(path)!r} not found") from None
    except OSError as e:
        raise ManifestError(path, f"cannot read {str(path)!r}: {e}") from None
    try:
        obj = json.loads(text)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ManifestError(path, f"{str(path)!r} is not valid JSON: {e}") from None
    if check_version and isinstance(obj, dict) and obj.get("format_version") != schema.FORMAT_VERSION:
        raise ManifestVersionError(path, obj.get("format_version"))
    return Manifest.from_json(obj, str(path))


def write(directory: str | Path, manifest: Manifest) -> Path:
    """Write `manifest` into `directory` atomically (temp file, fsync, rename): a reader
    sees the old file or the new one, never half of one. Returns the file's path."""
    path = path_of(directory)
    atomic_write(path, manifest.to_bytes())
    return path

