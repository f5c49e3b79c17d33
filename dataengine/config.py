"""Configuration of the data engine: dataclasses with a docstring per field, loaded
from the ``data:`` section of ``config.yaml`` and validated on load.

``load_section`` is the generic loader that the trainer's config uses as well:
unknown keys and values of the wrong type are errors that name the key.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dataengine import schema

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad key or value in config.yaml (or a flag), named in the message."""


@dataclass(kw_only=True)
class BucketRules:
    """How each record gets exactly one curriculum bucket.

    The rules are tried in ``order``; the first that matches wins, and a record
    that matches none is ``positional``. Masks are the canonical labels, so "us"
    is the side to move.
    """

    order: list[str] = field(
        default_factory=lambda: ["openings", "tactical", "endgames", "king_safety"]
    )
    """Priority of the rules; a permutation of the buckets other than positional."""
    opening_max_ply: int = 16
    """openings: a record from an opening line, or a game position with ply below this."""
    endgame_max_material: int = 13
    """endgames: non-pawn material of both sides together (N=B=3, R=5, Q=9) at most this."""
    tactical_sources: list[str] = field(default_factory=lambda: ["puzzle"])
    """tactical: every record from these sources ..."""
    tactical_masks: list[str] = field(
        default_factory=lambda: ["threat_them", "fork_us", "pin_them"]
    )
    """... and every record where one of these masks is non-empty (labelers.MASK_NAMES):
    by default, we can win material (an enemy piece attacked and undefended or attacked by
    something cheaper), we fork, or we pin."""
    king_safety_min_attacked: int = 3
    """king_safety: at least this many squares of our king zone (king + its moves) attacked."""
    king_safety_max_shield: int = 1
    """king_safety: or at most this many shield pawns while our king is on its first two ranks."""

    def __post_init__(self) -> None:
        rules = [b for b in schema.BUCKETS if b != "positional"]
        if sorted(self.order) != sorted(rules):
            raise ConfigError(f"buckets.order must be a permutation of {rules}, got {self.order}")
        for s in self.tactical_sources:
            if s not in schema.SOURCES:
                raise ConfigError(f"buckets.tactical_sources: unknown source {s!r} ({schema.SOURCES})")
        from labelers import MASK_NAMES

        for m in self.tactical_masks:
            if m not in MASK_NAMES:
                raise ConfigError(f"buckets.tactical_masks: unknown mask {m!r}")


@dataclass(frozen=True, kw_only=True)
class PgnFilters:
    """Which PGN games to leave out, from their tags alone (before their moves are read);
    each game left out is a skip with its own reason (``filtered_rating``,
    ``filtered_time_control``, ``filtered_termination``), counted in the manifest."""

    min_rating: int = 0
    """Keep a game only when WhiteElo and BlackElo are both at least this (a missing or
    "?" rating fails); 0: off."""
    min_base_seconds: int = 0
    """Keep a game only when the base time of its TimeControl is at least this many
    seconds ("600+5": 600; a missing, "-" or unparsable TimeControl fails); 0: off."""
    skip_abandoned: bool = True
    """Leave out games whose Termination tag is "Abandoned" (Lichess: a player never
    moved or left)."""

    def __post_init__(self) -> None:
        for name in ("min_rating", "min_base_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"pgn_filters.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(kw_only=True)
class BuildConfig:
    """How `make shards` turns inputs into shards."""

    val_fraction: float = 0.02
    """Share of games (never positions) that go to the validation split, chosen by game id."""
    val_min_positions: int = 4000
    """More games go to the validation split until it holds at least this many positions
    (a few thousand give held-out top-1 intervals of about +-1.5 points), within
    val_max_fraction. 0 = val_fraction alone decides."""
    val_max_fraction: float = 0.25
    """val_min_positions never takes more than this share of the records."""
    max_repeats: int = 8
    """Keep at most this many copies of one canonical position (the start position is in
    every game); the first ones in input order are kept."""
    block_records: int = schema.BLOCK_RECORDS
    """Records per tar member (a compressed block of columns)."""
    blocks_per_shard: int = 8
    """Tar members per shard."""
    zstd_level: int = schema.ZSTD_LEVEL
    """zstd level of the shard blocks."""
    chunk_bytes: int = 4 << 20
    """Plain input files are cut into tasks of about this many bytes at game/row boundaries."""
    spill_pairs: int = 1 << 24
    """The repeat cap (dataengine.spill) holds about this many (key, index) pairs in memory
    at once, 16 bytes each plus its sort's arrays (~400 MB at the default); the rest of
    the input's keys wait in spill files on disk. Lower it on a small machine."""
    skip_log_limit: int = 1000
    """How many skipped inputs (and inputs kept with a change, as ``kept:<reason>``) are
    written to skipped.log (all are counted in the manifest)."""
    buckets: BucketRules = field(default_factory=BucketRules)
    pgn_filters: PgnFilters = field(default_factory=PgnFilters)
    """Which PGN games to leave out by their tags (ratings, time control, termination)."""
    limit: int = 0
    """Read at most this many games/rows/lines (kept or skipped) from each input file,
    from its start, and not the rest (``--limit``); 0: all. A file is then one task."""

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ConfigError(f"limit must be >= 0, got {self.limit}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.val_max_fraction < 1.0:
            raise ConfigError(f"val_max_fraction must be in [0, 1), got {self.val_max_fraction}")
        if self.val_min_positions < 0:
            raise ConfigError(f"val_min_positions must be >= 0, got {self.val_min_positions}")
        for name in ("max_repeats", "block_records", "blocks_per_shard", "chunk_bytes",
                     "spill_pairs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.zstd_level <= 22:
            raise ConfigError(f"zstd_level must be in 1..22, got {self.zstd_level}")


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return load_section(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (inner,) = typing.get_args(tp)[:1]
        return [_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_type(value, inner, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (
        not isinstance(value, tp) or (tp is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where} must be {tp.__name__}, got {value!r}")
    return value


def load_section(cls: type[T], data: dict | None, where: str) -> T:
    """Build dataclass `cls` from a mapping, naming any unknown key or bad value."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]} (known: {', '.join(sorted(fields))})")
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {str(path)!r}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{str(path)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{str(path)!r} must hold a mapping at top level")
    return data


def load_build_config(path: str | Path | None) -> BuildConfig:
    """The ``data:`` section of a config file (defaults when path is None)."""
    if path is None:
        return BuildConfig()
    return load_section(BuildConfig, read_yaml(path).get("data"), "data")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` (and its bases), one line each:
    the string literal that follows the field in the class body. Config classes document
    their fields this way, and command-line help is made from the same text.

    >>> field_docs(BuildConfig)["val_fraction"].split(",")[0]
    'Share of games (never positions) that go to the validation split'
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (frozen, interactive): no help, no harm
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)
