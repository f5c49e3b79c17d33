"""Stale semaphores of killed runs: made by a real kill -9, removed; live ones kept."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataengine.shm import SHM, remove_stale_semaphores

pytestmark = pytest.mark.skipif(not SHM.is_dir() or not Path("/proc/self/maps").exists(),
                                reason="POSIX shared memory in /dev/shm and /proc are Linux's")

# a process that holds a spawn-context lock (a named semaphore, kept while in use) and a
# resource tracker, prints the semaphore's name and waits to be killed
HOLDER = """
import multiprocessing, sys, time
lock = multiprocessing.get_context("spawn").Lock()
print(lock._semlock.name, flush=True)
time.sleep(600)
"""


def semaphores() -> set[str]:
    return {p.name for p in SHM.glob("sem.mp-*")}


def test_a_killed_runs_semaphore_is_removed_and_live_ones_are_kept():
    live = multiprocessing.get_context("spawn").Lock()  # in use by this process
    live_name = "sem." + live._semlock.name.lstrip("/")
    assert live_name in semaphores()

    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        held = "sem." + holder.stdout.readline().strip().lstrip("/")
        assert held in semaphores()
        assert held not in remove_stale_semaphores()  # its holder is alive: not stale
        assert held in semaphores()
    finally:  # kill -9 of the whole group: the resource tracker dies too
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 10
    while held not in semaphores():  # (it must survive the kill for this test to mean much)
        assert time.monotonic() < deadline, "the killed run left no semaphore"
        time.sleep(0.1)

    removed = remove_stale_semaphores()
    assert held in removed and held not in semaphores()
    assert live_name not in removed and live_name in semaphores()
    with live:  # still a working lock
        pass
