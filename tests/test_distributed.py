"""Data-parallel training on CPU (gloo, loopback only): two processes with batch 8 train
the network that one process with batch 16 trains, and checkpoints move between them.

Tolerance: ATOL = 1e-4 on every parameter and buffer. The runs sum in different orders
(per-rank sums, all-reduces), which moves parameters by ~3e-7 to ~1e-5 in 8 steps here,
as much as running one process with 1 instead of 2 torch threads does (Adam turns a
rounding difference in a gradient near 0 into a visible step: with the trainer's mate
loss at weights 0, 0.25, 0.5 and 1 the largest difference was 2.7e-6, 2.6e-6, 1.1e-5
and 1.9e-6). Breaking the equivalence moves them by 6e-3 or more (measured: BatchNorm
statistics per rank instead of global, 5e-2; losses averaged per rank instead of over
the global batch, 6e-3).

One direction is left out of the comparison, on purpose: the stem's weight on the
all-ones input plane at the kernel centre adds the same number to every square, and the
BatchNorm after it subtracts it again. Its true gradient is exactly 0, so Adam turns
float noise (~1e-9, near its eps) into steps of up to lr: it drifts by ~1e-3 between any
two runs that round differently (one process, 1 vs 2 threads, too). The network in
training mode does not depend on it (`same_network` checks the outputs); the stem
BatchNorm's running mean, which follows it, is left out too.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dataengine.build import build
from tests import naive
from train import checkpoint as ckpt
from train.config import load_run_config
from train.curriculum import load_curriculum
from train.distributed import GlobalBatchNorm2d
from train.expand import PLANE_ONES, expand_inputs
from train.loader import BatchLoader, LoaderConfig
from train.model import ChessNet, ModelConfig
from train.trainer import train

ATOL = 1e-4
N = 4  # the runs save at step N and end at 2N
SETTINGS = {"steps": 2 * N, "save_every": N, "keep_checkpoints": 0, "accum_steps": 2,
            "ssl_every_n": 2, "lr_warmup_steps": 2, "ssl_warmup_steps": 2,
            "heartbeat_seconds": 0.0, "progress_interval": 2, "tensorboard": False,
            "model.blocks": 1, "model.channels": 8, "loader.workers": 0}
# not compared (module doc): a direction the loss cannot see, and the statistic that follows it
BLIND = {"stem.0.0.weight": (slice(None), PLANE_ONES, 1, 1), "stem.0.1.running_mean": ...}


def loopback_interface() -> str:
    return next(name for _, name in socket.if_nameindex() if name.startswith("lo"))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed") / "shards"
    build(naive.SAMPLE_INPUTS, out, quiet=True)
    return out


def settings(shards, out: Path, batch_size: int, **more) -> dict:
    return {**SETTINGS, "shards": str(shards), "batch_size": batch_size,
            "checkpoint_out": str(out / "ck" / "final.pt"), "run_dir": str(out / "runs"), **more}


def one_process(shards, out: Path, **more) -> None:
    train(load_run_config(None, settings(shards, out, 16, **more)))


def two_processes(shards, out: Path, **more) -> str:
    """`torchrun --nproc-per-node 2 -m train` with batch 8; returns its stdout."""
    args = []
    for key, value in settings(shards, out, 8, **more).items():
        flag = key.split(".")[-1].replace("_", "-")
        args += ([f"--{'' if value else 'no-'}{flag}"] if isinstance(value, bool)
                 else [f"--{flag}", str(value)])
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m",
                                                          "torch.distributed.run"]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": loopback_interface(), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "--standalone", "--local-addr", "127.0.0.1",
                           "--nproc-per-node", "2", "-m", "train", *args],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def metrics(out: Path) -> list[dict]:
    lines = (out / "runs" / "pretrained" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def resume_from(path: Path, out: Path) -> None:
    """Put checkpoint `path` where a run writing to `out` finds it with --auto-resume."""
    (out / "ck").mkdir(parents=True)
    shutil.copy(path, out / "ck" / path.name)


def same_network(want_path: Path, got_path: Path, shards) -> float:
    """Asserts that two checkpoints hold the same network within ATOL (model and EMA
    weights, outputs in training mode); returns the largest difference compared."""
    want, got = ckpt.load(want_path), ckpt.load(got_path)
    assert got["step"] == want["step"] and got["loader"]["step"] == want["loader"]["step"]
    worst = 0.0
    for part in ("model", "ema_model"):
        assert want[part].keys() == got[part].keys()
        for key, a in want[part].items():
            a, b = a.clone(), got[part][key].clone()
            if key in BLIND:
                a[BLIND[key]], b[BLIND[key]] = 0, 0
            assert torch.allclose(a, b, rtol=0, atol=ATOL), (part, key, (a - b).abs().max())
            if a.is_floating_point():
                worst = max(worst, (a - b).abs().max().item())
    loader = BatchLoader(shards, load_curriculum("uniform"), steps=1, batch_size=64, seed=5,
                         cfg=LoaderConfig(workers=0))
    x = expand_inputs(next(iter(loader))[1])
    outputs = []
    for state in (want, got):
        net = ChessNet(ModelConfig(**state["config"]["model"]))
        net.load_state_dict(state["model"])
        with torch.no_grad():
            outputs.append(net.train()(x))
    for key in ("policy", "value", "features"):
        assert torch.allclose(outputs[0][key], outputs[1][key], rtol=0, atol=ATOL), key
    return worst


@pytest.fixture(scope="module")
def reference(shards, tmp_path_factory) -> Path:
    """One process with batch 16, 2N steps, saving at N (cheap: each test that launches
    torchrun does so itself, so that pytest-xdist never runs a launch twice)."""
    out = tmp_path_factory.mktemp("one")
    one_process(shards, out)
    return out


# ----------------------------------------------------------------------------- data


def test_loader_state_resumes_on_another_number_of_processes(shards):
    def loader(batch_size, rank=0, world=1):
        return BatchLoader(shards, load_curriculum("stockfish"), steps=40,
                           batch_size=batch_size, seed=3, cfg=LoaderConfig(workers=0),
                           rank=rank, world=world)

    def global_batches(world, state=None, n=10):
        ranks = []
        for rank in range(world):
            part = loader(16 // world, rank, world)
            if state is not None:
                part.load_state_dict(state)
            ranks.append(list(itertools.islice(iter(part), n)))
        steps = [[k for k, _ in r] for r in ranks]
        assert all(s == steps[0] for s in steps)
        return steps[0], [{c: torch.cat([r[i][1][c] for r in ranks]) for c in ranks[0][0][1]}
                          for i in range(n)]

    want_steps, want = global_batches(1, n=20)
    four = loader(4, 0, 4)
    list(itertools.islice(iter(four), 10))
    state = four.state_dict()
    assert state["step"] == 10 and state["batch_size"] == 16
    for world in (1, 2):  # 4 x 4 -> 1 x 16 and 2 x 8
        steps, got = global_batches(world, state)
        assert steps == want_steps[10:]
        assert all(torch.equal(a[c], b[c]) for a, b in zip(want[10:], got, strict=True)
                   for c in a)


# ----------------------------------------------------------------------------- BatchNorm


def _batchnorm_rank(rank: int, store_path: str, x: torch.Tensor, dy: torch.Tensor,
                    split: list[int], out_dir: str) -> None:
    dist.init_process_group("gloo", store=dist.FileStore(store_path, 2), rank=rank,
                            world_size=2)
    try:
        bn = GlobalBatchNorm2d(x.shape[1])
        with torch.no_grad():
            bn.weight.copy_(torch.linspace(0.5, 1.5, x.shape[1]))
            bn.bias.copy_(torch.linspace(-1, 1, x.shape[1]))
        rows = x.split(split)[rank].clone().requires_grad_()
        y = bn(rows)
        (y * dy.split(split)[rank]).sum().backward()
        grads = torch.cat([bn.weight.grad, bn.bias.grad])
        dist.all_reduce(grads)  # DDP's job in training (there, averaged)
        torch.save({"y": y.detach(), "dx": rows.grad, "grads": grads,
                    "running": torch.cat([bn.running_mean, bn.running_var])},
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_global_batchnorm_is_batchnorm_over_all_ranks(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", loopback_interface())
    torch.manual_seed(0)
    x, dy = torch.randn(8, 3, 4, 4) * 2 + 5, torch.randn(8, 3, 4, 4)
    split = [5, 3]  # uneven on purpose: the statistics weigh by count
    mp.spawn(_batchnorm_rank, args=(str(tmp_path / "store"), x, dy, split, str(tmp_path)),
             nprocs=2)
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 1.5, 3))
        bn.bias.copy_(torch.linspace(-1, 1, 3))
    whole = x.clone().requires_grad_()
    y = bn(whole)
    (y * dy).sum().backward()
    close = dict(rtol=0, atol=1e-5)
    assert torch.allclose(torch.cat([g["y"] for g in got]), y, **close)
    assert torch.allclose(torch.cat([g["dx"] for g in got]), whole.grad, **close)
    want_running = torch.cat([bn.running_mean, bn.running_var])
    for g in got:
        assert torch.allclose(g["grads"], torch.cat([bn.weight.grad, bn.bias.grad]), **close)
        assert torch.allclose(g["running"], want_running, **close)


# ----------------------------------------------------------------------------- training


def test_two_processes_train_the_network_of_one_and_resume_on_one(reference, shards,
                                                                   tmp_path):
    stdout = two_processes(shards, tmp_path / "two")
    for step in (N, 2 * N):
        name = ckpt.step_path(Path("ck"), "pretrained", step)
        worst = same_network(reference / name, tmp_path / "two" / name, shards)
        print(f"step {step}: largest difference {worst:.1e}")
    assert stdout.count("done:") == 1  # rank 0 reports, rank 1 is silent
    want, got = (ckpt.load(run / "ck" / "final.pt") for run in (reference, tmp_path / "two"))
    assert got["loader"]["batch_size"] == want["loader"]["batch_size"] == 16
    assert got["world"] == 2 and want["world"] == 1
    # rank 0 logs the global batch's losses, as one process does
    for a, b in zip(metrics(reference), metrics(tmp_path / "two"), strict=True):
        for key in ("policy", "value", "ssl", "ssl_piece", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), key

    # the two processes' checkpoint at N, resumed on one process with batch 16
    resumed = tmp_path / "resumed"
    resume_from(ckpt.step_path(tmp_path / "two" / "ck", "pretrained", N), resumed)
    one_process(shards, resumed, auto_resume=True)
    name = ckpt.step_path(Path("ck"), "pretrained", 2 * N)
    worst = same_network(reference / name, resumed / name, shards)
    print(f"resumed on one: largest difference {worst:.1e}")


def test_checkpoint_of_one_process_resumes_on_two(reference, shards, tmp_path):
    resume_from(ckpt.step_path(reference / "ck", "pretrained", N), tmp_path)
    stdout = two_processes(shards, tmp_path, auto_resume=True)
    assert f"done: {2 * N} steps" in stdout
    name = ckpt.step_path(Path("ck"), "pretrained", 2 * N)
    worst = same_network(reference / name, tmp_path / name, shards)
    print(f"resumed on two: largest difference {worst:.1e}")
