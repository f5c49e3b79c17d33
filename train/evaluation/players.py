"""Checkpoints and baselines as players: each picks one move for each of many boards.

A player's :meth:`Player.choose` takes the boards of every game where it is to
move and returns one legal move per board, so a network evaluates all of them in
one batch. The players:

* :class:`NetPlayer`: a checkpoint. With ``sims == 0`` the policy's best legal
  move (illegal moves masked with ``dataengine.policy.legal_move_mask``);
  otherwise the engine's PUCT search of each board (:func:`train.engine.search.search_many`:
  the games' searches in lockstep, their leaves in one network call).
* :class:`RandomPlayer` (``random``): a uniformly random legal move, seeded.
* :class:`MaterialPlayer` (``material``): one ply greedy on material after the
  move (P 1, N 3, B 3, R 5, Q 9; a mate counts above any material), ties broken
  at random, seeded.
* :class:`StockfishPlayer` (``stockfish``): the Debian package's engine at a fixed
  node count, one thread.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import chess
import chess.engine
import numpy as np
import torch

from dataengine import policy
from dataengine.teacher import EngineNotFound
from dataengine.teacher import find_stockfish as teacher_find_stockfish
from train import checkpoint as ckpt
from train.evaluation.inputs import board_inputs
from train.expand import INPUT_FORMAT_VERSION, N_INPUT_PLANES
from train.model import ChessNet, ModelConfig

__all__ = [
    "BASELINES",
    "EvalError",
    "LoadedModel",
    "MaterialPlayer",
    "NetPlayer",
    "Player",
    "RandomPlayer",
    "StockfishPlayer",
    "Checkpoint",
    "check_input_formats",
    "find_stockfish",
    "load_model",
    "read_checkpoint",
    "material_balance",
]

#: Names accepted instead of a checkpoint path (they win over a file of that name).
BASELINES = ("random", "material", "stockfish")

PIECE_VALUES = {chess.PAWN: 1, chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9}

_STEM_WEIGHT = "stem.0.0.weight"  # (channels, input planes, 3, 3)


class EvalError(RuntimeError):
    """The evaluation cannot run (explained in one line): exit status 2, no traceback."""


# ----------------------------------------------------------------------------- checkpoints


@dataclass
class LoadedModel:
    """A checkpoint's network, in eval mode on its device."""

    path: str
    net: ChessNet
    weights: str
    """``ema`` or ``raw`` (what was loaded)."""
    input_format: dict
    train_config: dict = field(default_factory=dict)
    step: int | None = None

    def describe(self) -> str:
        c = self.net.config
        step = f", step {self.step}" if self.step is not None else ""
        return (f"{self.weights.upper() if self.weights == 'ema' else self.weights} weights"
                f"{self._ema_warning()}, {c.blocks} blocks x {c.channels} channels, "
                f"{self.net.num_parameters():,} parameters{step}")

    def _ema_warning(self) -> str:
        # the EMA starts as a copy of the step-1 weights; with a fixed decay it keeps
        # decay^(steps - 1) of them, with the warm-up (train.ema) next to nothing
        decay = self.train_config.get("ema_decay")
        if self.weights != "ema" or self.step is None or not isinstance(decay, float):
            return ""
        if self.train_config.get("ema_warmup", False):
            return ""
        initial = decay ** max(0, self.step - 1)
        if initial < 0.05:
            return ""
        return (f" (decay {decay} over {self.step} steps: still {initial:.0%} the first "
                "step's weights; --no-ema for the trained ones)")


@dataclass
class Checkpoint:
    """A trainer checkpoint read from disk, before its network is built."""

    path: str
    state: dict
    input_format: dict
    """``version``: the INPUT_FORMAT_VERSION it was trained on (the current one when the
    checkpoint does not say), ``planes``: input planes of its first layer."""


