"""Stockfish as teacher: annotate built shards with the engine's eval and best move
(``python -m dataengine.teacher SHARDS_DIR``, see :mod:`.rewriter`).

=============  =================================================================
``engine``     the engine client: find and start Stockfish, one search per
               position with a retry, the pool of worker processes
``cache``      the sqlite cache of engine answers and its key (`position_key`)
``rewriter``   selecting records, annotating shards, the manifest and
               ``val.zarr``, the command line (`main`)
=============  =================================================================

The names below are those the rest of the project uses (the trainer's evaluation, the
self-play games, the benchmark, the tests); everything else is imported from its module.
"""

from dataengine.teacher.cache import DEFAULT_CACHE, position_key
from dataengine.teacher.engine import (
    ENGINE_OPTIONS,
    EngineNotFound,
    TeacherError,
    find_stockfish,
    open_engine,
    worker_lifetime,
)
from dataengine.teacher.rewriter import DEFAULT_NODES, annotate, main, read_blocks, select

__all__ = [
    "DEFAULT_CACHE",
    "DEFAULT_NODES",
    "ENGINE_OPTIONS",
    "EngineNotFound",
    "TeacherError",
    "annotate",
    "find_stockfish",
    "main",
    "open_engine",
    "position_key",
    "read_blocks",
    "select",
    "worker_lifetime",
]
