"""`make shards` end to end: round trips against python-chess, determinism across
worker counts, resume after SIGKILL, bad input, the repeat cap and the split."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import chess
import numpy as np
import pytest
import webdataset as wds
import yaml

import labelers
from dataengine import policy, readers, schema, views
from dataengine.build import VAL_BUCKETS, build, main, read_val_zarr, val_threshold
from dataengine.config import BuildConfig
from labelers import reference
from tests import naive

NO_CAP = dict(max_repeats=1 << 30, val_fraction=0.0)


def read_split(out: Path, split: str) -> schema.Block:
    manifest = json.loads((out / "manifest.json").read_text())
    urls = [str(out / s["path"]) for s in manifest["splits"][split]["shards"]]
    blocks = list(wds.WebDataset(urls, shardshuffle=False).map(schema.decode_sample))
    return schema.concat_blocks(blocks) if blocks else None


def check_round_trip(inputs: list[Path], tmp_path: Path, workers: int, slow_checks: bool) -> int:
    """Build without dedup or validation split, so records are the inputs' positions in
    order; compare each one with python-chess on the original input.

    slow_checks: also rebuild every record as a python-chess board (views) and compare
    its labels with labelers.reference; without it, labels are compared with the numba
    labelers on the expected board (test_labelers ties those to the reference on every
    position of the shared data)."""
    out = tmp_path / "out"
    manifest = build([str(p) for p in inputs], out, workers=workers,
                     cfg=BuildConfig(**NO_CAP), quiet=True)
    block = read_split(out, "train")
    expected = [e for p in inputs for e in naive.positions(p)]
    assert manifest["skipped"] == {}
    assert manifest["records"] == len(expected) == schema.block_len(block)

    planes = np.stack([labelers.planes_from_board(e.board) for e in expected])
    np.testing.assert_array_equal(block["planes"], planes)
    labels = labelers.label_boards(planes)
    bad = []
    for i, e in enumerate(expected):
        canon = e.board.mirror() if e.board.turn == chess.BLACK else e.board
        move = policy.index_to_move(int(block["move"][i]), e.board) \
            if block["move"][i] != schema.NO_MOVE else None
        got = (views.result_white(block, i), views.eval_white(block, i), int(block["ply"][i]),
               int(block["halfmove"][i]), move, views.is_mirrored(block, i))
        want = (e.result, e.eval, e.ply, e.board.halfmove_clock, e.move,
                e.board.turn == chess.BLACK)
        if got != want or (move is not None and not e.board.is_legal(move)):
            bad.append((i, got, want))
        elif slow_checks:
            if views.real_board(block, i).epd() != e.board.epd():
                bad.append((i, "board", e.board.fen()))
            if not np.array_equal(block["labels"][i], reference.label_board(canon)):
                bad.append((i, "labels", e.board.fen()))
        elif not np.array_equal(block["labels"][i], labels[i]):
            bad.append((i, "labels", e.board.fen()))
    assert not bad, f"{len(bad)} records differ from python-chess, first: {bad[:3]}"
    return len(expected)


def test_round_trip_repo_sample(tmp_path):
    inputs = list(naive.SAMPLE_FILES)
    assert {p.suffix for p in inputs} == {".pgn", ".csv", ".tsv"}
    assert check_round_trip(inputs, tmp_path, workers=2, slow_checks=True) > 20_000


def test_round_trip_all_shared_data(tmp_path):
    data = naive.shared_data()
    if data is None:
        pytest.skip("../shared/data is absent (set CHESS_SSL_SHARED_DATA to run this)")
    inputs = sorted(data.glob("*/*.pgn")) + sorted(data.glob("*/*.csv")) + \
        sorted(data.glob("*/*.tsv"))
    assert len(inputs) == 7
    assert check_round_trip(inputs, tmp_path, workers=2, slow_checks=False) > 200_000


def small_tasks_config(tmp_path: Path, **extra) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"chunk_bytes": 65536, "block_records": 1024,
                                            "blocks_per_shard": 4, **extra}}))
    return cfg


def output_files(out: Path) -> dict[str, bytes]:
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and ".work" not in p.parts:
            files[str(p.relative_to(out))] = p.read_bytes()
    return files


def test_same_bytes_for_one_and_two_workers(tmp_path, monkeypatch):
    from dataengine import build as builder

    early = []  # what the 2-worker build's first pass during the parse gave the merge
    result = builder.EarlyCap.result
    monkeypatch.setattr(builder.EarlyCap, "result", lambda self: early.append(result(self))
                        or early[-1])
    cfg = BuildConfig(chunk_bytes=65536, block_records=1024, blocks_per_shard=4)
    a = build(naive.SAMPLE_INPUTS, tmp_path / "a", workers=1, cfg=cfg, quiet=True)
    assert not early  # one process: the merge makes its first pass itself
    b = build(naive.SAMPLE_INPUTS, tmp_path / "b", workers=2, cfg=cfg, quiet=True)
    assert len(early) == 1 and early[0] is not None
    assert a == b
    fa, fb = output_files(tmp_path / "a"), output_files(tmp_path / "b")
    assert len([f for f in fa if f.endswith(".tar")]) > 3
    assert fa == fb


def test_the_pool_warm_up_runs_a_game_through_a_task_and_its_merge():
    # the build submits it to each pool process and never reads its result: a warm-up
    # that broke would only make builds slower, so it is called here
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from dataengine.build import warm_up
    assert warm_up() == os.getpid()
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        assert pool.submit(warm_up).result() != os.getpid()


def _loaded_before_the_task() -> tuple[bool, int]:
    from dataengine.readers.fastpgn import _decode_batch  # a numba dispatcher the warm-up ran
    return "dataengine.forkserver_preload" in sys.modules, len(_decode_batch.signatures)


@pytest.mark.skipif(sys.platform == "win32", reason="no fork server on Windows")
def test_pool_processes_fork_from_a_warmed_fork_server():
    """The pool's processes start with the build's modules imported and numba's kernels
    loaded (by the fork server, once), not each on its own."""
    from dataengine.build import _process_pool

    with _process_pool(2) as pool:
        assert pool._mp_context.get_start_method() == "forkserver"
        preloaded, signatures = pool.submit(_loaded_before_the_task).result()
    assert preloaded and signatures >= 1


def test_resume_after_sigkill(tmp_path):
    cfg = small_tasks_config(tmp_path)
    cmd = [sys.executable, "-m", "dataengine.build", *naive.SAMPLE_INPUTS, "--workers", "1",
           "--config", str(cfg)]
    ref = subprocess.run(cmd + ["--out", str(tmp_path / "ref"), "--quiet"], check=True)
    assert ref.returncode == 0

    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(out), "--quiet"])
    deadline = time.monotonic() + 120
    while len(list((out / ".work").glob("*.part"))) < 3:
        assert proc.poll() is None, "the build finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    done = len(list((out / ".work").glob("*.part")))

    again = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {done} of" in again.stderr + again.stdout
    assert output_files(out) == output_files(tmp_path / "ref")


MALFORMED_PGN = """[Event "good 1"]
[Result "1-0"]

