"""Loss curves of a run: python -m train.plot RUN_DIR [--out losses.png]

Reads RUN_DIR/metrics.jsonl (written every --progress-interval steps) and draws
one panel for each training loss (the total first), one for the SSL tasks'
losses together, and, when the run measured them (--eval-every), one for each
held-out metric of the EMA and raw weights (policy top-1 and CE, value MAE,
W/D/L accuracy, stalemating and mate-in-one top-1) and one for each binary SSL
task's held-out F1. Every panel spans the run's steps and says what its y axis
is; a metric never measured (all NaN) gets no panel; held-out figures, measured
at a few steps only, are drawn as points.
"""

from __future__ import annotations

import argparse
import io
import json
import math
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


#: Training losses: metric -> (title, y label), in panel order.
LOSS_PANELS = {"loss": ("total loss (minimised)", "weighted sum"),
               "policy": ("policy loss", "cross-entropy (nats)"),
               "value": ("value loss", "Huber loss"),
               "wdl": ("W/D/L loss", "cross-entropy (nats)"),
               "stalemate": ("stalemate loss", "-log(1 - p(stalemating))"),
               "mate": ("mate loss", "-log p(mating)"),
               "ssl": ("SSL loss (all tasks)", "weighted sum")}

#: Held-out panels: title -> metric (val_ema/<metric> and val_raw/<metric> drawn together).
HELD_OUT_PANELS = {"held-out policy top-1": "policy_top1", "held-out policy CE": "policy_ce",
                   "held-out value MAE": "value_mae", "held-out W/D/L accuracy": "wdl_acc",
                   "held-out stalemating top-1": "stalemate_top1",
                   "held-out mate-in-one top-1": "mate_top1"}
HELD_OUT_YLABELS = {"policy_top1": "accuracy", "policy_ce": "cross-entropy (nats)",
                    "value_mae": "mean absolute error", "wdl_acc": "accuracy",
                    "stalemate_top1": "accuracy", "mate_top1": "accuracy"}

#: Y labels of the figures that are fractions (0..1): their axes start at 0.
FRACTIONS = ("accuracy", "F1")

#: Curve styles: (colour, marker) of the EMA and raw weights' held-out points.
EMA_STYLE, RAW_STYLE = ("tab:green", "o"), ("tab:red", "x")


def _measured(metrics: list[dict], key: str) -> bool:
    """Whether ``key`` has a finite value somewhere (NaN: nothing to measure it on)."""
    return any(math.isfinite(v) for v in _series(metrics, key)[1])


def panels_of(metrics: list[dict]) -> list[dict]:
    """The panels to draw, in order: each a dict of ``title``, ``ylabel``, ``points``
    (draw markers always) and ``curves``, a list of (metric, label, colour, marker)."""
    keys = {k for m in metrics for k in m}
    panels = [{"title": title, "ylabel": ylabel, "points": False,
               "curves": [(k, k, "tab:blue", "o")]}
              for k, (title, ylabel) in LOSS_PANELS.items() if _measured(metrics, k)]
    tasks = sorted(k for k in keys if k.startswith("ssl_") and k != "ssl_scale"
                   and _measured(metrics, k))
    if tasks:
        panels.append({"title": "SSL task losses", "ylabel": "cross-entropy (nats)",
                       "points": False,
                       "curves": [(k, k.removeprefix("ssl_"), None, "o") for k in tasks]})
    for title, key in HELD_OUT_PANELS.items():
        curves = [(f"val_{w}/{key}", w.upper() if w == "ema" else w, colour, marker)
                  for w, (colour, marker) in (("ema", EMA_STYLE), ("raw", RAW_STYLE))
                  if _measured(metrics, f"val_{w}/{key}")]
        if curves:
            panels.append({"title": title, "ylabel": HELD_OUT_YLABELS[key], "points": True,
                           "curves": curves})
    f1 = sorted(k for k in keys if k.startswith("val_ema/") and k.endswith("_f1")
                and _measured(metrics, k))
    if f1:
        panels.append({"title": "held-out SSL F1 (EMA)", "ylabel": "F1", "points": True,
                       "curves": [(k, k.removeprefix("val_ema/").removesuffix("_f1"), None,
                                   "o") for k in f1]})
    return panels


def plot(metrics: list[dict], out: Path, title: str | None = None) -> None:
    """The panels of :func:`panels_of`, four a row, each over the run's steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = panels_of(metrics)
    steps = [m["step"] for m in metrics if isinstance(m.get("step"), int | float)]
    last = max(steps, default=1) or 1
    columns = 4
    rows = max(1, math.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(16, 3.4 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        panel = panels[i]
        for key, label, colour, marker in panel["curves"]:
            xs, ys = _series(metrics, key)
            dots = panel["points"] or len(xs) < 30
            ax.plot(xs, ys, label=label, color=colour, marker=marker if dots else None,
                    markersize=6 if panel["points"] else 3,
                    fillstyle="none" if marker == "o" and panel["points"] else "full",
                    linewidth=1.2)
        if panel["ylabel"] in FRACTIONS:  # from 0: a few points are not zoomed into noise
            top = max((v for key, *_ in panel["curves"] for v in _series(metrics, key)[1]
                       if math.isfinite(v)), default=0.0)
            top = min(1.0, top * 1.25) if top > 0 else 0.1
            ax.set_ylim(-0.03 * top, top)  # a point at 0 shows whole
        if len(panel["curves"]) > 1:
            many = len(panel["curves"]) > 4
            if many:  # room above the curves for the legend
                low, high = ax.get_ylim()
                ax.set_ylim(low, high + 0.45 * (high - low))
            ax.legend(fontsize=7, ncol=2 if many else 1, loc="upper right", framealpha=0.7)
        ax.set_title(panel["title"])
        ax.set_ylabel(panel["ylabel"])
        ax.set_xlabel("step")
        ax.set_xlim(0, last * 1.03)  # the run's steps, also for a panel of one point
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
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
    plot(metrics, out, title=f"{Path(args.run_dir).resolve().name}: steps "
                             f"{metrics[0]['step']}-{metrics[-1]['step']}")
    print(f"wrote {out} ({len(metrics)} points, steps {metrics[0]['step']}-{metrics[-1]['step']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
