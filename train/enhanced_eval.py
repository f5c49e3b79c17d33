"""python -m train.enhanced_eval: compare two checkpoints (or a checkpoint and a baseline).

    python -m train.enhanced_eval --model-a checkpoints/new.pt --model-b checkpoints/old.pt \\
        --shards shards --games 100 --pgn games.pgn --report eval.json

1. Held-out metrics on the validation split (SHARDS/val.zarr) for both models side by
   side, and A - B with a 95% paired bootstrap interval (train/evaluation/heldout.py
   lists the metrics and their definitions).
2. With --games N, a match of N games from book openings, each played twice with the
   colours swapped: W/D/L from A's view, score, Elo A - B with a 95% interval
   (train/evaluation/match.py), games written as PGN with --pgn.

Instead of a checkpoint path, --model-a/--model-b take a baseline: `random` (uniform
legal move), `material` (one-ply greedy on material) or `stockfish` (the Debian
package, --stockfish-nodes per move). Baselines have no held-out metrics.
Checkpoints are evaluated with their EMA weights unless --no-ema (a run trained without
the EMA warm-up, train.ema, keeps most of its initial weights in the EMA for about
1 / (1 - ema_decay) steps; the report says so). Each binary SSL task's F1 is shown next
to its base rate, the share of set squares in the validation split.

Exit status 2 with a one-line `error: ...` for a bad checkpoint, models of different
input formats, a missing validation split or opening book.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from dataengine import schema
from dataengine.build import read_val_zarr
from train.config import TrainConfig
from train.evaluation import heldout
from train.evaluation.match import (
    play_match,
    read_openings,
    schedule,
    summarize,
    write_pgn,
)
from train.evaluation.players import (
    BASELINES,
    EvalError,
    LoadedModel,
    MaterialPlayer,
    NetPlayer,
    Player,
    RandomPlayer,
    StockfishPlayer,
    check_input_formats,
    load_model,
    read_checkpoint,
)
from train.evaluation.report import format_report, json_safe
from train.trainer import TrainingError, pick_device

DEFAULT_BOOK = str(Path(__file__).resolve().parents[1] / "dataengine" / "sample_data"
                   / "openings_a.tsv")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m train.enhanced_eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-a", required=True, help="checkpoint path, or random|material|stockfish")
    ap.add_argument("--model-b", required=True, help="checkpoint path, or random|material|stockfish")
    ap.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                    help="where the networks run (auto: MPS, then CUDA, then CPU)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's; 1 is often fastest for the "
                         "small batches of a match)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seeds the bootstrap, --max-positions, the opening order and baselines")
    held = ap.add_argument_group("held-out metrics")
    held.add_argument("--shards", default="shards", help="shards directory with val.zarr")
    held.add_argument("--no-heldout", action="store_true", help="skip the held-out metrics")
    held.add_argument("--max-positions", type=int, default=None,
                      help="a seeded random subset of this many validation positions")
    held.add_argument("--bootstrap", type=int, default=1000,
                      help="bootstrap resamples for the A - B intervals (0 = none)")
    held.add_argument("--batch-size", type=int, default=512,
                      help="positions per network call, held-out and in matches")
    held.add_argument("--teacher-mix", type=float, default=None,
                      help="value target blend (default: model A's training config, else B's, "
                           f"else {TrainConfig().teacher_mix})")
    held.add_argument("--policy-target", choices=("teacher", "played"), default=None,
                      help="policy target: the teacher's move where known, or the move played "
                           "(default: from the training config like --teacher-mix)")
    match = ap.add_argument_group("match")
    match.add_argument("--games", type=int, default=0, help="games to play (0 = no match)")
    match.add_argument("--openings", default=DEFAULT_BOOK, help="opening book TSV (eco, name, pgn)")
    match.add_argument("--sims", type=int, default=0,
                       help="PUCT simulations a move for checkpoints (0 = best policy move)")
    match.add_argument("--cpuct", type=float, default=1.5,
                       help="PUCT exploration constant of --sims (higher explores more)")
    match.add_argument("--max-plies", type=int, default=200,
                       help="game length cap in plies, book moves included")
    match.add_argument("--adjudicate", choices=("draw", "material"), default="draw",
                       help="result of a game at the ply cap: a draw, or a win for a lead "
                            "of 3+ points of material")
    match.add_argument("--stockfish-nodes", type=int, default=1000,
                       help="nodes a move of the `stockfish` baseline (1 thread)")
    match.add_argument("--pgn", default=None, help="write the games here")
    ap.add_argument("--report", default=None, help="write the JSON report here")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def _check_args(args: argparse.Namespace) -> None:
    for name in ("max_positions", "batch_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise EvalError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("bootstrap", "games", "sims", "max_plies", "stockfish_nodes"):
        if getattr(args, name) < 0:
            raise EvalError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.teacher_mix is not None and not 0.0 <= args.teacher_mix <= 1.0:
        raise EvalError(f"--teacher-mix must be in [0, 1], got {args.teacher_mix}")


def _side_names(a: str, b: str) -> tuple[str, str]:
    return (f"{a} (A)", f"{b} (B)") if a == b else (a, b)


def make_player(spec: str, name: str, model: LoadedModel | None, args: argparse.Namespace,
                device: torch.device, seed: int) -> Player:
    if model is not None:
        return NetPlayer(name, model, device, sims=args.sims, cpuct=args.cpuct,
                         batch_size=args.batch_size)
    if spec == "random":
        return RandomPlayer(name, seed)
    if spec == "material":
        return MaterialPlayer(name, seed)
    return StockfishPlayer(name, args.stockfish_nodes)


def _targets(args: argparse.Namespace, models: list[LoadedModel]) -> tuple[float, bool]:
    """teacher_mix and policy_from_teacher: the flags, else the first model's training
    config, else the trainer's defaults."""
    defaults = TrainConfig()
    config = next((m.train_config for m in models if m.train_config), {})
    mix = args.teacher_mix if args.teacher_mix is not None else \
        float(config.get("teacher_mix", defaults.teacher_mix))
    if args.policy_target is not None:
        from_teacher = args.policy_target == "teacher"
    else:
        from_teacher = bool(config.get("policy_from_teacher", defaults.policy_from_teacher))
    return mix, from_teacher


