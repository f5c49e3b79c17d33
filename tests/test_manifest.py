"""dataengine.manifest: a build's manifest.json (and one the teacher rewrote) reads and
writes back byte for byte; errors name the file; the helpers give what the callers
used to work out from the raw JSON."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dataengine import manifest as manifests
from dataengine import schema
from dataengine.build import build
from dataengine.config import BuildConfig
from dataengine.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    ManifestMissing,
    ManifestVersionError,
    SplitEntry,
)
from tests import naive

PGN = naive.SAMPLE / "sf_selfplay_200.pgn"
PUZZLES = naive.SAMPLE / "lichess_puzzles_300.csv"

FAKE_ENGINE = """\
import sys
import chess
board = chess.Board()
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
        move = min(board.legal_moves, key=lambda m: m.uci())
        say(f"info depth 1 score cp {len(board.piece_map())} nodes 1 pv {move.uci()}")
        say(f"bestmove {move.uci()}")
    elif cmd[0] == "quit":
        break
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The sample puzzles and the first 20 games (with [%eval]: some teacher evals), a
    val split, several shards per split."""
    tmp = tmp_path_factory.mktemp("manifest")
    games = PGN.read_text().split("\n\n[Event ")
    pgn = tmp / "games20.pgn"
    pgn.write_text("\n\n[Event ".join(games[:20]) + "\n")
    out = tmp / "shards"
    cfg = BuildConfig(val_fraction=0.2, block_records=256, blocks_per_shard=2)
    build([str(PUZZLES), str(pgn)], out, cfg=cfg, quiet=True)
    return out


@pytest.fixture(scope="module")
def annotated(built, tmp_path_factory) -> Path:
    """`built` after a teacher pass over a third of the positions with a fake engine."""
    from dataengine.teacher import annotate

    tmp = tmp_path_factory.mktemp("annotated")
    fake = tmp / "fake_engine"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_ENGINE)
    fake.chmod(0o755)
    out = tmp / "shards"
    shutil.copytree(built, out)
    annotate(out, nodes=10, workers=1, fraction=0.3, engine=str(fake), quiet=True)
    return out


def raw(directory: Path) -> dict:
    return json.loads((directory / MANIFEST_NAME).read_text())


def decoded_counts(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Records per bucket and records with a teacher eval per bucket, from the shard."""
    from train.loader import read_shard

    block = read_shard(str(path))
    has = (block["flags"] & schema.HAS_TEACHER_EVAL) != 0
    every = np.bincount(block["bucket"], minlength=len(schema.BUCKETS))
    teacher = np.bincount(block["bucket"][has], minlength=len(schema.BUCKETS))
    return (dict(zip(schema.BUCKETS, every.tolist(), strict=True)),
            dict(zip(schema.BUCKETS, teacher.tolist(), strict=True)))


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("which", ["built", "annotated"])
def test_round_trip_is_byte_for_byte(which, request, tmp_path):
    directory = request.getfixturevalue(which)
    data = (directory / MANIFEST_NAME).read_bytes()
    m = manifests.read(directory)
    assert m.to_bytes() == data
    assert m.to_json() == json.loads(data)
    assert Manifest.from_json(json.loads(data)) == m
    assert manifests.write(tmp_path, m) == tmp_path / MANIFEST_NAME
    assert (tmp_path / MANIFEST_NAME).read_bytes() == data
    assert manifests.read(tmp_path) == m
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_NAME]  # no temp file left
    assert (m.teacher is not None) == (which == "annotated")


def test_build_returns_what_it_wrote(built):
    m = manifests.read(built)
    assert m.build_key and len(m.build_key) == 64
    assert m.splits["val"].zarr == "val.zarr" and m.splits["train"].zarr is None
    assert "zarr" not in raw(built)["splits"]["train"]
    assert [sp for sp in m.splits] == list(schema.SPLITS)
    assert len(m.shards("train")) >= 3 and len(m.shards("val")) >= 2
    assert m.notes is not None and all(x.notes is not None for x in m.inputs)


def test_to_json_is_a_copy(built):
    m = manifests.read(built)
    obj = m.to_json()
    obj["splits"]["train"]["shards"][0]["buckets"]["tactical"] = -1
    obj["build_config"]["max_repeats"] = -1
    assert m == manifests.read(built)


