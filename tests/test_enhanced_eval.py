"""python -m train.enhanced_eval on shards built from the sample data and a tiny model
trained on them (once per module, CPU)."""

from __future__ import annotations

import fcntl
import glob
import json
import math
import os
import random

import chess
import chess.pgn
import numpy as np
import pytest
import torch

from dataengine import policy, schema, views
from dataengine.build import build, read_val_zarr
from dataengine.traps import mating_moves, stalemating_moves
from labelers import MASK_NAMES, reference
from tests import naive
from train import checkpoint as ckpt
from train.config import load_run_config
from train.enhanced_eval import main
from train.evaluation import heldout
from train.evaluation.inputs import board_inputs
from train.evaluation.match import (
    GameBoard,
    elo_from_score,
    play_match,
    read_openings,
    schedule,
    summarize,
)
from train.evaluation.players import (
    MaterialPlayer,
    RandomPlayer,
    StockfishPlayer,
    find_stockfish,
    read_checkpoint,
)
from train.evaluation.search import puct_search
from train.expand import HALFMOVE_SCALE, SSL_MASKS, expand_inputs, from_numpy
from train.loader import read_shard
from train.losses import (
    add_counts,
    metrics_from_counts,
    policy_counts,
    policy_loss,
    ssl_counts,
    ssl_losses,
    value_loss,
)
from train.trainer import train

# Policy only (no SSL loss: 3x cheaper) at lr 3e-3, with a short EMA so that the EMA
# weights the evaluator loads have learnt too. 600 steps take ~16 s on one thread. Over
# 20 games with a 60-ply cap adjudicated on material, the greedy policy scored 0.80-1.00
# against `random` (95% Elo lower bound +111 or more) for 4 training seeds x 3 match
# seeds; 300 steps were not enough (0.53-0.81).
TRAIN = {"steps": 600, "lr": 0.003, "lr_warmup_steps": 20, "batch_size": 64,
         "ssl_weight": 0.0, "ema_decay": 0.9, "curriculum": "uniform", "save_every": 0,
         "tensorboard": False, "heartbeat_seconds": 0.0,
         "model.blocks": 1, "model.channels": 16, "loader.workers": 0}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Shards from the sample data and the tiny model, built once per test run: under
    pytest-xdist the workers share one directory of the run (behind a lock), since
    building and training in every worker would double this file's cost."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's directory, common to its workers
    path = base / "enhanced_eval"
    path.mkdir(exist_ok=True)
    with open(path / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "done").exists():
            build(naive.SAMPLE_INPUTS, path / "shards", quiet=True)
            train(load_run_config(None, {**TRAIN, "shards": str(path / "shards"),
                                         "checkpoint_out": str(path / "tiny.pt"),
                                         "run_dir": str(path / "runs")}))
            (path / "done").touch()
    return path


@pytest.fixture(scope="module")
def shards(workdir):
    return workdir / "shards"


@pytest.fixture(scope="module")
def model(workdir):
    return workdir / "tiny.pt"


@pytest.fixture(scope="module")
def val(shards):
    return read_val_zarr(shards / "val.zarr")


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- inputs


def test_board_inputs_equal_shard_planes(shards, val):
    """Boards rebuilt from shard records give the planes the records expand to: every
    en-passant record, every castling combination, both sides to move."""
    train_block = schema.concat_blocks([read_shard(p) for p in
                                        sorted(glob.glob(str(shards / "train" / "*.tar")))])
    rng = np.random.default_rng(0)
    n = schema.block_len(train_block)
    ep = np.flatnonzero(train_block["ep_file"] >= 0)
    _, per_castling = np.unique(train_block["castling"], return_index=True)
    picked = np.unique(np.concatenate([ep, per_castling, rng.choice(n, 1500, replace=False)]))
    assert len(ep) > 0 and len(per_castling) == 16
    for block in (schema.take(train_block, picked), val):
        boards = [views.real_board(block, i) for i in range(schema.block_len(block))]
        assert {b.turn for b in boards} == {chess.WHITE, chess.BLACK}
        want = expand_inputs(from_numpy(block))
        got = board_inputs(boards)
        assert torch.equal(got, want)


def test_board_inputs_of_played_positions():
    """En passant only when a capture is legal, and the halfmove clock, on real boards."""
    board = chess.Board("4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 3")  # exd6 legal
    pinned = chess.Board("4k3/8/8/K2pP2r/8/8/8/8 w - d6 0 3")  # exd6 would expose the king
    clock = chess.Board("8/8/4k3/8/8/4K3/8/7r b - - 37 120")
    x = board_inputs([board, pinned, clock])
    assert x[0, 16].sum() == 1 and x[0, 16, 5, 3] == 1  # d6
    assert x[1, 16].sum() == 0
    assert torch.allclose(x[2, 17], torch.full((8, 8), 37 / HALFMOVE_SCALE))
    assert x[2, 0:12].sum() == 3  # mirrored: our king, their king, their rook
    assert x[2, 5, 2, 4] == 1  # Black's king e6 -> canonical e3 (row 2 = rank 3)


