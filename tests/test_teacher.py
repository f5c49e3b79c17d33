"""Stockfish as teacher, against the real binary at a tiny node budget: the annotations
equal a direct `engine.analyse`, a second run does no engine work, a SIGKILLed run
finishes with the same bytes, shards and manifest stay consistent. A fake UCI engine
checks the crash / hang handling without Stockfish."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import chess
import chess.engine
import numpy as np
import pytest
import webdataset as wds

from dataengine import policy, schema, teacher, views
from dataengine.build import build, read_val_zarr
from dataengine.config import BuildConfig
from dataengine.fileio import sha256_file
from dataengine.teacher import TeacherError, annotate, main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "dataengine" / "sample_data"
NODES = 200
TEACHER_COLUMNS = ("teacher_cp", "teacher_mate", "teacher_move", "flags")
# several small shards in both splits, so that a run can be killed between shards
SMALL = BuildConfig(block_records=64, blocks_per_shard=2, val_fraction=0.2)


def stockfish_or_skip() -> str:
    try:
        return teacher.find_stockfish()
    except teacher.EngineNotFound:
        pytest.skip("Stockfish is not installed (apt-get install stockfish, or make stockfish)")


def read_split(out: Path, split: str) -> schema.Block:
    manifest = json.loads((out / "manifest.json").read_text())
    urls = [str(out / s["path"]) for s in manifest["splits"][split]["shards"]]
    blocks = wds.WebDataset(urls, shardshuffle=False).map(schema.decode_sample)
    return schema.concat_blocks(list(blocks))


def tars(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("shard-*.tar"))}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """Shards of the first 5 sample games (with [%eval]) and 10 puzzles (without)."""
    root = tmp_path_factory.mktemp("pristine")
    (root / "in").mkdir()
    games = (SAMPLE / "sf_selfplay_200.pgn").read_text().split("\n\n[Event")[:5]
    (root / "in" / "games.pgn").write_text("\n\n[Event".join(games) + "\n\n")
    rows = (SAMPLE / "lichess_puzzles_300.csv").read_text().splitlines()[:11]
    (root / "in" / "puzzles.csv").write_text("\n".join(rows) + "\n")
    build([str(root / "in")], root / "out", cfg=SMALL, quiet=True)
    return root / "out"


def fresh_copy(pristine: Path, tmp_path: Path, name: str = "out") -> Path:
    return Path(shutil.copytree(pristine, tmp_path / name))


@pytest.fixture(scope="module")
def reference(pristine, tmp_path_factory) -> tuple[Path, dict]:
    """One uninterrupted run on two workers: the shards and its summary."""
    stockfish_or_skip()
    out = fresh_copy(pristine, tmp_path_factory.mktemp("reference"))
    return out, annotate(out, nodes=NODES, workers=2, quiet=True)


def test_annotations_equal_a_direct_analysis(pristine, reference):
    """Stockfish with 1 thread and a node limit is deterministic once its hash and
    histories are cleared (measured: the same answers for 200 positions in any order
    after `ucinewgame`, 1 in 200 without it); so a fresh engine must agree exactly."""
    out, summary = reference
    assert summary["failed"] == summary["restarts"] == 0
    assert summary["engine_calls"] == summary["analysed"] > 500
    block, old = read_split(out, "train"), read_split(pristine, "train")
    has_move = (block["flags"] & schema.HAS_TEACHER_MOVE) != 0
    written = has_move & ((old["flags"] & schema.HAS_TEACHER_EVAL) == 0)
    kept = has_move & ~written
    rng = np.random.default_rng(0)
    picks = [*rng.choice(np.flatnonzero(written), 16, replace=False),
             *rng.choice(np.flatnonzero(kept), 8, replace=False)]
    path = teacher.find_stockfish()
    with teacher.open_engine(path) as engine:
        for n, i in enumerate(map(int, picks)):
            board = views.real_board(block, i)
            limit = chess.engine.Limit(nodes=NODES)
            if n % 6 == 0:  # a brand-new engine now and then, else one after `ucinewgame`
                with teacher.open_engine(path) as fresh:
                    info = fresh.analyse(board, limit)
            else:
                info = engine.analyse(board, limit, game=object())
            best = info["pv"][0]
            assert views.teacher_move(block, i) == best, board.fen()
            assert int(block["teacher_move"][i]) == policy.move_to_index(best, board.turn)
            if written[i]:
                score = info["score"].relative  # side to move's view = canonical view
                expected = (0, score.mate()) if score.is_mate() else (score.score(), 0)
                assert (int(block["teacher_cp"][i]), int(block["teacher_mate"][i])) == expected
            else:  # the PGN's eval is kept
                assert (block["teacher_cp"][i], block["teacher_mate"][i]) == (
                    old["teacher_cp"][i], old["teacher_mate"][i])


def test_pgn_evals_kept_others_written_and_shards_consistent(pristine, reference):
    out, summary = reference
    manifest = json.loads((out / "manifest.json").read_text())
    before = json.loads((pristine / "manifest.json").read_text())
    for sp in manifest["splits"].values():  # (d) the manifest describes the files
        for s in sp["shards"]:
            assert sha256_file(out / s["path"]) == s["sha256"]
            assert (out / s["path"]).stat().st_size == s["bytes"]
    assert manifest["build_key"] == before["build_key"]
    section = manifest["teacher"]
    assert section["complete"] and section["nodes"] == NODES and section["fraction"] == 1.0
    assert section["engine"].startswith("Stockfish")
    paths = {s["path"] for sp in manifest["splits"].values() for s in sp["shards"]}
    assert set(section["shards"]) == paths
    for split in schema.SPLITS:
        old, new = read_split(pristine, split), read_split(out, split)
        for c in schema.COLUMNS:  # nothing but the teacher columns changed
            if c.name not in TEACHER_COLUMNS:
                np.testing.assert_array_equal(old[c.name], new[c.name], err_msg=c.name)
        had = (old["flags"] & schema.HAS_TEACHER_EVAL) != 0
        np.testing.assert_array_equal(old["teacher_cp"][had], new["teacher_cp"][had])
        np.testing.assert_array_equal(old["teacher_mate"][had], new["teacher_mate"][had])
        has_move = (new["flags"] & schema.HAS_TEACHER_MOVE) != 0
        has_eval = (new["flags"] & schema.HAS_TEACHER_EVAL) != 0
        totals = section["splits"][split]
        assert totals["records"] == totals["selected"] == len(has_move)
        assert totals["moves"] == has_move.sum()
        assert totals["evals_kept"] == (had & has_move).sum()  # (no stalemate here)
        assert totals["evals_written"] == (has_eval & ~had).sum() > 0
        # every record without a teacher move is a final position without legal moves
        for i in np.flatnonzero(~has_move):
            assert not any(views.real_board(new, int(i)).generate_legal_moves())
        assert totals["no_legal_move"] == (~has_move).sum()
        w, d, loss = totals["wdl_mean"]
        assert abs(w + d + loss - 1) < 1e-3
    # val.zarr follows the val shards
    zarr_block, val = read_val_zarr(out / "val.zarr"), read_split(out, "val")
    for c in TEACHER_COLUMNS:
        np.testing.assert_array_equal(zarr_block[c], val[c])


def test_second_run_and_rebuilt_shards_need_no_engine(pristine, reference, tmp_path):
    out, first = reference
    files = tars(out)
    again = annotate(out, nodes=NODES, workers=2, quiet=True)
    assert again["engine_calls"] == 0 and again["shards_rewritten"] == 0
    assert again["shards_already_done"] == len(files) and tars(out) == files
    # freshly built shards, the first run's cache: every answer comes from the cache
    other = fresh_copy(pristine, tmp_path)
    redo = annotate(other, nodes=NODES, workers=1, cache=out / teacher.DEFAULT_CACHE, quiet=True)
    assert redo["engine_calls"] == 0 and redo["cache_hits"] > 500
    assert tars(other) == files
    assert (json.loads((other / "manifest.json").read_text())
            == json.loads((out / "manifest.json").read_text()))


def test_sigkill_then_rerun_gives_the_same_shards(pristine, reference, tmp_path):
    ref, first = reference
    out = fresh_copy(pristine, tmp_path)
    cmd = [sys.executable, "-m", "dataengine.teacher", str(out), "--nodes", str(NODES),
           "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO)
    deadline = time.monotonic() + 60
    manifest = out / "manifest.json"
    # two shards done: the first one's tar is surely written (the manifest goes first)
    while len(json.loads(manifest.read_text()).get("teacher", {}).get("shards", {})) < 2:
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    orphans = descendants(proc.pid)  # its worker processes and their engines
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    while orphans and time.monotonic() < deadline:  # they notice and exit within a second
        orphans = [p for p in orphans if alive(p)]
        time.sleep(0.05)
    assert not orphans, "worker processes or engines outlived the killed run"
    section = json.loads(manifest.read_text())["teacher"]
    assert not section["complete"] and 0 < len(section["shards"]) < len(tars(out))
    with sqlite3.connect(out / teacher.DEFAULT_CACHE) as db:
        cached = db.execute("SELECT COUNT(*) FROM evals").fetchone()[0]
    assert cached > 0

    rerun = annotate(out, nodes=NODES, workers=2, quiet=True)
    assert rerun["shards_already_done"] >= 1
    # every committed answer is used, only what was in flight is searched again
    assert rerun["analysed"] + cached == first["analysed"]
    assert tars(out) == tars(ref)
    assert json.loads(manifest.read_text()) == json.loads((ref / "manifest.json").read_text())


def test_fraction_and_overwrite(pristine, reference, tmp_path):
    ref, _ = reference
    cache = ref / teacher.DEFAULT_CACHE
    part = fresh_copy(pristine, tmp_path, "part")
    summary = annotate(part, nodes=NODES, fraction=0.3, workers=1, cache=cache, quiet=True)
    assert summary["engine_calls"] == 0
    for split in schema.SPLITS:
        old, new, full = (read_split(d, split) for d in (pristine, part, ref))
        chosen = teacher.select(old, 0.3)
        assert 0.15 < chosen.mean() < 0.45
        np.testing.assert_array_equal(chosen, teacher.select(new, 0.3))
        assert not (chosen & ~teacher.select(old, 0.6)).any()  # a subset of any larger share
        for c in TEACHER_COLUMNS:
            np.testing.assert_array_equal(new[c][chosen], full[c][chosen])
            np.testing.assert_array_equal(new[c][~chosen], old[c][~chosen])

    over = fresh_copy(pristine, tmp_path, "over")
    annotate(over, nodes=NODES, overwrite=True, workers=1, cache=cache, quiet=True)
    old, new, kept = (read_split(d, "train") for d in (pristine, over, ref))
    had = (old["flags"] & schema.HAS_TEACHER_EVAL) != 0
    np.testing.assert_array_equal(new["teacher_move"], kept["teacher_move"])
    changed = ((new["teacher_cp"] != old["teacher_cp"])
               | (new["teacher_mate"] != old["teacher_mate"]))
    assert changed[had].mean() > 0.5  # PGN evals (game context) differ from fresh searches
    with sqlite3.connect(cache) as db:
        rows = {p: (cp, mate) for p, cp, mate in db.execute("SELECT position, cp, mate FROM evals")}
    for i in np.flatnonzero(had & ((new["flags"] & schema.HAS_TEACHER_MOVE) != 0))[:50]:
        key = teacher.position_key(views.real_board(new, int(i)))
        assert rows[key] == (int(new["teacher_cp"][i]), int(new["teacher_mate"][i]))


def test_other_settings_are_refused(reference, capsys):
    out, _ = reference
    with pytest.raises(TeacherError, match="other settings"):
        annotate(out, nodes=NODES + 1, workers=1, quiet=True)
    assert main([str(out), "--nodes", str(NODES), "--fraction", "0.5", "--quiet"]) == 2
    assert "error: the shards" in capsys.readouterr().err


# ----------------------------------------------------------------------------- no Stockfish needed


def test_missing_stockfish_is_a_clear_error(tmp_path, capsys, monkeypatch):
    assert main([str(tmp_path), "--engine", str(tmp_path / "stockfish")]) == 2
    assert capsys.readouterr().err.startswith("error: stockfish not found at ")
    monkeypatch.setattr(teacher.engine, "ENGINE_CANDIDATES", ("no-such-stockfish-binary",))
    (tmp_path / "manifest.json").write_text("{}")
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: stockfish not found (apt-get install stockfish)\n"


FAKE_ENGINE = """\
import os, sys, time
import chess
board, plan = chess.Board(), os.environ["FAKE_PLAN"]
def say(line):
    sys.stdout.write(line + "\\n"); sys.stdout.flush()
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "uci":
        say("id name Fake 1"); say("option name Threads type spin default 1 min 1 max 8")
        say("option name Hash type spin default 16 min 1 max 64"); say("uciok")
    elif cmd[0] == "isready":
        say("readyok")
    elif cmd[0] == "position":
        board = chess.Board(" ".join(cmd[2:8]))
    elif cmd[0] == "go":
        mark = os.path.join(plan, str(board.halfmove_clock))
        if board.halfmove_clock == 11:
            sys.exit(3)  # crashes on this position, every time
        if board.halfmove_clock == 22:
            time.sleep(3600)  # hangs on this one
        if board.halfmove_clock == 33 and not os.path.exists(mark):
            open(mark, "w").close()
            sys.exit(3)  # crashes once
        move = min(board.legal_moves, key=lambda m: m.uci())
        say(f"info depth 1 score cp {board.halfmove_clock} nodes 1 pv {move.uci()}")
        say(f"bestmove {move.uci()}")
    elif cmd[0] == "quit":
        break
