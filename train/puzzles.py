"""Lichess puzzle benchmark: first-move and full-line accuracy of a checkpoint, with 95%
intervals, overall, by rating band and by theme, for the raw policy and for searches.

    python -m train.puzzles CKPT [PUZZLES.csv|.csv.zst] [--sims 100,400] [--limit K]
    make puzzles CKPT=checkpoints/pretrained.pt ARGS="--sims 100,400"

The scoring rule is searchless_chess's (Ruoss et al., 2024): a puzzle's FEN is the
position *before* the opponent's setup move ``Moves[0]``; then the solver plays
``Moves[1]``, the opponent ``Moves[2]`` (taken from the solution), and so on. Every one
of the solver's moves must match the solution, except that any move that checkmates is
accepted, and solves the puzzle there. *First move*: the solver's first move is right
(matches or mates); *full line*: every solver move is.

A solver is any ``choose(boards) -> moves`` (one legal move per board); :func:`score`
advances all puzzles of a batch together, one solver move at a time, so the raw policy
scores a thousand puzzles in a few network calls and a search batches the leaves of all
of them. The file is streamed (the full 5M-row database works, plain or ``.zst``/``.gz``/
``.bz2``) through the data engine's CSV reader; malformed rows are skipped and counted
with their reason. The default set, ``dataengine/heldout/lichess_puzzles_heldout.csv``,
is held out of training (``tests/test_heldout.py``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import chess

from dataengine.readers.base import ReaderError, Skip, _clip, _open
from dataengine.readers.base import _table as _csv_rows
from dataengine.readers.puzzles import puzzle_start

__all__ = [
    "BANDS",
    "DEFAULT_PUZZLES",
    "Chooser",
    "Outcome",
    "Puzzle",
    "PuzzleFileError",
    "Tally",
    "iter_puzzles",
    "main",
    "rating_band",
    "read_puzzles",
    "score",
    "wilson",
]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PUZZLES = REPO / "dataengine" / "heldout" / "lichess_puzzles_heldout.csv"

#: Columns the benchmark reads (the file may have more, in any order).
COLUMNS = ("PuzzleId", "FEN", "Moves", "Rating", "Themes")

#: Rating bands: (label, lowest rating in it); a rating belongs to the last band whose
#: lowest rating it reaches.
BANDS: tuple[tuple[str, int], ...] = (
    ("<1000", -(1 << 30)), ("1000-1499", 1000), ("1500-1999", 1500), ("2000-2499", 2000),
    (">=2500", 2500),
)

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054

Chooser = Callable[[list[chess.Board]], list[chess.Move]]
"""One legal move for each board (all with the solver to move)."""


class PuzzleFileError(RuntimeError):
    """The puzzle file cannot be used at all (explained in one line): exit status 2."""


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Puzzle:
    """One puzzle row, its whole line checked legal."""

    puzzle_id: str
    fen: str
    """The position before the opponent's setup move."""
    moves: tuple[chess.Move, ...]
    """``Moves``: the setup move, then the solver's and the opponent's in turn."""
    rating: int
    themes: tuple[str, ...]
    line: int = 0
    """1-based line of the file (0 when made by hand)."""

    def board(self) -> chess.Board:
        """The board the solver first moves in: the FEN with the setup move pushed (kept in
        the move stack, as the history a search sees)."""
        board = chess.Board(self.fen)
        board.push(self.moves[0])
        return board

    @property
    def solver_moves(self) -> tuple[chess.Move, ...]:
        return self.moves[1::2]

    @classmethod
    def from_uci(cls, fen: str, moves: str, rating: int = 1500, themes: str = "",
                 puzzle_id: str = "hand") -> Puzzle:
        """A puzzle made by hand (tests, examples); raises ValueError on a bad one."""
        parsed = parse_row(puzzle_id, fen, moves, str(rating), themes, "<hand>", 0)
        if isinstance(parsed, Skip):
            raise ValueError(parsed.detail)
        return parsed


