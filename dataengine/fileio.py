"""Small file helpers shared by the writer and the tools: atomic writes,
hashing, reproducible tars."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory + rename: readers never see half a file."""
    atomic_write_with(path, lambda f: f.write(data))


def atomic_write_with(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(f)`` into a temp file beside ``path``, fsync it, rename it over ``path``,
    fsync the directory. If anything fails (a full disk) the temp file is removed and
    ``path`` is left as it was: never half a file under the final name."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shard_file_problem(root: str | Path, entry) -> str | None:
    """What is wrong with the shard file of a manifest entry (a
    ``dataengine.manifest.ShardEntry``: ``path``, ``bytes``, ``sha256``) under ``root``:
    missing, another size, another sha256; None if nothing."""
    name = entry.path
    path = Path(root) / name
    if not path.is_file():
        return f"{name}: shard file missing"
    size = path.stat().st_size
    if size != entry.bytes:
        return (f"{name}: {size:,} bytes, the manifest says {entry.bytes:,}"
                + (" (truncated)" if size < entry.bytes else ""))
    digest = sha256_file(path)
    if digest != entry.sha256:
        return f"{name}: sha256 {digest[:16]}..., the manifest says {entry.sha256[:16]}..."
    return None


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A reproducible tar: fixed mtime, owner and mode, members in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
