"""The streaming loader: deterministic, exactly resumable, exact curriculum shares,
and robust to bad shards."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time

import numpy as np
import pytest
import torch

from dataengine import schema
from dataengine.build import build
from dataengine.config import BuildConfig
from tests import naive
from train.batch import BATCH_COLUMNS, ROW_BYTES, columns_of, to_rows
from train.curriculum import Schedule, load_curriculum, phase_lengths
from train.expand import device_batches, expand, from_numpy
from train.loader import (
    BatchLoader,
    DataError,
    LoaderConfig,
    StreamReader,
    _Draws,
    read_shard,
    shard_index,
    verify_shards,
)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader") / "shards"
    build(naive.SAMPLE_INPUTS, out, cfg=BuildConfig(block_records=1024, blocks_per_shard=2),
          quiet=True)
    return out


def batches(loader: BatchLoader, n: int) -> list[tuple[int, dict]]:
    return list(itertools.islice(iter(loader), n))


def same(a: list[tuple[int, dict]], b: list[tuple[int, dict]]) -> bool:
    if [s for s, _ in a] != [s for s, _ in b]:
        return False
    return all(torch.equal(x[k], y[k]) for (_, x), (_, y) in zip(a, b, strict=True) for k in x)


def make(shards, workers=0, seed=7, steps=1000, batch_size=96, curriculum="stockfish",
         chunk_positions=2048):
    return BatchLoader(shards, load_curriculum(curriculum), steps=steps, batch_size=batch_size,
                       seed=seed, cfg=LoaderConfig(workers=workers,
                                                   chunk_positions=chunk_positions))


def test_several_shards(shards):
    assert len(shard_index(shards)) >= 6


def test_same_seed_same_batches_any_worker_count(shards):
    a = batches(make(shards, workers=0), 30)
    b = batches(make(shards, workers=2), 30)
    assert same(a, b)
    assert not same(a, batches(make(shards, workers=0, seed=8), 30))


@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume(shards, workers):
    full = batches(make(shards, workers=0), 50)  # any worker count gives these (test above)
    first = make(shards, workers=workers)
    part1 = batches(first, 20)
    state = first.state_dict()
    assert state["step"] == 20
    resumed = make(shards, workers=workers)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # survives a checkpoint round trip
    part2 = batches(resumed, 30)
    assert same(part1 + part2, full)


def test_batches_are_compact_records(shards):
    (step, batch), = batches(make(shards), 1)
    assert step == 0
    assert batch["planes"].shape == (96, 12) and batch["planes"].dtype == torch.int64
    assert batch["labels"].shape == (96, 20)
    # uint64 bit patterns survive the int64 view: pieces are on the board
    planes = batch["planes"].numpy().view(np.uint64)
    assert (np.bitwise_count(planes[:, 5]) == 1).all() and (np.bitwise_count(planes[:, 11]) == 1).all()


def test_curriculum_shares_within_one_point_over_10000_batches(shards):
    steps, bs = 10_000, 96
    curriculum = load_curriculum("stockfish")
    loader = make(shards, steps=steps, batch_size=bs)
    schedule = loader.schedule
    lengths = phase_lengths(curriculum, steps)
    assert sum(lengths) == steps
    counts = np.zeros((len(lengths), len(schema.BUCKETS)))
    teacher = np.zeros((len(lengths), len(schema.BUCKETS)))
    bounds = np.cumsum(lengths)
    checked = 0
    for step, batch in itertools.islice(iter(loader), steps):
        phase = int(np.searchsorted(bounds, step, side="right"))
        counts[phase] += np.bincount(batch["bucket"].numpy(), minlength=len(schema.BUCKETS))
        is_teacher = (batch["flags"] & schema.HAS_TEACHER_EVAL) != 0
        teacher[phase] += np.bincount(batch["bucket"][is_teacher].numpy(),
                                      minlength=len(schema.BUCKETS))
    for p, phase in enumerate(curriculum.phases):
        want = np.array([phase.weights.get(b, 0.0) for b in schema.BUCKETS])
        want /= want.sum()
        got = counts[p] / counts[p].sum()
        assert np.abs(got - want).max() < 0.01, (phase.name, got, want)
        # 40% teacher-annotated records in every bucket that has both kinds
        for i, _ in enumerate(schema.BUCKETS):
            if schedule.shares[p][2 * i] > 0 and schedule.shares[p][2 * i + 1] > 0:
                assert abs(teacher[p, i] / counts[p, i] - 0.4) < 0.01
                checked += 1
    assert checked >= 6


def test_seed_phase_lengths():
    assert phase_lengths(load_curriculum("stockfish"), 100_000) == [39_286, 21_429, 39_285]


def reference_counts(schedule: Schedule, batch_size: int, steps: int) -> np.ndarray:
    """Largest-remainder rounding with the carry, one step at a time in numpy (what the
    numba kernel behind Schedule.blocks must reproduce exactly)."""
    carry = np.zeros(schedule.shares.shape[1])
    out = np.zeros((steps, schedule.shares.shape[1]), dtype=np.int64)
    for step in range(steps):
        quota = schedule.shares[schedule.phase_at(step)] * batch_size + carry
        counts = np.maximum(np.floor(quota + 1e-9), 0).astype(np.int64)
        short = batch_size - int(counts.sum())
        if short > 0:
            order = np.argsort(-(quota - counts), kind="stable")
            counts[order[:short]] += 1
        carry = quota - counts
        out[step] = counts
    return out


@pytest.mark.parametrize("name", ["stockfish", "uniform"])
def test_schedule_counts_match_step_by_step_rounding(name):
    """The counts of every step, whatever the block size and the first step, are those of
    the step-by-step rounding, across the phase boundaries of a 12,000-step run."""
    rng = np.random.default_rng(3)
    for available in (np.ones(10, dtype=bool), rng.random(10) < 0.7):
        if not available.any():
            continue
        schedule = Schedule(load_curriculum(name), 12_000, available)
        for batch_size in (7, 96, 1024):
            want = reference_counts(schedule, batch_size, 12_000)
            assert (want.sum(axis=1) == batch_size).all()
            got = np.array([c for _, c in itertools.islice(schedule.counts(batch_size), 12_000)])
            np.testing.assert_array_equal(got, want)
            for size, first in ((42, 0), (5, 4_001), (1000, 5_000), (3, 11_990)):
                blocks = schedule.blocks(batch_size, size, first)
                for step, counts, before in itertools.islice(blocks, (12_000 - first) // size):
                    np.testing.assert_array_equal(counts, want[step : step + size])
                    np.testing.assert_array_equal(before, want[:step].sum(axis=0))


def test_stream_orders_depend_on_their_draw_only():
    """An order is a function of (seed, stream, epoch, window), whatever was drawn
    before it; different draws give different orders, each a permutation."""
    draws = _Draws(seed=7, stream=3)
    keys = [(epoch, window) for epoch in (0, 1, 2, 10**9) for window in (-1, 0, 1, 5)]
    first = {key: draws.permutation(500, *key) for key in keys}
    for key in reversed(keys):  # again, in another order, with other draws between
        _Draws(seed=7, stream=4).permutation(500, *key)
        np.testing.assert_array_equal(draws.permutation(500, *key), first[key])
    np.testing.assert_array_equal(_Draws(seed=7, stream=3).permutation(500, 2, 1), first[2, 1])
    orders = [tuple(o) for o in first.values()]
    assert len(set(orders)) == len(orders)
    assert all(sorted(o) == list(range(500)) for o in orders)
    assert tuple(_Draws(seed=8, stream=3).permutation(500, 0)) != orders[0]
    assert tuple(_Draws(seed=7, stream=2).permutation(500, 0)) != orders[0]


def test_missing_teacher_records_fall_back_with_warning():
    available = np.ones(10, dtype=bool)
    available[0::2] = False  # no teacher-annotated records at all
    schedule = Schedule(load_curriculum("uniform"), 100, available)
    assert schedule.warnings and "teacher" in schedule.warnings[0]
    assert schedule.shares[0][0::2].sum() == 0 and abs(schedule.shares[0].sum() - 1) < 1e-9


def test_manifest_naming_missing_files_is_an_error(shards, tmp_path):
    copy = tmp_path / "s"
    shutil.copytree(shards, copy)
    (copy / "train" / "shard-000001.tar").unlink()
    with pytest.raises(DataError, match="missing shard"):
        make(copy)
    with pytest.raises(DataError, match="run `make shards`"):
        make(tmp_path / "nowhere")


def test_corrupt_shard_is_reported_by_name_and_skipped(shards, tmp_path, caplog):
    copy = tmp_path / "s"
    shutil.copytree(shards, copy)
    bad = copy / "train" / "shard-000002.tar"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    loader = make(copy)
    with caplog.at_level(logging.WARNING):
        got = batches(loader, 200)
    assert len(got) == 200 and all(len(b["planes"]) == 96 for _, b in got)
    assert any("shard-000002.tar" in r.getMessage() for r in caplog.records)


def test_truncated_shard_reason_is_in_words(shards, tmp_path):
    cut = tmp_path / "cut.tar"
    data = (shards / "train" / "shard-000000.tar").read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 77])
    with pytest.raises(schema.ShardFormatError) as e:
        read_shard(str(cut))
    message = str(e.value)
    assert message == f"{cut}: not a whole tar file (unexpected end of data)", message


@pytest.mark.parametrize("workers", [0, 1])
def test_unreadable_shards_stop_training_with_one_clean_line(shards, tmp_path, capsys, workers):
    from train.__main__ import main

    copy = tmp_path / "s"
    shutil.copytree(shards, copy)
    for tar in (copy / "train").glob("*.tar"):
        tar.write_bytes(tar.read_bytes()[:1000])
    code = main(["--shards", str(copy), "--steps", "2", "--device", "cpu", "--workers",
                 str(workers), "--blocks", "1", "--channels", "8", "--eval-every", "0",
                 "--no-tensorboard", "--checkpoint-out", str(tmp_path / "ck" / "x.pt"),
                 "--run-dir", str(tmp_path / "runs")])
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1, errors
    assert errors[0].startswith("error: no readable shard holds stream"), errors[0]
    assert "Traceback" not in errors[0] and "worker process" not in errors[0]
    assert "not a whole tar file" in errors[0]


def test_verify_shards_finds_damage_before_the_first_step(shards, tmp_path, capsys):
    from train.__main__ import main

    copy = tmp_path / "s"
    shutil.copytree(shards, copy)
    assert verify_shards(copy) == len(list(copy.glob("*/*.tar")))
    flipped = copy / "train" / "shard-000001.tar"
    data = bytearray(flipped.read_bytes())
    data[-2000] ^= 1  # one bit: a size check alone would not see it
    flipped.write_bytes(bytes(data))
    cut = copy / "val" / "shard-000000.tar"
    cut.write_bytes(cut.read_bytes()[:5000])
    with pytest.raises(DataError) as e:
        verify_shards(copy)
    message = str(e.value)
    assert message.startswith("2 of ")
    assert "train/shard-000001.tar: sha256" in message and "val/shard-000000.tar: 5,000 bytes" in message
    args = ["--shards", str(copy), "--steps", "2", "--device", "cpu", "--workers", "0",
            "--blocks", "1", "--channels", "8", "--eval-every", "0", "--no-tensorboard",
            "--checkpoint-out", str(tmp_path / "ck" / "x.pt"), "--run-dir", str(tmp_path / "r")]
    assert main([*args, "--verify-shards"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not match the manifest" in err[0]
    assert not (tmp_path / "ck").exists()  # stopped before any step


def test_ranks_split_the_global_batch_by_rows(shards):
    def loader(batch_size, rank=0, world=1):
        return BatchLoader(shards, load_curriculum("uniform"), steps=10, batch_size=batch_size,
                           seed=1, cfg=LoaderConfig(workers=0), rank=rank, world=world)

    whole = batches(loader(16), 10)
    r0, r1 = batches(loader(8, 0, 2), 10), batches(loader(8, 1, 2), 10)
    for (k, want), (k0, a), (k1, b) in zip(whole, r0, r1, strict=True):
        assert k == k0 == k1
        assert all(torch.equal(want[c], torch.cat([a[c], b[c]])) for c in want)


def test_streams_wrap_into_new_epochs(shards):
    reader = StreamReader(shard_index(shards), seed=3)
    stream = int(np.argmax(reader.totals))
    total = int(reader.totals[stream])
    pieces = reader.take(stream, 0, 2 * total)
    rows = np.concatenate(pieces)
    first, second = rows[:total], rows[total:]
    # every record once per epoch, in another order the second time
    assert sorted(map(bytes, first)) == sorted(map(bytes, second))
    assert not np.array_equal(first, second)


def test_rows_round_trip_every_column(shards):
    block = read_shard(shard_index(shards)[0].path)
    rows = to_rows(block)
    assert rows.shape == (len(block["planes"]), ROW_BYTES) and rows.dtype == np.uint8
    columns = columns_of(torch.from_numpy(rows))
    assert set(columns) == set(BATCH_COLUMNS)
    for name, dtype in BATCH_COLUMNS.items():
        got = columns[name]
        assert got.dtype == dtype, name
        want = block[name]
        if want.dtype in (np.uint64, np.uint16) and got.dtype in (torch.int64, torch.int16):
            want = want.view(got.numpy().dtype)  # the same bits
        np.testing.assert_array_equal(got.numpy(), want, err_msg=name)
    # the h8 bit (sign bit of the int64 view) survives
    assert (block["planes"] >> np.uint64(63)).any()


def test_rows_reject_other_shapes():
    with pytest.raises(ValueError, match=f"rows must be \\(n, {ROW_BYTES}\\) uint8"):
        columns_of(torch.zeros(3, ROW_BYTES - 1, dtype=torch.uint8))


@pytest.mark.parametrize("workers", [0, 2])
def test_chunking_does_not_change_the_batches(shards, workers):
    one = batches(make(shards, chunk_positions=1), 25)  # one batch a chunk
    assert same(one, batches(make(shards, workers=workers, chunk_positions=96 * 4), 25))
    assert same(one, batches(make(shards, workers=workers, chunk_positions=96 * 7 + 5), 25))
    # resuming in the middle of a chunk starts a new chunk there: same batches
    loader = make(shards, workers=workers, chunk_positions=96 * 4)
    loader.load_state_dict({"step": 6})
    assert same(one[6:], batches(loader, 19))


@pytest.mark.parametrize("overlap", [False, True])
def test_device_batches_are_the_expanded_batches(shards, overlap):
    compact = batches(make(shards), 12)
    loader = BatchLoader(shards, load_curriculum("stockfish"), steps=1000, batch_size=96, seed=7,
                         cfg=LoaderConfig(workers=0, chunk_positions=96 * 5,
                                          expand_overlap=overlap))
    got = list(itertools.islice(device_batches(loader, "cpu", teacher_mix=0.3), 12))
    assert loader.state_dict()["step"] == 12
    for (step, batch), (k, x, targets) in zip(compact, got, strict=True):
        assert step == k
        want_x, want_t = expand(batch, teacher_mix=0.3)
        assert torch.equal(x, want_x)
        assert set(targets) == set(want_t)
        assert all(torch.equal(targets[t], want_t[t]) for t in want_t), step
    # and the compact columns are what from_numpy makes of the same records
    block = {name: col.numpy() for name, col in compact[0][1].items()}
    block["planes"] = block["planes"].view(np.uint64)
    block["labels"] = block["labels"].view(np.uint64)
    want = from_numpy(block)
    assert all(torch.equal(compact[0][1][k].long(), want[k].long()) for k in want)


def test_loader_config_is_checked():
    with pytest.raises(ValueError, match="chunk_positions"):
        LoaderConfig(chunk_positions=0)
    with pytest.raises(ValueError, match="workers"):
        LoaderConfig(workers=-1)


def test_each_stream_is_read_in_order_without_gaps(shards):
    """A batch is its streams' next records, in stream order, whatever the chunking."""
    loader = make(shards, curriculum="uniform", chunk_positions=96 * 3)
    got = batches(loader, 40)
    reader = StreamReader(shard_index(shards), seed=7)
    schedule = Schedule(load_curriculum("uniform"), 1000, reader.available())
    cursor = np.zeros(len(reader.totals), dtype=np.int64)
    for (step, batch), (k, counts) in zip(got, schedule.counts(96), strict=False):
        assert step == k
        want = np.concatenate([piece for s in np.flatnonzero(counts)
                               for piece in reader.take(int(s), int(cursor[s]), int(counts[s]))])
        np.testing.assert_array_equal(batch["planes"].numpy(),
                                      columns_of(torch.from_numpy(want))["planes"].numpy())
        cursor += counts


def test_device_batches_through_the_worker_ring_match_in_process(shards):
    """Workers hand chunks over in shared-memory slots that they refill later: a slow
    consumer still gets exactly the in-process batches."""
    want = list(itertools.islice(device_batches(make(shards, chunk_positions=96 * 2), "cpu"), 24))
    loader = make(shards, workers=2, chunk_positions=96 * 2)
    got = []
    for step, x, targets in itertools.islice(device_batches(loader, "cpu"), 24):
        time.sleep(0.01)  # the workers fill every slot they may while we wait
        got.append((step, x, targets))
    for (k, x, t), (k2, x2, t2) in zip(want, got, strict=True):
        assert k == k2 and torch.equal(x, x2)
        assert all(torch.equal(t[name], t2[name]) for name in t)
