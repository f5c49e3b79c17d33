"""The puzzle benchmark's default set (dataengine/heldout/) is held out of training: the
default build never reads it, and none of its positions (each puzzle's setup position and
every position its solver is to move in) is among the default input's positions, nor in
the default shards (slow: builds them as `make shards` does).

Positions are compared as the shards store them: canonical orientation (the side to move
as White), so a position and its colour-flipped mirror are the same record.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import chess
import numpy as np
import pytest

import labelers
from dataengine import readers
from dataengine.build import build, find_inputs, read_val_zarr
from dataengine.config import load_build_config
from dataengine.fileio import sha256_file
from dataengine.records import canonical_castling
from dataengine.schema import decode_sample
from tests import naive
from train.evaluation.inputs import compact_batch
from train.puzzles import DEFAULT_PUZZLES, read_puzzles

HELDOUT = DEFAULT_PUZZLES.parent


def default_input() -> Path:
    """``make shards``'s default INPUT, read from the Makefile."""
    text = (naive.REPO / "Makefile").read_text()
    match = re.search(r"^INPUT\s*\?=\s*(\S+)\s*$", text, re.M)
    assert match, "the Makefile has no INPUT ?= default"
    return naive.REPO / match.group(1)


def puzzle_boards(path: str | Path = DEFAULT_PUZZLES, setup: bool = True) -> list[chess.Board]:
    """Every board of a puzzle file's puzzles that its solver is to move in, and with
    ``setup`` each puzzle's FEN (the position before the setup move) too."""
    boards = []
    for puzzle in read_puzzles(path):
        board = chess.Board(puzzle.fen)
        if setup:
            boards.append(board.copy(stack=False))
        for i, move in enumerate(puzzle.moves):
            board.push(move)
            if i % 2 == 0 and i + 1 < len(puzzle.moves):
                boards.append(board.copy(stack=False))
    return boards


def record_keys(planes: np.ndarray, castling: np.ndarray, ep_file: np.ndarray) -> set[bytes]:
    """One key per record: its canonical planes, castling bits and en-passant file."""
    rows = np.concatenate([np.ascontiguousarray(planes, dtype="<u8").view(np.uint8),
                           castling.astype(np.uint8).reshape(-1, 1),
                           ep_file.astype(np.int8).view(np.uint8).reshape(-1, 1)], axis=1)
    return set(map(bytes, rows))


def board_keys(boards: list[chess.Board]) -> set[bytes]:
    """The boards' keys, made by the code that makes the network's inputs from a board
    (tested equal to the shards' records in test_enhanced_eval)."""
    batch = compact_batch(boards)
    return record_keys(batch["planes"].numpy().view(np.uint64), batch["castling"].numpy(),
                       batch["ep_file"].numpy())


def unit_keys(units: list[readers.Unit]) -> set[bytes]:
    """The keys of the records a build makes of reader units (dataengine.records)."""
    white = np.concatenate([np.asarray(u.turn, dtype=bool) for u in units])
    raw = np.concatenate([np.asarray(u.bitboards, dtype=np.uint64) for u in units])
    ep = np.concatenate([np.asarray(u.ep_square, dtype=np.int16) for u in units])
    castling = np.concatenate([np.asarray(u.castling, dtype=np.uint64) for u in units])
    return record_keys(labelers.canonical_planes(raw.reshape(-1, 8), white),
                       canonical_castling(castling, white), np.where(ep >= 0, ep & 7, -1))


def canonical_placement(placement: str, white_to_move: bool) -> str:
    """A FEN's piece placement as seen from the side to move (mirrored for Black)."""
    if white_to_move:
        return placement
    return "/".join(reversed(placement.split("/"))).swapcase()


@pytest.fixture(scope="module")
def boards() -> list[chess.Board]:
    found = puzzle_boards()
    assert len(found) > 3000  # 1,199 setups and 2,269 solver positions
    return found


def test_the_default_build_never_reads_the_held_out_folder():
    inputs = [Path(p).resolve() for p in find_inputs([str(default_input())])]
    assert inputs and not any(HELDOUT.resolve() in p.parents for p in inputs)
    digest = sha256_file(DEFAULT_PUZZLES)
    assert all(sha256_file(p) != digest for p in inputs)


