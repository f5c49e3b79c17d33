"""Give the memory a finished task freed back to the OS, so that a long build's peak RSS
stays what one task needs.

glibc's malloc keeps freed heap blocks for reuse, and a build frees hundreds of MB a
task (a piece is ~80 MB of columns) in sizes that do not line up from one task to the
next, so the heap's high-water mark creeps up with the number of tasks. ``malloc_trim``
returns the free pages. Only glibc (Linux) has it; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 (present in every glibc, but check)
    except (OSError, AttributeError):
        return None
    return libc


def release_freed_memory() -> bool:
    """Return the heap's free pages to the OS (``malloc_trim(0)``); True if it could."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