# ----------------------------------------------------------------------------- held-out


def _slow_inputs(board: chess.Board) -> torch.Tensor:
    """The 19 input planes of one real board, square by square (train.expand's doc)."""
    c = reference.canonical(board)
    x = torch.zeros(19, 8, 8)
    for square, piece in c.piece_map().items():
        plane = piece.piece_type - 1 + (0 if piece.color == chess.WHITE else 6)
        x[plane, square // 8, square % 8] = 1
    rights = (c.has_kingside_castling_rights(chess.WHITE), c.has_queenside_castling_rights(
        chess.WHITE), c.has_kingside_castling_rights(chess.BLACK),
        c.has_queenside_castling_rights(chess.BLACK))
    for k, right in enumerate(rights):
        x[12 + k] = float(right)
    if c.ep_square is not None and c.has_legal_en_passant():
        x[16, c.ep_square // 8, c.ep_square % 8] = 1
    x[17] = min(board.halfmove_clock / 100, 1.0)
    x[18] = 1
    return x


def _logsumexp(xs) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(v - m) for v in xs))


def _bce(logit: float, truth: float) -> float:
    return max(logit, 0.0) - logit * truth + math.log1p(math.exp(-abs(logit)))


def _huber(e: float) -> float:
    return 0.5 * e * e if abs(e) <= 1 else abs(e) - 0.5


def _slow_position(net, block, i: int, teacher_mix: float) -> dict[str, tuple[float, float]]:
    """One position's metric numerators / denominators, from python-chess and
    labelers.reference (policy target: the move played, as the sample data has no
    teacher moves)."""
    board = views.real_board(block, i)
    stm = 1 if board.turn == chess.WHITE else -1
    with torch.no_grad():
        out = net(_slow_inputs(board).unsqueeze(0))
        heads = {k: v[0].double().tolist() for k, v in net.ssl_heads(out["features"]).items()}
    logits = out["policy"][0].double().tolist()
    value = float(out["value"][0])
    v: dict[str, tuple[float, float]] = {}

    move = views.target_move(block, i)
    if move is None:
        for k in ("policy_top1", "policy_top3", "policy_ce"):
            v[k] = (0.0, 0.0)
    else:
        target = policy.move_to_index(move, board.turn)
        rank = sorted(range(len(logits)), key=lambda j: -logits[j]).index(target)
        v["policy_top1"] = (float(rank < 1), 1.0)
        v["policy_top3"] = (float(rank < 3), 1.0)
        v["policy_ce"] = (_logsumexp(logits) - logits[target], 1.0)
    stalemating = {policy.move_to_index(m, board.turn) for m in stalemating_moves(board)}
    best = max(range(len(logits)), key=lambda j: logits[j])
    v["stalemate_top1"] = (float(best in stalemating), float(bool(stalemating)))
    mating = {policy.move_to_index(m, board.turn) for m in mating_moves(board)}
    v["mate_top1"] = (float(best in mating), float(bool(mating)))

    result, teacher = views.result_white(block, i), views.eval_white(block, i)
    weights, targets = [], []
    if result is not None:
        weights.append(1 - teacher_mix)
        targets.append(stm * result)
    if teacher is not None:
        cp, mate = teacher
        t = float(np.sign(stm * mate)) if mate else math.tanh(stm * cp * math.log(10) / 800)
        weights.append(teacher_mix)
        targets.append(t)
    if sum(weights) > 0:
        target = sum(w * t for w, t in zip(weights, targets, strict=True)) / sum(weights)
        v["value_mae"] = (abs(value - target), 1.0)
        v["value_huber"] = (_huber(value - target), 1.0)
    else:
        v["value_mae"] = v["value_huber"] = (0.0, 0.0)
    if result is None:
        v["wdl_acc"] = (0.0, 0.0)
    else:
        predicted = 1 if value > 1 / 3 else -1 if value < -1 / 3 else 0
        v["wdl_acc"] = (float(predicted == stm * result), 1.0)

    canon = reference.canonical(board)
    masks = reference.label_masks(canon)
    pieces = []
    for s in range(64):
        p = canon.piece_at(s)
        pieces.append(0 if p is None else p.piece_type + (0 if p.color == chess.WHITE else 6))
    control = [int(masks["control_us"] >> s & 1) + 2 * int(masks["control_them"] >> s & 1)
               for s in range(64)]
    for task, truth in (("piece", pieces), ("control", control)):
        logit = heads[task]  # [class][square]
        losses, correct = [], 0
        for s in range(64):
            column = [logit[k][s] for k in range(len(logit))]
            losses.append(_logsumexp(column) - column[truth[s]])
            correct += max(range(len(column)), key=lambda k: column[k]) == truth[s]
        v[f"ssl_{task}"] = (sum(losses) / 64, 1.0)
        v[f"{task}_acc"] = (float(correct), 64.0)
    for task in ("threat", "pin", "fork", "pawn_structure", "king_safety"):
        logit = heads[task]
        losses, tp, fp, fn = [], 0, 0, 0
        for k, mask in enumerate(SSL_MASKS[task]):
            bits = masks[MASK_NAMES[mask]]
            for s in range(64):
                truth = bits >> s & 1
                losses.append(_bce(logit[k][s], float(truth)))
                pred = logit[k][s] > 0
                tp += pred and truth
                fp += pred and not truth
                fn += (not pred) and truth
        v[f"ssl_{task}"] = (sum(losses) / len(losses), 1.0)
        v[f"{task}_f1"] = (2.0 * tp, 2.0 * tp + fp + fn)
    return v


