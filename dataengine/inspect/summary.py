"""``summary``: what a shards directory holds. Counts come from the manifest;
records per source and the label base rates come from decoding the shards."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from dataengine import schema
from dataengine.inspect.records import name_of, popcount
from dataengine.inspect.shards import Shards, iter_blocks, splits_of
from labelers import MASK_NAMES


def collect(shards: Shards, split: str, max_records: int | None) -> dict:
    """The summary as a JSON-ready dict."""
    m = shards.manifest
    splits = m.splits
    records = {sp: shards.records(sp) for sp in schema.SPLITS}
    records["all"] = sum(records.values())
    buckets = {sp: {b: int(splits[sp].buckets.get(b, 0)) for b in schema.BUCKETS}
               for sp in schema.SPLITS}
    buckets["all"] = {b: sum(buckets[sp][b] for sp in schema.SPLITS) for b in schema.BUCKETS}
    shard_bytes = sum(s.bytes for sp in schema.SPLITS for s in splits[sp].shards)

    sources = {sp: Counter() for sp in splits_of(split)}
    nonempty = np.zeros(len(MASK_NAMES), dtype=np.int64)
    squares = np.zeros(len(MASK_NAMES), dtype=np.int64)
    decoded = 0
    for ref, block in iter_blocks(shards, split, limit=max_records, progress="decode"):
        sources[ref.split].update(
            name_of(schema.SOURCES, s)
            for s in block["source"].tolist()
        )
        nonempty += (block["labels"] != 0).sum(axis=0)
        squares += popcount(block["labels"]).sum(axis=0, dtype=np.int64)
        decoded += schema.block_len(block)
    sources["all"] = sum(sources.values(), Counter())

    return {
        "dir": str(shards.root),
        "format_version": m.format_version,
        "label_spec_version": m.label_spec_version,
        "records": records,
        "shards": {sp: len(splits[sp].shards) for sp in schema.SPLITS},
        "val_zarr": splits["val"].zarr,
        "shard_bytes": shard_bytes,
        "bytes_per_record": m.bytes_per_record,
        "positions_read": m.positions_read,
        "repeats_dropped": m.repeats_dropped,
        "max_repeats": m.build_config.get("max_repeats"),
        "skipped": dict(m.skipped),
        "notes": dict(m.notes or {}),
        "inputs": [
            {k: getattr(f, k) for k in ("path", "kind", "positions", "skipped", "bytes")}
            for f in m.inputs
        ],
        "buckets": buckets,
        "evals": {sp: sum(splits[sp].teacher.values()) for sp in schema.SPLITS},
        "teacher": _teacher(m),
        "decoded": {
            "split": split,
            "records": decoded,
            "sources": {sp: dict(sorted(c.items())) for sp, c in sources.items()},
            "masks": {
                name: {
                    "nonempty": float(nonempty[k] / decoded) if decoded else None,
                    "mean_squares": float(squares[k] / decoded) if decoded else None,
                }
                for k, name in enumerate(MASK_NAMES)
            },
        },
    }


def _teacher(m) -> dict | None:
    """`make teacher`'s pass over the shards: its settings, how far it got and its counts
    per split (None: the shards were not annotated)."""
    t = m.teacher
    if t is None:
        return None
    return {**t.settings(), "complete": t.complete, "shards_done": len(t.shards),
            "shards": sum(len(sp.shards) for sp in m.splits.values()),
            "splits": {sp: dict(c) for sp, c in t.splits.items()}}


def run(shards: Shards, split: str, max_records: int | None, as_json: bool) -> int:
    s = collect(shards, split, max_records)
    print(json.dumps(s, indent=1) if as_json else format_text(s))
    return 0


def format_text(s: dict) -> str:
    rec, reader = s["records"], (schema.FORMAT_VERSION, schema.LABEL_SPEC_VERSION)
    plural = {sp: "" if s["shards"][sp] == 1 else "s" for sp in schema.SPLITS}
    skipped = s["skipped"]
    out = [
        f"shards     {s['dir']}",
        f"versions   format {s['format_version']}, label spec {s['label_spec_version']}"
        f" (this reader: {reader[0]}, {reader[1]})",
        f"records    {rec['all']:,}: train {rec['train']:,} in {s['shards']['train']} "
        f"shard{plural['train']}, val {rec['val']:,} in {s['shards']['val']} "
        f"shard{plural['val']}" + (f" (+ {s['val_zarr']})" if s["val_zarr"] else ""),
        f"size       {s['shard_bytes']:,} bytes of shards, {s['bytes_per_record']} bytes/record",
        f"read       {_num(s['positions_read'])} positions, {_num(s['repeats_dropped'])} "
        f"repeats dropped (max_repeats {s['max_repeats']}), "
        f"{sum(skipped.values()):,} units skipped",
    ]
    if skipped:
        out.append("skipped    " + ", ".join(f"{k} {v:,}" for k, v in skipped.items())
                   + " (first ones listed in skipped.log)")
    if s.get("notes"):
        out.append("kept       " + ", ".join(f"{k} {v:,}" for k, v in s["notes"].items())
                   + " (units kept with a change: kept:<reason> in skipped.log)")
    out += ["", _table(
        ["inputs", "kind", "positions", "skipped", "bytes"],
        [[f["path"], f["kind"], _num(f["positions"]), _num(f["skipped"]), _num(f["bytes"])]
         for f in s["inputs"]],
    )]

    b = s["buckets"]
    out += ["", _table(
        ["bucket (manifest)", "train", "val", "all", "share"],
        [[name, f"{b['train'][name]:,}", f"{b['val'][name]:,}", f"{b['all'][name]:,}",
          _pct(b["all"][name], rec["all"])] for name in schema.BUCKETS],
    )]

    out += ["", *_teacher_text(s)]

    d = s["decoded"]
    if d["records"] == 0:
        out += ["", "no records decoded"]
        return "\n".join(out)
    splits = list(d["sources"])
    sources = sorted({k for c in d["sources"].values() for k in c},
                     key=lambda x: (schema.SOURCES + (x,)).index(x))
    whole = d["records"] == sum(rec[sp] for sp in splits if sp != "all")
    what = ("all splits" if d["split"] == "all" else f"{d['split']} split") if whole else f"the first {d['records']:,} {d['split']} records"
    out += ["", f"decoded    {d['records']:,} records ({what})", _table(
        ["source (decoded)", *splits, "share"],
        [[src, *(f"{d['sources'][sp].get(src, 0):,}" for sp in splits),
          _pct(d["sources"]["all"].get(src, 0), d["records"])] for src in sources],
    )]
    out += ["", _table(
        ["mask (decoded)", "non-empty", "squares/record"],
        [[name, f"{v['nonempty']:.1%}", f"{v['mean_squares']:.2f}"]
         for name, v in d["masks"].items()],
    )]
    return "\n".join(out)


def _teacher_text(s: dict) -> list[str]:
    """The teacher's settings and counts per split, and how many records have an eval."""
    evals, total = sum(s["evals"].values()), s["records"]["all"]
    with_eval = (f"{evals:,} of {total:,} records ({_pct(evals, total)}) have an eval: "
                 + ", ".join(f"{sp} {n:,}" for sp, n in s["evals"].items()))
    t = s.get("teacher")
    if t is None:
        return ["teacher    none: make teacher annotates the shards with Stockfish",
                f"evals      {with_eval} (from their inputs)"]
    state = ("complete" if t["complete"] else f"in progress: {t['shards_done']} of "
             f"{t['shards']} shards done, make teacher again finishes it")
    kept = "evals from the inputs replaced" if t["overwrite"] else "evals from the inputs kept"
    rows = []
    for sp, c in t["splits"].items():
        wdl = "/".join(f"{x:.2f}" for x in c["wdl_mean"]) if c.get("wdl_mean") else "-"
        rows.append([sp, *(f"{c.get(k, 0):,}" for k in (
            "records", "selected", "annotated", "moves", "evals_written", "evals_kept",
            "no_legal_move", "failed")), wdl])
    return [
        f"teacher    {t['engine']} at {t['nodes']:,} nodes, fraction {t['fraction']:g} of the "
        f"records, {kept} ({state})",
        _table(["teacher (manifest)", "records", "selected", "annotated", "moves",
                "evals new", "evals kept", "no move", "failed", "W/D/L"], rows),
        f"evals      {with_eval}",
    ]


def _num(x) -> str:
    return f"{x:,}" if isinstance(x, int) else str(x)


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Rows indented under the header; first column left-aligned, the others right."""
    rows = [[str(header[0]), *map(str, header[1:])]] + [
        [f"  {r[0]}", *map(str, r[1:])] for r in rows
    ]
    widths = [max(len(r[k]) for r in rows) for k in range(len(header))]
    return "\n".join(
        "  ".join([r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:],
                                                                      strict=True))])
        for r in rows
    )
