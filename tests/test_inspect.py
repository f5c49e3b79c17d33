"""`python -m dataengine.inspect`: dump/show against python-chess and the reference
labelers, summary against the manifest, verify on good and broken shards, stats."""

from __future__ import annotations

import csv
import json
import shutil
import struct
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import chess
import numpy as np
import pytest
import webdataset as wds
import zstandard

from dataengine import policy, schema, views
from dataengine.build import build
from dataengine.config import BuildConfig
from dataengine.fileio import sha256_file, tar_bytes
from dataengine.inspect.__main__ import main
from dataengine.inspect.show import MASK_COLOUR
from labelers import MASK_NAMES, reference
from tests import naive

PGN = naive.SAMPLE / "sf_selfplay_200.pgn"
PUZZLES = naive.SAMPLE / "lichess_puzzles_300.csv"
OPENINGS = naive.SAMPLE / "openings_a.tsv"
SVG = "{http://www.w3.org/2000/svg}"
RESULT = {1: "1-0", -1: "0-1", 0: "1/2-1/2", None: None}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def read_blocks(out: Path, split: str) -> list[schema.Block]:
    """The split's blocks read with stock webdataset, independently of the inspector."""
    manifest = json.loads((out / "manifest.json").read_text())
    urls = [str(out / s["path"]) for s in manifest["splits"][split]["shards"]]
    return list(wds.WebDataset(urls, shardshuffle=False).map(schema.decode_sample)) if urls else []


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    """The sample puzzles, the first 300 opening lines and the first 40 games."""
    tmp = tmp_path_factory.mktemp("inputs")
    games = PGN.read_text().split("\n\n[Event ")
    pgn = tmp / "games40.pgn"
    pgn.write_text("\n\n[Event ".join(games[:40]) + "\n")
    tsv = tmp / "openings300.tsv"
    tsv.write_text("".join(OPENINGS.read_text().splitlines(keepends=True)[:301]))
    return [PUZZLES, tsv, pgn]


@pytest.fixture(scope="module")
def ordered(inputs, tmp_path_factory) -> Path:
    """Every position of the inputs in input order (no repeat cap, no val split), cut
    into several shards."""
    out = tmp_path_factory.mktemp("ordered")
    cfg = BuildConfig(max_repeats=1 << 30, val_fraction=0.0, block_records=500,
                      blocks_per_shard=4)
    build([str(p) for p in inputs], out, cfg=cfg, quiet=True)
    return out


@pytest.fixture(scope="module")
def dumped(ordered, tmp_path_factory) -> list[dict]:
    path = tmp_path_factory.mktemp("dump") / "all.jsonl"
    rc = main(["dump", str(ordered), "--jsonl", "--out", str(path)])
    assert rc == 0
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def small(inputs, tmp_path_factory) -> Path:
    """The same inputs with a val split and the default repeat cap, 500-record blocks,
    2 blocks a shard."""
    out = tmp_path_factory.mktemp("small")
    cfg = BuildConfig(val_fraction=0.1, block_records=500, blocks_per_shard=2)
    build([str(p) for p in inputs], out, cfg=cfg, quiet=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["splits"]["train"]["shards"]) >= 3
    assert manifest["splits"]["val"]["records"] > 0
    return out


@pytest.fixture
def broken(small, tmp_path) -> Path:
    """A copy of `small` to damage."""
    out = tmp_path / "shards"
    shutil.copytree(small, out)
    return out


# ----------------------------------------------------------------------------- dump


def by_file(dumped: list[dict], path: Path) -> list[dict]:
    return [r for r in dumped if r["file"] == str(path)]


def test_dump_games_equal_python_chess(dumped, inputs):
    expected = []
    games = 0
    for e in naive.pgn_positions(inputs[2]):
        games += e.ply == 0
        if games > 5:
            break
        expected.append(e)
    rows = by_file(dumped, inputs[2])[: len(expected)]
    assert len(rows) == len(expected) > 300
    for row, e in zip(rows, expected, strict=True):
        cp, mate = e.eval if e.eval is not None else (None, None)
        want = {
            "fen": e.board.fen(), "move": e.move.uci() if e.move else None,
            "result": RESULT[e.result], "ply": e.ply, "source": "pgn",
            "eval_cp": None if mate else cp, "eval_mate": mate or None,
        }
        assert {k: row[k] for k in want} == want
    assert rows[-1]["move"] is None  # the final position of game 5
    assert sum(r["fen"].split()[1] == "b" for r in rows) > 100
    assert len({r["game_id"] for r in rows}) == 5
    assert all(len(r["game_id"]) == 16 and int(r["game_id"], 16) >= 0 for r in rows)


