"""`read_pgn` with the numba movetext decoder (`fast=True`, the default) against the
python-chess path alone (`fast=False`): the same Units, Skips and Notes, in the same
order, on every sample and shared PGN, on hand-made, malformed, random and mutated games,
and the same shard bytes from a build.

Each comparison also checks that the fast path did decode most of the games, so that it
cannot pass by falling back to python-chess everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataengine.build import build
from dataengine.config import BuildConfig
from dataengine.readers import Note, Unit, fastpgn, pgn, read_pgn, split_ranges
from tests import naive
from tests import test_fastpgn as fp
from tests.test_readers import write_corpus

DATA = naive.shared_data()
SAMPLE_PGNS = sorted(naive.SAMPLE.glob("*.pgn"))
SHARED_PGNS = sorted(p for p in DATA.rglob("*.pgn*") if p.is_file()) if DATA else []


@pytest.fixture
def decoded(monkeypatch) -> list[int]:
    """[games the fast path decoded, games it rejected], counted as read_pgn calls it."""
    counts = [0, 0]
    decode_games = fastpgn.decode_games

    def counting(movetexts, starts=None):
        got = decode_games(movetexts, starts)
        ok = int((got.status == fastpgn.OK).sum())
        counts[0] += ok
        counts[1] += len(got.status) - ok
        return got

    monkeypatch.setattr(fastpgn, "decode_games", counting)
    return counts


def read_both(path: Path) -> tuple[list, list]:
    return list(read_pgn(str(path), fast=True)), list(read_pgn(str(path), fast=False))


def as_lists(item):
    """A Unit whose columns are the fast path's numpy arrays (``arrays=True``, what the
    build reads), with the arrays as lists of Python values (what the python-chess path
    holds); anything else as it is."""
    if not isinstance(item, Unit):
        return item
    columns = {f.name: getattr(item, f.name) for f in dataclasses.fields(Unit)}
    return Unit(**{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in columns.items()})


def assert_same_items(fast: list, slow: list, where: str) -> None:
    # repr too: it tells True from 1 and numpy integers from Python's
    assert len(fast) == len(slow), where
    for i, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert a == b and repr(a) == repr(b), f"{where}: item {i} differs: {a!r:.300} vs {b!r:.300}"


@pytest.mark.parametrize("path", SAMPLE_PGNS, ids=lambda p: p.name)
def test_sample_pgns_read_the_same(path, decoded):
    fast, slow = read_both(path)
    assert_same_items(fast, slow, path.name)
    arrays = list(read_pgn(str(path), fast=True, arrays=True))
    assert all(isinstance(u.move, np.ndarray) for u in arrays if isinstance(u, Unit))
    assert_same_items([as_lists(u) for u in arrays], slow, f"{path.name}, arrays")
    games = sum(isinstance(u, Unit) for u in slow)
    assert games >= 200 and decoded[0] == 2 * games, decoded  # both fast reads


def test_shared_pgns_read_the_same(decoded):
    if not SHARED_PGNS:
        pytest.skip("no ../shared/data PGN (set CHESS_SSL_SHARED_DATA)")
    units = 0
    for path in SHARED_PGNS:
        fast, slow = read_both(path)
        assert_same_items(fast, slow, path.name)
        units += sum(isinstance(u, Unit) for u in slow)
    assert decoded[0] >= 0.9 * units, (decoded, units)


def test_malformed_corpus_reads_the_same(tmp_path, decoded):
    """tests/test_readers.py's corpus: a bad FEN, an invalid position, a variant, a
    Latin-1 game (recoded), no moves, an illegal move mid-game (truncated), a FEN game,
    movetext without tags, a file cut inside a move."""
    path = write_corpus(tmp_path)
    fast, slow = read_both(path)
    assert_same_items(fast, slow, path.name)
    assert {n.reason for n in fast if isinstance(n, Note)} == {"recoded", "truncated"}
    assert decoded[0] >= 4 and decoded[1] >= 1, decoded


def test_hand_made_cases_read_the_same(tmp_path, decoded):
    """tests/test_fastpgn.py's hand-made movetexts (pins, en passant, castling, promotions,
    evals, odd notations, bad moves), one game each."""
    games = [({"Event": name} | ({"SetUp": "1", "FEN": fen} if fen else {}), text)
             for name, (text, fen, _) in fp.CASES.items()]
    path = tmp_path / "cases.pgn"
    fp.write_pgn(path, games)
    fast, slow = read_both(path)
    assert_same_items(fast, slow, path.name)
    accepted = sum(expected == "ok" for _, _, expected in fp.CASES.values())
    assert decoded[0] == accepted, decoded


def test_random_and_mutated_games_read_the_same(tmp_path, decoded):
    """Seeded random playouts (a fifth from FEN tags), decorated, and copies of them with
    random bytes changed; also read in byte ranges."""
    games, _ = fp.random_games(seed=2015, count=300)
    rng = random.Random(2016)
    texts = [(tags, text) for tags, text, _, _ in games]
    texts += [(tags, fp.mutate(rng, text)) for tags, text, _, moves in games if moves]
    path = tmp_path / "random.pgn"
    fp.write_pgn(path, texts)
    fast, slow = read_both(path)
    assert_same_items(fast, slow, path.name)
    arrays = [as_lists(u) for u in read_pgn(str(path), fast=True, arrays=True)]
    assert_same_items(arrays, slow, f"{path.name}, arrays")
    assert decoded[0] >= len(games) * 2 and decoded[1] >= 40, decoded
    ranges = split_ranges(str(path), 16384)
    assert len(ranges) > 3
    for fast_on in (True, False):
        parts = [x for s, e in ranges for x in read_pgn(str(path), s, e, fast=fast_on)]
        assert_same_items(parts, slow, f"{path.name} in ranges, fast={fast_on}")


def test_the_comparison_sees_a_wrong_fast_path(tmp_path, monkeypatch):
    """The comparisons above fail when the fast path's Unit is off by one halfmove."""
    decode_games = fastpgn.decode_games

    def off_by_one(movetexts, starts=None):
        got = decode_games(movetexts, starts)
        return dataclasses.replace(got, halfmove=got.halfmove + 1)

    monkeypatch.setattr(fastpgn, "decode_games", off_by_one)
    fast, slow = read_both(SAMPLE_PGNS[0])
    with pytest.raises(AssertionError, match="item 0 differs"):
        assert_same_items(fast, slow, "wrong")


