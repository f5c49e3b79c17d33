"""dataengine.spill: the disk-backed repeat cap equals the in-memory one."""

from __future__ import annotations

import numpy as np
import pytest

from dataengine import spill
from dataengine.records import repeat_keep_mask


@pytest.mark.parametrize("budget", [1, 7, 100, 1 << 24])
@pytest.mark.parametrize("max_repeats", [1, 2, 8])
def test_keep_mask_on_disk_equals_in_memory(tmp_path, budget, max_repeats):
    rng = np.random.default_rng(budget * 10 + max_repeats)
    parts = []
    for i, n in enumerate([0, 50, 1, 300, 17]):
        keys = rng.integers(0, 40, n).astype("<u8") * np.uint64(0x0123456789ABCDEF)
        f = tmp_path / f"{i}.keys"
        keys.tofile(f)
        parts.append((f, keys))
    got = spill.keep_mask([f for f, _ in parts], max_repeats, tmp_path / "work", budget=budget)
    want = repeat_keep_mask(np.concatenate([k for _, k in parts]), max_repeats)
    assert np.array_equal(np.asarray(got), want)
    assert want.sum() < len(want)  # the cap dropped something
    assert not (tmp_path / "work" / "spill").exists()


def test_partitions_follow_the_budget():
    assert spill.partition_bits(10, 100) == 0
    assert spill.partition_bits(1000, 100) == 4  # 1000 / 16 <= 100
    keys = np.arange(10000, dtype=np.uint64)
    part = spill.partition_of(keys, 3)
    assert part.min() == 0 and part.max() == 7
    assert np.bincount(part).min() > 1000  # consecutive keys spread over partitions


def dict_keep_mask(keys: np.ndarray, max_repeats: int) -> np.ndarray:
    """The repeat cap as plainly as it can be said: count each key as it comes."""
    seen: dict[int, int] = {}
    keep = []
    for key in keys.tolist():
        keep.append(seen.get(key, 0) < max_repeats)
        seen[key] = seen.get(key, 0) + 1
    return np.array(keep, dtype=bool)


@pytest.mark.parametrize("max_repeats", [0, 1, 2, 8, 1 << 40])
def test_repeat_keep_mask_equals_counting(max_repeats):
    rng = np.random.default_rng(max_repeats % 1000)
    cases = [
        np.zeros(0, dtype=np.uint64),
        rng.integers(0, 2**64, 50_000, dtype=np.uint64),  # nearly all distinct
        rng.integers(0, 300, 50_000).astype(np.uint64),  # ~170 copies of each
        rng.integers(0, 300, 20_000).astype(np.uint64) << np.uint64(40),  # low bits all 0
        np.full(1000, 2**64 - 1, dtype=np.uint64),
    ]
    for keys in cases:
        np.testing.assert_array_equal(repeat_keep_mask(keys, max_repeats),
                                      dict_keep_mask(keys, max_repeats))


def test_repeat_keep_mask_on_the_sample_positions():
    """Every position key of a build of the sample games, capped as the build caps them."""
    from dataengine import readers
    from dataengine.records import position_keys, units_to_block
    from tests import naive

    pgn = next(p for p in naive.SAMPLE_INPUTS if str(p).endswith(".pgn"))
    units = [u for u in readers.read(str(pgn)) if isinstance(u, readers.Unit)]
    keys = position_keys(units_to_block(units, 0, labels=False))
    assert len(keys) > 20_000
    for max_repeats in (1, 8):
        want = dict_keep_mask(keys, max_repeats)
        assert want.sum() < len(keys)  # the start position, at least, repeats
        np.testing.assert_array_equal(repeat_keep_mask(keys, max_repeats), want)


@pytest.mark.parametrize("max_repeats", [0, 1, 3])
def test_repeat_counter_in_pieces_equals_all_at_once(max_repeats):
    """The keys in pieces of every size (the table grows, rehashing, between them) give
    the mask of all of them at once, and both the counting one."""
    from dataengine.records import RepeatCounter

    rng = np.random.default_rng(max_repeats)
    keys = np.concatenate([rng.integers(0, 2000, 30_000).astype(np.uint64),
                           rng.integers(0, 2**64, 30_000, dtype=np.uint64)])
    rng.shuffle(keys)
    counter = RepeatCounter(max_repeats)
    cuts = np.sort(rng.integers(0, len(keys), 40))
    got = np.concatenate([counter.add(piece) for piece in np.split(keys, cuts)])
    want = dict_keep_mask(keys, max_repeats)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(repeat_keep_mask(keys, max_repeats), want)
    assert counter.bits > 16  # it did grow


def _parts(tmp_path, sizes, seed):
    """Finished parts as a task leaves them (keys and game ids), and their Tasks."""
    from dataengine.build import Task, part_paths

    rng = np.random.default_rng(seed)
    tasks, keys, games = [], [], []
    for i, n in enumerate(sizes):
        task = Task(0, i, "x.pgn", 0, None, n, f"part{i}")
        k = rng.integers(0, 500, n).astype("<u8") * np.uint64(0x9E3779B97F4A7C15)
        g = rng.integers(0, 2**64, n, dtype=np.uint64).astype("<u8")
        _, _, keys_file, games_file = part_paths(tmp_path, task.key)
        k.tofile(keys_file)
        g.tofile(games_file)
        tasks.append(task)
        keys.append(k)
        games.append(g)
    return tasks, np.concatenate(keys), np.concatenate(games)


def test_early_cap_equals_the_merge_pass_in_any_finishing_order(tmp_path):
    """`build.EarlyCap` (the first pass during the parse) gives the mask and the
    per-bucket counts the merge makes, whatever order the parts finish in."""
    from dataengine import build
    from dataengine.config import BuildConfig

    tasks, keys, games = _parts(tmp_path, [300, 0, 5000, 1, 2600], seed=5)
    cfg = BuildConfig(max_repeats=2)
    early = build.EarlyCap(tasks, tmp_path, cfg)
    for i in (4, 2, 0, 3):
        early.finished(tasks[i])
        assert early.result() is None  # part 1 is not finished: nothing is final
    early.finished(tasks[1])
    keep, per_bucket = early.result()
    want = repeat_keep_mask(keys, 2)
    assert 0 < want.sum() < len(want)
    np.testing.assert_array_equal(np.asarray(keep), want)
    np.testing.assert_array_equal(per_bucket, build.game_bucket_counts(games[want]))
    on_disk = spill.keep_mask([build.part_paths(tmp_path, t.key)[2] for t in tasks], 2,
                              tmp_path / "again")
    np.testing.assert_array_equal(np.asarray(on_disk), want)


def test_early_cap_leaves_inputs_past_the_budget_to_the_merge(tmp_path):
    from dataengine import build
    from dataengine.config import BuildConfig

    tasks, _, _ = _parts(tmp_path, [300, 400, 500], seed=6)
    early = build.EarlyCap(tasks, tmp_path, BuildConfig(spill_pairs=1000))
    for task in tasks:
        early.finished(task)
    assert early.result() is None  # 1,200 records: the merge spills them
    assert not list(tmp_path.glob(".*.early"))
