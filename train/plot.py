"""Loss curves of a run: python -m train.plot RUN_DIR [--out losses.png]

Reads RUN_DIR/metrics.jsonl (written every --progress-interval steps) and draws
one panel for each training loss and each SSL task's loss, and, when the run
measured them (--eval-every), the held-out metrics of the EMA and raw weights
(policy top-1 and CE, value MAE, W/D/L accuracy) and each binary SSL task's F1.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from dataengine.fileio import atomic_write


def read_metrics(path: Path) -> list[dict]:
    lines = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            lines.append(json.loads(line))
        except ValueError:
            print(f"warning: {path}:{n} is not JSON, skipped", file=sys.stderr)
    return lines


def _series(metrics: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the lines that have ``key``: training and held-out lines are
    written at different steps, so each curve has its own x values."""
    points = [(m["step"], m[key]) for m in metrics
              if isinstance(m.get(key), int | float) and "step" in m]
    return [p[0] for p in points], [p[1] for p in points]


#: Held-out panels: title -> metric (val_ema/<metric> and val_raw/<metric> drawn together).
HELD_OUT_PANELS = {"held-out policy top-1": "policy_top1", "held-out policy CE": "policy_ce",
                   "held-out value MAE": "value_mae", "held-out W/D/L accuracy": "wdl_acc",
                   "held-out stalemating top-1": "stalemate_top1",
                   "held-out mate-in-one top-1": "mate_top1"}


def plot(metrics: list[dict], out: Path) -> None:
    """The training losses (policy, value, wdl, stalemate, mate, SSL), four a row; then
    one panel per SSL task's loss; then, when
    the run measured them (--eval-every), the held-out metrics of the EMA and raw
    weights and each binary SSL task's held-out F1 (EMA)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = {k for m in metrics for k in m}
    main = [k for k in ("policy", "value", "wdl", "stalemate", "mate", "ssl") if k in keys]
    tasks = sorted(k for k in keys if k.startswith("ssl_") and k != "ssl_scale")
    held = {title: key for title, key in HELD_OUT_PANELS.items()
            if f"val_ema/{key}" in keys or f"val_raw/{key}" in keys}
    f1 = sorted(k for k in keys if k.startswith("val_ema/") and k.endswith("_f1"))
    panels: list[tuple[str, list[tuple[str, str, str]]]] = []  # title, [(key, label, colour)]
    panels += [(f"{k} loss", [(k, k, "tab:blue")]) for k in main]
    panels += [(k.removeprefix("ssl_") + " (SSL)", [(k, k, "tab:orange")]) for k in tasks]
    panels += [(title, [(f"val_ema/{key}", "EMA", "tab:green"),
                        (f"val_raw/{key}", "raw", "tab:red")]) for title, key in held.items()]
    if f1:
        panels.append(("held-out SSL F1 (EMA)",
                       [(k, k.removeprefix("val_ema/").removesuffix("_f1"), None) for k in f1]))
    # training losses from row 0, SSL tasks and held-out figures on rows of their own
    def by_four(part: list) -> list[list]:
        return [part[i:i + 4] for i in range(0, len(part), 4)]

    rows = [*by_four(panels[:len(main)]), *by_four(panels[len(main):len(main) + len(tasks)]),
            *by_four(panels[len(main) + len(tasks):])]
    fig, axes = plt.subplots(len(rows), 4, figsize=(16, 3.2 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(4):
            ax = axes[r][c]
            if c >= len(row):
                ax.set_visible(False)
                continue
            title, curves = row[c]
            for key, label, colour in curves:
                steps, values = _series(metrics, key)
                ax.plot(steps, values, label=label, color=colour,
                        marker="o" if len(steps) < 30 else None, markersize=3)
            if len(curves) > 1:
                ax.legend(fontsize=8)
            ax.set_title(title)
            ax.set_xlabel("step")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    atomic_write(out, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.plot", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="the run's directory, e.g. runs/pretrained")
    ap.add_argument("--out", default=None, help="PNG path (default RUN_DIR/losses.png)")
    args = ap.parse_args(argv)
    path = Path(args.run_dir) / "metrics.jsonl"
    if not path.is_file():
        print(f"error: no metrics at {str(path)!r}: train first (make train)", file=sys.stderr)
        return 2
    metrics = read_metrics(path)
    if not metrics:
        print(f"error: {str(path)!r} has no metrics yet", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.run_dir) / "losses.png"
    plot(metrics, out)
    print(f"wrote {out} ({len(metrics)} points, steps {metrics[0]['step']}-{metrics[-1]['step']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
