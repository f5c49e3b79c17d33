"""Reading a shards directory for the inspection commands: the manifest, then
blocks in split and shard order, each located by shard file and member key.

Every problem becomes an :class:`InspectError` whose message names the file, so
that the command line can print it as one ``error: ...`` line. ``verify`` reads
shards itself through :func:`read_members`, because it reports problems and goes
on instead of stopping at the first.
"""

from __future__ import annotations

import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dataengine import manifest as manifests
from dataengine import schema
from dataengine.manifest import Manifest, ShardEntry
from dataengine.progress import progress as progress_bar

SPLIT_CHOICES = (*schema.SPLITS, "all")


class InspectError(Exception):
    """A problem reported as one ``error: ...`` line, exit status 2."""


@dataclass(frozen=True)
class BlockRef:
    """Where a decoded block came from."""

    split: str
    shard: str  # the manifest's path, relative to the shards directory
    key: str  # the tar member's key (its name without ``.cols.zst``)
    start: int  # index within the split of the block's first record

    @property
    def name(self) -> str:
        return f"{self.shard}:{self.key}"


@dataclass(frozen=True)
class Shards:
    """A shards directory and its manifest."""

    root: Path
    manifest: Manifest

    @classmethod
    def open(cls, root: str | Path) -> Shards:
        root = Path(root)
        if not root.is_dir():
            raise InspectError(f"no shards directory {str(root)!r} (build one with `make shards`)")
        path = manifests.path_of(root)
        try:  # any version: `verify` reports another one as a problem
            manifest = manifests.read(root, check_version=False)
        except manifests.ManifestMissing:
            raise InspectError(
                f"{str(path)!r} not found: not a shards directory, or its build did not finish"
            ) from None
        except manifests.ManifestError as e:
            raise InspectError(str(e)) from None
        for split in schema.SPLITS:
            if split not in manifest.splits:
                raise InspectError(f"{str(path)!r} has no shard list for split {split!r}")
        return cls(root, manifest)

    def shards(self, split: str) -> tuple[ShardEntry, ...]:
        return self.manifest.shards(split)

    def records(self, split: str) -> int:
        """Records of a split (or of "all") as the manifest counts them."""
        return sum(s.records for sp in splits_of(split) for s in self.shards(sp))

    def require_records(self, split: str, task: str) -> None:
        """Raise :class:`InspectError` when `split` (or "all") holds no record: `task`
        (e.g. "nothing to plot") would produce nothing."""
        if not self.records(split):
            where = "the shards" if split == "all" else f"the {split} split"
            verb = "hold" if split == "all" else "holds"
            raise InspectError(f"{where} of {str(self.root)!r} {verb} no records: {task}")

    def input_path(self, file_id: int) -> str | None:
        return self.manifest.input_path(file_id)


def splits_of(split: str) -> tuple[str, ...]:
    return schema.SPLITS if split == "all" else (split,)


def read_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(key, bytes) of each block of a shard tar, in tar order.

    Raises ``tarfile.TarError`` (a truncated or corrupt tar), ``OSError`` and
    :class:`schema.ShardFormatError` for a member that is not a block.
    """
    suffix = f".{schema.MEMBER_EXT}"
    size = path.stat().st_size
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(suffix):
                raise schema.ShardFormatError(
                    f"{path.name}: unexpected tar member {member.name!r} (blocks are *{suffix})"
                )
            f = tar.extractfile(member)
            data = f.read() if f is not None else b""
            if len(data) != member.size:  # tarfile raises first in practice; belt and braces
                raise tarfile.ReadError(f"member {member.name!r} is short: unexpected end of data")
            yield member.name[: -len(suffix)], data
        # tarfile ends quietly when a tar is cut at (or inside) a member header; a
        # complete one ends with two zero blocks
        if size - tar.offset < 2 * tarfile.BLOCKSIZE:
            raise tarfile.ReadError("unexpected end of data: no end-of-archive marker")


def decode(data: bytes, name: str) -> schema.Block:
    """``schema.decode_block``, with a header that parses but lacks fields (KeyError
    and such) reported as a ShardFormatError too."""
    try:
        return schema.decode_block(data, name)
    except schema.ShardFormatError:
        raise
    except (KeyError, TypeError, ValueError, struct.error) as e:
        raise schema.ShardFormatError(f"{name}: undecodable block ({type(e).__name__}: {e})") \
            from None


def iter_blocks(
    shards: Shards,
    split: str,
    *,
    limit: int | None = None,
    skip_to: int = 0,
    progress: str | None = None,
) -> Iterator[tuple[BlockRef, schema.Block]]:
    """Decoded blocks of a split ("train", "val" or "all"), in shard order.

    ``limit`` stops after that many records (the last block is cut). ``skip_to``
    skips, unread, the shards that the manifest counts as ending at or before that
    record of the split (for "train" or "val" only). ``progress``
    is the description of a tqdm bar (shown on a terminal only). Raises
    :class:`InspectError` naming the shard for a missing, truncated or unreadable
    shard and for a shard whose record count differs from the manifest's.
    """
    total = shards.records(split)
    if limit is not None:
        total = min(total, limit)
    bar = progress_bar(total=total, unit="rec", unit_scale=True, desc=progress,
               disable=None if progress else True, dynamic_ncols=True, leave=False)
    seen = 0
    try:
        for sp in splits_of(split):
            start = 0
            for entry in shards.shards(sp):
                if start + entry.records <= skip_to:
                    start += entry.records
                    continue
                name = entry.path
                path = shards.root / name
                n_shard = 0
                try:
                    for key, data in read_members(path):
                        if limit is not None and seen >= limit:
                            return
                        block = decode(data, f"{name}:{key}")
                        n = schema.block_len(block)
                        if limit is not None and seen + n > limit:
                            block = schema.take(block, slice(0, limit - seen))
                            n = limit - seen
                        yield BlockRef(sp, name, key, start + n_shard), block
                        n_shard += n
                        seen += n
                        bar.update(n)
                except FileNotFoundError:
                    raise InspectError(f"{name}: shard file missing") from None
                except (tarfile.TarError, EOFError) as e:
                    raise InspectError(f"{name}: truncated or corrupt tar ({e})") from None
                except OSError as e:
                    raise InspectError(f"{name}: cannot read ({e})") from None
                except schema.ShardFormatError as e:
                    raise InspectError(str(e)) from None
                if n_shard != entry.records and (limit is None or seen < limit):
                    raise InspectError(
                        f"{name}: holds {n_shard} records, the manifest says {entry.records}"
                        " (run `verify`)"
                    )
                start += n_shard
    finally:
        bar.close()
