"""python -m train.gauntlet: real games with Stockfish, the checkpoint engine, and fake
engines that break the rules (illegal moves, silence, crashes, slowness)."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import textwrap

import chess
import chess.pgn
import pytest

from train.evaluation.match import GameBoard
from train.evaluation.players import find_stockfish
from train.gauntlet import (
    GauntletError,
    _loss,
    game_over,
    main,
    parse_player,
    parse_tc,
)

STOCKFISH = find_stockfish()
needs_stockfish = pytest.mark.skipif(STOCKFISH is None, reason="no stockfish binary "
                                     "(Debian package `stockfish`: /usr/games/stockfish)")

# A UCI engine in a few lines: it logs every command to LOG and answers `go` as MODE says.
FAKE = textwrap.dedent("""\
    import sys, time
    import chess
    mode, log = sys.argv[1], open(sys.argv[2], "a")
    board = chess.Board()
    for line in sys.stdin:
        log.write(line); log.flush()
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "uci":
            print("id name fake-" + mode); print("uciok", flush=True)
        elif cmd[0] == "isready":
            print("readyok", flush=True)
        elif cmd[0] == "position":
            board = chess.Board()
            if "moves" in cmd:
                for uci in cmd[cmd.index("moves") + 1:]:
                    board.push_uci(uci)
        elif cmd[0] == "go":
            if mode == "illegal":
                print("bestmove a1c4", flush=True)  # no piece ever moves so
            elif mode == "none":
                print("bestmove (none)", flush=True)
            elif mode == "crash":
                sys.exit(3)
            elif mode == "hang":
                pass
            else:
                if mode == "slow":
                    time.sleep(0.15)
                print("bestmove " + next(iter(board.legal_moves)).uci(), flush=True)
        elif cmd[0] == "quit":
            break
    """)


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE)

    def spec(mode: str) -> tuple[str, str]:
        log = tmp_path / f"{mode}.log"
        return f"cmd='{sys.executable} {script} {mode} {log}' name=fake-{mode}", str(log)

    return spec


def run(capsys, tmp_path, *args) -> tuple[int, str, str, dict | None, list[chess.pgn.Game]]:
    pgn, report = tmp_path / "games.pgn", tmp_path / "report.json"
    code = main([*map(str, args), "--pgn", str(pgn), "--report", str(report)])
    out, err = capsys.readouterr()
    games = []
    if pgn.exists():
        with open(pgn) as f:
            while (game := chess.pgn.read_game(f)) is not None:
                games.append(game)
    return code, out, err, json.loads(report.read_text()) if code != 2 else None, games


def check_counts(report: dict) -> None:
    """The report's counts add up, per opponent and in total."""
    total = report["total"]
    for row in [*report["opponents"], total]:
        assert row["wins"] + row["draws"] + row["losses"] == row["games"]
        assert row["points"] == row["wins"] + 0.5 * row["draws"]
        assert sum(row["terminations"].values()) == row["games"]
    for key in ("games", "wins", "draws", "losses", "adjudicated"):
        assert total[key] == sum(row[key] for row in report["opponents"])
    assert report["games"] == report["games_planned"] == total["games"]
    assert len(report["games_list"]) == total["games"]


@needs_stockfish
def test_stockfish_levels_by_nodes(capsys, tmp_path):
    # a full-strength Stockfish at 64 nodes against UCI_Elo 1350 (both capped by nodes)
    code, out, err, report, games = run(
        capsys, tmp_path, "--engine", "cmd=/usr/games/stockfish name=sf-n64 nodes=64",
        "--stockfish", STOCKFISH, "--stockfish-elo", "1350", "--games", 4, "--nodes", 300,
        "--concurrency", 2, "--max-plies", 200)
    assert code == 0, err
    check_counts(report)
    assert report["total"]["time_forfeits"] == {"candidate": 0, "opponent": 0}
    assert report["total"]["illegal_moves"] == {"candidate": 0, "opponent": 0}
    assert len(games) == 4
    for g in games:
        assert g.headers["Result"] in ("1-0", "0-1", "1/2-1/2")
        assert g.headers["TimeControl"] == "-"
        assert {g.headers["White"], g.headers["Black"]} == {"sf-n64", "sf1350"}
        assert g.headers["Opening"] != "?"
        board = g.end().board()
        if g.headers["Termination"] == "normal":  # the rules ended it, on the board
            assert board.is_game_over() or board.halfmove_clock >= 100 or board.is_repetition(3)
    # each opening twice, colours swapped
    pairs = [(g.headers["Opening"], g.headers["White"]) for g in games]
    assert len(set(pairs)) == 4 and len({o for o, _ in pairs}) == 2
    cand = report["elo"]["ratings"]["sf-n64"]
    assert cand["games"] == 4 and cand["text"]
    assert "sf1350" not in report["elo"]["ratings"]  # the anchor is not fitted
    assert "Elo, fitted to all 4 games" in out and "sf-n64" in out
    assert err.count("] #") == 4  # one progress line a game