def read_checkpoint(path: str) -> Checkpoint:
    """Raises :class:`EvalError` naming the file when it is missing, unreadable or not a
    trainer checkpoint."""
    try:
        state = ckpt.load(path)
    except ckpt.CheckpointError as e:
        raise EvalError(_short_load_error(str(e))) from None
    config = state.get("config") if isinstance(state, dict) else None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise EvalError(f"{path!r} is not a trainer checkpoint (no config.model in it)")
    weights = state.get("ema_model") or state.get("model")
    if not isinstance(weights, dict) or _STEM_WEIGHT not in weights:
        raise EvalError(f"{path!r} holds no ChessNet weights ({_STEM_WEIGHT!r} missing)")
    version = state.get("input_format_version",
                        config.get("input_format_version", INPUT_FORMAT_VERSION))
    return Checkpoint(str(path), state, {"version": int(version),
                                         "planes": int(weights[_STEM_WEIGHT].shape[1])})


def _short_load_error(message: str) -> str:
    """torch's weights-only failure is a page of advice (to load unsafely); keep the reason."""
    head, sep, _ = message.partition(": Weights only load failed")
    reason = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)",
                       message, re.S)
    if sep and reason:
        return (f"{head}: not a checkpoint of tensors and plain containers "
                f"({' '.join(reason.group(1).split())})")
    return " ".join(message.split())


def check_input_formats(checkpoints: dict[str, Checkpoint]) -> None:
    """Raise :class:`EvalError` if the checkpoints' input formats differ from each other
    or from what :mod:`train.evaluation.inputs` makes."""
    formats = {side: c.input_format for side, c in checkpoints.items()}
    if len({tuple(sorted(f.items())) for f in formats.values()}) > 1:
        listed = ", ".join(f"{side} ({checkpoints[side].path}) {f}" for side, f in formats.items())
        raise EvalError(f"the models' input formats differ: {listed}")
    current = {"version": INPUT_FORMAT_VERSION, "planes": N_INPUT_PLANES}
    for c in checkpoints.values():
        if c.input_format != current:
            raise EvalError(f"{c.path!r} was trained on input format {c.input_format}; this "
                            f"evaluator makes {current}")


