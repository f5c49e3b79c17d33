"""Export a trained network for use outside this project.

    python -m train.export CKPT [--format torchscript|onnx] [--out FILE] [--weights ema|raw]

(``make export CKPT=... [ARGS=...]``; FILE defaults to CKPT with the suffix ``.ts`` or
``.onnx``.)

The exported model is the checkpoint's network in eval mode (BatchNorm with its
running statistics), EMA weights by default. It needs neither this project nor
python-chess: only torch (``torch.jit.load``) for TorchScript, or any ONNX
runtime for ONNX (opset 18; exporting needs the ``onnx`` extra:
``pip install -e '.[onnx]'``).

Input: ``planes``, float32 ``(B, 19, 8, 8)``, any batch size B
---------------------------------------------------------------

Exactly what ``train.expand.expand_inputs`` makes (its module doc is the full
contract, INPUT_FORMAT_VERSION 1). In short: the board is in canonical
orientation, the side to move always plays "up" as White (with Black to move
the position is mirrored, ``board.mirror()``); square ``s`` (a1 = 0, h8 = 63)
is ``[s // 8, s % 8]``, row 0 = rank 1, column 0 = the a-file.

====  ===========================================================
0-5   our pawns, knights, bishops, rooks, queens, king (1 = occupied)
6-11  their pawns, knights, bishops, rooks, queens, king
12    all 1 if we may castle king side, else all 0
13    we may castle queen side; 14, 15: they may castle king / queen side
16    1 on the en-passant target square (rank 6 in canonical orientation)
      only when a legal en-passant capture exists
17    halfmove clock: every square min(halfmove / 100, 1)
18    all ones
====  ===========================================================

From python-chess: ``train.evaluation.inputs.board_inputs(boards)``.

Outputs, in this order
----------------------

* ``policy``: float32 ``(B, 4672)`` logits (unnormalised; mask the illegal moves,
  then softmax). Index ``from_square * 73 + plane`` in canonical orientation: the
  AlphaZero 8x8x73 layout of ``dataengine.policy`` (its module doc has the 73
  planes: 56 queen-like moves by direction and distance, 8 knight moves, 9
  underpromotions; a queen promotion is the queen-like move). With Black to move,
  mirror the squares (``sq ^ 56``). ``dataengine.policy.move_to_index`` and
  ``legal_move_mask`` do it from a python-chess board.
* ``value``: float32 ``(B,)`` in [-1, 1], the expected result for the side to move
  (tanh).
* ``wdl``: float32 ``(B, 3)`` win / draw / loss logits for the side to move, only
  when the model has that head (``ModelConfig.wdl``).

TorchScript returns them as a tuple; ONNX names them ``policy``, ``value``,
``wdl``. Either file carries a JSON description (input format, outputs, model
config, step, weights): TorchScript as the extra file ``export.json``
(``torch.jit.load(path, _extra_files={"export.json": ""})``), ONNX as the
metadata property ``export``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from dataengine.fileio import atomic_write
from dataengine.policy import N_POLICY
from train.evaluation.players import EvalError, load_model, read_checkpoint
from train.expand import INPUT_FORMAT_VERSION, N_INPUT_PLANES
from train.model import ChessNet

__all__ = ["FORMATS", "ExportError", "ExportedNet", "describe", "export"]

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 18
EXTRA_FILE = "export.json"
SUFFIXES = {"torchscript": ".ts", "onnx": ".onnx"}


class ExportError(RuntimeError):
    """The export cannot be made (explained in one line)."""


class ExportedNet(nn.Module):
    """A :class:`ChessNet` as the exported model: planes in; policy, value (and wdl) out,
    as a tuple, without the trunk features and the SSL heads."""

    def __init__(self, net: ChessNet):
        super().__init__()
        self.net = net
        self.wdl = net.config.wdl

    def forward(self, planes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(planes)
        if self.wdl:
            return out["policy"], out["value"], out["wdl"]
        return out["policy"], out["value"]


def output_names(net: ChessNet) -> list[str]:
    return ["policy", "value", *(["wdl"] if net.config.wdl else [])]


def describe(net: ChessNet, *, checkpoint: str, step: int | None, weights: str) -> dict:
    """The JSON description stored in the exported file (module doc)."""
    shapes = {"policy": ["B", N_POLICY], "value": ["B"], "wdl": ["B", 3]}
    return {
        "input": {"name": "planes", "dtype": "float32", "shape": ["B", N_INPUT_PLANES, 8, 8],
                  "format_version": INPUT_FORMAT_VERSION,
                  "encoding": "train.expand.expand_inputs (see train/export.py)"},
        "outputs": {name: shapes[name] for name in output_names(net)},
        "policy_layout": "dataengine.policy: index = from_square * 73 + plane, canonical",
        "model": net.config.to_dict(), "checkpoint": checkpoint, "step": step,
        "weights": weights,
    }


def _example(batch: int = 2) -> torch.Tensor:
    """Inputs for tracing: any values of the right shape (the network has no branches)."""
    return torch.rand(batch, N_INPUT_PLANES, 8, 8, generator=torch.Generator().manual_seed(0))


def export_torchscript(net: ChessNet, out: Path, info: dict) -> None:
    wrapper = ExportedNet(net).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # ChessNet's input-shape check runs once, at tracing, and is not in the trace
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, _example(), check_trace=False)
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={EXTRA_FILE: json.dumps(info, indent=1)})
    atomic_write(out, buf.getvalue())


def export_onnx(net: ChessNet, out: Path, info: dict) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError as e:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages ({e}): "
                          "pip install -e '.[onnx]'") from None
    wrapper = ExportedNet(net).eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # torchvision ops not there
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper, (_example(),), input_names=["planes"], output_names=output_names(net),
            dynamic_shapes={"planes": {0: torch.export.Dim("batch")}}, opset_version=ONNX_OPSET,
            dynamo=True, verbose=False)
    model = program.model_proto
    meta = model.metadata_props.add()
    meta.key, meta.value = "export", json.dumps(info)
    atomic_write(out, model.SerializeToString())
    onnx.checker.check_model(str(out))


def export(checkpoint: str, fmt: str, out: str | Path, weights: str = "ema") -> dict:
    """Write the network of ``checkpoint`` to ``out`` as ``fmt`` (torchscript or onnx);
    returns its description (:func:`describe`). Raises :class:`ExportError` in one line."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if weights not in ("ema", "raw"):
        raise ExportError(f"--weights must be ema or raw, got {weights!r}")
    try:
        read = read_checkpoint(checkpoint)
        if read.input_format != {"version": INPUT_FORMAT_VERSION, "planes": N_INPUT_PLANES}:
            raise ExportError(f"{checkpoint!r} was trained on input format "
                              f"{read.input_format}; the encoding documented here (and made "
                              f"by train.expand) is version {INPUT_FORMAT_VERSION}")
        if weights == "ema" and not read.state.get("ema_model"):
            raise ExportError(f"{checkpoint!r} has no EMA weights: --weights raw")
        loaded = load_model(read, torch.device("cpu"), ema=weights == "ema")
    except EvalError as e:
        raise ExportError(str(e)) from None
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"--out {str(out)!r} is a directory: give a file name")
    if not out.parent.is_dir():
        raise ExportError(f"cannot write {str(out)!r}: its directory does not exist")
    info = describe(loaded.net, checkpoint=str(checkpoint), step=loaded.step, weights=weights)
    (export_torchscript if fmt == "torchscript" else export_onnx)(loaded.net, out, info)
    return info


def _shape(dims: list) -> str:
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(map(str, dims))})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a trainer checkpoint (.pt), e.g. checkpoints/pretrained.pt")
    ap.add_argument("--format", choices=FORMATS, default="torchscript",
                    help="torchscript (torch.jit.load) or onnx (default: torchscript)")
    ap.add_argument("--out", default=None,
                    help="the file to write (default: CHECKPOINT with the suffix .ts or .onnx)")
    ap.add_argument("--weights", choices=("ema", "raw"), default="ema",
                    help="the EMA of the weights (what evaluation uses) or the raw weights "
                         "(default: ema)")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = str(Path(args.checkpoint).with_suffix(SUFFIXES[args.format]))
    try:
        info = export(args.checkpoint, args.format, args.out, args.weights)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model, outputs = info["model"], ", ".join(
        f"{k} {_shape(v)}" for k, v in info["outputs"].items())
    step = f" at step {info['step']}" if info["step"] is not None else ""
    print(f"wrote {args.out}: {args.format}, {info['weights']} weights of {args.checkpoint}"
          f"{step} ({model['blocks']} blocks x {model['channels']} channels); input planes "
          f"(B, {N_INPUT_PLANES}, 8, 8) float32 -> {outputs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
