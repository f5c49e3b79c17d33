"""The shard rewriter: annotate built shards with the engine's eval and best move.

    python -m dataengine.teacher SHARDS_DIR [--nodes 4000] [--fraction 1.0] [--workers K]
        [--cache PATH] [--overwrite] [--engine PATH]

Stages:

1. **select**: a deterministic share (``--fraction``) of the records, chosen by a hash
   of the position, so that every run picks the same records (and a smaller fraction
   picks a subset of a larger one).
2. **analyse**: every selected position that the cache (:mod:`dataengine.teacher.cache`)
   does not hold yet goes to the engines (:mod:`dataengine.teacher.engine`); their
   answers go into the cache as they come.
3. **rewrite**: each shard's blocks are decoded, the teacher columns filled, re-encoded
   at the build's zstd level and the tar replaced atomically. The manifest is written
   *before* the tar, with the new sha256/bytes and the shard marked done: after a crash
   the manifest either describes the new tar or names a sha256 that the old tar does not
   have, and then that shard is simply done again. ``val.zarr`` is rewritten from the
   validation shards at the end, so that it keeps matching them.

Conventions (schema.py): evals are from the side to move's view (= canonical view):
centipawns in ``teacher_cp``, or a signed mate distance in moves in ``teacher_mate``
(cp 0). The best move is stored as the policy index of the engine's move on the real
board. A record that already has an eval (a PGN ``[%eval]``, an EPD ``ce``/``dm``)
keeps it unless ``--overwrite``, and gets the teacher move all the same. Positions
without a legal move are not searched: a stalemate gets eval 0 and no move; a
checkmated side to move gets nothing (mate 0 has no encoding).

Shards that a teacher pass with other settings (engine, nodes, fraction, overwrite)
already annotated are refused: which evals came from the PGN would no longer be known.
Rebuild them (``python -m dataengine.build ... --force``) and annotate again; the cache
keeps what was already analysed. Positions skipped after a failed retry stay without
annotation in a finished shard; they are searched again after such a rebuild.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import chess
import numpy as np

from dataengine import manifest as manifests
from dataengine import schema
from dataengine.fileio import atomic_write, sha256_file, tar_bytes
from dataengine.manifest import MANIFEST_NAME, Manifest, ShardEntry, TeacherPass
from dataengine.progress import progress, tqdm
from dataengine.shm import remove_stale_semaphores
from dataengine.teacher.cache import DEFAULT_CACHE, Cache, position_key
from dataengine.teacher.engine import (
    ENGINE_OPTIONS,
    Analysis,
    Engines,
    TeacherError,
    find_stockfish,
    open_engine,
    wdl_model,
)

DEFAULT_NODES = 4000
"""The budget of the sample self-play games' evals, so that kept PGN evals and teacher
evals are alike."""

Answer = Analysis | str
"""An engine answer, or one of the markers below for a position without one."""

_STALEMATE = "stalemate"  # not searched: no legal move, not in check
_CHECKMATED = "checkmated"  # not searched: mate 0 has no encoding
_FAILED = "failed"  # the engine crashed or hung twice


# ----------------------------------------------------------------------------- records


_SALT = np.uint64(0x5EED_7EAC_4E12_0001)


def select(block: schema.Block, fraction: float) -> np.ndarray:
    """Bool mask of the records to annotate: a hash of the position below `fraction`.

    All copies of a position are chosen together, and the records chosen at a fraction
    are a subset of those chosen at any larger one.
    """
    n = schema.block_len(block)
    if fraction >= 1.0:
        return np.ones(n, dtype=bool)
    from dataengine.records import position_keys

    h = position_keys(block) ^ _SALT
    with np.errstate(over="ignore"):  # murmur3's finaliser: every bit depends on every bit
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return (h >> np.uint64(11)).astype(np.float64) < fraction * 2.0**53


COUNT_KEYS = ("records", "selected", "annotated", "moves", "evals_written", "evals_kept",
              "no_legal_move", "failed", "wdl_permille_sum")
"""Per-shard counts kept in the manifest (all but `records` count selected records):
annotated = got a teacher move or an eval from this pass; moves = got a teacher move;
evals_written / evals_kept = eval written / existing eval kept (no --overwrite);
no_legal_move = checkmate or stalemate (not searched); failed = the engine failed twice;
wdl_permille_sum = [W, D, L] of the engine's score, summed over `moves` records."""