def parse_row(puzzle_id: str, fen: str, moves_text: str, rating_text: str, themes: str,
              path: str, line: int) -> Puzzle | Skip:
    """A row's fields -> a Puzzle, or a Skip with the reader's reason keys (``bad_rating``,
    ``bad_fen``, ``invalid_position``, ``no_moves``, ``bad_move``, ``illegal_move``)."""
    what = f"puzzle {puzzle_id!r}: "
    start = puzzle_start(puzzle_id, fen, moves_text, rating_text, path, line)
    if isinstance(start, Skip):
        return start
    rating, board, ucis = start
    moves = []
    for ply, uci in enumerate(ucis):
        who = "setup move" if ply == 0 else f"move {ply + 1}"
        try:
            move = board.parse_uci(uci)
        except chess.IllegalMoveError:
            return Skip("illegal_move", path, line,
                        _clip(f"{what}{who} {uci!r} is illegal in {board.fen()!r}"))
        except ValueError:
            return Skip("bad_move", path, line, _clip(f"{what}{who} {uci!r} is not UCI"))
        if not move:
            return Skip("bad_move", path, line, _clip(f"{what}{who} is a null move"))
        moves.append(move)
        board.push(move)
    return Puzzle(puzzle_id, fen, tuple(moves), rating, tuple(themes.split()), line)


