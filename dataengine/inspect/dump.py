"""``dump``: every record as one JSON line, for jq and pandas.

    python -m dataengine.inspect dump shards --jsonl --split val | jq -r .fen
    pandas.read_json("val.jsonl", lines=True)
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from dataengine.inspect.records import real_labels, record_json
from dataengine.inspect.shards import InspectError, Shards, iter_blocks

FIELDS = """\
fields: split, index (within the split, as `show --index`), fen (real side to move;
fullmove number derived from ply), move (UCI on the real board, null if none),
result (White's view: "1-0" "0-1" "1/2-1/2" or null), eval_cp / eval_mate (White's
view; eval_cp is null for a mate score and eval_mate null otherwise; both null without
an eval), bucket, source, file (input path), game_id (hex), ply, rating (null if none),
themes (list), masks ({mask: [square names], real orientation})."""


def run(shards: Shards, split: str, out: str | None) -> int:
    shards.require_records(split, "nothing to dump")
    with _output(out) as f:
        for ref, block in iter_blocks(shards, split, progress="dump"):
            masks = real_labels(block)
            file_ids = block["file_id"]
            for i in range(len(masks)):
                row = {"split": ref.split, "index": ref.start + i}
                row.update(record_json(block, i, masks[i], shards.input_path(int(file_ids[i]))))
                f.write(json.dumps(row, separators=(",", ":")))
                f.write("\n")
    return 0


@contextmanager
def _output(out: str | None):
    """stdout, or a file that appears (atomically) only once the dump is complete."""
    if out is None or out == "-":
        yield sys.stdout
        return
    path = Path(out)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        f = open(tmp, "w", encoding="utf-8")
    except OSError as e:
        raise InspectError(f"cannot write {out!r}: {e.strerror}") from None
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

