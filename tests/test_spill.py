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