def output_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".work" not in p.parts}


def test_build_gives_the_same_bytes_fast_or_not(tmp_path, monkeypatch, decoded):
    cfg = BuildConfig(chunk_bytes=1 << 18, block_records=1024, blocks_per_shard=4)
    inputs = [str(p) for p in SAMPLE_PGNS]
    fast = build(inputs, tmp_path / "fast", workers=1, cfg=cfg, quiet=True)
    assert decoded[0] >= 1500, decoded  # the build did read through the fast path
    before = list(decoded)
    monkeypatch.setattr(pgn, "FAST", False)
    slow = build(inputs, tmp_path / "slow", workers=1, cfg=cfg, quiet=True)
    assert decoded == before  # ... and then did not
    assert json.dumps(fast, sort_keys=True) == json.dumps(slow, sort_keys=True)
    files_fast, files_slow = output_files(tmp_path / "fast"), output_files(tmp_path / "slow")
    assert len([f for f in files_fast if f.endswith(".tar")]) > 3
    assert files_fast.keys() == files_slow.keys()
    differ = [name for name in files_fast if files_fast[name] != files_slow[name]]
    assert not differ, differ


@pytest.mark.parametrize(("value", "expected"), [("0", False), (None, True)])
def test_environment_switch(value, expected):
    """Build workers import the reader afresh (a fork server, or spawned): the variable
    DATAENGINE_FASTPGN=0 reaches them."""
    env = {k: v for k, v in os.environ.items() if k != "DATAENGINE_FASTPGN"}
    if value is not None:
        env["DATAENGINE_FASTPGN"] = value
    out = subprocess.run(
        [sys.executable, "-c", "from dataengine.readers import pgn; print(pgn.FAST)"],
        env=env, capture_output=True, text=True, check=True, cwd=naive.REPO,
    )
    assert out.stdout.strip() == str(expected)
