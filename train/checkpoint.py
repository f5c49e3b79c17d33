"""Checkpoints: atomic writes, weights-only loads, finding the latest one.

A checkpoint holds everything needed to continue exactly: model, EMA, optimizer,
scheduler, grad scaler, loader state, RNG states, step, counters and the run
config. Only tensors and plain containers go in, so ``torch.load(...,
weights_only=True)`` reads it back (no pickle of arbitrary objects).
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import numpy as np
import torch

from dataengine.fileio import atomic_write_with

log = logging.getLogger("train")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


def save(path: str | Path, state: dict) -> None:
    """torch.save to a temp file, fsync, rename, fsync the directory: a crash or a full
    disk never leaves half a checkpoint under ``path`` (nor a temp file beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda f: torch.save(state, f))


def load(path: str | Path, device: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {str(path)!r}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated file, not a checkpoint, unsafe content
        raise CheckpointError(f"cannot load checkpoint {str(path)!r}: {e}") from None


def step_path(directory: Path, prefix: str, step: int) -> Path:
    return directory / f"{prefix}_step{step:08d}.pt"


def intermediate(directory: Path, prefix: str) -> list[tuple[int, Path]]:
    """(step, path) of the intermediate checkpoints of a prefix, oldest first."""
    pattern = re.compile(rf"^{re.escape(prefix)}_step(\d+)\.pt$")
    found = []
    if directory.is_dir():
        for p in directory.iterdir():
            m = pattern.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return sorted(found)


def latest(directory: Path, prefix: str) -> Path | None:
    found = intermediate(directory, prefix)
    return found[-1][1] if found else None


def peek(path: str | Path) -> dict | None:
    """``step`` and ``prefix`` (its run's checkpoint_prefix; None in a checkpoint that does
    not say) of a checkpoint, read without loading its tensors (memory-mapped); None when
    it does not load."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint (mmap needs one), truncated, not a checkpoint
        try:
            state = load(path)
        except CheckpointError:
            return None
    if not isinstance(state, dict):
        return None
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    step = state.get("step")
    return {"step": step if isinstance(step, int) else None,
            "prefix": train.get("checkpoint_prefix")}


def latest_loadable(directory: Path, prefix: str, device: str | torch.device = "cpu",
                    final: Path | None = None) -> tuple[Path, dict] | tuple[None, None]:
    """The newest checkpoint of ``prefix`` that loads, and its state; newer ones that do
    not (truncated by a full disk, damaged) are skipped with a warning that names them and
    says why. (None, None) when there is none.

    The candidates are the intermediate checkpoints and ``final`` (the run's final
    checkpoint, when given and there: a run saved with --save-every 0 has no other),
    newest step first; at the same step an intermediate one is taken."""
    candidates = [(step, 1, path) for step, path in intermediate(directory, prefix)]
    if final is not None and Path(final).is_file():
        seen = peek(final)
        step = seen["step"] if seen and seen["step"] is not None else -1
        candidates.append((step, 0, Path(final)))
    for _, _, path in sorted(candidates, reverse=True):
        try:
            return path, load(path, device)
        except CheckpointError as e:
            log.warning("auto-resume: skipping %s, it does not load (%s)", path.name,
                        " ".join(str(e).split())[:300])
    return None, None


def prune(directory: Path, prefix: str, keep: int) -> None:
    if keep > 0:
        for _, p in intermediate(directory, prefix)[:-keep]:
            p.unlink(missing_ok=True)


def rng_state() -> dict:
    """All RNG states as tensors and plain values (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