def read_tar(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]


def read_blocks(path: Path) -> list[tuple[str, schema.Block]]:
    try:
        members = read_tar(path)
        return [(name, schema.decode_block(data, f"{path}:{name}")) for name, data in members]
    except (OSError, tarfile.TarError, schema.ShardFormatError) as exc:
        raise TeacherError(f"cannot read shard {str(path)!r}: {exc}") from exc



# ----------------------------------------------------------------------------- annotate


@dataclass
class _Run:
    """State shared by the shards of one run."""

    cache: Cache
    engines: Engines
    bar: tqdm
    overwrite: bool
    model: str
    stats: Counter
    t0: float


def _shard_work(blocks: list[schema.Block], fraction: float):
    """Selected records as (block, record, board, key), and the distinct keys' boards."""
    from dataengine import views

    picked, boards = [], {}
    for b, block in enumerate(blocks):
        for i in np.flatnonzero(select(block, fraction)):
            board = views.real_board(block, int(i))
            key = position_key(board)
            picked.append((b, int(i), board, key))
            boards.setdefault(key, board)
    return picked, boards


def _answers(boards: dict[str, chess.Board], records: Counter, run: _Run) -> dict[str, Answer]:
    """Answers for every key: terminal positions, the cache, then the engines."""
    answers: dict[str, Answer] = {}
    for key, board in boards.items():
        if not any(board.generate_legal_moves()):
            answers[key] = _CHECKMATED if board.is_check() else _STALEMATE
    cached = run.cache.get([k for k in boards if k not in answers])
    answers.update(cached)
    run.stats["cache_hits"] += len(cached)
    run.bar.update(sum(records[k] for k in answers))
    todo = [(k, b.fen()) for k, b in boards.items() if k not in answers]
    for done, failed, calls, restarts in run.engines.run(todo):
        run.cache.put(done)  # commit now: a kill loses only the chunks in flight
        answers.update(done)
        answers.update((key, _FAILED) for key, _ in failed)
        run.stats.update(analysed=len(done), failed=len(failed), engine_calls=calls,
                         restarts=restarts)
        for key, reason in failed:
            tqdm.write(f"skipped after a retry: {boards[key].fen()!r}: {reason}")
        run.bar.update(sum(records[k] for k, _ in done + failed))
        rate = run.stats["analysed"] / (time.perf_counter() - run.t0)
        run.bar.set_postfix(engine_pos_s=f"{rate:,.0f}")
    return answers


def teacher_buckets(blocks: list[schema.Block]) -> dict[str, int]:
    """Records with a teacher eval per bucket: the manifest's per-shard `teacher` counts,
    from which the loader plans its teacher streams."""
    counts = np.zeros(len(schema.BUCKETS), dtype=np.int64)
    for b in blocks:
        has = (b["flags"] & schema.HAS_TEACHER_EVAL) != 0
        counts += np.bincount(b["bucket"][has], minlength=len(schema.BUCKETS))
    return {name: int(c) for name, c in zip(schema.BUCKETS, counts, strict=True)}


