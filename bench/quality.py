"""make quality: does the network learn, and do the SSL heads help it?

Trains the default model twice for the same steps on the same shards and seed,
once with the SSL heads (the config's weights) and once with ``--ssl-weight 0``,
then prints one table per weight set (EMA and raw) of held-out figures on the
validation split (policy top-1 and cross-entropy, value MAE, W/D/L accuracy,
each binary SSL task's F1 next to its base rate) with SSL - no-SSL and its 95%
paired bootstrap interval, one table of held-out Lichess puzzle accuracy (the raw
policy's first move and full line, ``train.puzzles``'s rule, with Wilson 95% intervals,
and SSL - no SSL with a paired bootstrap interval over the same puzzles), and one table
of match scores of each model against the ``random`` and ``material`` baselines (best
legal policy move, no search).

    python bench/quality.py [--steps 1500] [--shards shards] [--games 40] [--device auto]
    make quality STEPS=1500 SHARDS=shards

Each arm's run is ``python -m train`` in a subprocess, into OUT/<arm>/; a finished
arm whose checkpoint matches the settings is reused (``--retrain`` trains again).

Two runs that differ by nothing but a perturbation differ by about 0.02 in held-out
policy CE at 1,500 steps (README), and the paired bootstrap over positions does not see
that: it resamples the positions of one pair of runs. ``--seeds K`` trains each arm
with seeds SEED .. SEED+K-1 (the extra runs in OUT/<arm>/seed<S>/), pools each
position's figures over the seeds for the table and its position bootstrap, and adds
each seed's difference and a t interval over them (K - 1 degrees of freedom), which
does include the training noise (the puzzles likewise: each puzzle's solves pooled over
the seeds). The matches are played by the first seed's models.
The tables go to stdout and OUT/quality.txt, every figure to OUT/quality.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dataengine.build import VAL_ZARR, read_val_zarr  # noqa: E402
from train.evaluation import heldout  # noqa: E402
from train.evaluation.match import play_match, read_openings, schedule, summarize  # noqa: E402
from train.evaluation.players import (  # noqa: E402
    MaterialPlayer,
    NetPlayer,
    RandomPlayer,
    load_model,
    read_checkpoint,
)
from train.evaluation.report import json_safe  # noqa: E402
from train.puzzles import DEFAULT_PUZZLES, read_puzzles, score, wilson  # noqa: E402
from train.trainer import pick_device  # noqa: E402

ARMS = {"ssl": [], "no_ssl": ["--ssl-weight", "0"]}
ARM_LABELS = {"ssl": "SSL", "no_ssl": "no SSL"}
WEIGHTS = ("ema", "raw")
#: (metric key, label, digits) of the held-out table, in order
ROWS = [("policy_top1", "policy top-1", 4), ("policy_ce", "policy CE", 4),
        ("mate_top1", "mate-in-one top-1", 4),
        ("value_mae", "value MAE", 4), ("wdl_acc", "W/D/L accuracy", 4),
        ("threat_f1", "threat F1", 4), ("pin_f1", "pin F1", 4), ("fork_f1", "fork F1", 4),
        ("pawn_structure_f1", "pawn_structure F1", 4),
        ("king_safety_f1", "king_safety F1", 4), ("piece_acc", "piece accuracy", 4),
        ("control_acc", "control accuracy", 4)]
BOOK = REPO / "dataengine" / "sample_data" / "openings_a.tsv"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/quality.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1500,
                    help="training steps of each arm (the default fits 15 minutes on 2 CPU cores)")
    ap.add_argument("--shards", default="shards", help="shards directory (make shards)")
    ap.add_argument("--config", default=str(REPO / "config.yaml"), help="trainer config")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    ap.add_argument("--seed", type=int, default=0, help="the runs' seed (model init, data order)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="train each arm with this many seeds (--seed, --seed + 1, ...) and add "
                         "an interval over them, which includes the training noise")
    ap.add_argument("--games", type=int, default=40,
                    help="games of each model against each baseline (openings x 2 colours)")
    ap.add_argument("--puzzles", default=str(DEFAULT_PUZZLES),
                    help="Lichess puzzle CSV scored by each model's raw policy (default: the "
                         "1,199 puzzles held out of training)")
    ap.add_argument("--puzzle-limit", type=int, default=None,
                    help="score only the first K puzzles (0: no puzzle table)")
    ap.add_argument("--max-plies", type=int, default=200,
                    help="game length cap in plies, book moves included (then a draw)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--eval-every", type=int, default=250,
                    help="held-out metrics during each run (train --eval-every)")
    ap.add_argument("--out", default="runs/quality", help="runs, checkpoints and the report")
    ap.add_argument("--retrain", action="store_true", help="train even if a run is finished")
    ap.add_argument("--train-args", default="", help="more flags for both runs, one string")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.games < 0 or args.bootstrap < 0 or args.max_plies < 1 \
            or args.seeds < 1 or (args.puzzle_limit is not None and args.puzzle_limit < 0):
        ap.error("--steps, --seeds and --max-plies must be >= 1, --games, --bootstrap and "
                 "--puzzle-limit >= 0")
    return args


# ----------------------------------------------------------------------------- training


def seeds_of(args: argparse.Namespace) -> list[int]:
    return list(range(args.seed, args.seed + args.seeds))


def run_name(args: argparse.Namespace, arm: str, seed: int) -> str:
    """The run's name: the arm for the first seed (the layout of one seed), else
    ``<arm>_seed<S>``."""
    return arm if seed == args.seed else f"{arm}_seed{seed}"


def arm_checkpoint(args: argparse.Namespace, arm: str, seed: int | None = None) -> Path:
    if seed is None or seed == args.seed:
        return Path(args.out) / arm / "final.pt"
    return Path(args.out) / arm / f"seed{seed}" / "final.pt"


def train_arm(args: argparse.Namespace, arm: str, seed: int | None = None) -> float | None:
    """Train one arm with one seed (default --seed) unless its checkpoint is there for
    these settings; seconds taken."""
    seed = args.seed if seed is None else seed
    path, name = arm_checkpoint(args, arm, seed), run_name(args, arm, seed)
    cmd = [sys.executable, "-m", "train", "--config", args.config, "--steps", str(args.steps),
           "--shards", args.shards, "--seed", str(seed), "--device", args.device,
           "--checkpoint-out", str(path), "--checkpoint-prefix", name,
           "--run-dir", str(Path(args.out) / "runs"), "--save-every", "0",
           "--eval-every", str(args.eval_every), *ARMS[arm], *args.train_args.split()]
    settings = " ".join(cmd[3:])
    stamp = path.with_suffix(".cmd")
    if not args.retrain and path.is_file() and stamp.is_file() and stamp.read_text() == settings:
        print(f"[{name}] reusing {path} (same settings; --retrain to train again)", flush=True)
        return None
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = Path(args.out) / "runs" / name / "metrics.jsonl"
    metrics.unlink(missing_ok=True)  # a fresh curve, not appended to an old run's
    print(f"[{name}] training {args.steps} steps: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    log = Path(args.out) / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO,
                              env={**os.environ, "TQDM_DISABLE": "1"})
    if done.returncode != 0:
        tail = log.read_text().splitlines()[-15:]
        raise SystemExit(f"[{name}] training failed (exit {done.returncode}); end of {log}:\n"
                         + "\n".join(tail))
    stamp.write_text(settings)
    seconds = time.perf_counter() - t0
    print(f"[{name}] done in {seconds:.0f} s", flush=True)
    return seconds


# ----------------------------------------------------------------------------- measuring


def measure(args: argparse.Namespace) -> dict:
    device = pick_device(args.device)
    val_path = Path(args.shards) / VAL_ZARR
    block = read_val_zarr(val_path)
    n = len(block["flags"])
    report: dict = {"steps": args.steps, "seed": args.seed, "shards": args.shards,
                    "games": args.games, "max_plies": args.max_plies,
                    "val_positions": n, "base_rates": heldout.base_rates(block),
                    "heldout": {}, "matches": {}}
    seeds = seeds_of(args)
    report["seeds"] = seeds
    models = {}
    for arm in ARMS:
        for seed in seeds:
            checkpoint = read_checkpoint(str(arm_checkpoint(args, arm, seed)))
            train_cfg = checkpoint.state["config"]["train"]
            for weights in WEIGHTS:
                models[arm, weights, seed] = load_model(checkpoint, device,
                                                        ema=weights == "ema")
    targets = {"teacher_mix": float(train_cfg["teacher_mix"]),
               "policy_from_teacher": bool(train_cfg["policy_from_teacher"])}
    values = {key: heldout.position_values(m.net, block, device, **targets, progress=True,
                                           desc=f"held-out {key[0]} {key[1]} seed {key[2]}")
              for key, m in models.items()}
    for weights in WEIGHTS:
        a = pooled([values["ssl", weights, s] for s in seeds])
        b = pooled([values["no_ssl", weights, s] for s in seeds])
        ma, mb = heldout.aggregate(a), heldout.aggregate(b)
        ci = heldout.paired_bootstrap(a, b, resamples=args.bootstrap, seed=args.seed)
        per_seed = []
        for seed in seeds:
            sa = heldout.aggregate(values["ssl", weights, seed])
            sb = heldout.aggregate(values["no_ssl", weights, seed])
            per_seed.append({k: sa[k] - sb[k] for k in sa})
        report["heldout"][weights] = {
            key: {"ssl": ma[key], "no_ssl": mb[key], "diff": ma[key] - mb[key],
                  "ci95": ci[key], "seed_diffs": [d[key] for d in per_seed],
                  "ci95_seeds": t_interval([d[key] for d in per_seed])}
            for key, _, _ in ROWS}
    if args.puzzle_limit != 0:
        report["puzzles"] = measure_puzzles(args, models, device, seeds)
    models = {(arm, weights): m for (arm, weights, seed), m in models.items()
              if seed == args.seed}
    if args.games:
        pairings = schedule(read_openings(BOOK), args.games, args.seed)
        baselines = {"random": lambda: RandomPlayer("random", args.seed),
                     "material": lambda: MaterialPlayer("material", args.seed)}
        for (arm, weights), model in models.items():
            for name, make in baselines.items():
                net = NetPlayer(f"{arm}-{weights}", model, device)
                records = play_match(net, make(), pairings, max_plies=args.max_plies,
                                     progress=True)
                s = summarize(records)
                report["matches"][f"{arm}/{weights}/{name}"] = {
                    k: s[k] for k in ("games", "wins", "draws", "losses", "score")}
    return report


def measure_puzzles(args: argparse.Namespace, models: dict, device, seeds: list[int]) -> dict:
    """Each model's raw policy on the same puzzles (train.puzzles' rule): per weight set
    and figure (first move, full line) each arm's rate with its Wilson interval, the
    difference with a paired bootstrap interval over puzzles, and with several seeds each
    seed's difference and a t interval over them."""
    puzzle_list = list(read_puzzles(args.puzzles, limit=args.puzzle_limit))
    if not puzzle_list:
        raise SystemExit(f"no valid puzzle in {args.puzzles}")
    solved = {}  # (arm, weights, seed) -> {"first": (n,) bool, "line": (n,) bool}
    for key, model in models.items():
        player = NetPlayer(f"{key[0]}-{key[1]}", model, device)
        outcomes = score(puzzle_list, player.choose)
        solved[key] = {"first": np.array([o.first for o in outcomes]),
                       "line": np.array([o.solved for o in outcomes])}
    n, k = len(puzzle_list), len(seeds)
    out: dict = {"file": str(args.puzzles), "n": n}
    for weights in WEIGHTS:
        out[weights] = {}
        for figure in PUZZLE_FIGURES:
            # each puzzle's solves summed over the seeds: 0..k
            a = sum(solved["ssl", weights, s][figure].astype(np.int64) for s in seeds)
            b = sum(solved["no_ssl", weights, s][figure].astype(np.int64) for s in seeds)
            seed_diffs = [float(solved["ssl", weights, s][figure].mean()
                                - solved["no_ssl", weights, s][figure].mean()) for s in seeds]
            out[weights][figure] = {
                "ssl": a.sum() / (n * k), "ssl_ci95": wilson(int(a.sum()), n * k),
                "no_ssl": b.sum() / (n * k), "no_ssl_ci95": wilson(int(b.sum()), n * k),
                "diff": (a.sum() - b.sum()) / (n * k),
                "ci95": paired_bootstrap_rate(a / k, b / k, resamples=args.bootstrap,
                                              seed=args.seed),
                "seed_diffs": seed_diffs, "ci95_seeds": t_interval(seed_diffs)}
    return out


