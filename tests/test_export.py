"""train.export: the exported network gives the checkpoint's outputs on the same inputs,
and loads where this project is not (a fresh interpreter with torch alone)."""

from __future__ import annotations

import json
import subprocess
import sys

import chess
import numpy as np
import pytest
import torch

from dataengine.build import build
from tests import naive
from tests.test_train import TINY
from train.config import load_run_config
from train.evaluation.inputs import board_inputs
from train.evaluation.players import load_model, read_checkpoint
from train.export import EXTRA_FILE, main
from train.trainer import train

TOLERANCE = 1e-5
# torch 2.13 marks TorchScript deprecated (in favour of torch.export); it is still the
# format that loads with torch alone, and the one asked for
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """wdl -> a checkpoint of a tiny real training run (a few steps, so that the EMA and
    the raw weights and the BatchNorm statistics are all trained)."""
    tmp = tmp_path_factory.mktemp("export")
    shards = tmp / "shards"
    build(naive.SAMPLE_INPUTS, shards, quiet=True)
    out = {}
    for wdl in (False, True):
        path = tmp / f"wdl{int(wdl)}.pt"
        train(load_run_config(None, {
            "shards": str(shards), "checkpoint_out": str(path), "run_dir": str(tmp / "runs"),
            "checkpoint_prefix": f"wdl{int(wdl)}", "tensorboard": False, "eval_every": 0,
            "heartbeat_seconds": 0.0, "steps": 6, "batch_size": 16, "save_every": 0,
            "lr_warmup_steps": 1, "ema_start": 0, "model.wdl": wdl, **TINY}))
        out[wdl] = path
    return out


def inputs() -> torch.Tensor:
    """Real positions (White and Black to move, castling, en passant) and noise."""
    boards = [chess.Board(), chess.Board("r3k2r/pppq1ppp/2n5/3pP3/8/8/PPP2PPP/R3K2R w KQkq d6 0 9")]
    board = chess.Board()
    for uci in ("e2e4", "c7c5", "g1f3"):
        board.push_uci(uci)
        boards.append(board.copy())
    noise = torch.rand(3, 19, 8, 8, generator=torch.Generator().manual_seed(1))
    return torch.cat([board_inputs(boards), noise])


def reference(path, weights: str) -> dict[str, torch.Tensor]:
    net = load_model(read_checkpoint(str(path)), torch.device("cpu"), ema=weights == "ema").net
    with torch.no_grad():
        return net(inputs())


@pytest.mark.parametrize("wdl", [False, True])
@pytest.mark.parametrize("weights", ["ema", "raw"])
def test_torchscript_gives_the_checkpoints_outputs(checkpoints, tmp_path, capsys, wdl, weights):
    out = tmp_path / "net.ts"
    assert main([str(checkpoints[wdl]), "--out", str(out), "--weights", weights]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out}: torchscript, {weights} weights") and "(B, 4672)" in said
    want = reference(checkpoints[wdl], weights)
    names = ["policy", "value", *(["wdl"] if wdl else [])]
    model = torch.jit.load(str(out))
    with torch.no_grad():
        got = model(inputs())
    assert len(got) == len(names)
    for name, tensor in zip(names, got, strict=True):
        assert tensor.shape == want[name].shape, name
        torch.testing.assert_close(tensor, want[name], atol=TOLERANCE, rtol=0, msg=name)
    extra = {EXTRA_FILE: ""}
    torch.jit.load(str(out), _extra_files=extra)
    info = json.loads(extra[EXTRA_FILE])
    assert info["weights"] == weights and info["step"] == 6 and list(info["outputs"]) == names
    assert info["input"]["shape"] == ["B", 19, 8, 8]


def test_torchscript_loads_in_a_fresh_interpreter(checkpoints, tmp_path):
    """torch alone, no project module imported, other batch sizes than the trace's."""
    out = tmp_path / "net.ts"
    assert main([str(checkpoints[False]), "--out", str(out)]) == 0
    x = inputs()
    np.save(tmp_path / "x.npy", x.numpy())
    script = (
        "import sys, numpy as np, torch\n"
        "m = torch.jit.load(sys.argv[1])\n"
        "x = torch.from_numpy(np.load(sys.argv[2]))\n"
        "with torch.no_grad():\n"
        "    p, v = m(x)\n"
        "    p1, v1 = m(x[:1])\n"
        "assert torch.equal(p1, p[:1]) or torch.allclose(p1, p[:1], atol=1e-6)\n"
        "np.save(sys.argv[3], p.numpy()); np.save(sys.argv[4], v.numpy())\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in "
        "('train', 'dataengine', 'labelers', 'chess')))\n")
    done = subprocess.run([sys.executable, "-I", "-c", script, str(out), str(tmp_path / "x.npy"),
                           str(tmp_path / "p.npy"), str(tmp_path / "v.npy")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"  # the project is not needed
    want = reference(checkpoints[False], "ema")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), want["policy"].numpy(), atol=TOLERANCE)
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), want["value"].numpy(), atol=TOLERANCE)


def test_onnx_gives_the_checkpoints_outputs(checkpoints, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "net.onnx"
    assert main([str(checkpoints[True]), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["planes"]
    assert [o.name for o in session.get_outputs()] == ["policy", "value", "wdl"]
    want = reference(checkpoints[True], "ema")
    got = session.run(None, {"planes": inputs().numpy()})
    for name, array in zip(["policy", "value", "wdl"], got, strict=True):
        np.testing.assert_allclose(array, want[name].numpy(), atol=TOLERANCE, rtol=0,
                                   err_msg=name)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["export"])["input"]["format_version"] == 1


def test_bad_requests_are_one_line_errors(checkpoints, tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    for args, said in (([str(tmp_path / "none.pt"), "--out", str(tmp_path / "a.ts")],
                        "checkpoint not found"),
                       ([str(garbage), "--out", str(tmp_path / "a.ts")], "cannot load"),
                       ([str(checkpoints[False]), "--out", str(tmp_path)], "is a directory"),
                       ([str(checkpoints[False]), "--out", str(tmp_path / "no" / "a.ts")],
                        "its directory does not exist")):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and said in err[0], err


def test_out_defaults_to_the_checkpoint_with_the_formats_suffix(checkpoints, tmp_path):
    src = tmp_path / "run.pt"
    src.write_bytes(checkpoints[False].read_bytes())
    assert main([str(src)]) == 0
    assert torch.jit.load(str(tmp_path / "run.ts")) is not None