@needs_stockfish
def test_clock_games(capsys, tmp_path):
    code, out, err, report, games = run(
        capsys, tmp_path, "--engine", "cmd=/usr/games/stockfish name=sf-n64 nodes=64",
        "--stockfish", STOCKFISH, "--stockfish-elo", "1350", "--opponent", "random",
        "--games", 2, "--tc", "1+0.1", "--move-overhead", 200, "--max-plies", 50,
        "--concurrency", 2, "--quiet")
    assert code == 0, err
    check_counts(report)
    assert report["total"]["time_forfeits"] == {"candidate": 0, "opponent": 0}
    assert report["settings"]["tc"] == "1+0.1"
    assert len(games) == 4 and err == ""
    for g in games:
        assert g.headers["TimeControl"] == "1+0.1"
        clocks = [node.clock() for node in g.mainline()][-10:]  # engine moves carry %clk
        assert all(c is not None and 0 <= c <= 1 + 0.1 * 50 for c in clocks)
    # random met only the candidate: fitted through it, jointly
    assert set(report["elo"]["ratings"]) == {"sf-n64", "random"}


def test_rule_breakers_lose_and_are_counted(capsys, tmp_path, fake):
    illegal, _ = fake("illegal")
    code, out, err, report, games = run(
        capsys, tmp_path, "--engine", illegal, "--stockfish-elo", "", "--opponent", "random",
        "--opponent", fake("none")[0], "--opponent", fake("crash")[0], "--games", 2,
        "--nodes", 1, "--concurrency", 2, "--quiet")
    assert code == 0, err
    check_counts(report)
    rows = {row["opponent"]: row for row in report["opponents"]}
    # the candidate's illegal move loses every game where it has to move...
    assert report["total"]["illegal_moves"]["candidate"] >= 4
    assert rows["random"]["losses"] == 2
    # ...unless the opponent fails first: with (none) or by dying
    assert rows["fake-none"]["no_moves"]["opponent"] + rows["fake-none"]["losses"] == 2
    assert rows["fake-crash"]["no_moves"]["opponent"] + rows["fake-crash"]["losses"] == 2
    for g in games:
        assert g.headers["Termination"] in ("rules infraction", "normal")
        if g.headers["Termination"] == "rules infraction":
            assert "illegal move 'a1c4'" in g.end().comment or "no move" in g.end().comment \
                or "died" in g.end().comment
    # no anchors: the report says so, no rating invented
    assert all(r["status"] == "unrated" for r in report["elo"]["ratings"].values())


def test_clock_forfeits_silent_and_slow_engines(capsys, tmp_path, fake):
    hang, _ = fake("hang")
    slow, _ = fake("slow")
    code, out, err, report, games = run(
        capsys, tmp_path, "--engine", "random", "--stockfish-elo", "", "--opponent", hang,
        "--opponent", slow, "--games", 2, "--tc", "0.4+0", "--concurrency", 2, "--quiet")
    assert code == 0, err
    check_counts(report)
    rows = {row["opponent"]: row for row in report["opponents"]}
    # silent: stopped once past its clock; slow: 0.15 s a move, out of time on move 3
    assert rows["fake-hang"]["time_forfeits"] == {"candidate": 0, "opponent": 2}
    assert rows["fake-slow"]["time_forfeits"] == {"candidate": 0, "opponent": 2}
    assert rows["fake-hang"]["wins"] == rows["fake-slow"]["wins"] == 2
    assert all(g.headers["Termination"] == "time forfeit" for g in games)
    assert any("lost on time" in g.end().comment for g in games)
    assert report["total"]["time_forfeits"]["opponent"] == 4


def test_one_engine_process_per_worker_and_ucinewgame_between_games(capsys, tmp_path, fake):
    first, log = fake("first")
    code, *_ = run(capsys, tmp_path, "--engine", first, "--stockfish-elo", "",
                   "--opponent", "material", "--games", 4, "--nodes", 1, "--concurrency", 1,
                   "--max-plies", 30, "--quiet")
    assert code == 0
    lines = open(log).read().splitlines()
    assert lines.count("uci") == 1  # started once, kept for every game
    assert lines.count("ucinewgame") == 4
    assert any(line.startswith("go nodes 1") for line in lines)
    assert lines[-1] == "quit"