#: (key, label) of the puzzle table's figures
PUZZLE_FIGURES = {"first": "first move", "line": "full line"}


def paired_bootstrap_rate(a: np.ndarray, b: np.ndarray, *, resamples: int = 1000,
                          seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``mean(a) - mean(b)`` when the items (puzzles) are resampled
    with replacement, the same resample for both: the pairing takes out the items'
    own difficulty. NaN where there is nothing to resample."""
    n = len(a)
    if resamples < 1 or n == 0:
        return float("nan"), float("nan")
    d = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    rng = np.random.default_rng(seed)
    diffs = np.concatenate([rng.multinomial(n, np.full(n, 1.0 / n), size=min(64, resamples - i))
                            @ d / n for i in range(0, resamples, 64)])
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(diffs, [tail, 100.0 - tail])
    return float(lo), float(hi)


def pooled(runs: list[heldout.Values]) -> heldout.Values:
    """Each position's numerators and denominators summed over runs (seeds): a ratio of
    the sums is the runs' pooled figure, and a bootstrap over positions keeps each
    position's runs together."""
    return {k: (sum(r[k][0] for r in runs), sum(r[k][1] for r in runs)) for k in runs[0]}


#: Two-sided 95% quantiles of Student's t by degrees of freedom (1.96 beyond 30).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t_interval(diffs: list[float]) -> tuple[float, float] | None:
    """The 95% t interval of the mean of per-seed differences; None for one seed."""
    k = len(diffs)
    if k < 2:
        return None
    mean = sum(diffs) / k
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (k - 1))
    df = k - 1
    t = T95.get(df) or next((v for d, v in sorted(T95.items()) if d >= df), 1.96)
    return mean - t * sd / math.sqrt(k), mean + t * sd / math.sqrt(k)


