"""The sqlite cache of engine answers, keyed by (engine, nodes, position).

Answers are committed per chunk of a few positions: a killed run loses only the chunks in
flight, and a second run does no engine work.

The cache key (`position_key`) is the EPD plus the halfmove clock: Stockfish damps its
eval as the fifty-move counter grows (at 4,000 nodes 48 of 50 sample positions changed
eval when the clock went 0 -> 60 -> 95), so the clock is part of the question. The
fullmove number changes nothing in a node-limited search and is left out.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import chess

from dataengine.teacher.engine import Analysis, TeacherError

DEFAULT_CACHE = "teacher.sqlite"
"""The cache's file name inside SHARDS_DIR when --cache is not given."""


class Cache:
    """Engine answers in sqlite, keyed by (engine, nodes, position).

    WAL journal: a committed chunk survives a killed process, and another process may
    read the file while a run writes it.
    """

    def __init__(self, path: Path, engine: str, nodes: int) -> None:
        self.engine, self.nodes = engine, nodes
        try:
            self.db = sqlite3.connect(path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS evals (engine TEXT NOT NULL, nodes INTEGER NOT NULL,"
                " position TEXT NOT NULL, cp INTEGER NOT NULL, mate INTEGER NOT NULL,"
                " move TEXT NOT NULL, depth INTEGER NOT NULL,"
                " PRIMARY KEY (engine, nodes, position)) WITHOUT ROWID"
            )
            self.db.commit()
        except sqlite3.Error as exc:
            raise TeacherError(f"cannot use the cache {str(path)!r}: {exc}") from exc

    def get(self, keys: list[str]) -> dict[str, Analysis]:
        found = {}
        for i in range(0, len(keys), 500):
            batch = keys[i : i + 500]
            rows = self.db.execute(
                "SELECT position, cp, mate, move, depth FROM evals WHERE engine = ? AND nodes = ?"
                f" AND position IN ({','.join('?' * len(batch))})",
                [self.engine, self.nodes, *batch],
            )
            for position, cp, mate, move, depth in rows:
                found[position] = Analysis(cp, mate, move, depth)
        return found

    def put(self, answers: list[tuple[str, Analysis]]) -> None:
        """Store `answers` in one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO evals VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(self.engine, self.nodes, k, a.cp, a.mate, a.move, a.depth) for k, a in answers],
            )

    def close(self) -> None:
        self.db.close()


def position_key(board: chess.Board) -> str:
    """What the engine is asked: EPD (legal en passant only) and the halfmove clock.

    >>> position_key(chess.Board())
    'rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0'
    """
    return f"{board.epd()} {board.halfmove_clock}"