def test_heldout_matches_slow_per_position_computation(model, val):
    """A few positions (mirrored and not, with and without result, teacher eval, move)
    one by one with python-chess against the batched per-position values."""
    f = val["flags"]
    wanted = [
        np.flatnonzero((f & schema.MIRRORED) != 0)[:2],
        np.flatnonzero((f & schema.MIRRORED) == 0)[:2],
        np.flatnonzero((f & schema.HAS_RESULT) == 0)[:2],
        np.flatnonzero(((f & schema.HAS_TEACHER_EVAL) != 0) & ((f & schema.HAS_RESULT) != 0))[:2],
        np.flatnonzero((f & schema.HAS_MOVE) == 0)[:1],
        np.flatnonzero(val["stalemate_moves"][:, 0] != schema.NO_MOVE)[:2],
        np.flatnonzero(val["mate_moves"][:, 0] != schema.NO_MOVE)[:2],
    ]
    picked = np.unique(np.concatenate(wanted))
    assert len(picked) >= 7
    block = schema.take(val, picked)
    net = read_net(model)
    mix = 0.3
    fast = heldout.position_values(net, block, torch.device("cpu"), batch_size=4,
                                   teacher_mix=mix, policy_from_teacher=True)
    slow = [_slow_position(net, block, i, mix) for i in range(len(picked))]
    for key in fast:
        for i in range(len(picked)):
            got = (fast[key][0][i], fast[key][1][i])
            assert got == pytest.approx(slow[i][key], rel=1e-4, abs=1e-5), (key, i)
    totals = heldout.aggregate(fast)
    for key, metric in heldout.METRIC_BY_KEY.items():
        num = sum(s[key][0] for s in slow)
        den = sum(s[key][1] for s in slow)
        want = num / den if den else metric.empty
        assert totals[key] == pytest.approx(want, rel=1e-4, abs=1e-6, nan_ok=True), key


def read_net(path):
    from train.evaluation.players import load_model

    return load_model(read_checkpoint(str(path)), torch.device("cpu")).net


def test_heldout_agrees_with_train_losses(model, val):
    """The totals equal the trainer's losses and train.losses' metric counts."""
    from train.expand import expand_targets

    net = read_net(model)
    values = heldout.position_values(net, val, torch.device("cpu"), batch_size=100,
                                     teacher_mix=0.5, policy_from_teacher=True)
    got = heldout.aggregate(values)
    batch = from_numpy(val)
    targets = expand_targets(batch, teacher_mix=0.5, policy_from_teacher=True)
    with torch.no_grad():
        out = net(expand_inputs(batch))
        heads = net.ssl_heads(out["features"])
    counts: dict = {}
    add_counts(counts, policy_counts(out["policy"], targets["policy"]))
    add_counts(counts, ssl_counts(heads, targets))
    rates = metrics_from_counts(counts)
    for key in ("policy_top1", "policy_top3", "piece_acc", "control_acc", "threat_f1",
                "pin_f1", "fork_f1", "pawn_structure_f1", "king_safety_f1"):
        assert got[key] == pytest.approx(rates[key], abs=1e-9), key
    assert got["policy_ce"] == pytest.approx(float(policy_loss(out["policy"],
                                                               targets["policy"])), rel=1e-5)
    assert got["value_huber"] == pytest.approx(float(value_loss(
        out["value"], targets["value"], targets["value_mask"])), rel=1e-5)
    for task, loss in ssl_losses(heads, targets).items():
        assert got[f"ssl_{task}"] == pytest.approx(float(loss), rel=1e-5), task