def iter_puzzles(path: str | os.PathLike) -> Iterator[Puzzle | Skip]:
    """Every row of a Lichess puzzle CSV (plain or compressed), in file order, as a
    :class:`Puzzle` or a :class:`Skip`; lazily, one row at a time.

    Raises :class:`PuzzleFileError` for a missing or unreadable file and for a header
    without the needed columns (naming the columns found), before the first row.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PuzzleFileError(f"puzzle file not found: {path!r}")
    try:
        _open(path).close()
    except ReaderError as e:
        raise PuzzleFileError(str(e)) from None
    rows = _csv_rows(path, 0, None, COLUMNS, ",")
    first = next(rows, None)
    if isinstance(first, Skip) and first.line == 1 and first.reason in ("bad_columns", "empty",
                                                                         "bad_encoding"):
        raise PuzzleFileError(_header_problem(path, first))
    rows = itertools.chain([first] if first is not None else [], rows)
    return (_puzzle_or_skip(path, row) for row in rows)


def _puzzle_or_skip(path: str, row) -> Puzzle | Skip:
    if isinstance(row, Skip):
        return row
    line, fields = row
    return parse_row(*fields, path, line)


def _header_problem(path: str, skip: Skip) -> str:
    if skip.reason == "empty":
        return f"{path}: the file is empty (expected a Lichess puzzle CSV header)"
    if skip.reason == "bad_encoding":
        return f"{path}: the header is not UTF-8 ({skip.detail})"
    try:
        with _open(path) as f:
            header = f.readline(4096).decode("utf-8", "replace").strip().lstrip("\ufeff")
    except (OSError, EOFError):
        header = ""
    found = [c.strip() for c in header.split(",")]
    missing = [c for c in COLUMNS if c not in found]
    shown = ", ".join(found[:12]) + (", ..." if len(found) > 12 else "")
    return (f"{path}: not a Lichess puzzle CSV: the header lacks {', '.join(missing)} "
            f"(columns found: {shown})")


def read_puzzles(path: str | os.PathLike, *, limit: int | None = None,
                 sample: int | None = None, seed: int = 0,
                 skipped: Counter | None = None, examples: list[Skip] | None = None,
                 progress: bool = False) -> Iterator[Puzzle]:
    """The valid puzzles of ``path``, lazily: all of them, the first ``limit``, or a
    uniform ``sample`` of that many drawn with ``seed`` (reservoir sampling: one pass
    over the file before the first is returned, with a progress bar if ``progress``;
    ``sample`` puzzles in memory, returned in file order). Skipped rows are counted by
    reason into ``skipped`` and the first few kept in ``examples``."""
    rows = iter_puzzles(path)
    if sample is not None and progress:
        from dataengine.progress import progress as bar

        rows = bar(rows, desc="sampling", unit="row")

    def valid() -> Iterator[Puzzle]:
        for item in rows:
            if isinstance(item, Skip):
                if skipped is not None:
                    skipped[item.reason] += 1
                if examples is not None and len(examples) < 5:
                    examples.append(item)
                continue
            yield item

    if sample is None:
        if limit is None:
            return valid()
        return _first(valid(), limit)
    return iter(_reservoir(valid(), sample, seed))


def _first(items: Iterator[Puzzle], k: int) -> Iterator[Puzzle]:
    if k <= 0:
        return
    for i, item in enumerate(items):
        yield item
        if i + 1 >= k:
            return


def _reservoir(items: Iterable[Puzzle], k: int, seed: int) -> list[Puzzle]:
    rng = random.Random(seed)
    kept: list[tuple[int, Puzzle]] = []
    for i, item in enumerate(items):
        if i < k:
            kept.append((i, item))
        else:
            j = rng.randrange(i + 1)
            if j < k:
                kept[j] = (i, item)
    return [p for _, p in sorted(kept, key=lambda x: x[0])]


# ----------------------------------------------------------------------------- scoring


@dataclass(slots=True)
class Outcome:
    """How a solver did on one puzzle."""

    first: bool
    """The first solver move was right (the solution's, or a mate)."""
    solved: bool
    """Every solver move was right (the line ended, or a mate ended it)."""
    played: list[chess.Move] = field(default_factory=list)
    """The solver's moves, the wrong one (if any) last."""
    illegal: bool = False
    """The solver returned an illegal move (counted as wrong)."""


def score(puzzles: Sequence[Puzzle], choose: Chooser) -> list[Outcome]:
    """Play every puzzle's line against ``choose``, all puzzles together: each round asks
    ``choose`` once for the boards of every puzzle still going (one solver move each)."""
    boards = [p.board() for p in puzzles]
    outcomes = [Outcome(first=False, solved=False) for _ in puzzles]
    ply = [1] * len(puzzles)  # index into Puzzle.moves of each puzzle's next solver move
    active = list(range(len(puzzles)))
    while active:
        moves = choose([boards[i] for i in active])
        if len(moves) != len(active):
            raise ValueError(f"the solver returned {len(moves)} moves for {len(active)} boards")
        still = []
        for i, move in zip(active, moves, strict=True):
            puzzle, board, out = puzzles[i], boards[i], outcomes[i]
            out.played.append(move)
            right = puzzle.moves[ply[i]]
            if move is None or not board.is_legal(move):
                out.illegal = True
                continue
            board.push(move)
            mate = board.is_checkmate()
            if move != right and not mate:
                continue
            if ply[i] == 1:
                out.first = True
            if mate or ply[i] + 1 >= len(puzzle.moves):
                out.solved = True
                continue
            board.push(puzzle.moves[ply[i] + 1])  # the opponent's reply, from the solution
            ply[i] += 2
            if ply[i] >= len(puzzle.moves):  # the line ends with the opponent's move
                out.solved = True
                continue
            still.append(i)
        active = still
    return outcomes


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (95% by default); (0, 1) when n is 0.

    >>> [round(x, 4) for x in wilson(8, 10)]
    [0.4902, 0.9433]
    """
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rating_band(rating: int) -> str:
    """The label of the band of :data:`BANDS` that ``rating`` falls in.

    >>> rating_band(999), rating_band(1000), rating_band(2499), rating_band(2500)
    ('<1000', '1000-1499', '2000-2499', '>=2500')
    """
    label = BANDS[0][0]
    for name, low in BANDS:
        if rating >= low:
            label = name
    return label


@dataclass
class Counts:
    n: int = 0
    first: int = 0
    line: int = 0

    def add(self, outcome: Outcome) -> None:
        self.n += 1
        self.first += outcome.first
        self.line += outcome.solved

    def summary(self) -> dict:
        return {"n": self.n,
                "first": self.first, "first_rate": self.first / self.n if self.n else None,
                "first_ci95": list(wilson(self.first, self.n)),
                "line": self.line, "line_rate": self.line / self.n if self.n else None,
                "line_ci95": list(wilson(self.line, self.n))}


@dataclass
class Tally:
    """One solver's outcomes, counted overall, by rating band and by theme."""

    overall: Counts = field(default_factory=Counts)
    bands: dict[str, Counts] = field(default_factory=lambda: {b: Counts() for b, _ in BANDS})
    themes: dict[str, Counts] = field(default_factory=dict)
    illegal: int = 0
    seconds: float = 0.0

    def add(self, puzzle: Puzzle, outcome: Outcome) -> None:
        self.overall.add(outcome)
        self.bands[rating_band(puzzle.rating)].add(outcome)
        for theme in puzzle.themes:
            self.themes.setdefault(theme, Counts()).add(outcome)
        self.illegal += outcome.illegal

    def summary(self, top_themes: int | None = None) -> dict:
        themes = sorted(self.themes.items(), key=lambda kv: (-kv[1].n, kv[0]))
        if top_themes is not None:
            themes = themes[:top_themes]
        return {"overall": self.overall.summary(),
                "bands": {b: c.summary() for b, c in self.bands.items()},
                "themes": {t: c.summary() for t, c in themes},
                "illegal_moves": self.illegal, "seconds": self.seconds,
                "puzzles_per_second": self.overall.n / self.seconds if self.seconds else None}


def chunks(items: Iterable[Puzzle], size: int) -> Iterator[list[Puzzle]]:
    batch: list[Puzzle] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(puzzles: Iterable[Puzzle], solvers: dict[str, Chooser], *, chunk: int = 512,
        total: int | None = None, progress: bool = True) -> dict[str, Tally]:
    """Score a stream of puzzles with every solver, ``chunk`` puzzles at a time (each
    chunk read once and scored by every solver, then dropped)."""
    from dataengine.progress import progress as bar

    tallies = {name: Tally() for name in solvers}
    # one bar: a chunk counts once every solver has scored it
    with bar(total=total, desc="puzzles", unit="puzzle", disable=not progress,
             dynamic_ncols=True) as shown:
        for batch in chunks(puzzles, chunk):
            for name, choose in solvers.items():
                t0 = time.perf_counter()
                outcomes = score(batch, choose)
                tallies[name].seconds += time.perf_counter() - t0
                for puzzle, outcome in zip(batch, outcomes, strict=True):
                    tallies[name].add(puzzle, outcome)
            shown.update(len(batch))
            shown.set_postfix_str(", ".join(
                f"{name} {t.overall.first / t.overall.n:.3f}/{t.overall.line / t.overall.n:.3f}"
                for name, t in tallies.items()))
    return tallies


# ----------------------------------------------------------------------------- the report


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}"


