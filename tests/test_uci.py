"""The UCI engine (``python -m train.uci``) driven as GUIs drive it: through python-chess's
engine client (which must log no warning), and through a raw pipe where the test needs
to send lines at given moments (``isready`` and ``stop`` during a search, bad input).

The network is a randomly initialised 1x16 model (with and without a W/D/L head): the
protocol, not the play, is under test, and a tiny model keeps each search cheap.
Timeouts are generous protocol limits for a loaded 2-core machine, never speed checks.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import chess
import chess.engine
import pytest
import torch

from train import checkpoint as ckpt
from train.engine.timeman import Allotment
from train.evaluation.players import find_stockfish
from train.expand import INPUT_FORMAT_VERSION
from train.model import ChessNet, ModelConfig
from train.uci import OPTIONS, Option, info_lines, parse_go, parse_position

ROOT = Path(__file__).resolve().parents[1]
REPLY = 30.0  # seconds to wait for a reply: the first one waits for torch and the network
PROMPT = 5.0  # seconds for `bestmove` after `stop`, `readyok` during a search
MATED = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
STALEMATE = "7k/5Q2/6K1/8/8/8/8/8 b - - 0 1"


def _tiny_checkpoint(path: Path, wdl: bool) -> Path:
    config = ModelConfig(blocks=1, channels=16, value_hidden=16, policy_channels=8,
                         ssl_channels=8, wdl=wdl)
    torch.manual_seed(0)
    weights = ChessNet(config).state_dict()
    ckpt.save(path, {"config": {"model": dataclasses.asdict(config)}, "model": weights,
                     "ema_model": weights, "step": 0,
                     "input_format_version": INPUT_FORMAT_VERSION})
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return _tiny_checkpoint(tmp_path_factory.mktemp("uci") / "tiny.pt", wdl=False)


@pytest.fixture(scope="module")
def tiny_wdl(tmp_path_factory) -> Path:
    return _tiny_checkpoint(tmp_path_factory.mktemp("uci") / "tiny_wdl.pt", wdl=True)


def command(checkpoint: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train.uci", "--checkpoint", str(checkpoint),
            "--threads", "1", *extra]


@pytest.fixture
def no_client_warnings(caplog):
    """Fails the test if python-chess's engine client logged a warning or an error."""
    caplog.set_level(logging.WARNING, logger="chess.engine")
    yield
    bad = [r.getMessage() for r in caplog.records
           if r.name.startswith("chess.engine") and r.levelno >= logging.WARNING]
    assert not bad, bad


