"""Search quality at equal nodes: the engine's batched PUCT against the evaluation's
one-leaf-per-call PUCT (``train.evaluation.search``), on held-out puzzles.

    python bench/bench_search_quality.py CKPT [--nodes 100,400] [--limit 300]
        [--cpuct 1.75] [--fpu 0.3] [--batch 32]

Each row solves the same puzzles (``train.puzzles``' rule) with one solver; the
engine's rows take every combination of ``--cpuct``, ``--fpu`` and ``--batch`` (so
the script doubles as a tuning grid), the ``old puct`` row uses c_puct 1.5 as
``train.evaluation`` does. Batched leaves with virtual loss can cost accuracy: the
engine should solve at least as many as the old search at the same node count.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from train import puzzles  # noqa: E402
from train.engine.net import Evaluator  # noqa: E402
from train.engine.search import SearchConfig, search_many  # noqa: E402
from train.evaluation.search import puct_search  # noqa: E402


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("puzzles", nargs="?", default=str(puzzles.DEFAULT_PUZZLES))
    ap.add_argument("--nodes", type=_ints, default=[100, 400])
    ap.add_argument("--limit", type=int, default=300, help="the first K puzzles")
    ap.add_argument("--cpuct", type=_floats, default=[SearchConfig().cpuct])
    ap.add_argument("--fpu", type=_floats, default=[SearchConfig().fpu_reduction])
    ap.add_argument("--batch", type=_ints, default=[SearchConfig().batch_size])
    ap.add_argument("--no-old", action="store_true", help="skip the old PUCT rows")
    ap.add_argument("--weights", default="ema", choices=("ema", "raw"))
    args = ap.parse_args(argv)

    ev = Evaluator.from_checkpoint(args.checkpoint, weights=args.weights)
    items = puzzles.read_puzzles(args.puzzles, limit=args.limit)
    chosen = list(items)
    print(f"{len(chosen)} puzzles of {args.puzzles}; {ev.description}; "
          f"torch {torch.get_num_threads()} threads")
    rows = []

    def measure(name: str, choose) -> None:
        started = time.perf_counter()
        outcomes = puzzles.score(chosen, choose)
        seconds = time.perf_counter() - started
        first = sum(o.first for o in outcomes)
        line = sum(o.solved for o in outcomes)
        rows.append((name, first, line, len(outcomes), seconds))
        lo, hi = puzzles.wilson(line, len(outcomes))
        print(f"  {name}: first {first}/{len(outcomes)}, line {line} "
              f"[{lo:.3f}, {hi:.3f}], {seconds:.0f} s", flush=True)

    measure("policy", ev.policy_moves)
    for nodes in args.nodes:
        if not args.no_old:
            measure(f"old puct, {nodes} sims",
                    lambda boards, n=nodes: puct_search(list(boards), ev.evaluate, sims=n))
        for cpuct, fpu, batch in itertools.product(args.cpuct, args.fpu, args.batch):
            config = SearchConfig(cpuct=cpuct, fpu_reduction=fpu, batch_size=batch)
            measure(f"engine, {nodes} nodes, cpuct {cpuct}, fpu {fpu}, batch {batch}",
                    lambda boards, n=nodes, c=config: [
                        r.move for r in search_many(ev, list(boards), n, c)])
    print()
    width = max(len(r[0]) for r in rows)
    print(f"{'solver':<{width}}  {'first move':>17}  {'full line':>26}  {'s':>6}")
    for name, first, line, n, seconds in rows:
        lo, hi = puzzles.wilson(line, n)
        print(f"{name:<{width}}  {first:>5}/{n:<5} {first / n:6.1%}  "
              f"{line:>5} {line / n:6.1%} [{lo:5.1%}, {hi:5.1%}]  {seconds:6.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