def _cell(s: dict, key: str) -> str:
    lo, hi = s[f"{key}_ci95"]
    return f"{_pct(s[f'{key}_rate'])} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *map(line, rows)]


def format_report(report: dict) -> str:
    solvers = report["solvers"]
    names = list(solvers)
    out = [f"puzzles: {report['puzzles']:,} from {report['file']} ({report['selection']})"]
    if report.get("model"):
        out.append(f"model: {report['model']}")
    skipped = report.get("skipped") or {}
    out.append("skipped rows: " + (", ".join(f"{k} {v:,}" for k, v in sorted(skipped.items()))
                                   if skipped else "none"))
    out += ["", "accuracy in % [95% Wilson interval]; first move / full line "
                "(searchless_chess's rule: the solution's replies, any mating move accepted)"]
    rows = []
    for name in names:
        s = solvers[name]
        o = s["overall"]
        pps = s.get("puzzles_per_second")
        rows.append([name, f"{o['n']:,}", _cell(o, "first"), _cell(o, "line"),
                     f"{pps:,.1f}" if pps else "-"])
    out += _text_table(["solver", "puzzles", "first move", "full line", "puzzles/s"], rows)
    for what, key in (("rating band", "bands"), ("theme", "themes")):
        groups = list(solvers[names[0]][key])
        if not groups:
            continue
        title = f"by {what}" if key == "bands" else \
            f"by theme (the {len(groups)} most frequent; a puzzle has several)"
        header = [what, "n"] + [f"{n} {k}" for n in names for k in ("first", "line")]
        rows = []
        for g in groups:
            n = solvers[names[0]][key][g]["n"]
            if n == 0:
                continue
            row = [g, f"{n:,}"]
            for name in names:
                s = solvers[name][key][g]
                row += [_cell(s, "first"), _cell(s, "line")]
            rows.append(row)
        out += ["", title] + _text_table(header, rows)
    illegal = {n: s["illegal_moves"] for n, s in solvers.items() if s["illegal_moves"]}
    if illegal:
        out += ["", "ILLEGAL MOVES returned (counted as wrong): "
                + ", ".join(f"{n} {k}" for n, k in illegal.items())]
    return "\n".join(out)


# ----------------------------------------------------------------------------- command line