def test_bootstrap_is_paired_and_seeded():
    rng = np.random.default_rng(1)
    n = 400
    ones = np.ones(n)
    a = {"policy_top1": (rng.random(n).round(), ones), "pin_f1": (np.zeros(n), np.zeros(n))}
    b = {"policy_top1": (a["policy_top1"][0] * (rng.random(n) > 0.1), ones),
         "pin_f1": (np.zeros(n), np.zeros(n))}
    ci = heldout.paired_bootstrap(a, b, resamples=500, seed=3)
    assert ci == heldout.paired_bootstrap(a, b, resamples=500, seed=3)
    lo, hi = ci["policy_top1"]
    diff = heldout.aggregate(a)["policy_top1"] - heldout.aggregate(b)["policy_top1"]
    assert 0 < lo < diff < hi  # B is A with some hits removed: paired, so A - B > 0
    assert ci["pin_f1"] == (0.0, 0.0)  # nothing to find, nothing found: F1 1 for both
    assert heldout.paired_bootstrap(a, a, resamples=200, seed=0)["policy_top1"] == (0.0, 0.0)


# ----------------------------------------------------------------------------- matches


def test_self_match_is_exactly_even(model, shards, tmp_path, capsys):
    """A checkpoint against itself: identical metrics, zero differences, an Elo interval
    around 0 (colour-swapped pairs of deterministic games; the search plays here)."""
    report = tmp_path / "self.json"
    code, out, _ = run_cli(capsys, "--model-a", model, "--model-b", model, "--shards", shards,
                           "--bootstrap", 200, "--max-positions", 200, "--games", 4,
                           "--sims", 4, "--max-plies", 40, "--report", report, "--quiet")
    assert code == 0, out
    r = json.loads(report.read_text())
    held = r["heldout"]
    assert held["positions"] == 200
    assert held["metrics"]["A"] == held["metrics"]["B"]
    assert set(held["diff"].values()) == {0.0}
    assert all(ci == [0.0, 0.0] for ci in held["ci95"].values())
    m = r["match"]
    assert m["games"] == 4 and m["score"] == 0.5 and m["elo"] == 0.0
    assert m["elo_95"][0] <= 0.0 <= m["elo_95"][1]
    assert "policy top-1 accuracy" in out and "Elo A - B" in out
    assert r["players"]["A"]["name"] != r["players"]["B"]["name"]