def load_model(checkpoint: Checkpoint, device: torch.device, *, ema: bool = True) -> LoadedModel:
    """The checkpoint's network (EMA weights unless ``ema`` is False or it has none), in
    eval mode on ``device``. Raises :class:`EvalError` if the weights do not fit."""
    state, path = checkpoint.state, checkpoint.path
    config = state["config"]
    weights_name = "ema" if ema and state.get("ema_model") else "raw"
    weights = state["ema_model"] if weights_name == "ema" else state.get("model")
    try:
        net = ChessNet(ModelConfig(**config["model"]))
        net.load_state_dict(weights)
    except (TypeError, ValueError, RuntimeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvalError(f"{path!r}: the weights do not fit the model its config describes "
                        f"({first})") from None
    step = state.get("step")
    return LoadedModel(path=path, net=net.to(device).eval(), weights=weights_name,
                       input_format=checkpoint.input_format,
                       train_config=dict(config.get("train") or {}),
                       step=int(step) if isinstance(step, int) else None)


# ----------------------------------------------------------------------------- players


class Player:
    """Chooses a legal move for each board (all with this player to move)."""

    name: str = "?"
    description: str = ""

    def choose(self, boards: list[chess.Board]) -> list[chess.Move]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the player holds (an engine process)."""


class NetPlayer(Player):
    """A network: the policy's best legal move, or a PUCT search with ``sims`` > 0."""

    def __init__(self, name: str, model: LoadedModel, device: torch.device, *,
                 sims: int = 0, cpuct: float = 1.5, batch_size: int = 1024) -> None:
        self.name, self.model, self.device = name, model, device
        self.sims, self.cpuct, self.batch_size = sims, cpuct, batch_size
        self._evaluator = None
        how = f"PUCT {sims} simulations, c_puct {cpuct}" if sims else "best legal policy move"
        self.description = f"{model.describe()}; {how}"

    @torch.inference_mode()
    def evaluate(self, boards: list[chess.Board]) -> tuple[np.ndarray, np.ndarray]:
        """Policy logits ``(B, 4672)`` and values ``(B,)`` (side to move's view) as numpy."""
        logits, values = [], []
        for start in range(0, len(boards), self.batch_size):
            out = self.model.net(board_inputs(boards[start:start + self.batch_size], self.device))
            logits.append(out["policy"].float().cpu().numpy())
            values.append(out["value"].float().cpu().numpy())
        return np.concatenate(logits), np.concatenate(values)

    def choose(self, boards: list[chess.Board]) -> list[chess.Move]:
        if self.sims > 0:
            from train.engine.net import Evaluator  # the engine imports this module
            from train.engine.search import SearchConfig, search_many

            if self._evaluator is None:
                self._evaluator = Evaluator(self.model.net, self.device)
            results = search_many(self._evaluator, boards, self.sims,
                                  SearchConfig(cpuct=self.cpuct))
            return [r.move for r in results]
        logits, _ = self.evaluate(boards)
        moves = []
        for board, row in zip(boards, logits, strict=True):
            masked = np.where(policy.legal_move_mask(board), row, -np.inf)
            moves.append(policy.index_to_move(int(np.argmax(masked)), board))
        return moves


class RandomPlayer(Player):
    """A uniformly random legal move (seeded)."""

    def __init__(self, name: str = "random", seed: int = 0) -> None:
        self.name, self.rng = name, random.Random(seed)
        self.description = f"baseline: uniform random legal move, seed {seed}"

    def choose(self, boards: list[chess.Board]) -> list[chess.Move]:
        return [self.rng.choice(list(b.legal_moves)) for b in boards]


def material_balance(board: chess.Board, color: chess.Color) -> int:
    """``color``'s material minus the opponent's (P 1, N 3, B 3, R 5, Q 9)."""
    total = 0
    for piece, value in PIECE_VALUES.items():
        total += value * (len(board.pieces(piece, color)) - len(board.pieces(piece, not color)))
    return total


class MaterialPlayer(Player):
    """One ply greedy on material after the move; a mate beats any material; ties random."""

    def __init__(self, name: str = "material", seed: int = 0) -> None:
        self.name, self.rng = name, random.Random(seed)
        self.description = f"baseline: one-ply greedy on material, ties random, seed {seed}"

    def choose(self, boards: list[chess.Board]) -> list[chess.Move]:
        moves = []
        for board in boards:
            mover, best, scores = board.turn, [], -float("inf")
            for move in board.legal_moves:
                board.push(move)
                score = float("inf") if board.is_checkmate() else material_balance(board, mover)
                board.pop()
                if score > scores:
                    best, scores = [move], score
                elif score == scores:
                    best.append(move)
            moves.append(self.rng.choice(best))
        return moves


def find_stockfish() -> str | None:
    """``stockfish`` on PATH, else the Debian package's /usr/games/stockfish, else None
    (the teacher's lookup, without its exception)."""
    try:
        return teacher_find_stockfish()
    except EngineNotFound:
        return None


class StockfishPlayer(Player):
    """Stockfish searching ``nodes`` nodes a move with one thread (deterministic)."""

    def __init__(self, name: str = "stockfish", nodes: int = 1000) -> None:
        path = find_stockfish()
        if path is None:
            raise EvalError("stockfish baseline: no `stockfish` on PATH and no "
                            "/usr/games/stockfish; install the Debian package "
                            "(apt-get install stockfish)")
        try:
            self.engine = chess.engine.SimpleEngine.popen_uci(path)
            self.engine.configure({"Threads": 1, "Hash": 16})
        except (OSError, chess.engine.EngineError, chess.engine.EngineTerminatedError) as e:
            raise EvalError(f"stockfish baseline: cannot start {path!r}: {e}") from None
        self.name, self.limit = name, chess.engine.Limit(nodes=nodes)
        engine_name = self.engine.id.get("name", "Stockfish")
        self.description = f"baseline: {engine_name} ({path}), {nodes} nodes a move, 1 thread"

    def choose(self, boards: list[chess.Board]) -> list[chess.Move]:
        moves = []
        for board in boards:
            try:
                move = self.engine.play(board, self.limit).move
            except (chess.engine.EngineError, chess.engine.EngineTerminatedError) as e:
                raise EvalError(f"stockfish failed on {board.fen()!r}: {e}") from None
            if move is None:
                raise EvalError(f"stockfish returned no move on {board.fen()!r}")
            moves.append(move)
        return moves

    def close(self) -> None:
        try:
            self.engine.quit()
        except (chess.engine.EngineError, chess.engine.EngineTerminatedError):
            pass