def parse_sims(text: str) -> list[int]:
    try:
        sims = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sims wants node counts like 100,400, got {text!r}") from None
    if any(s < 0 for s in sims):
        raise argparse.ArgumentTypeError(f"--sims: node counts must be >= 0, got {text!r}")
    return sorted({s for s in sims if s > 0})


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m train.puzzles", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="trainer checkpoint (.pt)")
    ap.add_argument("puzzles", nargs="?", default=str(DEFAULT_PUZZLES.relative_to(REPO)),
                    help="Lichess puzzle CSV, plain or .zst/.gz/.bz2 (default: the held-out "
                         "set, %(default)s)")
    ap.add_argument("--sims", type=parse_sims, default=[100],
                    help="search node counts, comma separated, each scored beside the raw "
                         "policy (default 100; 0 or '' for the policy only)")
    ap.add_argument("--limit", type=int, default=None,
                    help="score the first K valid puzzles of the file")
    ap.add_argument("--sample", type=int, default=None,
                    help="score a uniform sample of K valid puzzles (seeded by --seed; reads "
                         "the whole file)")
    ap.add_argument("--seed", type=int, default=0, help="seed of --sample")
    ap.add_argument("--weights", choices=("ema", "raw"), default="ema")
    ap.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--cpuct", type=float, default=None, help="search: PUCT constant")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="search: leaves per network call of each search")
    ap.add_argument("--chunk", type=int, default=256,
                    help="puzzles advanced together (one network call per round of the "
                         "policy; the searches of a chunk run in lockstep)")
    ap.add_argument("--themes", type=int, default=15, help="themes listed (most frequent)")
    ap.add_argument("--report", default=None, help="write every figure to this JSON file")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def make_solvers(args: argparse.Namespace) -> tuple[dict[str, Chooser], str, dict]:
    """The checkpoint's solvers (``policy``, then ``search N`` for each --sims), its
    description and the search settings."""
    from train.engine.net import Evaluator
    from train.engine.search import SearchConfig, search_many
    from train.trainer import pick_device

    device = str(pick_device(args.device))
    ev = Evaluator.from_checkpoint(args.checkpoint, device=device, weights=args.weights,
                                   threads=args.threads)
    overrides = {k: v for k, v in (("cpuct", args.cpuct), ("batch_size", args.batch_size))
                 if v is not None}
    config = SearchConfig(**overrides)
    solvers: dict[str, Chooser] = {"policy": ev.policy_moves}

    def searcher(nodes: int) -> Chooser:
        return lambda boards: [r.move for r in search_many(ev, boards, nodes, config)]

    for nodes in args.sims:
        solvers[f"search {nodes}"] = searcher(nodes)
    settings = {"cpuct": config.cpuct, "fpu_reduction": config.fpu_reduction,
                "batch_size": config.batch_size, "virtual_loss": config.virtual_loss}
    return solvers, ev.description, settings


def evaluate(args: argparse.Namespace) -> dict:
    from train.evaluation.players import EvalError

    if not Path(args.checkpoint).is_file():
        raise PuzzleFileError(f"checkpoint not found: {args.checkpoint!r}")
    skipped: Counter = Counter()
    examples: list[Skip] = []
    puzzles = read_puzzles(args.puzzles, limit=args.limit, sample=args.sample, seed=args.seed,
                           skipped=skipped, examples=examples,
                           progress=not args.no_progress)  # checks the header first
    first = next(puzzles, None)  # no valid puzzle: say so before loading the model
    if first is None:
        reasons = ", ".join(f"{k} {v}" for k, v in skipped.items()) or "no rows"
        raise PuzzleFileError(f"{args.puzzles}: no valid puzzle ({reasons})")
    puzzles = itertools.chain([first], puzzles)
    try:
        solvers, description, settings = make_solvers(args)
    except (EvalError, ValueError) as e:
        raise PuzzleFileError(str(e)) from None
    if args.sample is not None:
        selection, total = f"a uniform sample of {args.sample:,}, seed {args.seed}", args.sample
    elif args.limit is not None:
        selection, total = f"the first {args.limit:,}", args.limit
    else:
        selection, total = "all", None
    tallies = run(puzzles, solvers, chunk=args.chunk, total=total,
                  progress=not args.no_progress)
    n = next(iter(tallies.values())).overall.n
    return {"file": str(args.puzzles), "checkpoint": str(args.checkpoint),
            "model": description, "weights": args.weights, "selection": selection,
            "puzzles": n, "skipped": dict(skipped),
            "skip_examples": [f"{s.reason} line {s.line}: {s.detail}" for s in examples],
            "search": settings,
            "solvers": {name: {"nodes": 0 if name == "policy" else int(name.split()[1]),
                               **t.summary(args.themes)} for name, t in tallies.items()}}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for flag in ("limit", "sample"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            print(f"error: --{flag} must be >= 1, got {value}", file=sys.stderr)
            return 2
    if args.limit is not None and args.sample is not None:
        print("error: --limit and --sample exclude each other", file=sys.stderr)
        return 2
    try:
        report = evaluate(args)
    except PuzzleFileError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(format_report(report))
    for example in report["skip_examples"]:
        print(f"  skipped: {example}")
    if args.report:
        from train.evaluation.report import json_safe

        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(json_safe(report), indent=1) + "\n")
        print(f"report written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
