"""The block format round-trips and rejects what it cannot read, naming it."""

import io
import json
import struct
import tarfile

import numpy as np
import pytest
import webdataset as wds
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from dataengine import schema
from dataengine.fileio import tar_bytes


def random_block(n: int, seed: int) -> schema.Block:
    rng = np.random.default_rng(seed)
    block = {}
    for c in schema.COLUMNS:
        info = np.iinfo(np.dtype(c.dtype))
        block[c.name] = rng.integers(info.min, info.max, size=(n, *c.shape), dtype=c.dtype,
                                     endpoint=True)
    block["themes"] = rng.choice(np.asarray(["", "fork", "mate mateIn2 long"]), size=n)
    return block


def assert_blocks_equal(a: schema.Block, b: schema.Block) -> None:
    # webdataset's map() adds __key__ to dict results
    assert set(a) == {k for k in b if not k.startswith("__")}
    for k in a:
        if k == "themes_id":  # renumbered against the block's own table
            continue
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert a[k].dtype == b[k].dtype or k == "themes", k


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_block_round_trip(n, seed):
    block = random_block(n, seed)
    back = schema.decode_block(schema.encode_block(block))
    assert_blocks_equal(block, back)
    assert schema.block_len(back) == n


@pytest.mark.parametrize("n", [0, 1, 8, 127, 128, 129, 1000, 4096])
@pytest.mark.parametrize("dtype, width", [("<u8", 20), ("<u8", 12), ("<u2", 8), ("<u2", 1),
                                          ("i1", 1)])
def test_byte_shuffle_is_the_byte_transpose(n, dtype, width):
    # (n and the row's bytes both multiples of 8 take the 8 x 8 tile kernel, the rest the
    # eight-row kernel or, for many narrow rows, numpy)
    a = np.random.default_rng(n).integers(0, 2**63, size=(n, width)).astype(dtype)
    size = np.dtype(dtype).itemsize
    want = a.view(np.uint8).reshape(n, width * size)
    reference = bytes(want[r, c] for c in range(width * size) for r in range(n)) \
        if n * width * size <= 20_000 else np.ascontiguousarray(want.T).tobytes()
    # into its place in a payload: not on an 8-byte boundary
    payload = np.zeros(3 + len(reference), dtype=np.uint8)
    schema._shuffle_into(a, payload[3:])
    assert payload[3:].tobytes() == reference and not payload[:3].any()
    np.testing.assert_array_equal(schema._unshuffle(reference, np.dtype(dtype), n, width), a)
    # a column starts anywhere in a block's payload: not on an 8-byte boundary
    unaligned = memoryview(b"abc" + reference)[3:]
    back = schema._unshuffle(unaligned, np.dtype(dtype), n, width)
    np.testing.assert_array_equal(back, a)
    assert back.flags.writeable  # a decoded block's columns are the caller's to change


def test_omitted_columns_round_trip_only_when_omitted():
    block = random_block(50, seed=3)
    data = schema.encode_block(block, omit=("labels",))
    back = schema.decode_block(data, "part", omit=("labels",))
    assert "labels" not in back
    assert_blocks_equal({k: v for k, v in block.items() if k != "labels"}, back)
    assert len(data) < 0.55 * len(schema.encode_block(block))  # the labels: half a record
    with pytest.raises(schema.ShardFormatError, match=r"part: missing columns \['labels'\]"):
        schema.decode_block(data, "part")


def test_encoding_is_deterministic():
    block = random_block(100, 1)
    assert schema.encode_block(block) == schema.encode_block(random_block(100, 1))


def test_no_pickle_in_blocks():
    """The payload is a length, a JSON header and raw column bytes: nothing else."""
    data = schema.encode_block(random_block(10, 2))
    payload = zstandard.ZstdDecompressor().decompress(data)
    (hlen,) = struct.unpack_from("<I", payload)
    header = json.loads(payload[4 : 4 + hlen])
    assert header["format_version"] == schema.FORMAT_VERSION
    assert 4 + hlen + sum(c[4] for c in header["columns"]) == len(payload)


def test_corrupt_block_is_named():
    data = bytearray(schema.encode_block(random_block(50, 3)))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(schema.ShardFormatError, match="shard-x.tar:7"):
        schema.decode_block(bytes(data), "shard-x.tar:7")


def test_truncated_block_is_named():
    data = schema.encode_block(random_block(50, 4))
    with pytest.raises(schema.ShardFormatError, match="blk"):
        schema.decode_block(data[: len(data) // 2], "blk")


def test_wrong_version_is_rejected():
    payload = zstandard.ZstdDecompressor().decompress(schema.encode_block(random_block(5, 5)))
    (hlen,) = struct.unpack_from("<I", payload)
    header = json.loads(payload[4 : 4 + hlen])
    header["format_version"] = schema.FORMAT_VERSION + 1
    head = json.dumps(header).encode()
    bad = zstandard.ZstdCompressor().compress(struct.pack("<I", len(head)) + head +
                                              payload[4 + hlen :])
    with pytest.raises(schema.ShardFormatError,
                       match=f"format version {schema.FORMAT_VERSION + 1}"):
        schema.decode_block(bad, "old")


def test_check_columns_names_the_bad_column():
    block = random_block(5, 6)
    block["ply"] = block["ply"].astype(np.int64)
    with pytest.raises(ValueError, match="'ply'"):
        schema.encode_block(block)


def test_stock_webdataset_reads_our_tars(tmp_path):
    blocks = [random_block(n, 10 + n) for n in (7, 0, 33)]
    members = [(f"{i:08d}.{schema.MEMBER_EXT}", schema.encode_block(b))
               for i, b in enumerate(blocks)]
    path = tmp_path / "shard-000000.tar"
    path.write_bytes(tar_bytes(members))
    got = list(wds.WebDataset(str(path), shardshuffle=False).map(schema.decode_sample))
    assert len(got) == 3
    for want, have in zip(blocks, got, strict=True):
        assert_blocks_equal(want, have)


def test_tars_are_reproducible():
    members = [("00000000.cols.zst", b"abc"), ("00000001.cols.zst", b"de")]
    a, b = tar_bytes(members), tar_bytes(members)
    assert a == b
    with tarfile.open(fileobj=io.BytesIO(a)) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == [m[0] for m in members]
    assert all(i.mtime == 0 and i.uid == 0 and i.uname == "" for i in infos)