class RawEngine:
    """The engine on a pipe: lines in, lines out (read by a thread into a queue)."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self.stderr = open(stderr_path, "w+")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, *lines: str) -> None:
        for line in lines:
            self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, start: str, timeout: float = REPLY) -> tuple[str, list[str]]:
        """The next line starting with ``start``, and the lines before it."""
        before, end = [], time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {start!r} within {timeout} s; got {before}") from None
            if line is None:
                raise AssertionError(f"engine exited (code {self.proc.wait()}) before "
                                     f"{start!r}; got {before}")
            self.seen.append(line)
            if line.startswith(start):
                return line, before
            before.append(line)

    def quiet(self, seconds: float) -> list[str]:
        """The lines that come within ``seconds``."""
        got, end = [], time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            got.append(line)
        return got

    def strings(self, lines: list[str]) -> str:
        return "\n".join(line for line in lines if line.startswith("info string"))

    def ready(self) -> list[str]:
        self.send("isready")
        return self.expect("readyok")[1]

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.send("quit")
            except (BrokenPipeError, OSError):
                pass
        try:
            code = self.proc.wait(timeout=REPLY)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self.stderr.seek(0)
        self.stderr_text = self.stderr.read()
        self.stderr.close()
        return code


@pytest.fixture(scope="module")
def raw(tiny, tmp_path_factory):
    """One engine for the pipe tests (each starts from its own `position`): a start costs
    seconds of torch import and network load on a busy 2-core machine."""
    engine = RawEngine(command(tiny), tmp_path_factory.mktemp("uci") / "stderr.txt")
    yield engine
    code = engine.close()
    assert code == 0
    assert not [line for line in engine.seen if "Traceback" in line]
    assert "Traceback" not in engine.stderr_text, engine.stderr_text


# ----------------------------------------------------------------------------- units


def test_option_defaults_are_the_search_defaults():
    from train.engine.search import SearchConfig

    options = {o.name: o.default for o in OPTIONS}
    defaults = SearchConfig()
    assert options["CPuct"] == defaults.cpuct
    assert options["FPU Reduction"] == defaults.fpu_reduction
    assert options["Batch Size"] == defaults.batch_size
    assert options["Virtual Loss"] == defaults.virtual_loss


def test_option_parse_and_declaration():
    spin = Option("Batch Size", "spin", 32, 1, 4096)
    assert spin.declaration() == "option name Batch Size type spin default 32 min 1 max 4096"
    assert spin.parse("64") == 64
    for bad in ("0", "5000", "x", "1.5", ""):
        with pytest.raises(ValueError, match="Batch Size takes"):
            spin.parse(bad)
    number = Option("CPuct", "float", 1.75, 0.01, 100.0)
    assert number.declaration() == "option name CPuct type string default 1.75"
    assert number.parse("2.5") == 2.5
    for bad in ("nan", "-1", "abc"):
        with pytest.raises(ValueError, match=repr(bad)):
            number.parse(bad)
    combo = Option("Weights", "combo", "ema", choices=("ema", "raw"))
    assert combo.declaration().endswith("default ema var ema var raw")
    assert combo.parse("RAW") == "raw"
    check = Option("Ponder", "check", False)
    assert check.declaration() == "option name Ponder type check default false"
    assert check.parse("true") is True


def test_parse_go():
    limits, complaints = parse_go("wtime 60000 btime 30000 winc 1000 binc 500 movestogo 20".split())
    assert limits.time_left == {chess.WHITE: 60.0, chess.BLACK: 30.0}
    assert limits.increment == {chess.WHITE: 1.0, chess.BLACK: 0.5}
    assert limits.movestogo == 20 and not complaints
    assert limits.allotment(chess.BLACK, 0.1).hard <= 0.5 * (30.0 - 0.1)
    limits, complaints = parse_go("nodes abc depth 3 searchmoves e2e4 d2d4 infinite".split())
    assert (limits.nodes, limits.depth, limits.infinite) == (None, 3, True)
    assert "nodes takes an integer" in complaints[0] and "searchmoves" in complaints[1]
    limits, complaints = parse_go(["movetime", "-5", "frobnicate"])
    assert limits.movetime is None and len(complaints) == 2
    assert parse_go(["ponder", "movetime", "1000"])[0].allotment(chess.WHITE, 0.1) == \
        Allotment(0.9, 0.9)


def test_parse_position():
    board = parse_position("startpos moves e2e4 e7e5 g1f3".split())
    assert board.fen() == chess.Board(
        "rnbqkbnr/pppp1ppp/8/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R b KQkq - 1 2").fen()
    assert [m.uci() for m in board.move_stack] == ["e2e4", "e7e5", "g1f3"]
    board = parse_position(["fen", *MATED.split(), "moves"])
    assert board.fen() == MATED and board.is_checkmate()
    for words, message in ((["fen", "rnbqkbnr/pppppppp/8", "w"], "invalid fen"),
                           (["fen", *"8/8/8/8/8/8/8/8 w - - 0 1".split()], "impossible fen"),
                           ("startpos moves e2e4 e2e4".split(), "illegal move 'e2e4'"),
                           ("startpos moves e2e9".split(), "invalid move 'e2e9'"),
                           ("startpos moves 0000".split(), "illegal move '0000'"),
                           (["startpos", "fen"], "position takes startpos or fen"),
                           ([], "position takes startpos or fen")):
        with pytest.raises(ValueError, match=message):
            parse_position(words)


def test_info_lines():
    from train.engine.search import SearchInfo, value_to_cp

    e4, e5, d4 = (chess.Move.from_uci(m) for m in ("e2e4", "e7e5", "d2d4"))
    info = SearchInfo(nodes=300, depth=3, seldepth=7, elapsed=0.5, value=0.5, pv=[e4, e5],
                      wdl=(500, 300, 200), multipv=[(e4, 200, 0.5), (d4, 100, 0.2),
                                                    (chess.Move.from_uci("a2a3"), 0, 0.0)])
    cp, cp2 = value_to_cp(0.5), value_to_cp(0.2)
    assert info_lines(info, 1, True) == [
        f"info depth 3 seldepth 7 time 500 nodes 300 nps 600 score cp {cp} wdl 500 300 200 "
        "pv e2e4 e7e5"]
    assert "wdl" not in info_lines(info, 1, False)[0]
    lines = info_lines(info, 3, True)  # the unvisited third move has no line
    assert len(lines) == 2
    assert f" multipv 1 score cp {cp} wdl 500 300 200 pv e2e4 e7e5" in lines[0]
    assert lines[1].endswith(f" multipv 2 score cp {cp2} pv d2d4")


# ----------------------------------------------------------------------------- python-chess


def test_handshake_analysis_and_multipv(tiny_wdl, no_client_warnings):
    with chess.engine.SimpleEngine.popen_uci(command(tiny_wdl), cwd=ROOT,
                                             timeout=REPLY) as engine:
        assert engine.id["name"] == "chess-ssl-pretrain"
        for name in ("Weights", "CPuct", "FPU Reduction", "Batch Size", "Threads", "Device",
                     "Move Overhead", "Nodes", "MultiPV", "Ponder", "UCI_ShowWDL"):
            assert name in engine.options, name
        board = chess.Board()
        board.push_uci("e2e4")
        info = engine.analyse(board, chess.engine.Limit(nodes=64))
        assert info["nodes"] >= 64 and info["depth"] >= 1
        assert info["pv"] and info["pv"][0] in board.legal_moves
        assert isinstance(info["score"].relative, chess.engine.Cp)
        assert info["wdl"].relative.total() == 1000
        lines = engine.analyse(board, chess.engine.Limit(nodes=200), multipv=3)
        assert [line["multipv"] for line in lines] == [1, 2, 3]
        assert len({line["pv"][0] for line in lines}) == 3
        engine.configure({"UCI_ShowWDL": False, "CPuct": 2.5, "Batch Size": 8})
        info = engine.analyse(board, chess.engine.Limit(nodes=32))
        assert "wdl" not in info and info["nodes"] >= 32


def test_game_against_stockfish(tiny, no_client_warnings):
    """A whole game: the net at 16 nodes a move by its Nodes option, the clock given as
    a GUI gives it, pondering on Stockfish's time (python-chess sends `ponderhit` when
    the reply was the expected one, else `stop` and the new position), against
    Stockfish at its weakest rated level and few nodes."""
    path = find_stockfish()
    if path is None:
        pytest.skip("no stockfish binary (Debian package `stockfish`: /usr/games/stockfish)")
    board = chess.Board()
    with chess.engine.SimpleEngine.popen_uci(command(tiny, "--nodes", "16"), cwd=ROOT,
                                             timeout=REPLY) as net, \
            chess.engine.SimpleEngine.popen_uci(path, timeout=REPLY) as stockfish:
        stockfish.configure({"Threads": 1, "Hash": 16, "UCI_LimitStrength": True,
                             "UCI_Elo": 1350})
        clock = chess.engine.Limit(white_clock=600, black_clock=600, white_inc=1,
                                   black_inc=1)
        while not board.is_game_over(claim_draw=True) and board.ply() < 300:
            if board.turn == chess.WHITE:
                result = net.play(board, clock, ponder=True, info=chess.engine.INFO_ALL)
                assert result.info.get("nodes", 0) >= 16
            else:
                result = stockfish.play(board, chess.engine.Limit(nodes=200))
            assert result.move in board.legal_moves
            board.push(result.move)
    assert board.ply() >= 4
    assert board.is_game_over(claim_draw=True) or board.ply() >= 300


def test_stop_during_go_infinite_with_python_chess(tiny, no_client_warnings):
    with chess.engine.SimpleEngine.popen_uci(command(tiny), cwd=ROOT,
                                             timeout=REPLY) as engine:
        board = chess.Board()
        with engine.analysis(board) as analysis:
            for info in analysis:
                if info.get("nodes", 0) > 0:
                    break
            analysis.stop()
            best = analysis.wait()
        assert best.move in board.legal_moves
        assert analysis.info["nodes"] > 0


# ----------------------------------------------------------------------------- raw pipe


def test_isready_and_stop_during_a_search(raw):
    raw.send("uci")
    raw.expect("uciok")
    raw.ready()
    raw.send("ucinewgame", "position startpos moves e2e4", "go infinite")
    got = raw.quiet(0.5)
    raw.send("isready")
    _, before = raw.expect("readyok", timeout=PROMPT)
    assert not [line for line in got + before if line.startswith("bestmove")]
    raw.send("stop")
    line, _ = raw.expect("bestmove", timeout=PROMPT)
    board = parse_position("startpos moves e2e4".split())
    assert chess.Move.from_uci(line.split()[1]) in board.legal_moves
    # a second stop, after the search, is ignored; the engine still answers
    raw.send("stop")
    assert not [line for line in raw.ready() if line.startswith("bestmove")]


def test_go_with_a_clock_movetime_and_ponder(raw):
    raw.send("position startpos")
    raw.ready()
    raw.send("go wtime 1000 btime 1000")  # soft target 0: one minimal batch
    raw.expect("bestmove", timeout=PROMPT)
    raw.send("go movetime 300")
    raw.expect("bestmove", timeout=PROMPT)
    raw.send("go depth 2")
    raw.expect("bestmove", timeout=REPLY)
    # ponder: no bestmove until ponderhit, then the clock (2 s, at most half) applies
    raw.send("position startpos moves e2e4 e7e5", "go ponder wtime 2000 btime 2000")
    assert not [line for line in raw.quiet(0.5) if line.startswith("bestmove")]
    raw.send("ponderhit")
    raw.expect("bestmove", timeout=PROMPT)
    raw.send("go ponder wtime 2000 btime 2000")
    assert not [line for line in raw.quiet(0.3) if line.startswith("bestmove")]
    raw.send("stop")
    raw.expect("bestmove", timeout=PROMPT)


def test_bad_input_is_answered_and_the_engine_goes_on(raw):
    raw.send("ucinewgame", "go nodes 8")  # before any position: the start position
    line, before = raw.expect("bestmove")
    assert "go before position" in raw.strings(before)
    assert chess.Move.from_uci(line.split()[1]) in chess.Board().legal_moves
    cases = [
        ("xyzzy", "unknown command 'xyzzy'"),
        ("position fen rnbqkbnr/pppppppp/8 w", "invalid fen"),
        ("position fen 8/8/8/8/8/8/8/8 w - - 0 1", "impossible fen"),
        ("position startpos moves e2e4 e2e4", "illegal move 'e2e4'"),
        ("position startpos moves e2e9", "invalid move 'e2e9'"),
        ("position sideways", "position takes startpos or fen"),
        ("setoption name CPuct value abc", "CPuct takes a number, got 'abc'"),
        ("setoption name Batch Size value 0", "Batch Size takes a value in [1, 4096]"),
        ("setoption name Weights value foo", "Weights takes one of ema, raw"),
        ("setoption name Hash value 16", "no option 'Hash'"),
        ("setoption Threads 2", "setoption takes name NAME"),
        ("debug maybe", "debug takes on or off"),
    ]
    for line, message in cases:
        raw.send(line)
        assert message in raw.strings(raw.ready()), line
    # after an invalid position, go answers the null move rather than guess the position
    raw.send("position startpos moves e2e5", "go nodes 8")
    line, before = raw.expect("bestmove")
    assert line == "bestmove 0000" and "no valid position" in raw.strings(before)
    # a bad argument of go is skipped; the search still runs on the others
    raw.send("position startpos", "go nodes abc movetime 200 mate 3")
    line, before = raw.expect("bestmove")
    strings = raw.strings(before)
    assert "nodes takes an integer, got 'abc'" in strings and "mate is not supported" in strings
    assert line != "bestmove 0000"
    # an unknown token before a command is skipped, the command read (UCI's rule)
    raw.send("joho isready")
    _, before = raw.expect("readyok")
    assert "ignored before 'isready'" in raw.strings(before)


def test_no_legal_move_answers_the_null_move(raw):
    for fen in (MATED, STALEMATE):
        raw.send(f"position fen {fen}", "go nodes 8")
        line, _ = raw.expect("bestmove")
        assert line == "bestmove 0000"


def test_options_that_reload_the_network(raw):
    raw.send("setoption name Weights value raw", "setoption name Threads value 1")
    raw.ready()
    raw.send("position startpos", "go nodes 8")
    raw.expect("bestmove")
    if torch.cuda.is_available():
        return
    raw.send("setoption name Device value cuda")
    strings = raw.strings(raw.ready())
    assert "cannot load the network" in strings and "keeping the network" in strings
    raw.send("go nodes 8")
    line, _ = raw.expect("bestmove")
    assert line != "bestmove 0000"


def test_quit_during_a_search(tiny, tmp_path):
    engine = RawEngine(command(tiny), tmp_path / "stderr.txt")
    engine.ready()
    engine.send("position startpos", "go infinite")
    engine.quiet(0.3)
    assert engine.close() == 0


def test_bad_checkpoint_exits_with_a_reason(tmp_path):
    missing = subprocess.run(command(tmp_path / "missing.pt"), cwd=ROOT, input="uci\n",
                             capture_output=True, text=True, timeout=REPLY)
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    engine = RawEngine(command(garbage), tmp_path / "stderr.txt")
    engine.send("uci")
    engine.expect("uciok")  # answered before the network loads
    engine.send("isready")
    line, _ = engine.expect("info string error: cannot load the network")
    assert "garbage.pt" in line
    assert engine.close() == 2
    assert "Traceback" not in engine.stderr_text
