"""``python -m dataengine.inspect {summary,show,dump,verify,stats} [DIR]``: the shard
inspection command line. DIR is a shards directory (default: ``shards``).

Errors in the arguments or the directory (no manifest, a bad index, a broken
shard outside ``verify``) are one ``error: ...`` line on stderr and exit status 2;
``verify`` exits 1 when it finds problems.
"""

from __future__ import annotations

import argparse
import os
import sys

from dataengine import schema
from dataengine.inspect.shards import SPLIT_CHOICES, InspectError, Shards


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _index(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dataengine.inspect",
        description="Look inside a shards directory built by `make shards`.",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description)
        p.add_argument("dir", nargs="?", default="shards", metavar="DIR",
                       help="shards directory (default: shards)")
        return p

    p = command("summary", "versions, counts, label base rates",
                "Format and label-spec versions, records per split / bucket / source, bytes "
                "per record, inputs, skips and repeats from the manifest; label base rates "
                "per mask (share of records with the mask non-empty, mean squares set) from "
                "decoding the shards.")
    p.add_argument("--split", choices=SPLIT_CHOICES, default="all",
                   help="records to decode for sources and label rates (default: all)")
    p.add_argument("--max-records", type=_positive, metavar="N",
                   help="decode only the first N records")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = command("show", "one record: board, fields, masks",
                "One record as a board in its REAL orientation (the real side to move "
                "restored), its FEN, target move, result, eval, bucket, source and puzzle "
                "fields, and its masks as 8x8 grids (also in the real orientation).")
    p.add_argument("--split", choices=schema.SPLITS, default="train",
                   help="split to index (default: train)")
    p.add_argument("--index", type=_index, default=0, metavar="I",
                   help="record I of the split in shard order; with --fen-contains/--bucket, "
                        "the I-th match (default: 0, the first)")
    p.add_argument("--fen-contains", metavar="TEXT",
                   help="a record whose real FEN contains TEXT")
    p.add_argument("--bucket", metavar="NAME", help=f"a record of bucket NAME {schema.BUCKETS}")
    p.add_argument("--masks", metavar="M1,M2",
                   help="masks to show, by name (default: every non-empty mask)")
    p.add_argument("--svg", metavar="OUT.svg",
                   help="also draw the board with the masks as coloured squares")

    from dataengine.inspect.dump import FIELDS

    p = command("dump", "every record as a JSON line",
                "Every record as one JSON line (for jq and pandas).")
    p.epilog = FIELDS
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--jsonl", action="store_true",
                   help="JSON lines, one record a line (the only format, the default)")
    p.add_argument("--split", choices=SPLIT_CHOICES, default="all",
                   help="split to dump (default: all, train then val)")
    p.add_argument("--out", metavar="FILE",
                   help="write to FILE (atomically, once complete) instead of stdout")

    p = command("verify", "check shards against the manifest, record by record",
                "Check sha256 and size of every shard, decode every block, check every "
                "record (valid board, legal target move, fields in range), recompute labels "
                "for a sample, compare val.zarr. One line per problem; exit 1 if any.")
    p.add_argument("--full", action="store_true", help="recompute the labels of every record")
    p.add_argument("--sample", type=_positive, default=None, metavar="N",
                   help="records per split whose labels are recomputed (default: 2000)")

    p = command("stats", "plot buckets, ply, eval and mask heatmaps",
                "A PNG with the bucket mix, ply and eval histograms and per-square heatmaps "
                "of the 20 masks.")
    p.add_argument("--plot", required=True, metavar="OUT.png", help="PNG file to write")
    p.add_argument("--split", choices=SPLIT_CHOICES, default="all",
                   help="records to plot (default: all)")
    p.add_argument("--max-records", type=_positive, metavar="N",
                   help="only the first N records")
    return ap


def run(args: argparse.Namespace) -> int:
    shards = Shards.open(args.dir)
    if args.command == "summary":
        from dataengine.inspect import summary

        return summary.run(shards, args.split, args.max_records, args.json)
    if args.command == "show":
        from dataengine.inspect import show
        from dataengine.inspect.records import parse_mask_names

        try:
            masks = parse_mask_names(args.masks)
        except ValueError as e:
            raise InspectError(f"--masks: {e}") from None
        found = show.find(shards, args.split, args.index, args.fen_contains, args.bucket)
        text, shown = show.render(shards, found, masks)
        print(text)
        if args.svg:
            try:
                show.write_svg(args.svg, found, shown)
            except OSError as e:
                raise InspectError(f"cannot write {args.svg!r}: {e.strerror}") from None
            print(f"\nwrote {args.svg}")
        return 0
    if args.command == "dump":
        from dataengine.inspect import dump

        return dump.run(shards, args.split, args.out)
    if args.command == "verify":
        from dataengine.inspect import verify

        return verify.run(shards, full=args.full, sample=args.sample or verify.DEFAULT_SAMPLE)
    if args.command == "stats":
        from dataengine.inspect import stats

        return stats.run(shards, args.split, args.max_records, args.plot)
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except InspectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `dump | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # e.g. an --out/--svg path that cannot be written
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