1. e4 e5 2. Qh5 Nc6 3. Bc4 Nf6 4. Qxf7# 1-0

[Event "illegal"]
[Result "*"]

1. e4 e5 2. Ke3 *

[Event "variant"]
[Variant "Atomic"]
[Result "*"]

1. e4 *

[Event "bad fen"]
[SetUp "1"]
[FEN "8/8/8/8/8/8/8/8 w - - 0 1"]
[Result "*"]

1. e4 *

[Event "good 2"]
[Result "0-1"]

1. f3 e5 2. g4 Qh4# 0-1
"""

MALFORMED_CSV = (
    "PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,OpeningTags\n"
    "p1,r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3,f1c4 g8f6 f3g5 d7d5,"
    "1500,80,90,100,opening,u,\n"
    "p2,this is not a fen,e2e4 e7e5,1500,80,90,100,opening,u,\n"
)


def test_bad_input_is_skipped_counted_and_logged(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    latin1 = b'\n[Event "Torneo Pe\xf1a"]\n[Result "*"]\n\n1. d4 d5 *\n'
    (src / "games.pgn").write_bytes(MALFORMED_PGN.encode() + latin1)
    (src / "puzzles.csv").write_text(MALFORMED_CSV)
    manifest = build([str(src)], tmp_path / "out", cfg=BuildConfig(**NO_CAP), quiet=True)
    assert manifest["skipped"] == {"bad_fen": 1, "invalid_position": 1, "variant": 1}
    # kept with a note: "illegal" up to its bad move, the Latin-1 game read as cp1252
    assert manifest["notes"] == {"recoded": 1, "truncated": 1}
    pgn_input = next(f for f in manifest["inputs"] if f["path"].endswith("games.pgn"))
    assert (pgn_input["skipped"], pgn_input["notes"]) == (2, 2)
    # good 1: 7 moves + final; illegal: 2 moves + the board before Ke3; good 2: 4 moves +
    # final; Latin-1: 2 moves + final; puzzle p1: solver moves 2
    assert manifest["records"] == 8 + 3 + 5 + 3 + 2
    log = (tmp_path / "out" / "skipped.log").read_text().splitlines()
    assert len(log) == 5
    assert any(line.startswith("kept:truncated\t") and "games.pgn:6\t" in line
               and "Ke3" in line for line in log)
    assert any(line.startswith("kept:recoded\t") and "cp1252" in line for line in log)
    assert any(line.startswith("bad_fen\t") and "puzzles.csv:3\t" in line for line in log)


def test_the_skip_log_keeps_the_first_but_counts_every_skip(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "games.pgn").write_bytes(MALFORMED_PGN.encode())
    (src / "puzzles.csv").write_text(MALFORMED_CSV)
    full = build([str(src)], tmp_path / "full", cfg=BuildConfig(**NO_CAP), quiet=True)
    capped = build([str(src)], tmp_path / "capped", cfg=BuildConfig(**NO_CAP, skip_log_limit=2),
                   quiet=True)
    assert (capped["skipped"], capped["notes"]) == (full["skipped"], full["notes"])
    assert capped["inputs"] == full["inputs"] and capped["records"] == full["records"]
    log = (tmp_path / "full" / "skipped.log").read_text().splitlines()
    assert (tmp_path / "capped" / "skipped.log").read_text().splitlines() == log[:2]


def test_small_pieces_build_the_same_bytes(tmp_path, monkeypatch):
    """A task writes its records in pieces (build.PIECE_RECORDS), so a range of any size,
    such as a whole compressed file, is never one block in memory; the pieces change
    nothing in the output."""
    from dataengine import build as build_module
    from dataengine.records import units_to_block

    whole = build(naive.SAMPLE_INPUTS, tmp_path / "whole", workers=1, quiet=True)
    monkeypatch.setattr(build_module, "PIECE_RECORDS", 1000)
    cut = build(naive.SAMPLE_INPUTS, tmp_path / "cut", workers=2, quiet=True)  # in workers too
    assert cut == whole

    def files(out: Path) -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                if p.is_file()}
    assert files(tmp_path / "cut") == files(tmp_path / "whole")
    # the repeat cap's pairs in memory (spill_pairs) change nothing either
    small = build(naive.SAMPLE_INPUTS, tmp_path / "small", workers=1, quiet=True,
                  cfg=BuildConfig(spill_pairs=5000))
    assert small["build_config"]["spill_pairs"] == 5000
    assert {k: v for k, v in small.items() if k not in ("build_config", "build_key")} == \
        {k: v for k, v in whole.items() if k not in ("build_config", "build_key")}
    assert {k: v for k, v in files(tmp_path / "small").items() if k != "manifest.json"} == \
        {k: v for k, v in files(tmp_path / "whole").items() if k != "manifest.json"}
    # one task, its part in pieces of about 1000 records: the same records in order
    _, tasks = build_module.plan([naive.SAMPLE_INPUTS[0]], BuildConfig(limit=150))
    work = tmp_path / "work"
    work.mkdir()
    summary = build_module.run_task(tasks[0], str(work))
    pieces = list(build_module.read_pieces(work, tasks[0].key))
    assert len(pieces) == len(list(work.glob("*.piece"))) > 5
    assert all(schema.block_len(b) >= 1000 for b in pieces[:-1])
    assert sum(map(schema.block_len, pieces)) == summary["records"]
    units = [u for u in readers.read(naive.SAMPLE_INPUTS[0])
             if isinstance(u, readers.Unit)][:150]
    expected = units_to_block(units, 0)
    got = schema.concat_blocks(pieces)
    for name in [c.name for c in schema.COLUMNS] + ["themes"]:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    keys = np.fromfile(build_module.part_paths(work, tasks[0].key)[2], dtype="<u8")
    assert len(keys) == summary["records"]


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/games.pgn"], "input not found"),
    (["README.md"], "README.md"),
])
def test_cli_errors_are_clear(tmp_path, capsys, args, message):
    assert main(args + ["--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_build_that_gives_nothing_fails_and_says_why(tmp_path, capsys):
    bad = tmp_path / "puzzles.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    out = tmp_path / "o"
    assert main([str(bad), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: nothing built: ") and f"{bad}:1: header lacks" in err
    assert "bad_columns" in err and not out.exists()  # no manifest a rerun takes as done
    # a second empty input: each is named; an earlier build's shards are left alone
    empty = tmp_path / "empty.pgn"
    empty.write_text("")
    good = naive.SAMPLE / "openings_a.tsv"
    before = build([str(good)], out, quiet=True)
    assert main([str(bad), str(empty), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{bad} gave no positions" in err and f"{empty} gave no positions" in err
    assert json.loads((out / "manifest.json").read_text()) == before
    assert not (out / ".work").exists()


def test_an_input_that_gives_nothing_beside_others_is_a_warning(tmp_path, capsys):
    bad = tmp_path / "puzzles.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    good = naive.SAMPLE / "openings_a.tsv"
    assert main([str(good), str(bad), "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert f"warning: {bad} gave no positions: 1 unit skipped (bad_columns 1)" in captured.err
    summary = captured.out.splitlines()[-1]
    assert "1 unit skipped (bad_columns 1; see " in summary and "{" not in summary


def test_the_summary_names_no_skips_when_there_are_none(tmp_path, capsys):
    assert main([str(naive.SAMPLE / "openings_a.tsv"), "--out", str(tmp_path / "o")]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary.startswith("built ") and "skipped" not in summary and ";  " not in summary


@pytest.mark.parametrize("under", [False, True])
def test_an_output_that_is_a_file_is_refused_up_front(tmp_path, capsys, monkeypatch, under):
    from dataengine import build as build_module

    monkeypatch.setattr(build_module, "plan", lambda *a: pytest.fail("planned"))
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    out = taken / "shards" if under else taken
    assert main([str(naive.SAMPLE), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and repr(str(taken)) in err
    assert "--out takes a directory" in err and "resumes" not in err
    assert taken.read_text() == "not a directory"


def test_running_the_module_gives_no_runpy_warning(tmp_path):
    """`python -m dataengine.build` with a pool: its processes did not run the build
    module again beside the fork server's copy (runpy warned once a process)."""
    done = subprocess.run(
        [sys.executable, "-W", "default", "-m", "dataengine.build",
         str(naive.SAMPLE / "openings_a.tsv"), "--out", str(tmp_path / "o"), "--workers", "2",
         "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr


def test_unknown_config_key_is_named(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  val_fractoin: 0.1\n")
    assert main([str(naive.SAMPLE), "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    assert "data.val_fractoin" in capsys.readouterr().err


def test_cap_split_buckets_and_zarr(tmp_path):
    out = tmp_path / "out"
    cfg = BuildConfig(val_fraction=0.2, max_repeats=3)
    manifest = build(naive.SAMPLE_INPUTS, out, cfg=cfg, quiet=True)
    train, val = read_split(out, "train"), read_split(out, "val")
    # never cut a game
    assert not set(train["game_id"].tolist()) & set(val["game_id"].tolist())
    games = np.unique(np.concatenate([train["game_id"], val["game_id"]]))
    val_share = len(np.unique(val["game_id"])) / len(games)
    assert 0.15 < val_share < 0.25
    # the cap: no canonical position more than 3 times, and the start position hit it
    from dataengine.records import position_keys
    keys = np.concatenate([position_keys(train), position_keys(val)])
    _, counts = np.unique(keys, return_counts=True)
    assert counts.max() == 3
    assert manifest["repeats_dropped"] > 100
    assert manifest["records"] + manifest["repeats_dropped"] == manifest["positions_read"]
    # every bucket is used, counts add up, and the manifest agrees with the records
    for split, block in (("train", train), ("val", val)):
        counts = np.bincount(block["bucket"], minlength=len(schema.BUCKETS))
        assert dict(zip(schema.BUCKETS, counts.tolist(), strict=True)) == \
            manifest["splits"][split]["buckets"]
    assert all(v > 0 for v in manifest["splits"]["train"]["buckets"].values())
    # zarr holds the validation split, identical to its shards
    z = read_val_zarr(out / "val.zarr")
    for c in schema.COLUMNS:
        if c.name != "themes_id":
            np.testing.assert_array_equal(z[c.name], val[c.name], err_msg=c.name)
    np.testing.assert_array_equal(z["themes"], val["themes"])


def test_second_build_is_up_to_date(tmp_path, capsys):
    out = tmp_path / "out"
    build(naive.SAMPLE_INPUTS, out, quiet=True)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.tar")}
    build(naive.SAMPLE_INPUTS, out)
    assert "up to date" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*.tar")}
    assert not (out / ".work").exists()


def test_bytes_per_record_target(tmp_path):
    manifest = build(naive.SAMPLE_INPUTS, tmp_path / "out", cfg=BuildConfig(**NO_CAP),
                     quiet=True)
    assert manifest["bytes_per_record"] <= 24
    assert os.path.getsize(tmp_path / "out" / "manifest.json") > 0


def test_dask_local_cluster_gives_the_same_bytes(tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    cfg = BuildConfig(chunk_bytes=131072, block_records=1024, blocks_per_shard=4)
    local = build(naive.SAMPLE_INPUTS, tmp_path / "local", workers=1, cfg=cfg, quiet=True)
    dask = build(naive.SAMPLE_INPUTS, tmp_path / "dask", workers=2, cfg=cfg, quiet=True,
                 scheduler="local")
    assert local == dask
    assert output_files(tmp_path / "local") == output_files(tmp_path / "dask")


def test_unreachable_scheduler_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    code = main([str(naive.SAMPLE / "openings_a.tsv"), "--out", str(tmp_path / "o"),
                 "--scheduler", "tcp://127.0.0.1:9", "--quiet"])
    assert code == 2
    assert "Dask scheduler" in capsys.readouterr().err


def test_val_threshold_takes_whole_games_up_to_the_minimum():
    rng = np.random.default_rng(0)
    games = rng.integers(0, 2**63, 300, dtype=np.uint64)
    ids = np.repeat(games, rng.integers(1, 80, 300))  # 300 games of 1-79 positions
    buckets = ids % np.uint64(VAL_BUCKETS)

    cfg = BuildConfig(val_fraction=0.01, val_min_positions=2000, val_max_fraction=0.25)
    t = val_threshold(ids, cfg)
    assert t > round(0.01 * VAL_BUCKETS)
    assert (buckets < t).sum() >= 2000 > (buckets < t - 1).sum()  # the smallest such cut
    # the cap wins over the minimum
    capped = BuildConfig(val_fraction=0.01, val_min_positions=10**9, val_max_fraction=0.1)
    t = val_threshold(ids, capped)
    assert 0.08 * len(ids) < (buckets < t).sum() <= 0.1 * len(ids)
    # enough positions already, no minimum, or no validation split: the fraction decides
    for frac, least in ((0.5, 100), (0.01, 0), (0.0, 2000)):
        cfg = BuildConfig(val_fraction=frac, val_min_positions=least)
        assert val_threshold(ids, cfg) == round(frac * VAL_BUCKETS)


def test_val_split_holds_the_minimum_of_whole_games(tmp_path):
    cfg = BuildConfig(val_fraction=0.001, val_min_positions=3000)
    manifest = build(naive.SAMPLE_INPUTS, tmp_path / "out", cfg=cfg, quiet=True)
    train, val = read_split(tmp_path / "out", "train"), read_split(tmp_path / "out", "val")
    assert 3000 <= schema.block_len(val) == manifest["splits"]["val"]["records"]
    assert schema.block_len(val) < 0.25 * manifest["records"]
    assert not set(train["game_id"].tolist()) & set(val["game_id"].tolist())
    assert schema.block_len(read_val_zarr(tmp_path / "out" / "val.zarr")) == schema.block_len(val)


def test_disk_full_while_writing_a_shard_leaves_no_partial_shard(tmp_path, monkeypatch, capsys):
    import dataengine.build as build_module
    from dataengine.fileio import atomic_write_with

    written = []

    def is_train_shard(path) -> bool:
        return Path(path).name.startswith("shard-") and Path(path).parent.name == "train"

    def full_after_two_shards(path, data):  # two train shards, whatever val wrote
        if is_train_shard(path) and len(written) >= 2:
            def half(f):
                f.write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            atomic_write_with(path, half)
        atomic_write_with(path, lambda f: f.write(data))
        if is_train_shard(path):
            written.append(path)

    monkeypatch.setattr(build_module, "atomic_write", full_after_two_shards)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  block_records: 1024\n  blocks_per_shard: 2\n")
    out = tmp_path / "out"
    code = main([*naive.SAMPLE_INPUTS, "--out", str(out), "--config", str(cfg), "--quiet",
                 "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and len(err.strip().splitlines()) == 1
    shards = sorted((out / "train").glob("*"))
    assert [p.name for p in shards] == ["shard-000000.tar", "shard-000001.tar"]  # no temp files
    for p in shards:  # whole tars only
        with tarfile.open(p) as tar:
            assert len(tar.getmembers()) == 2
    assert not (out / "manifest.json").exists()



@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_shards_passes_args_and_the_default_shards_take_none(tmp_path):
    root = Path(__file__).resolve().parent.parent

    def dry_run(*args: str) -> list[str]:
        done = subprocess.run(["make", "-n", "-C", str(root), *args], capture_output=True,
                              text=True, check=True)
        return [line for line in done.stdout.splitlines() if "-m dataengine.build" in line]

    assert dry_run("shards", "ARGS=--force")[0].split()[-1] == "--force"
    # built for `make train ARGS=...`, the default shards get none of the trainer's ARGS
    builds = dry_run("train", "ARGS=--batch-size 8", f"OUT={tmp_path / 'none'}")
    assert len(builds) == 1 and "--batch-size" not in builds[0]