def test_dump_puzzles_and_openings_equal_python_chess(dumped, inputs):
    expected = []
    with open(PUZZLES, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            board = chess.Board(row["FEN"])
            for ply, uci in enumerate(row["Moves"].split()):
                if ply % 2 == 1:  # the solver's moves
                    expected.append((board.fen(), uci, ply, int(row["Rating"]),
                                     row["Themes"].split()))
                board.push_uci(uci)
    rows = by_file(dumped, PUZZLES)
    assert len(rows) == len(expected)
    for row, (fen, uci, ply, rating, themes) in zip(rows, expected, strict=True):
        # shards keep no fullmove number: the dump derives it from ply
        assert row["fen"].split()[:5] == fen.split()[:5]
        assert (row["move"], row["ply"], row["rating"], row["themes"]) == (uci, ply, rating, themes)
        assert (row["result"], row["eval_cp"], row["eval_mate"]) == (None, None, None)
        assert row["source"] == "puzzle" and row["bucket"] == "tactical"

    opening_rows = by_file(dumped, inputs[1])
    expected = list(naive.opening_positions(inputs[1]))
    assert len(opening_rows) == len(expected) > 1000
    for row, e in zip(opening_rows, expected, strict=True):
        assert (row["fen"], row["move"], row["ply"]) == (e.board.fen(), e.move.uci(), e.ply)
        assert row["rating"] is None and row["themes"] == []


def reference_masks(fen: str) -> dict[str, list[str]]:
    """labelers.reference's masks of a position, in its real orientation, by square name."""
    board = chess.Board(fen)
    masks = reference.label_masks(reference.canonical(board))
    if board.turn == chess.BLACK:
        masks = {k: chess.flip_vertical(m) for k, m in masks.items()}
    return {k: [chess.square_name(s) for s in chess.SquareSet(m)] for k, m in masks.items()}


def test_dump_masks_equal_reference_in_real_orientation(dumped):
    sample = dumped[::13]
    for row in sample:
        assert row["masks"] == reference_masks(row["fen"]), row["fen"]
    assert list(sample[0]["masks"]) == list(MASK_NAMES)
    assert len(sample) > 500 and sum(r["fen"].split()[1] == "b" for r in sample) > 200


def test_dump_to_stdout_by_split(capsys, small):
    manifest = json.loads((small / "manifest.json").read_text())
    rc, out, _ = cli(capsys, "dump", small, "--jsonl", "--split", "val")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and len(rows) == manifest["splits"]["val"]["records"]
    assert [r["index"] for r in rows] == list(range(len(rows)))
    assert {r["split"] for r in rows} == {"val"}
    rc, out, _ = cli(capsys, "dump", small)
    assert rc == 0 and len(out.splitlines()) == manifest["records"]


# ----------------------------------------------------------------------------- show


def grid_squares(text: str, mask: str) -> list[str]:
    """Squares marked x in the grid printed under `mask (n)` (grids stand side by side)."""
    lines = text.splitlines()
    row, col = next((k, line.find(f"{mask} (")) for k, line in enumerate(lines)
                    if line.startswith(f"{mask} (") or f" {mask} (" in line)
    squares = []
    for line in lines[row + 1 : row + 9]:
        rank, *cells = line[col : col + 17].split()
        squares += [f"{'abcdefgh'[f]}{rank}" for f, c in enumerate(cells) if c == "x"]
    return sorted(squares)


def pick_mirrored(dumped: list[dict], after: int) -> dict:
    """A Black-to-move record whose control_them mask is not symmetric top-bottom, so
    that showing it unflipped would be caught."""
    for row in dumped[after:]:
        sq = reference_masks(row["fen"])["control_them"]
        flipped = sorted(f"{s[0]}{9 - int(s[1])}" for s in sq)
        if row["fen"].split()[1] == "b" and row["move"] and row["masks"]["threat_us"] \
                and sorted(sq) != flipped:
            return row
    raise AssertionError("no such record")


def test_show_index_prints_fen_move_and_real_masks(capsys, ordered, dumped):
    row = pick_mirrored(dumped, len(dumped) // 2)
    rc, out, err = cli(capsys, "show", ordered, "--index", row["index"],
                       "--masks", "control_them,threat_us")
    assert rc == 0, err
    board = chess.Board(row["fen"])
    san = board.san(chess.Move.from_uci(row["move"]))
    assert f"FEN      {row['fen']}\n" in out
    assert f"move     {san} ({row['move']})" in out
    assert f"train record {row['index']:,} (train/shard-" in out
    assert "REAL orientation" in out and "Black" in out
    want = reference_masks(row["fen"])
    assert grid_squares(out, "control_them") == sorted(want["control_them"])
    assert grid_squares(out, "threat_us") == sorted(want["threat_us"])
    assert f"bucket   {row['bucket']}" in out


def test_show_default_masks_and_filters(capsys, ordered, dumped):
    rc, out, _ = cli(capsys, "show", ordered, "--fen-contains", "4k3/")
    first = next(r for r in dumped if "4k3/" in r["fen"].split()[0])
    assert rc == 0 and f"FEN      {first['fen']}" in out
    for name in MASK_NAMES:
        assert (f"\n{name} (" in out or f" {name} (" in out) == bool(first["masks"][name]), name

    rc, out, _ = cli(capsys, "show", ordered, "--bucket", "endgames", "--index", "2")
    third = [r for r in dumped if r["bucket"] == "endgames"][2]
    assert rc == 0 and f"FEN      {third['fen']}" in out


def test_show_svg_fills_the_mask_squares(capsys, ordered, dumped, tmp_path):
    row = pick_mirrored(dumped, len(dumped) * 3 // 4)
    svg = tmp_path / "board.svg"
    rc, out, _ = cli(capsys, "show", ordered, "--index", row["index"],
                     "--masks", "control_them,threat_us", "--svg", svg)
    assert rc == 0 and f"wrote {svg}" in out
    root = ET.parse(svg).getroot()  # well-formed XML
    assert root.tag == f"{SVG}svg"
    rects = list(root.iter(f"{SVG}rect"))
    where = {}  # (x, y) of each board square -> its name, from the square rects' classes
    for r in rects:
        cls = (r.get("class") or "").split()
        if "square" in cls:
            where[(r.get("x"), r.get("y"))] = next(c for c in cls if c in chess.SQUARE_NAMES)
    assert len(where) == 64

    def filled(colour: str) -> set[str]:
        return {where[(r.get("x"), r.get("y"))] for r in rects
                if r.get("fill") == colour and r.get("stroke") == "none"}

    want = reference_masks(row["fen"])
    control, threat = set(want["control_them"]), set(want["threat_us"])
    assert filled(MASK_COLOUR["control_them"]) == control  # first listed wins a shared square
    assert filled(MASK_COLOUR["threat_us"]) == threat - control
    texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "control_them" in texts and "threat_us" in texts


# ----------------------------------------------------------------------------- summary


def test_summary_equals_manifest_and_decoded_shards(capsys, small):
    manifest = json.loads((small / "manifest.json").read_text())
    rc, out, _ = cli(capsys, "summary", small, "--json")
    s = json.loads(out)
    sp = manifest["splits"]
    assert rc == 0
    assert (s["format_version"], s["label_spec_version"]) == (schema.FORMAT_VERSION, 1)
    assert s["records"] == {"train": sp["train"]["records"], "val": sp["val"]["records"],
                            "all": manifest["records"]}
    assert s["buckets"]["train"] == sp["train"]["buckets"]
    assert s["buckets"]["val"] == sp["val"]["buckets"]
    assert s["bytes_per_record"] == manifest["bytes_per_record"]
    assert s["repeats_dropped"] == manifest["repeats_dropped"] > 0
    assert s["skipped"] == manifest["skipped"]
    assert [f["path"] for f in s["inputs"]] == [f["path"] for f in manifest["inputs"]]
    assert [f["positions"] for f in s["inputs"]] == [f["positions"] for f in manifest["inputs"]]

    blocks = read_blocks(small, "train") + read_blocks(small, "val")
    labels = np.concatenate([b["labels"] for b in blocks])
    sources = np.concatenate([b["source"] for b in blocks])
    d = s["decoded"]
    assert d["records"] == len(labels) == manifest["records"]
    for k, name in enumerate(MASK_NAMES):
        counts = [bin(int(m)).count("1") for m in labels[:, k]]
        assert d["masks"][name]["nonempty"] == pytest.approx(np.mean(labels[:, k] != 0))
        assert d["masks"][name]["mean_squares"] == pytest.approx(np.mean(counts))
    for i, src in enumerate(schema.SOURCES):
        assert d["sources"]["all"].get(src, 0) == int((sources == i).sum())

    rc, text, _ = cli(capsys, "summary", small)
    assert rc == 0
    assert f"records    {manifest['records']:,}: train {sp['train']['records']:,}" in text
    assert f"{manifest['bytes_per_record']} bytes/record" in text
    assert f"{manifest['repeats_dropped']:,} repeats dropped" in text
    for name in (*schema.BUCKETS, *MASK_NAMES, manifest["inputs"][0]["path"]):
        assert name in text

    rc, out, _ = cli(capsys, "summary", small, "--json", "--max-records", "700")
    assert rc == 0 and json.loads(out)["decoded"]["records"] == 700


ALWAYS_DRAWN = """\
import sys
import chess
board = chess.Board()
for line in sys.stdin:
    cmd = line.split()
    if cmd[:1] == ["uci"]:
        print("id name Always Drawn 1\\noption name Threads type spin default 1 min 1 max 8\\n"
              "option name Hash type spin default 16 min 1 max 64\\nuciok", flush=True)
    elif cmd[:1] == ["isready"]:
        print("readyok", flush=True)
    elif cmd[:1] == ["position"]:
        board = chess.Board(" ".join(cmd[2:8]))
    elif cmd[:1] == ["go"]:
        move = min(board.legal_moves, key=lambda m: m.uci()).uci()
        print(f"info depth 1 score cp 0 nodes 1 pv {move}\\nbestmove {move}", flush=True)
    elif cmd[:1] == ["quit"]:
        break
"""


def test_summary_shows_the_teacher_pass(capsys, small, tmp_path):
    from dataengine.teacher import annotate

    rc, text, _ = cli(capsys, "summary", small)
    assert "teacher    none: make teacher annotates the shards with Stockfish" in text
    engine = tmp_path / "always_drawn"
    engine.write_text(f"#!{sys.executable}\n" + ALWAYS_DRAWN)
    engine.chmod(0o755)
    out = Path(shutil.copytree(small, tmp_path / "shards"))
    annotate(out, nodes=7, fraction=0.05, workers=1, engine=str(engine), quiet=True)
    teacher = json.loads((out / "manifest.json").read_text())["teacher"]

    rc, text, _ = cli(capsys, "summary", out)
    assert rc == 0
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("teacher "))
    assert lines[head] == ("teacher    Always Drawn 1 at 7 nodes, fraction 0.05 of the "
                           "records, evals from the inputs kept (complete)")
    for row, split in zip(lines[head + 2 : head + 4], ("train", "val"), strict=True):
        c = teacher["splits"][split]
        assert row.split() == [split, *(f"{c[k]:,}" for k in (
            "records", "selected", "annotated", "moves", "evals_written", "evals_kept",
            "no_legal_move", "failed")), "/".join(f"{x:.2f}" for x in c["wdl_mean"] or [])
            or "-"]
    assert teacher["splits"]["train"]["selected"] > 0
    evals = {sp: sum(e["teacher"].values()) for sp, e in
             json.loads((out / "manifest.json").read_text())["splits"].items()}
    assert lines[head + 4].startswith(f"evals      {sum(evals.values()):,} of ")

    rc, js, _ = cli(capsys, "summary", out, "--json", "--max-records", "1")
    s = json.loads(js)
    assert s["evals"] == evals
    assert s["teacher"]["splits"] == teacher["splits"] and s["teacher"]["complete"]
    assert s["teacher"]["shards_done"] == s["teacher"]["shards"] == sum(s["shards"].values())


# ----------------------------------------------------------------------------- verify


def rewrite_member(out: Path, shard: str, member: int, change) -> str:
    """Replace block `member` of `shard` with change(its bytes), keeping the manifest's
    sha256 and size in step so that only the block itself is wrong. Returns its key."""
    path = out / shard
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]
    name, data = members[member]
    members[member] = (name, change(data))
    path.write_bytes(tar_bytes(members))
    manifest = json.loads((out / "manifest.json").read_text())
    for s in manifest["splits"][shard.split("/")[0]]["shards"]:
        if s["path"] == shard:
            s["sha256"], s["bytes"] = sha256_file(path), path.stat().st_size
    (out / "manifest.json").write_text(json.dumps(manifest))
    return name.split(".")[0]


def verify(capsys, out: Path, *flags: str) -> tuple[int, list[str]]:
    rc, text, err = cli(capsys, "verify", out, *flags)
    assert "Traceback" not in text + err
    return rc, text.splitlines()


def test_verify_passes_good_shards(capsys, small):
    manifest = json.loads((small / "manifest.json").read_text())
    rc, lines = verify(capsys, small)
    assert rc == 0 and len(lines) == 1
    assert lines[0].startswith("ok: ") and f"{manifest['records']:,} records" in lines[0]
    assert "val.zarr matches" in lines[0]
    rc, lines = verify(capsys, small, "--full")
    assert rc == 0 and f"labels recomputed for {manifest['records']:,} records" in lines[0]


def test_verify_reports_its_progress_off_a_terminal_too(capsys, small):
    rc, _, err = cli(capsys, "verify", small)  # stderr is not a terminal here
    assert rc == 0
    first, last = err.splitlines()  # at the start, then a line a minute and one at the end
    assert first.startswith("verify:   0%|")
    assert last.startswith("verify: 100%|") and "rec/s]" in last


def test_verify_flipped_byte(capsys, broken):
    path = broken / "train/shard-000001.tar"
    with tarfile.open(path) as tar:
        member = tar.getmembers()[1]
    data = bytearray(path.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    rc, lines = verify(capsys, broken)
    assert rc == 1 and lines[-1].startswith("FAILED")
    assert any(line.startswith("train/shard-000001.tar: sha256") for line in lines)
    key = member.name.split(".")[0]
    assert any(line.startswith(f"train/shard-000001.tar:{key}: not a valid zstd block")
               for line in lines)  # the block no longer decodes
    assert not any("shard-000000" in line or "shard-000002" in line for line in lines)


@pytest.mark.parametrize("where", ["inside a block", "at a block boundary"])
def test_verify_truncated_shard(capsys, broken, where):
    path = broken / "train/shard-000002.tar"
    with tarfile.open(path) as tar:
        member = tar.getmembers()[1]
    # tarfile itself only notices a cut inside a member's data
    cut = member.offset_data + 100 if where == "inside a block" else member.offset
    path.write_bytes(path.read_bytes()[:cut])
    rc, lines = verify(capsys, broken)
    assert rc == 1
    assert any(line.startswith("train/shard-000002.tar: truncated") for line in lines)
    # outside verify, a truncated shard is a one-line error naming it
    rc, _, err = cli(capsys, "dump", broken, "--split", "train")
    assert rc == 2 and err.startswith("error: train/shard-000002.tar: truncated")
    assert len(err.strip().splitlines()) == 1


def test_verify_wrong_format_version(capsys, broken):
    def version_9(data: bytes) -> bytes:
        payload = zstandard.ZstdDecompressor().decompress(data)
        (hlen,) = struct.unpack_from("<I", payload)
        header = json.loads(payload[4 : 4 + hlen])
        header["format_version"] = 9
        head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        return zstandard.ZstdCompressor().compress(
            struct.pack("<I", len(head)) + head + payload[4 + hlen :])

    key = rewrite_member(broken, "train/shard-000001.tar", 1, version_9)
    rc, lines = verify(capsys, broken)
    assert rc == 1
    assert (f"train/shard-000001.tar:{key}: format version 9, this reader reads version "
            f"{schema.FORMAT_VERSION}") in lines
    assert not any("sha256" in line for line in lines)


def test_verify_missing_shard_and_zarr(capsys, broken):
    (broken / "train/shard-000000.tar").unlink()
    shutil.rmtree(broken / "val.zarr")
    rc, lines = verify(capsys, broken)
    assert rc == 1
    assert "train/shard-000000.tar: shard file missing" in lines
    assert "val.zarr: missing" in lines


def test_verify_wrong_labels_and_illegal_move(capsys, broken):
    def damage(data: bytes) -> bytes:
        block = schema.decode_block(data)
        block["labels"][5, MASK_NAMES.index("fork_us")] ^= np.uint64(1 << 27)
        block["stalemate_moves"][6, 0] = 100 if block["stalemate_moves"][6, 0] != 100 else 101
        block["mate_moves"][8, 0] = 100 if block["mate_moves"][8, 0] != 100 else 101
        legal = policy.legal_move_mask(views.real_board(block, 7))
        block["move"][7] = next(i for i in np.flatnonzero(~legal) if decodes(i, block, 7))
        block["flags"][7] |= schema.HAS_MOVE
        return schema.encode_block(block)

    key = rewrite_member(broken, "val/shard-000000.tar", 0, damage)
    rc, lines = verify(capsys, broken, "--full")
    where = f"val/shard-000000.tar:{key} record"
    assert rc == 1
    assert any(line.startswith(f"{where} 5 ") and "fork_us" in line for line in lines)
    assert any(line.startswith(f"{where} 7 ") and "illegal" in line for line in lines)
    assert any(line.startswith(f"{where} 6 ") and "stalemate_moves differ" in line
               for line in lines)
    assert any(line.startswith(f"{where} 8 ") and "mate_moves differ from labelers.mates" in line
               for line in lines)
    # val.zarr no longer equals the val shards
    assert any(line.startswith("val.zarr: records") and "labels" in line for line in lines)


def decodes(index: int, block: schema.Block, i: int) -> bool:
    try:
        policy.index_to_move(int(index), views.real_board(block, i))
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- stats


def test_stats_plot_writes_a_png(capsys, small, tmp_path):
    png = tmp_path / "stats.png"
    rc, out, _ = cli(capsys, "stats", small, "--plot", png)
    assert rc == 0 and f"wrote {png}" in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert 800 <= width <= 3000 and 800 <= height <= 3000
    assert 30_000 < len(data) < 5_000_000
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, no leftovers


def test_stats_counts_ply_by_source_and_its_labels_fit_the_figure(small):
    from dataengine.inspect import stats
    from dataengine.inspect.shards import Shards

    data = stats.collect(Shards.open(small), "all", None)
    blocks = read_blocks(small, "train") + read_blocks(small, "val")
    ply = np.concatenate([b["ply"] for b in blocks]).astype(np.int64)
    source = np.concatenate([b["source"] for b in blocks])
    for k in range(len(schema.SOURCES)):
        expected = np.bincount(np.minimum(ply[source == k], stats.PLY_CLIP) // stats.PLY_BIN,
                               minlength=data["ply"].shape[1])
        np.testing.assert_array_equal(data["ply"][k], expected)
    # FEN/EPD positions (ply 0, no game) are counted in the title, not drawn as one tall bar
    data["ply"][schema.SOURCES.index("fen"), 0] += 12_345
    fig = stats.plot(data, "shards")
    titles = [ax.get_title() for ax in fig.axes]
    assert "ply (not shown: 12,345 FEN/EPD positions)" in titles
    ply_axes = fig.axes[titles.index("ply (not shown: 12,345 FEN/EPD positions)")]
    assert ply_axes.get_ylim()[1] < 1.5 * data["ply"][:3].sum(axis=0).max()
    fig.canvas.draw()  # places the axis labels beside their tick labels
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:  # no axis label or title is cut by the figure's edge
        for text in (ax.yaxis.label, ax.xaxis.label, ax.title, *ax.get_yticklabels()):
            if text.get_text():
                box = text.get_window_extent(renderer)
                assert 0 <= box.x0 and box.x1 <= fig.bbox.width, text.get_text()
    import matplotlib.pyplot as plt
    plt.close(fig)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("command", ["summary", "show", "dump", "verify", "stats"])
def test_help(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0 and "DIR" in capsys.readouterr().out


def test_errors_are_one_line(capsys, small, tmp_path):
    for argv, message in [
        (["summary", tmp_path / "nope"], "no shards directory"),
        (["summary", tmp_path], "manifest.json' not found"),
        (["show", small, "--index", "1000000"], "--index 1000000 out of range"),
        (["show", small, "--masks", "threat_us,nope"], "unknown mask 'nope'"),
        (["show", small, "--bucket", "nope"], "unknown bucket 'nope'"),
        (["dump", small, "--out", tmp_path / "no" / "x.jsonl"], "cannot write"),
    ]:
        rc, out, err = cli(capsys, *argv)
        assert rc == 2 and out == "", argv
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_commands_with_nothing_to_read_fail(capsys, ordered, tmp_path):
    assert json.loads((ordered / "manifest.json").read_text())["splits"]["val"]["records"] == 0
    for argv, task in [(["stats", ordered, "--split", "val", "--plot", tmp_path / "v.png"],
                        "nothing to plot"),
                       (["dump", ordered, "--split", "val", "--out", tmp_path / "v.jsonl"],
                        "nothing to dump")]:
        rc, out, err = cli(capsys, *argv)
        assert (rc, out) == (2, ""), argv
        assert err == f"error: the val split of {str(ordered)!r} holds no records: {task}\n"
    assert not list(tmp_path.iterdir())


def test_module_entry_point(small):
    run = subprocess.run(
        [sys.executable, "-m", "dataengine.inspect", "show", str(small), "--index", "99999999"],
        capture_output=True, text=True, cwd=naive.REPO, timeout=120,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: --index 99999999 out of range")
    assert run.stderr.count("\n") == 1
