"""Benchmark of the teacher: positions annotated per second, and per core.

    .venv/bin/python bench/bench_teacher.py [--nodes 4000 ...] [--positions 400] [--workers N]

Shards are built from the first games of the sample PGN, then the teacher CLI runs end
to end (select, analyse, cache, rewrite; a fresh cache each time) on 1 worker and on N
workers (default: all cores). Two bare rows give the engine's own share: one Stockfish
called through python-chess on the same positions, with `ucinewgame` before each (what
the teacher does, for deterministic answers) and without it.

Per core = positions / CPU seconds of every process involved (Python and Stockfish,
from getrusage), so that the figure holds on a machine that other jobs share; pos/s
is wall clock. The CLI rows also show per core without the fixed start-up cost (imports,
engine start, reading and rewriting the shards), measured by a run with nothing to do.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import chess
import chess.engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataengine import schema, teacher, views  # noqa: E402
from dataengine.build import build  # noqa: E402
from dataengine.config import BuildConfig  # noqa: E402

SAMPLE_PGN = REPO / "dataengine" / "sample_data" / "sf_selfplay_200.pgn"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_shards(root: Path, games: int) -> Path:
    (root / "in").mkdir()
    text = SAMPLE_PGN.read_text().split("\n\n[Event")[:games]
    (root / "in" / "games.pgn").write_text("\n\n[Event".join(text) + "\n\n")
    out = root / "shards"
    build([str(root / "in")], out, cfg=BuildConfig(val_fraction=0.0), quiet=True)
    return out


def boards(out: Path, fraction: float) -> list[chess.Board]:
    found = []
    for path in sorted(out.rglob("shard-*.tar")):
        for _, block in teacher.read_blocks(path):
            for i in teacher.select(block, fraction).nonzero()[0]:
                board = views.real_board(block, int(i))
                if any(board.generate_legal_moves()):
                    found.append(board)
    return list({teacher.position_key(b): b for b in found}.values())


def time_cli(shards: Path, tmp: Path, nodes: int, fraction: float, workers: int):
    """(positions, wall s, CPU s) of `python -m dataengine.teacher` on a copy of the shards."""
    work = tmp / f"run-{nodes}-{workers}"
    shutil.copytree(shards, work)
    cmd = [sys.executable, "-m", "dataengine.teacher", str(work), "--nodes", str(nodes),
           "--fraction", str(fraction), "--workers", str(workers), "--quiet"]
    cpu, t0 = children_cpu(), time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu
    with sqlite3.connect(work / teacher.DEFAULT_CACHE) as db:
        n = db.execute("SELECT COUNT(*) FROM evals").fetchone()[0]
    shutil.rmtree(work)
    return n, wall, cpu


def time_engine(positions: list[chess.Board], nodes: int, newgame: bool):
    """(positions, wall s, CPU s) of one engine analysing `positions` through python-chess."""
    cpu, own = children_cpu(), time.process_time()
    engine = teacher.open_engine(teacher.find_stockfish())
    limit = chess.engine.Limit(nodes=nodes)
    t0 = time.perf_counter()
    for board in positions:
        engine.analyse(board, limit, game=object() if newgame else None)
    wall = time.perf_counter() - t0
    engine.quit()  # reaped: its CPU time is now in RUSAGE_CHILDREN
    return len(positions), wall, children_cpu() - cpu + time.process_time() - own


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[teacher.DEFAULT_NODES])
    ap.add_argument("--positions", type=int, default=600, help="about this many per core")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    try:
        engine = teacher.find_stockfish()
    except teacher.EngineNotFound as exc:
        print(f"bench_teacher: skipped: {exc}")
        return
    with teacher.open_engine(engine) as probe:
        name = probe.id.get("name", engine)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{name} ({engine}), {os.cpu_count()} cores (load {load:.1f} at start), "
          f"Threads=1, Hash={teacher.ENGINE_OPTIONS['Hash']} MB")
    header = (f"{'nodes':>6}  {'what':<33} {'workers':>7} {'positions':>9} {'wall s':>7} "
              f"{'pos/s':>7} {'CPU s':>7} {'pos/s/core':>10} {'excl. start-up':>14}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shards = make_shards(tmp, games=20)
        records = sum(schema.block_len(b) for p in shards.rglob("shard-*.tar")
                      for _, b in teacher.read_blocks(p))
        for nodes in args.nodes:
            rows = []
            counts = sorted({1, args.workers})
            start_up = {w: time_cli(shards, tmp, nodes, 0.0, w)[2] for w in counts}
            for workers in counts:
                fraction = min(1.0, args.positions * workers / records)
                rows.append(("teacher CLI (end to end)", workers,
                             *time_cli(shards, tmp, nodes, fraction, workers), start_up[workers]))
            positions = boards(shards, min(1.0, args.positions / records))
            for newgame in (True, False):
                what = "engine.analyse, " + ("ucinewgame each" if newgame else "no ucinewgame")
                rows.append((what, 1, *time_engine(positions, nodes, newgame), None))
            for what, workers, n, wall, cpu, fixed in rows:
                steady = f"{n / (cpu - fixed):>14.1f}" if fixed is not None else ""
                print(f"{nodes:>6,}  {what:<33} {workers:>7} {n:>9,} {wall:>7.2f} "
                      f"{n / wall:>7.1f} {cpu:>7.2f} {n / cpu:>10.1f} {steady}")


if __name__ == "__main__":
    main()