"""


def fake_engine(tmp_path: Path, monkeypatch) -> Path:
    fake = tmp_path / "fake_engine"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_ENGINE)
    fake.chmod(0o755)
    (tmp_path / "plan").mkdir()
    monkeypatch.setenv("FAKE_PLAN", str(tmp_path / "plan"))
    return fake


def test_crashes_and_hangs_are_retried_then_skipped(tmp_path, monkeypatch):
    fake = fake_engine(tmp_path, monkeypatch)
    fens = textwrap.dedent("""\
        4k3/8/8/8/8/8/4P3/4K3 w - - 0 1
        4k3/8/8/8/8/8/4P3/4K3 w - - 11 1
        4k3/8/8/8/8/8/4P3/4K3 w - - 22 1
        4k3/8/8/8/8/8/4P3/4K3 w - - 33 1
        4k3/8/8/8/8/8/3P4/4K3 b - - 4 1
        7k/5Q2/6K1/8/8/8/8/8 b - - 0 1
        R5k1/5ppp/8/8/8/8/8/6K1 b - - 0 1
    """)  # normal x2, crash always, hang, crash once, stalemate, checkmate
    (tmp_path / "positions.fen").write_text(fens)
    out = tmp_path / "out"
    build([str(tmp_path / "positions.fen")], out, cfg=BuildConfig(val_fraction=0.0), quiet=True)
    summary = annotate(out, nodes=10, workers=1, engine=str(fake), timeout_s=1.0, quiet=True)
    assert summary["engine"] == "Fake 1"
    assert summary["analysed"] == 3 and summary["failed"] == 2
    assert summary["engine_calls"] == 3 + 1 + 2 + 2 and summary["restarts"] == 1 + 2 + 2
    totals = summary["splits"]["train"]
    assert (totals["moves"], totals["failed"], totals["no_legal_move"]) == (3, 2, 2)
    block = read_split(out, "train")
    halfmove = block["halfmove"].astype(int)
    has_move = (block["flags"] & schema.HAS_TEACHER_MOVE) != 0
    assert sorted(halfmove[has_move]) == [0, 4, 33]
    np.testing.assert_array_equal(block["teacher_cp"][has_move], halfmove[has_move])
    for i in np.flatnonzero(has_move):
        board = views.real_board(block, int(i))
        assert views.teacher_move(block, int(i)) == min(board.legal_moves, key=lambda m: m.uci())
    boards = {views.real_board(block, i).board_fen(): i for i in range(len(halfmove))}
    s, m = boards["7k/5Q2/6K1/8/8/8/8/8"], boards["R5k1/5ppp/8/8/8/8/8/6K1"]
    assert block["flags"][s] & schema.HAS_TEACHER_EVAL and block["teacher_cp"][s] == 0
    assert not block["flags"][m] & (schema.HAS_TEACHER_EVAL | schema.HAS_TEACHER_MOVE)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_fake(p, fake)]


def test_a_fraction_that_selects_nothing_is_an_error(tmp_path, monkeypatch, capsys):
    fake = fake_engine(tmp_path, monkeypatch)
    (tmp_path / "positions.fen").write_text("4k3/8/8/8/8/8/4P3/4K3 w - - 0 1\n")
    out = tmp_path / "out"
    build([str(tmp_path / "positions.fen")], out, cfg=BuildConfig(val_fraction=0.0), quiet=True)
    before = tars(out), (out / "manifest.json").read_bytes()
    assert main([str(out), "--engine", str(fake), "--fraction", "0", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: nothing to annotate: a fraction of 0 selects none of the 1 records "
                   f"in {str(out)!r} (try a larger --fraction)\n")
    assert (tars(out), (out / "manifest.json").read_bytes()) == before


def test_an_engine_that_fails_on_every_position_is_an_error(tmp_path, monkeypatch, capsys):
    fake = fake_engine(tmp_path, monkeypatch)  # crashes on every position at halfmove 11
    (tmp_path / "positions.fen").write_text("4k3/8/8/8/8/8/4P3/4K3 w - - 11 1\n"
                                            "4k3/8/8/8/8/8/3P4/4K3 b - - 11 1\n")
    out = tmp_path / "out"
    build([str(tmp_path / "positions.fen")], out, cfg=BuildConfig(val_fraction=0.0), quiet=True)
    assert main([str(out), "--engine", str(fake), "--workers", "1"]) == 2
    captured = capsys.readouterr()
    assert "error: nothing annotated: the engine failed on all 2 positions" in captured.err
    assert "skipped after a retry: " in captured.out + captured.err


def descendants(pid: int) -> list[int]:
    """Processes below `pid` (Linux /proc; empty elsewhere)."""
    parents = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _is_fake(pid: str, fake: Path) -> bool:
    try:
        return str(fake) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_manifest_teacher_counts_follow_the_annotations(reference):
    """The loader plans its teacher streams from the manifest's per-shard counts."""
    from train.loader import read_shard

    out, _ = reference
    manifest = json.loads((out / "manifest.json").read_text())
    checked = 0
    for split in manifest["splits"].values():
        for entry in split["shards"]:
            block = read_shard(str(out / entry["path"]))
            has = (block["flags"] & schema.HAS_TEACHER_EVAL) != 0
            want = np.bincount(block["bucket"][has], minlength=len(schema.BUCKETS))
            assert entry["teacher"] == dict(zip(schema.BUCKETS, want.tolist(), strict=True))
            checked += 1
        assert split["teacher"] == {b: sum(e["teacher"][b] for e in split["shards"])
                                    for b in schema.BUCKETS}
    assert checked >= 4