def _annotate_shard(
    path: Path, fraction: float, level: int, run: _Run
) -> tuple[dict, bytes | None, dict[str, int]]:
    """Counts for one shard, its new tar bytes (None when nothing changed), and its
    teacher-annotated records per bucket."""
    from dataengine import policy

    named = read_blocks(path)
    blocks = [block for _, block in named]
    picked, boards = _shard_work(blocks, fraction)
    answers = _answers(boards, Counter(key for *_, key in picked), run)

    counts = dict.fromkeys(COUNT_KEYS, 0)
    counts["records"] = sum(schema.block_len(b) for b in blocks)
    counts["selected"] = len(picked)
    wdl = np.zeros(3, dtype=np.int64)
    before = [{c: b[c].copy() for c in ("teacher_cp", "teacher_mate", "teacher_move", "flags")}
              for b in blocks]
    for b, i, board, key in picked:
        block, answer = blocks[b], answers[key]
        flags = block["flags"]
        if answer is _FAILED:
            counts["failed"] += 1
            continue
        if answer is _CHECKMATED:
            counts["no_legal_move"] += 1
            continue
        if answer is _STALEMATE:
            counts["no_legal_move"] += 1
            cp, mate = 0, 0
        else:
            move = chess.Move.from_uci(answer.move)
            block["teacher_move"][i] = policy.move_to_index(move, board.turn)
            flags[i] |= schema.HAS_TEACHER_MOVE
            counts["moves"] += 1
            cp = int(np.clip(answer.cp, -schema.TEACHER_CP_LIMIT, schema.TEACHER_CP_LIMIT))
            mate = int(np.clip(answer.mate, -32767, 32767))
            w = answer.score().wdl(model=run.model, ply=board.ply())
            wdl += (w.wins, w.draws, w.losses)
        if run.overwrite or not flags[i] & schema.HAS_TEACHER_EVAL:
            block["teacher_cp"][i], block["teacher_mate"][i] = cp, mate
            flags[i] |= schema.HAS_TEACHER_EVAL
            counts["evals_written"] += 1
        else:
            counts["evals_kept"] += 1
        counts["annotated"] += 1
    counts["wdl_permille_sum"] = [int(x) for x in wdl]

    pairs = list(zip(before, blocks, strict=True))
    if all(np.array_equal(old[c], block[c]) for old, block in pairs for c in old):
        return counts, None, teacher_buckets(blocks)
    return counts, tar_bytes([(name, schema.encode_block(block, level)) for (name, _), block
                              in zip(named, blocks, strict=True)]), teacher_buckets(blocks)


def _split_totals(manifest: Manifest, shards: dict) -> dict:
    totals = {}
    for split, info in manifest.splits.items():
        total = dict.fromkeys(COUNT_KEYS, 0)
        total["wdl_permille_sum"] = [0, 0, 0]
        for entry in info.shards:
            counts = shards.get(entry.path)
            if counts is None:
                continue
            for k in COUNT_KEYS:
                if k == "wdl_permille_sum":
                    total[k] = [a + b for a, b in zip(total[k], counts[k], strict=True)]
                else:
                    total[k] += counts[k]
        wdl = total.pop("wdl_permille_sum")
        n = total["moves"]
        total["wdl_mean"] = [round(x / 1000 / n, 4) for x in wdl] if n else None
        totals[split] = total
    return totals


def _is_done(out: Path, previous: TeacherPass | None, entry: ShardEntry) -> bool:
    """Whether a previous run of the same settings finished this shard (and the file is
    the tar it wrote)."""
    if not previous or entry.path not in previous.shards:
        return False
    path = out / entry.path
    return (path.is_file() and path.stat().st_size == entry.bytes
            and sha256_file(path) == entry.sha256)


def _rewrite_val_zarr(out: Path, manifest: Manifest) -> None:
    from dataengine.build import VAL_ZARR, write_val_zarr

    val = manifest.splits.get("val")
    if val is None or not val.records or not (out / VAL_ZARR).exists():
        return
    blocks = [b for s in val.shards for _, b in read_blocks(out / s.path)]
    write_val_zarr(out / VAL_ZARR, schema.concat_blocks(blocks))