def test_optional_and_unknown_keys_stay_as_they_were(built, tmp_path):
    obj = raw(built)
    del obj["notes"], obj["build_key"]
    for f in obj["inputs"]:
        del f["notes"]
    del obj["splits"]["train"]["shards"][0]["teacher"]
    obj["a_later_section"] = {"x": [1, 2]}
    data = json.dumps(obj, indent=1, sort_keys=True).encode()
    (tmp_path / MANIFEST_NAME).write_bytes(data)
    m = manifests.read(tmp_path)
    assert m.notes is None and m.build_key is None and m.inputs[0].notes is None
    assert m.shards("train")[0].teacher is None
    assert m.shards("train")[0].teacher_count("tactical") == 0
    assert m.extra == {"a_later_section": {"x": [1, 2]}}
    assert m.to_bytes() == data


def test_write_is_atomic(built, tmp_path, monkeypatch):
    m = manifests.read(built)
    manifests.write(tmp_path, m)
    before = (tmp_path / MANIFEST_NAME).read_bytes()

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        manifests.write(tmp_path, replace(m, records=m.records + 1))
    assert (tmp_path / MANIFEST_NAME).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_NAME]


# ----------------------------------------------------------------------------- errors


def test_version_mismatch_is_an_error_naming_the_file(built, tmp_path):
    obj = raw(built)
    obj["format_version"] = schema.FORMAT_VERSION + 1
    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps(obj))
    with pytest.raises(ManifestVersionError) as e:
        manifests.read(tmp_path)
    assert str(path) in str(e.value) and e.value.path == path
    assert e.value.found == schema.FORMAT_VERSION + 1
    assert f"format version {schema.FORMAT_VERSION + 1}" in str(e.value)
    assert f"this reader reads {schema.FORMAT_VERSION}" in str(e.value)
    assert manifests.read(tmp_path, check_version=False).format_version == schema.FORMAT_VERSION + 1

    from train.loader import DataError, read_manifest

    with pytest.raises(DataError, match=f"format version {schema.FORMAT_VERSION + 1}, "
                                        f"this trainer reads {schema.FORMAT_VERSION}"):
        read_manifest(tmp_path)


def test_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ManifestMissing) as e:
        manifests.read(tmp_path / "nowhere")
    assert repr(str(tmp_path / "nowhere" / MANIFEST_NAME)) in str(e.value)
    assert isinstance(e.value, ManifestError)


def edited(change):
    """A damage that parses the manifest, applies `change` to it and writes it back."""
    def damage(data: bytes) -> bytes:
        obj = json.loads(data)
        change(obj)
        return json.dumps(obj).encode()
    return damage


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[: len(data) // 2], "is not valid JSON"),
    (lambda data: b"\xff\xfe\x00" + data, "is not valid JSON"),
    (lambda data: b"[]", "is not a shards manifest: the manifest is not an object"),
    (edited(lambda m: m.pop("splits")), "the manifest has no 'splits'"),
    (edited(lambda m: m["splits"]["train"]["shards"][0].update(blocks="2")),
     "splits.train.shards[0].blocks is '2', not int"),
    (edited(lambda m: m["splits"]["val"]["shards"][1].pop("sha256")),
     "splits.val.shards[1] has no 'sha256'"),
    (edited(lambda m: m["inputs"].__setitem__(1, 7)),
     "inputs[1] is not an object"),
])
def test_corrupt_file_is_an_error_naming_it(built, tmp_path, damage, message):
    path = tmp_path / MANIFEST_NAME
    path.write_bytes(damage((built / MANIFEST_NAME).read_bytes()))
    with pytest.raises(ManifestError) as e:
        manifests.read(tmp_path)
    assert repr(str(path)) in str(e.value) and message in str(e.value), str(e.value)
    assert e.value.path == path


def test_wrong_types_are_errors(built):
    obj = raw(built)
    obj["label_spec_version"] = True
    with pytest.raises(ManifestError, match=r"'m.json' is not a shards manifest: "
                                            r"label_spec_version is True, not int"):
        Manifest.from_json(obj, "m.json")
    obj = raw(built)
    obj["splits"]["val"]["buckets"]["tactical"] = 1.5
    with pytest.raises(ManifestError, match=r"splits.val.buckets has a count that is not an int"):
        Manifest.from_json(obj, "m.json")


