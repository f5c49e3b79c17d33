"""Stale POSIX semaphores of killed runs.

Process pools and DataLoader workers started with ``spawn`` share locks through
named semaphores, ``/dev/shm/sem.mp-*``; Python's resource tracker removes them
when the run ends, but a ``kill -9`` of the whole process group takes the
tracker with it, and every killed build or training run leaves a few behind
(each is a small file in shared memory, kept until reboot).

A semaphore in use is mapped into the memory of every process that opened it,
its creator included, so a ``sem.mp-*`` file that no live process maps (by inode)
belongs to no one: :func:`remove_stale_semaphores` removes those of this user.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["remove_stale_semaphores"]

SHM = Path("/dev/shm")
PATTERN = "sem.mp-*"


def _mapped_inodes(shm: Path) -> set[int]:
    """Inodes of the files under ``shm`` that live processes map. By inode, not by name:
    glibc's sem_open maps a temporary file and only then links it under its sem.* name,
    so the maps show the temporary name, "(deleted)". Processes whose maps cannot be
    read are left out: another user's, non-dumpable (setuid) programs or a sandbox's
    init, none of them a Python process of this user sharing a lock."""
    prefix = f"{shm}/"
    mapped: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            maps = (proc / "maps").read_text()
        except OSError:  # ended meanwhile, or not readable (see above)
            continue
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)  # address perms offset dev inode path
            if len(fields) == 6 and fields[5].startswith(prefix):
                mapped.add(int(fields[4]))
    return mapped


def remove_stale_semaphores(shm: Path = SHM) -> list[str]:
    """Remove this user's ``sem.mp-*`` files that no live process maps; returns their
    names (logged). Does nothing where there is no /dev/shm or /proc (macOS)."""
    if not shm.is_dir() or not Path("/proc/self/maps").exists():
        return []
    uid = os.getuid()
    candidates = [p for p in shm.glob(PATTERN) if _owned_by(p, uid)]
    if not candidates:
        return []
    mapped = _mapped_inodes(shm)
    removed = []
    for path in candidates:
        try:
            if path.stat().st_ino in mapped:
                continue
            path.unlink()
        except OSError:  # removed meanwhile (by another run's cleanup)
            continue
        removed.append(path.name)
    if removed:
        log.info("removed %d stale semaphore file(s) of killed runs from %s", len(removed), shm)
    return removed


def _owned_by(path: Path, uid: int) -> bool:
    try:
        return path.stat().st_uid == uid
    except OSError:
        return False