def annotate(
    out_dir: str | Path, *, nodes: int = DEFAULT_NODES, fraction: float = 1.0,
    workers: int | None = None, cache: str | Path | None = None, overwrite: bool = False,
    engine: str | None = None, timeout_s: float | None = None, quiet: bool = False,
) -> dict:
    """Annotate the shards in `out_dir` (a `make shards` output) in place; returns a summary.

    nodes: Stockfish's node budget per position. fraction: share of the positions to
    annotate (chosen by hash, see `select`). workers: engine processes (default: cores).
    cache: the sqlite cache (default OUT_DIR/teacher.sqlite). overwrite: replace evals the
    records already have. engine: the Stockfish binary (default: see `find_stockfish`).
    timeout_s: per position, after which the engine counts as hung (default 10 s + 1 s
    per 50,000 nodes).

    The summary has the settings, ``engine_calls`` (searches started this run, retries
    included), ``analysed``, ``cache_hits``, ``failed``, ``restarts``, ``shards_rewritten``,
    ``shards_already_done``, ``seconds`` and the manifest's per-split counts (``splits``).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    path = find_stockfish(engine)
    if nodes < 1:
        raise TeacherError(f"nodes must be >= 1, got {nodes!r}")
    if not 0.0 <= fraction <= 1.0:
        raise TeacherError(f"fraction must be in [0, 1], got {fraction!r}")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise TeacherError(f"workers must be >= 1, got {workers!r}")
    try:
        manifest = manifests.read(out, check_version=False)
    except manifests.ManifestMissing:
        raise TeacherError(
            f"no {MANIFEST_NAME} in {str(out)!r}: build the shards first (make shards)"
        ) from None
    except manifests.ManifestError as exc:
        raise TeacherError(str(exc)) from exc
    timeout_s = timeout_s or 10.0 + nodes / 50_000

    probe = open_engine(path)
    name = probe.id.get("name", Path(path).name)
    settings = {"engine": name, "engine_options": ENGINE_OPTIONS, "nodes": nodes,
                "fraction": fraction, "overwrite": overwrite}
    previous = manifest.teacher
    if previous and previous.settings() != settings:
        probe.quit()
        before = previous.settings()
        changed = ", ".join(f"{k} {before[k]!r} (now {v!r})" for k, v in settings.items()
                            if before[k] != v)
        raise TeacherError(
            f"the shards in {str(out)!r} were annotated with other settings: {changed}; "
            "rebuild them (python -m dataengine.build ... --force) to annotate them again"
        )
    level = manifest.build_config.get("zstd_level", schema.ZSTD_LEVEL)
    entries = manifest.shards()
    todo = [e for e in entries if not _is_done(out, previous, e)]
    done_shards = dict(previous.shards) if previous else {}  # path -> counts

    def with_teacher(m: Manifest, complete: bool) -> Manifest:
        return dataclasses.replace(m, teacher=TeacherPass(
            **settings, complete=complete, shards=dict(done_shards),
            splits=_split_totals(m, done_shards)))

    summary = {**settings, "shards_rewritten": 0, "shards_already_done": len(entries) - len(todo)}
    stats = Counter(engine_calls=0, analysed=0, cache_hits=0, failed=0, restarts=0)

    engines = Engines(path, nodes, timeout_s, workers, probe)
    db = None
    try:
        if todo:
            total = sum(e.records if fraction >= 1.0 else
                        sum(int(select(b, fraction).sum()) for _, b in read_blocks(out / e.path))
                        for e in todo)
            if not total and not any(c["selected"] for c in done_shards.values()):
                records = sum(e.records for e in entries)
                raise TeacherError(
                    f"nothing to annotate: a fraction of {fraction:g} selects none of the "
                    f"{records:,} records in {str(out)!r}" + (" (try a larger --fraction)"
                                                             if records else ""))
            db = Cache(Path(cache) if cache else out / DEFAULT_CACHE, f"{name} {ENGINE_OPTIONS}",
                       nodes)
            with progress(total=total, unit="pos", desc="teacher", disable=quiet,
                      dynamic_ncols=True) as bar:
                run = _Run(db, engines, bar, overwrite, wdl_model(name), stats, time.perf_counter())
                for entry in todo:
                    counts, data, buckets = _annotate_shard(out / entry.path, fraction,
                                                            level, run)
                    done_shards[entry.path] = counts
                    entry = dataclasses.replace(entry, teacher=buckets)
                    if data is not None:
                        entry = dataclasses.replace(
                            entry, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
                    manifest = with_teacher(manifest.with_shard(entry), complete=False)
                    manifests.write(out, manifest)  # first: see the module docstring
                    if data is not None:
                        atomic_write(out / entry.path, data)
                        summary["shards_rewritten"] += 1
        if not (previous and previous.complete) or todo:
            _rewrite_val_zarr(out, manifest)
            manifest = with_teacher(manifest, complete=True)
            manifests.write(out, manifest)
    finally:
        engines.close()
        if db is not None:
            db.close()
    summary.update(stats)
    summary["splits"] = manifest.teacher.splits
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


# ----------------------------------------------------------------------------- entry point


def format_summary(summary: dict, out: str) -> str:
    rows = [f"{'split':<6} {'records':>9} {'selected':>9} {'annotated':>9} {'moves':>9} "
            f"{'evals new':>9} {'kept':>9} {'no move':>8} {'failed':>7}  W/D/L (side to move)"]
    for split, t in summary["splits"].items():
        wdl = "/".join(f"{x:.2f}" for x in t["wdl_mean"]) if t["wdl_mean"] else "-"
        rows.append(f"{split:<6} {t['records']:>9,} {t['selected']:>9,} {t['annotated']:>9,} "
                    f"{t['moves']:>9,} {t['evals_written']:>9,} {t['evals_kept']:>9,} "
                    f"{t['no_legal_move']:>8,} {t['failed']:>7,}  {wdl}")
    s = summary
    rate = s["analysed"] / s["seconds"] if s["seconds"] else 0.0
    rows.append(
        f"{s['engine']} at {s['nodes']:,} nodes: {s['analysed']:,} positions analysed "
        f"({rate:,.1f}/s), {s['cache_hits']:,} from the cache, {s['engine_calls']:,} engine "
        f"calls, {s['restarts']} restarts, {s['failed']} failed; {s['shards_rewritten']} shards "
        f"rewritten, {s['shards_already_done']} already done; {s['seconds']:.1f} s "
        f"-> {out}/manifest.json"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dataengine.teacher",
        description="Annotate built shards with Stockfish's eval and best move (in place).",
    )
    ap.add_argument("shards", help="a `make shards` output directory (has manifest.json)")
    ap.add_argument("--nodes", type=int, default=DEFAULT_NODES,
                    help=f"node budget per position (default: {DEFAULT_NODES})")
    ap.add_argument("--fraction", type=float, default=1.0,
                    help="share of positions to annotate, chosen by hash (default: 1.0)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="engine processes (default: all cores)")
    ap.add_argument("--cache", default=None,
                    help=f"sqlite cache of engine answers (default: SHARDS/{DEFAULT_CACHE})")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace evals the records already have (from [%%eval] comments)")
    ap.add_argument("--engine", default=None,
                    help="Stockfish binary (default: stockfish on PATH or /usr/games/stockfish)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    args = ap.parse_args(argv)
    remove_stale_semaphores()  # left by killed runs (kill -9 takes the tracker too)
    try:
        summary = annotate(args.shards, nodes=args.nodes, fraction=args.fraction,
                           workers=args.workers, cache=args.cache, overwrite=args.overwrite,
                           engine=args.engine, quiet=args.quiet)
    except TeacherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the cache keeps what was analysed; run again to continue",
              file=sys.stderr)
        return 130
    if not args.quiet:
        print(format_summary(summary, args.shards))
    totals = summary["splits"].values()
    failed = sum(t["failed"] for t in totals)
    if failed and not sum(t["annotated"] for t in totals):
        print(f"error: nothing annotated: the engine failed on all {failed:,} positions "
              "searched (each crashed or hung twice; their positions are printed above)",
              file=sys.stderr)
        return 2
    return 0
