"""The engine's speed: the network's positions/s and the search's nodes/s, side by side.

    python bench/bench_engine.py [--checkpoint CKPT] [--nodes 4000] [--batch 32]

Rows:

* ``network eager`` / ``network frozen``: positions/s of the network alone on random
  inputs at batch 1, the search's batch and 64 (eager PyTorch, and the frozen
  TorchScript graph the engine runs on a CPU);
* ``tree only``: nodes/s of the search with a stand-in evaluator that costs nothing
  (flat policy, value 0): the cost of the numba tree, move generation and encoding;
* ``search``: nodes/s of one game's search (``Search.run(nodes=N)``) from a few
  positions (opening, middlegame, endgame), fresh tree each, and the same as a share
  of the network's frozen rate at the search's batch.

Without ``--checkpoint`` the network is the default model shape (6 blocks x 64
channels) with random weights: speed does not depend on the weights. Compile time
is kept out (everything runs once first). Threads: torch's default unless
``--threads``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chess  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from train.engine.net import Evaluator  # noqa: E402
from train.engine.search import Search, SearchConfig  # noqa: E402
from train.model import ChessNet, ModelConfig  # noqa: E402

POSITIONS = {
    "opening": "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3",
    "middlegame": "r2q1rk1/pp2bppp/2n1pn2/3p4/3P4/2NBPN2/PP3PPP/R2Q1RK1 w - - 0 10",
    "endgame": "8/5pk1/6p1/8/3R4/6P1/5PK1/2r5 w - - 0 40",
}


class _Free:
    """A stand-in evaluator that costs nothing."""

    has_wdl = False

    def raw(self, x):
        n = len(x)
        return np.zeros((n, 4672), np.float32), np.zeros(n, np.float32), None


def _rate(fn, batch: int, seconds: float = 2.0) -> float:
    x = np.random.default_rng(0).integers(0, 2, size=(batch, 19, 8, 8)).astype(np.float32)
    for _ in range(3):
        fn(x)
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn(x)
        n += batch
    return n / (time.perf_counter() - started)


def _search_rate(evaluator, fen: str, nodes: int, config: SearchConfig) -> tuple[float, int]:
    search = Search(evaluator, config)
    search.set_position(chess.Board(fen))
    search.run(nodes=2 * config.batch_size)  # compile and warm up
    search.new_game()
    search.set_position(chess.Board(fen))
    started = time.perf_counter()
    result = search.run(nodes=nodes)
    return result.nodes / (time.perf_counter() - started), result.nodes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="a trainer checkpoint (default: a random 6x64 net)")
    ap.add_argument("--nodes", type=int, default=4000, help="nodes per search row")
    ap.add_argument("--batch", type=int, default=SearchConfig().batch_size,
                    help="the search's leaves per network call")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        frozen = Evaluator.from_checkpoint(args.checkpoint)
        eager = Evaluator(frozen.net, script=False)
        shape = frozen.description
    else:
        torch.manual_seed(0)
        net = ChessNet(ModelConfig())
        frozen, eager = Evaluator(net), Evaluator(net, script=False)
        shape = "random 6x64 network"
    config = SearchConfig(batch_size=args.batch)
    print(f"Engine on {shape}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    rows = []
    batches = sorted({1, args.batch, 64})
    for name, ev in (("network eager", eager), ("network frozen", frozen)):
        for b in batches:
            rows.append((name, f"batch {b}", _rate(ev.raw, b), ""))
    frozen_at_batch = next(r[2] for r in rows if r[0] == "network frozen"
                           and r[1] == f"batch {args.batch}")
    for label, fen in POSITIONS.items():
        rate, _ = _search_rate(_Free(), fen, args.nodes, config)
        rows.append(("tree only", label, rate, ""))
    for label, fen in POSITIONS.items():
        rate, nodes = _search_rate(frozen, fen, args.nodes, config)
        rows.append(("search", f"{label}, {nodes} nodes", rate,
                     f"{rate / frozen_at_batch:.0%} of the frozen net at batch {args.batch}"))
    width = max(len(r[1]) for r in rows)
    print(f"{'row':<15} {'setting':<{width}} {'per s':>10}  note")
    for name, setting, rate, note in rows:
        print(f"{name:<15} {setting:<{width}} {rate:>10,.0f}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
