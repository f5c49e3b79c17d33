"""Shared bench helpers: shards to measure on (built once into a cache directory)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataengine.build import build  # noqa: E402


def bench_shards() -> Path:
    """Shards of the shared sample data when present (else the repo's sample data),
    built once into $TMPDIR/chess-ssl-bench-shards."""
    shared = REPO.parent / "shared" / "data"
    inputs = [str(shared)] if shared.is_dir() else [str(REPO / "dataengine" / "sample_data")]
    out = Path(os.environ.get("BENCH_SHARDS", Path(tempfile.gettempdir()) /
                              "chess-ssl-bench-shards"))
    build(inputs, out, workers=os.cpu_count() or 1, quiet=True)  # a no-op when up to date
    return out