def test_no_puzzle_file_of_the_default_input_holds_a_held_out_puzzle():
    with open(DEFAULT_PUZZLES, newline="") as f:
        held = {row["PuzzleId"] for row in csv.DictReader(f)}
    assert len(held) == 1199
    puzzle_files = [p for p in find_inputs([str(default_input())])
                    if readers.detect_kind(p) == "puzzle"]
    assert puzzle_files
    for path in puzzle_files:
        with open(path, newline="") as f:
            ids = {row["PuzzleId"] for row in csv.DictReader(f)}
        assert ids and not ids & held, path


def test_no_held_out_position_is_in_the_default_input(boards):
    """Each input file read by the build's reader (games, puzzles, openings); the
    FEN/EPD files (250k lines, slow through python-chess) by their text: no line's piece
    placement, seen from its side to move, equals a held-out position's (which the same
    record would need)."""
    held_keys = board_keys(boards)
    held_placements = {canonical_placement(b.board_fen(), b.turn) for b in boards}
    checked = 0
    for path in find_inputs([str(default_input())]):
        if readers.detect_kind(path) == "fen":
            with open(path) as f:
                for line in f:
                    fields = line.split(maxsplit=2)
                    if len(fields) < 2:
                        continue
                    placement = canonical_placement(fields[0], fields[1] == "w")
                    assert placement not in held_placements, (path, line)
                    checked += 1
        else:
            units = [u for u in readers.read(path) if isinstance(u, readers.Unit)]
            keys = unit_keys(units)
            checked += len(keys)
            assert not keys & held_keys, path
    assert checked > 300_000


def test_the_keys_see_mirrors_and_castling():
    white = chess.Board("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1")
    black = white.mirror()  # the same record in the shards
    assert board_keys([white]) == board_keys([black])
    assert board_keys([white]) != board_keys([chess.Board("r3k2r/8/8/8/8/8/8/R3K2R w Kkq - 0 1")])
    # the reader's records of a puzzle file are its solver positions: the same keys
    sample = str(naive.SAMPLE / "lichess_puzzles_300.csv")
    units = [u for u in readers.read(sample) if isinstance(u, readers.Unit)]
    assert board_keys(puzzle_boards(sample, setup=False)) == unit_keys(units)


@pytest.mark.slow
def test_no_held_out_position_is_in_the_default_shards(boards, tmp_path):
    """`make shards` (default INPUT, config.yaml), then every record of both splits."""
    import webdataset as wds

    out = tmp_path / "shards"
    build([str(default_input())], out, workers=2, quiet=True,
          cfg=load_build_config(naive.REPO / "config.yaml"))
    manifest = json.loads((out / "manifest.json").read_text())
    keys: set[bytes] = set()
    records = 0
    for split in ("train", "val"):
        urls = [str(out / s["path"]) for s in manifest["splits"][split]["shards"]]
        for block in wds.WebDataset(urls, shardshuffle=False).map(decode_sample):
            keys |= record_keys(block["planes"], block["castling"], block["ep_file"])
            records += len(block["castling"])
    val = read_val_zarr(out / "val.zarr")
    keys |= record_keys(val["planes"], val["castling"], val["ep_file"])
    assert records > 300_000
    held = board_keys(boards)
    assert len(held) > 3000
    assert not keys & held


def test_the_checks_would_catch_a_leak(boards):
    """The held-out file itself, read as an input, and its FENs as EPD lines (mirrored
    too) are caught by the comparisons above."""
    units = [u for u in readers.read(str(DEFAULT_PUZZLES)) if isinstance(u, readers.Unit)]
    assert len(unit_keys(units) & board_keys(boards)) > 2000
    held_placements = {canonical_placement(b.board_fen(), b.turn) for b in boards}
    for board in boards[:50]:
        for b in (board, board.mirror()):
            fields = b.epd().split()
            assert canonical_placement(fields[0], fields[1] == "w") in held_placements
