"""A checkpoint's network as a batched evaluator for the search.

:meth:`Evaluator.raw` takes the 19 input planes (``train.expand.expand_inputs``'
layout, as :func:`train.engine.tree.encode` writes them) and returns numpy policy
logits, values for the side to move and, for a model with a W/D/L head, draw
probabilities. On a CPU the network runs as a frozen TorchScript graph
(``torch.jit.optimize_for_inference``: BatchNorm folded into the convolutions),
which evaluates the default 6x64 network about 1.4x faster than eager PyTorch at
the search's batch sizes; elsewhere, or where tracing fails, it runs eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import chess
import numpy as np
import torch

from dataengine import policy
from train.evaluation.inputs import board_inputs
from train.evaluation.players import check_input_formats, load_model, read_checkpoint
from train.model import ChessNet

__all__ = ["Evaluator"]


class _Heads(torch.nn.Module):
    """The network without its features output: policy, value and (if any) W/D/L."""

    def __init__(self, net: ChessNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(x)
        wdl = out.get("wdl")
        if wdl is None:
            wdl = out["value"].new_zeros((x.shape[0], 0))
        return out["policy"], out["value"], wdl


class Evaluator:
    """Policy logits, values and draw probabilities of batches of positions."""

    def __init__(self, net: ChessNet, device: torch.device | str = "cpu", *,
                 description: str = "", script: bool = True) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.has_wdl = bool(net.config.wdl)
        self.description = description or f"{net.config.blocks}x{net.config.channels} network"
        self._run = _Heads(self.net)
        if script and self.device.type == "cpu":
            self._run = _frozen(self._run) or self._run

    @classmethod
    def from_checkpoint(cls, path: str, *, device: str | torch.device = "cpu",
                        weights: str = "ema", threads: int | None = None,
                        script: bool = True) -> Evaluator:
        """The network of a trainer checkpoint. Raises
        :class:`train.evaluation.players.EvalError` (one line) for a missing or unreadable
        file, a file that is not a trainer checkpoint, or an input format this code does
        not make."""
        if weights not in ("ema", "raw"):
            raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
        if threads:
            torch.set_num_threads(int(threads))
        checkpoint = read_checkpoint(path)
        check_input_formats({"model": checkpoint})
        device = torch.device(device)
        model = load_model(checkpoint, device, ema=weights == "ema")
        return cls(model.net, device, description=f"{path}: {model.describe()}", script=script)

    @torch.inference_mode()
    def raw(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``x`` (B, 19, 8, 8) float32 -> logits (B, 4672), values (B,) for the side to
        move, and draw probabilities (B,) (None without a W/D/L head)."""
        inputs = torch.from_numpy(x).to(self.device, non_blocking=True)
        logits, values, wdl = self._run(inputs)
        draws = torch.softmax(wdl.float(), dim=1)[:, 1].cpu().numpy() if self.has_wdl else None
        return logits.float().cpu().numpy(), values.float().cpu().numpy(), draws

    @torch.inference_mode()
    def evaluate(self, boards: Sequence[chess.Board]) -> tuple[np.ndarray, np.ndarray]:
        """Policy logits and values of python-chess boards (the shards' encoding)."""
        x = board_inputs(boards, "cpu").numpy()
        logits, values, _ = self.raw(np.ascontiguousarray(x, dtype=np.float32))
        return logits, values

    def policy_moves(self, boards: Sequence[chess.Board], batch_size: int = 1024
                     ) -> list[chess.Move]:
        """The raw policy's best legal move of each board (each must have one)."""
        moves: list[chess.Move] = []
        for start in range(0, len(boards), batch_size):
            chunk = boards[start:start + batch_size]
            logits, _ = self.evaluate(chunk)
            for board, row in zip(chunk, logits, strict=True):
                masked = np.where(policy.legal_move_mask(board), row, -np.inf)
                moves.append(policy.index_to_move(int(np.argmax(masked)), board))
        return moves


def _frozen(module: torch.nn.Module) -> torch.jit.ScriptModule | None:
    """A traced, frozen and inference-optimised copy of ``module`` on the CPU, or None
    where TorchScript cannot make one (then the eager module runs)."""
    example = torch.zeros(8, 19, 8, 8)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, example, check_trace=False)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
            frozen(example)
        return frozen
    except Exception:  # noqa: BLE001 - any TorchScript failure falls back to eager
        return None
