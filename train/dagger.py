"""Positions the network reaches, labelled by Stockfish: DAgger data for the next run.

    python -m train.dagger --checkpoint checkpoints/pretrained.pt --out dagger.epd
        [--games 200] [--opponents random material] [--openings FILE.tsv ...]
        [--seed 1] [--nodes 1000] [--workers 2] [--max-plies 200] [--ema]

A network trained on engine games imitates the engine in the positions the engine
reaches; its own games go elsewhere (a won ending with four queens where the engine
would have mated with one) and there it has never seen the right move: it stalemates
or repeats (Ross, Gordon and Bagnell, "A reduction of imitation learning to no-regret
online learning", 2011: DAgger). This tool plays the checkpoint's best legal policy
move (raw weights unless ``--ema``), as ``train.enhanced_eval`` does, against each
baseline of ``--opponents`` in ``--games`` games from book openings (each line twice,
colours swapped; the baseline seeded with ``seed + k`` for the k-th opponent), then
asks Stockfish (one thread, ``--nodes`` per position, ``ucinewgame`` before each, so
an answer depends on the position alone) for the best move in every position where
the network was to move, each distinct position once, in the first game that reached
it.

The output is EPD, as ``python -m dataengine.selfplay --opponent random`` writes:
one line per position with ``bm``, ``ce`` (or ``dm``, mate in n) from the side to
move's view, ``hmvc``/``fmvn`` and ``id "dagger <opponent> s<seed> r<round>"`` (one
id per game: the build's split keeps a game's positions together); then ``# dagger
<opponent> round <n>: <termination> <result>`` ends the game. Add the file to the
build's input and train again. The file is written once, at the end, atomically (a
killed run leaves nothing and is run again; it takes minutes).

Use openings other than the evaluation's (``enhanced_eval`` plays ``openings_a.tsv``;
the default here is ``openings_b..e.tsv``), and seeds other than its (0), so that the
match that measures the next network is not played on the positions it was taught.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import chess

from dataengine.fileio import atomic_write
from dataengine.teacher import TeacherError, find_stockfish
from dataengine.teacher.engine import Analysis, analyse_all, answer_epd
from train.evaluation.match import GameRecord, play_match, read_openings, schedule, summarize
from train.evaluation.players import (
    EvalError,
    MaterialPlayer,
    NetPlayer,
    Player,
    RandomPlayer,
    check_input_formats,
    load_model,
    read_checkpoint,
)
from train.trainer import TrainingError, pick_device

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "dataengine" / "sample_data"
DEFAULT_BOOKS = tuple(SAMPLE_DATA / f"openings_{c}.tsv" for c in "bcde")
OPPONENTS = {"random": RandomPlayer, "material": MaterialPlayer}
TIMEOUT_S = 60.0
"""A search that has not answered in this long is killed and tried once more."""


@dataclass(frozen=True, slots=True)
class NetPosition:
    """A position where the network was to move, in the first game that reached it."""

    epd: str
    """Board, side, castling and en passant (EPD without operations): the key."""
    fen: str
    halfmove: int
    fullmove: int
    game_id: str


def game_id(opponent: str, seed: int, round_: int) -> str:
    return f"dagger {opponent} s{seed} r{round_}"


def net_positions(record: GameRecord, gid: str) -> list[NetPosition]:
    """The positions of `record` where the network (side A) was to move, book moves aside."""
    board = chess.Board()
    net = chess.WHITE if record.a_is_white else chess.BLACK
    book = len(record.opening.moves)
    out = []
    for ply, move in enumerate(record.moves):
        if ply >= book and board.turn == net:
            out.append(NetPosition(board.epd(), board.fen(), board.halfmove_clock,
                                   board.fullmove_number, gid))
        board.push(move)
    return out


def epd_line(position: NetPosition, answer: Analysis) -> str:
    """The EPD line of `position` with Stockfish's answer."""
    return answer_epd(chess.Board(position.fen), answer, position.game_id)


def play(net: Player, opponents: list[str], book: list, games: int, seed: int,
         max_plies: int, quiet: bool) -> dict[str, list[GameRecord]]:
    """The records of the games against each opponent."""
    played = {}
    for k, name in enumerate(opponents):
        opponent = OPPONENTS[name](name, seed + k)
        played[name] = play_match(net, opponent, schedule(book, games, seed + k),
                                  max_plies=max_plies, progress=not quiet)
    return played


def label(positions: list[NetPosition], engine: str, nodes: int, workers: int,
          quiet: bool) -> tuple[dict[str, Analysis], dict[str, str]]:
    """Stockfish's answers by position key, and the reasons of positions without one."""
    return analyse_all([(p.epd, p.fen) for p in positions], engine, nodes, workers,
                       timeout_s=TIMEOUT_S, quiet=quiet)