def test_callers_report_the_errors(built, tmp_path, capsys):
    from dataengine.inspect.__main__ import main as inspect_main
    from train.loader import DataError, shard_index

    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(DataError, match="is not valid JSON"):
        shard_index(tmp_path)
    assert inspect_main(["summary", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / MANIFEST_NAME) in err
    assert err.count("\n") == 1


# ----------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("which", ["built", "annotated"])
def test_helpers_equal_what_the_callers_computed(which, request):
    directory = request.getfixturevalue(which)
    old = raw(directory)
    m = manifests.read(directory)
    every = [s for sp in old["splits"].values() for s in sp["shards"]]
    assert [s.path for s in m.shards()] == [s["path"] for s in every]
    assert [s.to_json() for s in m.shards()] == every
    for split, sp in old["splits"].items():
        assert [s.path for s in m.shards(split)] == [s["path"] for s in sp["shards"]]
        assert all(s.split == split for s in m.shards(split))
        # the teacher rewriter's split totals, and the build's
        by_hand = {b: sum(e.get("teacher", {}).get(b, 0) for e in sp["shards"])
                   for b in schema.BUCKETS}
        assert m.teacher_counts(split) == by_hand == sp["teacher"]
        assert manifests.bucket_counts(m.shards(split)) == sp["buckets"]
        redone = SplitEntry.of(m.shards(split), zarr=sp.get("zarr"))
        assert redone == m.splits[split] and redone.to_json() == sp
        for s, e in zip(m.shards(split), sp["shards"], strict=True):
            # the loader's streams: per bucket, teacher records then the others
            streams = []
            for b in schema.BUCKETS:
                t = int(e.get("teacher", {}).get(b, 0))
                streams += [t, int(e["buckets"][b]) - t]
            assert s.stream_counts() == tuple(streams)
            assert (s.buckets, s.teacher) == decoded_counts(directory / s.path)
    assert m.teacher_counts() == {b: sum(m.teacher_counts(sp)[b] for sp in schema.SPLITS)
                                  for b in schema.BUCKETS}
    assert manifests.shard_bytes_per_record(m.shards()) == old["bytes_per_record"]
    assert m.input_path(0) == old["inputs"][0]["path"] and m.input_path(len(old["inputs"])) is None
    assert m.shard(every[1]["path"]).sha256 == every[1]["sha256"]
    with pytest.raises(KeyError):
        m.shard("train/nope.tar")


def test_teacher_pass_counts_some_records(annotated, built):
    m, before = manifests.read(annotated), manifests.read(built)
    assert m.teacher.complete and m.teacher.engine == "Fake 1"
    assert m.teacher.settings() == {"engine": "Fake 1", "engine_options": m.teacher.engine_options,
                                    "nodes": 10, "fraction": 0.3, "overwrite": False}
    assert set(m.teacher.shards) == {s.path for s in m.shards()}
    assert sum(m.teacher_counts().values()) > sum(before.teacher_counts().values())
    assert m.build_key == before.build_key


def test_shard_index_uses_the_stream_counts(annotated):
    from train.loader import shard_index

    m = manifests.read(annotated)
    infos = shard_index(annotated)
    assert [i.path for i in infos] == [str(annotated / s.path) for s in m.shards("train")]
    assert [i.counts for i in infos] == [s.stream_counts() for s in m.shards("train")]


def test_with_shard_keeps_the_totals_in_step(built):
    m = manifests.read(built)
    entry = m.shards("val")[0]
    teacher = dict.fromkeys(schema.BUCKETS, 0) | {"tactical": entry.buckets["tactical"]}
    changed = replace(entry, teacher=teacher, bytes=entry.bytes + 1000)
    new = m.with_shard(changed)
    assert new.shard(entry.path) == changed and new.shards("train") == m.shards("train")
    assert new.splits["val"].teacher == manifests.teacher_counts(new.shards("val"))
    assert new.splits["val"].teacher["tactical"] == sum(
        s.teacher_count("tactical") for s in new.shards("val"))
    assert new.splits["train"] == m.splits["train"]
    assert new.bytes_per_record == round(sum(s.bytes for s in new.shards()) / m.records, 2)
    assert m.shard(entry.path) == entry  # frozen: the old manifest is unchanged
    with pytest.raises(KeyError):
        m.with_shard(replace(entry, path="val/shard-999999.tar"))


def test_read_does_not_need_the_shards(built, tmp_path):
    shutil.copy(built / MANIFEST_NAME, tmp_path / MANIFEST_NAME)
    assert manifests.read(tmp_path) == manifests.read(built)
