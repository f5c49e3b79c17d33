"""``stats --plot``: one PNG with the bucket mix, the ply and eval histograms and
a per-square heatmap of each of the 20 masks (canonical orientation)."""

from __future__ import annotations

import io

import numpy as np

from dataengine import schema
from dataengine.fileio import atomic_write
from dataengine.inspect.shards import InspectError, Shards, iter_blocks, splits_of
from labelers import MASK_NAMES

EVAL_CLIP = 1000
PLY_CLIP = 200
PLY_BIN = 2
HEATMAP_COLUMNS = 5
#: Sources whose records are positions of a game or a line, with a ply in it; a FEN/EPD
#: line is one position on its own (ply 0), left out of the ply histogram.
PLY_SOURCES = tuple(s for s in schema.SOURCES if s != "fen")


def collect(shards: Shards, split: str, max_records: int | None) -> dict:
    buckets = {sp: np.zeros(len(schema.BUCKETS), dtype=np.int64) for sp in splits_of(split)}
    plies = np.zeros((len(schema.SOURCES), PLY_CLIP // PLY_BIN + 1), dtype=np.int64)
    evals = []
    squares = np.zeros((len(MASK_NAMES), 64), dtype=np.int64)
    n = 0
    for ref, block in iter_blocks(shards, split, limit=max_records, progress="stats"):
        b = block["bucket"]
        buckets[ref.split] += np.bincount(b[b < len(schema.BUCKETS)],
                                          minlength=len(schema.BUCKETS))
        source = block["source"].astype(np.int64)
        known = source < len(schema.SOURCES)
        ply_bin = np.minimum(block["ply"].astype(np.int64), PLY_CLIP) // PLY_BIN
        plies += np.bincount(source[known] * plies.shape[1] + ply_bin[known],
                             minlength=plies.size).reshape(plies.shape)
        has_eval = (block["flags"] & schema.HAS_TEACHER_EVAL) != 0
        white = np.where((block["flags"] & schema.MIRRORED) != 0, -1, 1)
        mate = block["teacher_mate"].astype(np.int64)
        cp = np.where(mate != 0, np.sign(mate) * EVAL_CLIP, block["teacher_cp"].astype(np.int64))
        evals.append(np.clip(cp * white, -EVAL_CLIP, EVAL_CLIP)[has_eval])
        bits = np.unpackbits(block["labels"].view(np.uint8), axis=-1, bitorder="little")
        squares += bits.reshape(-1, len(MASK_NAMES), 64).sum(axis=0, dtype=np.int64)
        n += schema.block_len(block)
    return {
        "records": n,
        "buckets": buckets,
        "ply": plies,  # [source, ply // PLY_BIN], the last bin >= PLY_CLIP
        "eval": np.concatenate(evals) if evals else np.zeros(0, np.int64),
        "squares": squares / max(n, 1),
    }


def plot(data: dict, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    # a fixed layout: constrained/tight layout of 23 axes takes seconds to solve
    fig = plt.figure(figsize=(15, 17))
    rows = len(MASK_NAMES) // HEATMAP_COLUMNS
    outer = fig.add_gridspec(2, 1, height_ratios=[1, 3.7], hspace=0.18,
                             left=0.07, right=0.98, top=0.95, bottom=0.05)
    top = outer[0].subgridspec(1, 3, wspace=0.3)
    thousands = matplotlib.ticker.FuncFormatter(_short_count)
    fig.suptitle(f"{title}: {data['records']:,} records", fontsize=14)

    ax = fig.add_subplot(top[0])
    x = np.arange(len(schema.BUCKETS))
    bottom = np.zeros(len(schema.BUCKETS))
    for sp, counts in data["buckets"].items():
        ax.bar(x, counts, bottom=bottom, label=sp)
        bottom += counts
    ax.set_xticks(x, schema.BUCKETS, rotation=30, ha="right")
    ax.set_ylabel("records")
    ax.yaxis.set_major_formatter(thousands)
    ax.set_title("bucket mix")
    ax.legend()

    ax = fig.add_subplot(top[1])
    left = np.arange(data["ply"].shape[1]) * PLY_BIN
    bottom = np.zeros(len(left))
    for k, source in enumerate(schema.SOURCES):
        counts = data["ply"][k]
        if source in PLY_SOURCES and counts.any():
            ax.bar(left, counts, width=PLY_BIN, bottom=bottom, align="edge", label=source)
            bottom += counts
    ax.set_xlim(0, PLY_CLIP + PLY_BIN)
    ax.set_xlabel(f"ply in its game or line (last bin: >= {PLY_CLIP})")
    ax.set_ylabel("records")
    ax.yaxis.set_major_formatter(thousands)
    alone = int(sum(data["ply"][k].sum() for k, source in enumerate(schema.SOURCES)
                    if source not in PLY_SOURCES))
    ax.set_title("ply" + (f" (not shown: {alone:,} FEN/EPD positions)" if alone else ""))
    if bottom.any():
        ax.legend()

    ax = fig.add_subplot(top[2])
    ax.hist(data["eval"], bins=np.linspace(-EVAL_CLIP, EVAL_CLIP, 81))
    ax.set_xlabel(f"teacher eval: centipawns, WHITE's view\n(clipped to ±{EVAL_CLIP}, "
                  f"mates at ±{EVAL_CLIP})")
    ax.set_ylabel("records")
    ax.yaxis.set_major_formatter(thousands)
    ax.set_title(f"eval ({len(data['eval']):,} records with one)")

    maps = outer[1].subgridspec(rows, HEATMAP_COLUMNS, hspace=0.3, wspace=0.05)
    for k, name in enumerate(MASK_NAMES):
        ax = fig.add_subplot(maps[k // HEATMAP_COLUMNS, k % HEATMAP_COLUMNS])
        freq = data["squares"][k].reshape(8, 8)  # [rank, file], a1 = [0, 0]
        ax.imshow(freq, origin="lower", cmap="viridis", vmin=0, vmax=max(float(freq.max()), 1e-9))
        # square names on the outer maps only: hundreds of tick labels are slow to draw
        bottom_row, left_column = k // HEATMAP_COLUMNS == rows - 1, k % HEATMAP_COLUMNS == 0
        ax.set_xticks(range(8), list("abcdefgh") if bottom_row else [], fontsize=7)
        ax.set_yticks(range(8), [str(r) for r in range(1, 9)] if left_column else [], fontsize=7)
        ax.set_title(f"{name} (max {freq.max():.1%})", fontsize=9)
    fig.text(0.5, 0.015, "mask heatmaps: share of records with the square set, in the CANONICAL "
             "orientation (side to move = 'us' = White, moving up the board); each map's colours "
             "run from 0 (dark) to its max (yellow)", ha="center", fontsize=10)
    return fig


def _short_count(x: float, _pos=None) -> str:
    """An axis count in at most 4 characters: 950, 12k, 1.5M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.0f}"


def run(shards: Shards, split: str, max_records: int | None, out: str) -> int:
    if not out.lower().endswith(".png"):
        raise InspectError(f"--plot must name a .png file, got {out!r}")
    shards.require_records(split, "nothing to plot")
    data = collect(shards, split, max_records)
    fig = plot(data, f"{shards.root} ({split})")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    import matplotlib.pyplot as plt

    plt.close(fig)
    try:
        atomic_write(out, buf.getvalue())
    except OSError as e:
        raise InspectError(f"cannot write {out!r}: {e.strerror}") from None
    print(f"wrote {out} ({len(buf.getvalue()):,} bytes, {data['records']:,} records)")
    return 0