def run_heldout(args: argparse.Namespace, models: dict[str, LoadedModel | None],
                device: torch.device) -> dict:
    present = {side: m for side, m in models.items() if m is not None}
    if not present:
        return {"skipped": "both players are baselines: they have no network to measure"}
    path = Path(args.shards) / "val.zarr"
    if not path.is_dir():
        raise EvalError(f"no validation split at {str(path)!r}: build shards (make shards), "
                        "point --shards at them, or pass --no-heldout")
    try:
        block = read_val_zarr(path)
    except Exception as e:  # zarr raises many kinds for a damaged store
        raise EvalError(f"cannot read {str(path)!r}: {e}") from None
    n = schema.block_len(block)
    if args.max_positions is not None and args.max_positions < n:
        keep = np.sort(np.random.default_rng(args.seed).choice(n, args.max_positions,
                                                                replace=False))
        block = schema.take(block, keep)
        n = args.max_positions
    if n == 0:
        raise EvalError(f"the validation split at {str(path)!r} has no positions")
    mix, from_teacher = _targets(args, list(present.values()))
    values = {side: heldout.position_values(
        m.net, block, device, batch_size=args.batch_size, teacher_mix=mix,
        policy_from_teacher=from_teacher, progress=not args.quiet, desc=f"held-out {side}")
        for side, m in present.items()}
    out = {"path": str(path), "positions": n, "teacher_mix": mix,
           "policy_from_teacher": from_teacher, "base_rates": heldout.base_rates(block),
           "metrics": {side: heldout.aggregate(v) for side, v in values.items()},
           "no_metrics": [side for side in models if models[side] is None]}
    if len(values) == 2:
        a, b = out["metrics"]["A"], out["metrics"]["B"]
        out["diff"] = {k: a[k] - b[k] for k in a}
        out["bootstrap"] = args.bootstrap
        out["ci95"] = heldout.paired_bootstrap(values["A"], values["B"],
                                               resamples=args.bootstrap, seed=args.seed)
    return out


def evaluate(args: argparse.Namespace) -> dict:
    """Everything the command does, as the report dict (raises EvalError)."""
    _check_args(args)
    for out in (args.pgn, args.report):  # a bad output folder fails now, not after the games
        if out:
            _write(out, lambda path: None)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = pick_device(args.device)
    except TrainingError as e:
        raise EvalError(str(e)) from None
    specs = {"A": args.model_a, "B": args.model_b}
    checkpoints = {side: read_checkpoint(spec) for side, spec in specs.items()
                   if spec not in BASELINES}
    check_input_formats(checkpoints)
    models = {side: load_model(checkpoints[side], device, ema=not args.no_ema)
              if side in checkpoints else None for side in specs}
    names = dict(zip(("A", "B"), _side_names(args.model_a, args.model_b), strict=True))
    # read before the held-out pass, so that a bad book fails at once
    book = read_openings(args.openings) if args.games else []
    players: dict[str, Player] = {}
    try:
        for i, side in enumerate(("A", "B")):
            # different seeds, so that random against random is not one game mirrored
            players[side] = make_player(specs[side], names[side], models[side], args, device,
                                        args.seed + i)
        report = {"players": {side: {"name": p.name, "spec": specs[side],
                                     "description": p.description,
                                     "baseline": models[side] is None}
                              for side, p in players.items()},
                  "settings": {k: v for k, v in vars(args).items() if k not in ("quiet",)}}
        report["heldout"] = ({"skipped": "--no-heldout"} if args.no_heldout
                             else run_heldout(args, models, device))
        if args.games:
            pairings = schedule(book, args.games, args.seed)
            records = play_match(players["A"], players["B"], pairings,
                                 max_plies=args.max_plies, adjudicate=args.adjudicate,
                                 progress=not args.quiet)
            report["match"] = {**summarize(records), "book": args.openings,
                               "openings": len({p[0].line for p in pairings}),
                               "max_plies": args.max_plies, "adjudicate": args.adjudicate,
                               "pgn": args.pgn,
                               "games_list": [{"round": r.round, "white": r.white,
                                               "black": r.black, "result": r.result,
                                               "termination": r.termination,
                                               "opening": r.opening.name, "plies": len(r.moves)}
                                              for r in records]}
            if args.pgn:
                _write(args.pgn, lambda path: write_pgn(records, path))
    finally:
        for p in players.values():
            p.close()
    return report


def _write(path: str, writer) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer(path)
    except OSError as e:
        raise EvalError(f"cannot write {path!r}: {e.strerror or e}") from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        report = evaluate(args)
    except EvalError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(format_report(report))
    if args.report:
        text = json.dumps(json_safe(report), indent=1) + "\n"
        try:
            _write(args.report, lambda path: Path(path).write_text(text))
        except EvalError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"report written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