# ----------------------------------------------------------------------------- the tables


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *map(line, rows)]


def _f(x: float, digits: int = 4, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def format_report(report: dict, train_seconds: dict) -> str:
    seeds = report.get("seeds", [report["seed"]])
    seed_text = (f"seed {seeds[0]}" if len(seeds) == 1 else
                 f"seeds {', '.join(map(str, seeds))} (figures pooled over them)")
    out = [f"make quality: {report['steps']} steps per arm, {seed_text}, shards "
           f"{report['shards']}, {report['val_positions']:,} validation positions"]
    if report.get("games"):
        out.append(f"matches: {report['games']} games per pairing from {BOOK.name}, each "
                   f"opening with both colours, ply cap {report['max_plies']} (then a draw)")
    if any(v is not None for v in train_seconds.values()):
        out.append("training time: " + ", ".join(
            f"{a} {s:.0f} s" if s is not None else f"{a} reused"
            for a, s in train_seconds.items()))
    rates = report["base_rates"]
    for weights in WEIGHTS:
        out += ["", f"held-out, {weights.upper() if weights == 'ema' else weights} weights"]
        rows = []
        for key, label, digits in ROWS:
            r = report["heldout"][weights][key]
            lo, hi = r["ci95"]
            task = key.removesuffix("_f1")
            row = [label, _f(rates[task], 4) if task in rates else "",
                   _f(r["ssl"], digits), _f(r["no_ssl"], digits),
                   _f(r["diff"], digits, True), f"[{_f(lo, digits, True)}, "
                   f"{_f(hi, digits, True)}]"]
            if len(seeds) > 1:
                slo, shi = r["ci95_seeds"]
                row += [" ".join(_f(d, digits, True) for d in r["seed_diffs"]),
                        f"[{_f(slo, digits, True)}, {_f(shi, digits, True)}]"]
            rows.append(row)
        header = ["metric", "base rate", "SSL", "no SSL", "SSL - no SSL", "95% CI"]
        if len(seeds) > 1:
            header += ["each seed", "95% CI over seeds"]
        out += _table(header, rows)
    if report.get("puzzles"):
        out += [""] + format_puzzles(report["puzzles"], seeds)
    if report["matches"]:
        out += ["", "match score (W-D-L) against the baselines, best legal policy move"
                + (f" (seed {seeds[0]}'s models)" if len(seeds) > 1 else "")]
        rows = []
        for arm in ARMS:
            for weights in WEIGHTS:
                cells = [f"{ARM_LABELS[arm]}, {weights}"]
                for name in ("random", "material"):
                    m = report["matches"][f"{arm}/{weights}/{name}"]
                    cells.append(f"{m['score']:.3f} ({m['wins']}-{m['draws']}-{m['losses']})")
                rows.append(cells)
        out += _table(["model", "vs random", "vs material"], rows)
    return "\n".join(out)


def _rate(row: dict, arm: str) -> str:
    lo, hi = row[f"{arm}_ci95"]
    return f"{_f(row[arm])} [{_f(lo)}, {_f(hi)}]"


def format_puzzles(puzzles: dict, seeds: list[int]) -> list[str]:
    pooled_text = f", solves pooled over {len(seeds)} seeds" if len(seeds) > 1 else ""
    out = [f"held-out puzzles: {puzzles['n']:,} from {Path(puzzles['file']).name}, the raw "
           f"policy{pooled_text}; first move and full line (train.puzzles), each with its "
           "95% Wilson interval; SSL - no SSL with a paired bootstrap over the puzzles"]
    rows = []
    for weights in WEIGHTS:
        for figure, label in PUZZLE_FIGURES.items():
            r = puzzles[weights][figure]
            lo, hi = r["ci95"]
            row = [f"{weights.upper() if weights == 'ema' else weights}, {label}",
                   _rate(r, "ssl"), _rate(r, "no_ssl"), _f(r["diff"], 4, True),
                   f"[{_f(lo, 4, True)}, {_f(hi, 4, True)}]"]
            if len(seeds) > 1:
                slo, shi = r["ci95_seeds"]
                row += [" ".join(_f(d, 4, True) for d in r["seed_diffs"]),
                        f"[{_f(slo, 4, True)}, {_f(shi, 4, True)}]"]
            rows.append(row)
    header = ["weights, figure", "SSL", "no SSL", "SSL - no SSL", "95% CI"]
    if len(seeds) > 1:
        header += ["each seed", "95% CI over seeds"]
    return out + _table(header, rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (Path(args.shards) / "manifest.json").is_file():
        print(f"error: no shards at {args.shards!r}: make shards first", file=sys.stderr)
        return 2
    seconds = {(ARM_LABELS[arm] if seed == args.seed else f"{ARM_LABELS[arm]} seed {seed}"):
               train_arm(args, arm, seed) for arm in ARMS for seed in seeds_of(args)}
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    report = measure(args)
    text = format_report(report, seconds)
    print(text)
    out = Path(args.out)
    (out / "quality.txt").write_text(text + "\n")
    (out / "quality.json").write_text(json.dumps(json_safe({**report, "train_seconds": seconds}),
                                                 indent=1) + "\n")
    print(f"\nwritten to {out / 'quality.txt'} and {out / 'quality.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
