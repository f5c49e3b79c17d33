"""Loss curves of a run: python -m train.plot RUN_DIR [--out losses.png]

Reads RUN_DIR/metrics.jsonl (written every --progress-interval steps) and draws
one panel for the policy/value losses and one for each SSL task.
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


def plot(metrics: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m["step"] for m in metrics]
    main = [k for k in ("policy", "value", "wdl", "ssl") if any(k in m for m in metrics)]
    tasks = sorted({k for m in metrics for k in m if k.startswith("ssl_") and k != "ssl_scale"})
    fig, axes = plt.subplots(1 + (len(tasks) + 3) // 4, 4, figsize=(16, 3.2 * (1 + (len(tasks) + 3) // 4)),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for i, key in enumerate(main):
        ax = axes[0][i]
        ax.set_visible(True)
        ax.plot(steps, [m.get(key, float("nan")) for m in metrics])
        ax.set_title(f"{key} loss")
        ax.set_xlabel("step")
    for i, key in enumerate(tasks):
        ax = axes[1 + i // 4][i % 4]
        ax.set_visible(True)
        ax.plot(steps, [m.get(key, float("nan")) for m in metrics], color="tab:orange")
        ax.set_title(key.removeprefix("ssl_") + " (SSL)")
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
