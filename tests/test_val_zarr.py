"""The validation store written as it comes (build.ValZarrWriter): byte for byte the
store that writing the whole split at once gives, whatever the pieces, and it reads back."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import zarr

from dataengine import schema
from dataengine.build import VAL_CHUNK, ValZarrWriter, read_val_zarr, write_val_zarr

THEMES = np.asarray(["", "mate mateIn2", "fork short", "endgame", "Ünïcode", "a", "b c"])


def random_block(n: int, seed: int) -> schema.Block:
    rng = np.random.default_rng(seed)
    block = {}
    for c in schema.COLUMNS:
        raw = rng.integers(0, 256, size=(n, *c.shape, np.dtype(c.dtype).itemsize), dtype=np.uint8)
        block[c.name] = raw.view(c.dtype).reshape(n, *c.shape)
    block["themes"] = THEMES[rng.integers(0, len(THEMES), size=n)]
    return block


def reference_store(path: Path, block: schema.Block, chunk: int) -> None:
    """The split written at once: np.unique over all its themes, every column whole."""
    n = schema.block_len(block)
    root = zarr.open_group(str(path), mode="w")
    table, themes_id = np.unique(np.asarray(block["themes"], dtype=str), return_inverse=True)
    root.attrs.update({
        "format_version": schema.FORMAT_VERSION,
        "label_spec_version": schema.LABEL_SPEC_VERSION,
        "records": n,
        "themes": [str(t) for t in table],
        "columns": {c.name: c.doc for c in schema.COLUMNS},
    })
    for c in schema.COLUMNS:
        data = themes_id.astype(c.dtype) if c.name == "themes_id" else block[c.name]
        arr = root.create_array(c.name, shape=data.shape, dtype=data.dtype,
                                chunks=(max(1, min(n, chunk)), *c.shape))
        if n:
            arr[...] = data


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("n", [0, 1, 1000, 2500])
def test_pieces_give_the_store_of_the_whole_split(tmp_path, n):
    block = random_block(n, seed=n)
    reference_store(tmp_path / "ref.zarr", block, chunk=1000)
    rng = np.random.default_rng(n + 1)
    for trial in range(2):
        cuts = np.sort(rng.integers(0, n + 1, size=rng.integers(0, 8)))
        bounds = [0, *cuts.tolist(), n]  # empty pieces too
        path = tmp_path / f"v{trial}.zarr"
        writer = ValZarrWriter(path, n, chunk=1000)
        for a, b in pairwise(bounds):
            writer.add(schema.take(block, slice(a, b)))
        assert not path.exists()  # only under a temporary name until closed
        writer.close()
        assert tree(path) == tree(tmp_path / "ref.zarr"), (n, bounds)
        assert not (tmp_path / f".v{trial}.zarr.tmp").exists()
    back = read_val_zarr(tmp_path / "v0.zarr")
    for name in [c.name for c in schema.COLUMNS if c.name != "themes_id"] + ["themes"]:
        np.testing.assert_array_equal(back[name], block[name], err_msg=name)


def test_the_default_chunk_is_what_the_build_wrote(tmp_path):
    block = random_block(VAL_CHUNK + 4000, seed=7)  # more than one chunk
    reference_store(tmp_path / "ref.zarr", block, chunk=VAL_CHUNK)
    write_val_zarr(tmp_path / "one.zarr", block)
    assert tree(tmp_path / "one.zarr") == tree(tmp_path / "ref.zarr")


def test_wrong_counts_and_too_many_themes_are_errors(tmp_path):
    block = random_block(10, seed=1)
    writer = ValZarrWriter(tmp_path / "v.zarr", 9)
    with pytest.raises(ValueError, match="more than the 9 records announced"):
        writer.add(block)
    writer = ValZarrWriter(tmp_path / "v.zarr", 11)
    writer.add(block)
    with pytest.raises(ValueError, match="10 records written, 11 announced"):
        writer.close()
    assert not (tmp_path / "v.zarr").exists()  # nothing half-written in place
    many = random_block(0x10000, seed=2)
    many["themes"] = np.asarray([f"t{i}" for i in range(0x10000)])
    writer = ValZarrWriter(tmp_path / "m.zarr", 0x10000)
    with pytest.raises(ValueError, match="more than 65535 distinct theme strings"):
        writer.add(many)