def write_epd(out: Path, played: dict[str, list[GameRecord]], seed: int,
              first: dict[str, list[NetPosition]], answers: dict[str, Analysis]) -> int:
    """Write the EPD atomically; returns the number of position lines."""
    lines, written = [], 0
    for opponent, records in played.items():
        for record in records:
            for position in first.get(game_id(opponent, seed, record.round), []):
                if position.epd in answers:
                    lines.append(epd_line(position, answers[position.epd]))
                    written += 1
            lines.append(f"# dagger {opponent} round {record.round}: "
                         f"{record.termination or 'unfinished'} {record.result}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, ("\n".join(lines) + "\n").encode())
    return written


def dagger(checkpoint: str, out: str | Path, *, games: int = 200,
           opponents: tuple[str, ...] = ("random", "material"),
           openings: list[str | Path] | None = None, seed: int = 1, nodes: int = 1000,
           workers: int = 2, max_plies: int = 200, ema: bool = False, device: str = "auto",
           engine: str | None = None, quiet: bool = False) -> dict:
    """Play, label and write; returns a summary (results per opponent, counts, seconds)."""
    if games < 1 or workers < 1 or nodes < 1 or max_plies < 1:
        raise EvalError(f"games, workers, nodes and max-plies must be >= 1, got {games}, "
                        f"{workers}, {nodes}, {max_plies}")
    unknown = [o for o in opponents if o not in OPPONENTS]
    if unknown or not opponents:
        raise EvalError(f"opponents must be some of {sorted(OPPONENTS)}, got {list(opponents)}")
    out = Path(out)
    if out.suffix != ".epd":
        raise EvalError(f"the output is EPD: name --out *.epd, not {out.name!r}")
    engine_path = find_stockfish(engine)
    book = [line for path in (openings or DEFAULT_BOOKS) for line in read_openings(path)]
    state = read_checkpoint(checkpoint)
    check_input_formats({"checkpoint": state})
    torch_device = pick_device(device)
    model = load_model(state, torch_device, ema=ema)
    net = NetPlayer("net", model, torch_device)

    t0 = time.perf_counter()
    played = play(net, list(opponents), book, games, seed, max_plies, quiet)
    t_play = time.perf_counter() - t0
    first: dict[str, list[NetPosition]] = {}
    seen: set[str] = set()
    reached = 0
    for opponent, records in played.items():
        for record in records:
            gid = game_id(opponent, seed, record.round)
            for position in net_positions(record, gid):
                reached += 1
                if position.epd not in seen:
                    seen.add(position.epd)
                    first.setdefault(gid, []).append(position)
    todo = [p for positions in first.values() for p in positions]
    answers, failed = label(todo, engine_path, nodes, workers, quiet)
    written = write_epd(out, played, seed, first, answers)

    results = {name: summarize(records) for name, records in played.items()}
    return {"checkpoint": checkpoint, "weights": model.weights,
            "games": sum(len(records) for records in played.values()),
            "results": {name: {k: r[k] for k in ("wins", "draws", "losses", "score",
                                                  "terminations")}
                        for name, r in results.items()},
            "positions_reached": reached, "distinct": len(todo), "written": written,
            "failed": len(failed), "seconds_play": round(t_play, 1),
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m train.dagger",
        description="Play a checkpoint against baselines and write the positions it reached, "
                    "with Stockfish's best move, as EPD (DAgger data for the next build).")
    ap.add_argument("--checkpoint", required=True, help="trainer checkpoint (.pt)")
    ap.add_argument("--out", required=True, help="EPD file to write (replaced atomically)")
    ap.add_argument("--games", type=int, default=200,
                    help="games against each opponent (default 200)")
    ap.add_argument("--opponents", nargs="+", default=["random", "material"],
                    choices=sorted(OPPONENTS), help="baselines to play (default: both)")
    ap.add_argument("--openings", nargs="+", default=None,
                    help="opening book TSVs (default: sample_data/openings_{b,c,d,e}.tsv; "
                         "the evaluation plays openings_a.tsv)")
    ap.add_argument("--seed", type=int, default=1,
                    help="opening order and baseline seeds (default 1; the evaluation uses 0)")
    ap.add_argument("--nodes", type=int, default=1000,
                    help="Stockfish nodes per position (default 1000)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="Stockfish processes (default: all cores)")
    ap.add_argument("--max-plies", type=int, default=200,
                    help="games end (unfinished) at this ply, book moves included (default 200)")
    ap.add_argument("--ema", action="store_true",
                    help="play the EMA weights (default: the raw weights, which the targets use)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    ap.add_argument("--engine", default=None,
                    help="Stockfish binary (default: stockfish on PATH or /usr/games/stockfish)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    args = ap.parse_args(argv)
    try:
        summary = dagger(args.checkpoint, args.out, games=args.games,
                         opponents=tuple(args.opponents), openings=args.openings,
                         seed=args.seed, nodes=args.nodes, workers=args.workers,
                         max_plies=args.max_plies, ema=args.ema, device=args.device,
                         engine=args.engine, quiet=args.quiet)
    except (EvalError, TeacherError, TrainingError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        s = summary
        print(f"{args.out}: {s['written']} positions ({s['distinct']} distinct of "
              f"{s['positions_reached']} reached, {s['failed']} without an answer) from "
              f"{s['games']} games of the {s['weights']} weights of {s['checkpoint']} in "
              f"{s['seconds']:.1f} s ({s['seconds_play']:.1f} s playing)")
        for name, r in s["results"].items():
            print(f"  vs {name}: {r['wins']}-{r['draws']}-{r['losses']} (W-D-L, score "
                  f"{r['score']:.3f}); endings {r['terminations']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