def test_silent_engine_under_nodes_loses_after_move_timeout(capsys, tmp_path, fake):
    hang, _ = fake("hang")
    code, _, err, report, _ = run(capsys, tmp_path, "--engine", "material", "--stockfish-elo",
                                  "", "--opponent", hang, "--games", 2, "--nodes", 10,
                                  "--move-timeout", 0.3, "--quiet")
    assert code == 0, err
    assert report["total"]["no_moves"] == {"candidate": 0, "opponent": 2}
    assert report["total"]["wins"] == 2


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "/nonexistent/x.pt"], "checkpoint '/nonexistent/x.pt' not found"),
    (["--engine", "random", "--tc", "fast"], "bad --tc 'fast'"),
    (["--engine", "random", "--tc", "0+1"], "bad --tc '0+1'"),
    (["--engine", "random", "--stockfish", "/nonexistent/sf"], "stockfish not found"),
    (["--engine", "random", "--stockfish-elo", "", "--opponent", "sf:1500",
      "--stockfish", "/nonexistent/sf"], "stockfish not found"),
    (["--engine", "random", "--games", "3"], "--games must be even"),
    (["--engine", "random", "--nodes", "5", "--tc", "10+0.1"], "exclude each other"),
    (["--engine", "random", "--stockfish-elo", ""], "no opponents"),
    (["--engine", "cmd=/nonexistent/engine", "--stockfish-elo", "", "--opponent", "random"],
     "did not start"),
    (["--engine", "random", "--stockfish-elo", "", "--opponent", "nothing.pt"],
     "no such checkpoint file"),
])
def test_errors_exit_2_with_one_line(capsys, args, message):
    if "stockfish not found" not in message and "--stockfish-elo" not in args \
            and STOCKFISH is None:
        pytest.skip("no stockfish binary")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


@needs_stockfish
def test_stockfish_elo_outside_its_range(capsys):
    assert main(["--engine", "random", "--stockfish-elo", "1000", "--nodes", "10"]) == 2
    assert "UCI_Elo 1000 is outside 1350-2850" in capsys.readouterr().err


def test_parsers():
    assert parse_tc("10+0.1") == (10.0, 0.1)
    assert parse_tc(" 3 ") == (3.0, 0.0)
    assert parse_tc("0.5+0") == (0.5, 0.0)
    for bad in ("", "10+", "+1", "-1+1", "10+0.1+2", "1m"):
        with pytest.raises(GauntletError, match="bad --tc"):
            parse_tc(bad)
    p = parse_player("sf:1500", stockfish="/usr/games/stockfish")
    assert (p.name, p.anchor, p.command) == ("sf1500", 1500.0, ["/usr/games/stockfish"])
    p = parse_player("cmd='python3 -m x' name=x anchor=1800 option.CPuct=2.5 option.Ponder=false")
    assert p.command == ["python3", "-m", "x"] and p.anchor == 1800
    assert p.options == {"CPuct": "2.5", "Ponder": False}
    assert parse_player("random").baseline == "random" and not parse_player("random").is_uci
    for bad, message in (("cmd=x nodes=0", "nodes must be >= 1"), ("cmd=x foo=1", "unknown key"),
                         ("cmd=x name", "not KEY=VALUE"), ("sf:1500", "needs Stockfish")):
        with pytest.raises(GauntletError, match=message):
            parse_player(bad)


def test_draws_on_the_board_and_flag_falls():
    gb = GameBoard()
    for uci in ("g1f3", "g8f6", "f3g1", "f6g8", "g1f3", "g8f6", "f3g1"):
        gb.push(chess.Move.from_uci(uci))
        # White could repeat a third time with its next move: the game goes on
        assert game_over(gb) is None
    gb.push(chess.Move.from_uci("f6g8"))
    assert game_over(gb).termination == chess.Termination.THREEFOLD_REPETITION
    # a flag fall against a lone king is a draw; the lone king's flag fall loses
    board = chess.Board("8/8/4k3/8/8/8/3QK3/8 w - - 0 1")
    assert _loss(board, chess.WHITE, "time_forfeit") == "1/2-1/2"
    assert _loss(board, chess.BLACK, "time_forfeit") == "1-0"
    assert _loss(board, chess.WHITE, "illegal_move") == "0-1"


def _tiny_checkpoint(path) -> None:
    import torch

    from train import checkpoint as ckpt
    from train.expand import INPUT_FORMAT_VERSION
    from train.model import ChessNet, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(blocks=1, channels=8, policy_channels=8, value_channels=2,
                         value_hidden=16, ssl_channels=4)
    net = ChessNet(config)
    ckpt.save(path, {"config": {"model": config.to_dict()}, "model": net.state_dict(),
                     "input_format_version": INPUT_FORMAT_VERSION, "step": 0})


@pytest.mark.skipif(importlib.util.find_spec("train.uci") is None, reason="no train/uci.py")
def test_checkpoint_engine_plays(capsys, tmp_path):
    path = tmp_path / "tiny.pt"
    _tiny_checkpoint(path)
    code, out, err, report, games = run(
        capsys, tmp_path, "--checkpoint", path, "--stockfish-elo", "", "--opponent", "random",
        "--games", 2, "--nodes", 8, "--concurrency", 1, "--max-plies", 40, "--quiet")
    assert code == 0, err
    check_counts(report)
    assert report["candidate"]["name"] == "tiny"
    assert report["candidate"]["command"][1:4] == ["-m", "train.uci", "--checkpoint"]
    assert report["total"]["illegal_moves"] == {"candidate": 0, "opponent": 0}
    assert report["total"]["no_moves"] == {"candidate": 0, "opponent": 0}
    assert len(games) == 2 and all(g.headers["White"] in ("tiny", "random") for g in games)
    assert io.StringIO(out).read().startswith("candidate: tiny")