@pytest.fixture(scope="module")
def random_match(model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("match")
    report, pgn = tmp / "r.json", tmp / "games.pgn"
    code = main(["--model-a", str(model), "--model-b", "random", "--no-heldout", "--games", "20",
                 "--max-plies", "60", "--adjudicate", "material", "--seed", "0",
                 "--pgn", str(pgn), "--report", str(report), "--quiet"])
    assert code == 0
    return json.loads(report.read_text()), pgn


def test_trained_model_beats_random(random_match):
    """20 games, a 60-ply cap adjudicated on material (3+ points ahead wins), seeded; the
    thresholds sit far below what every seed tried gave (see TRAIN)."""
    m, _ = random_match
    match = m["match"]
    assert match["games"] == 20
    assert match["score"] >= 0.65, match
    assert match["elo_95"][0] > 0, match


def test_pgn_parses_back_to_the_recorded_results(random_match):
    report, pgn = random_match
    games = []
    with open(pgn, encoding="utf-8") as f:
        while (game := chess.pgn.read_game(f)) is not None:
            games.append(game)
    recorded = report["match"]["games_list"]
    assert len(games) == len(recorded) == 20
    for game, rec in zip(games, recorded, strict=True):
        assert not game.errors
        h = game.headers
        assert (h["White"], h["Black"], h["Result"]) == (rec["white"], rec["black"],
                                                          rec["result"])
        assert h["Opening"] == rec["opening"] and h["Opening"] != "?"
        board = game.end().board()
        assert board.ply() == rec["plies"] == int(h["PlyCount"])
        if h["Termination"] == "adjudication":
            assert board.ply() == 60 and board.outcome(claim_draw=True) is None
        else:
            assert board.outcome(claim_draw=True).result() == h["Result"]
    # each opening twice, colours swapped
    assert [g.headers["Opening"] for g in games[::2]] == [g.headers["Opening"] for g in games[1::2]]
    assert all(games[i].headers["White"] == games[i + 1].headers["Black"] for i in range(0, 20, 2))
    results = {r["result"] for r in recorded}
    assert results <= {"1-0", "0-1", "1/2-1/2"}


def test_game_board_outcome_equals_python_chess():
    """The cheap claim check never misses what board.outcome(claim_draw=True) sees."""
    rng = random.Random(5)
    claims = 0
    starts = ["8/8/4k3/8/8/4K3/8/7R w - - 0 1", "8/8/4k3/8/8/4K3/8/7R w - - 90 60",
              chess.STARTING_FEN]
    for fen in starts * 3:
        gb = GameBoard(chess.Board(fen))
        for _ in range(120):
            want = gb.board.outcome(claim_draw=True)
            assert gb.outcome() == want
            if want is not None:
                claims += want.termination in (chess.Termination.THREEFOLD_REPETITION,
                                               chess.Termination.FIFTY_MOVES)
                break
            gb.push(rng.choice(list(gb.board.legal_moves)))
    shuffle = GameBoard()
    for uci in ["g1f3", "g8f6", "f3g1", "f6g8", "g1f3", "g8f6", "f3g1"]:
        assert shuffle.outcome() is None
        shuffle.push(chess.Move.from_uci(uci))
    # Black can claim: f6g8 repeats the start position a third time
    assert shuffle.outcome().termination == chess.Termination.THREEFOLD_REPETITION
    assert claims >= 1


def test_summary_elo_and_interval():
    records = play_match(MaterialPlayer(seed=1), RandomPlayer(seed=2),
                         schedule(read_openings(naive.SAMPLE / "openings_a.tsv"), 6, 0),
                         max_plies=30, adjudicate="material")
    s = summarize(records)
    assert s["wins"] + s["draws"] + s["losses"] == 6
    score = (s["wins"] + s["draws"] / 2) / 6
    var = (s["wins"] * (1 - score) ** 2 + s["draws"] * (0.5 - score) ** 2
           + s["losses"] * score ** 2) / 6
    half = 1.959963984540054 * math.sqrt(var / 6)
    assert s["score"] == pytest.approx(score)
    assert s["elo_95"][0] == pytest.approx(elo_from_score(max(0.0, score - half)))
    assert s["elo_95"][1] == pytest.approx(elo_from_score(min(1.0, score + half)))
    assert elo_from_score(0.75) == pytest.approx(400 * math.log10(3))
    assert elo_from_score(0.5) == 0.0 and elo_from_score(1.0) == math.inf


def test_puct_search_finds_mate_in_one():
    board = chess.Board("6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1")
    fen = board.fen()

    def uniform(boards):  # no knowledge at all: only the search finds the mate
        return np.zeros((len(boards), policy.N_POLICY)), np.zeros(len(boards))

    assert puct_search([board, board.copy()], uniform, sims=64) == [chess.Move.from_uci("a1a8")] * 2
    assert board.fen() == fen and not board.move_stack


def test_stockfish_baseline(capsys):
    if find_stockfish() is None:
        pytest.skip("no stockfish binary (Debian package `stockfish`: /usr/games/stockfish)")
    player = StockfishPlayer(nodes=200)
    try:
        board = chess.Board("6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1")
        assert player.choose([board]) == [chess.Move.from_uci("a1a8")]
    finally:
        player.close()
    code, out, _ = run_cli(capsys, "--model-a", "stockfish", "--model-b", "random", "--games", 2,
                           "--max-plies", 40, "--stockfish-nodes", 200, "--quiet")
    assert code == 0
    assert "held-out metrics: skipped (both players are baselines" in out


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_give_one_line_errors(model, shards, tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    state = ckpt.load(model)
    other_format = tmp_path / "v2.pt"
    ckpt.save(other_format, {**state, "input_format_version": 2})
    cases = [
        (["--model-a", tmp_path / "missing.pt", "--model-b", "random"], "checkpoint not found"),
        (["--model-a", garbage, "--model-b", "random"], "cannot load checkpoint"),
        (["--model-a", model, "--model-b", other_format], "input formats differ"),
        (["--model-a", model, "--model-b", "random", "--shards", tmp_path], "no validation split"),
        (["--model-a", "random", "--model-b", "material", "--games", 2,
          "--openings", tmp_path / "none.tsv"], "cannot read the opening book"),
        (["--model-a", "random", "--model-b", "material", "--games", 2,
          "--pgn", garbage / "games.pgn"], "cannot write"),
    ]
    for args, message in cases:
        code, out, err = run_cli(capsys, *args, "--quiet")
        assert code == 2, (args, out, err)
        assert err.startswith("error: ") and message in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
