"""make gpu-check (bench/gpu_check.py) at a smoke size on the CPU, and the changes to the
GPU path that a CPU can check: --use-amp's dtype, fused AdamW and resuming its state,
the grad scaler of a resume across precisions, the one-process process group."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from bench import gpu_check
from dataengine.build import build
from tests import naive
from train import checkpoint as ckpt
from train import distributed, trainer
from train.config import load_run_config
from train.model import ChessNet, ModelConfig

SCRIPT = naive.REPO / "bench" / "gpu_check.py"
SMOKE = ["--device", "cpu", "--batch-sizes", "16", "--steps", "4", "--blocks", "1",
         "--channels", "8", "--loader-workers", "1", "--seconds", "0.2",
         "--torchrun-steps", "2", "--torchrun-batch", "16"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "shards"
    build(naive.SAMPLE_INPUTS, out, quiet=True)
    return out


def table_lines(stdout: str) -> dict[str, list[str]]:
    """The table's rows by their first column (the check)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("check "))
    assert set(lines[start + 1]) == {"-", " "}
    width = lines[start].index("setting")  # the check column and its gap
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.setdefault(line[:width].strip(), []).append(line)
    return rows


def test_cpu_smoke_prints_every_row_and_the_checks_pass(shards, tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--shards", str(shards),
                           "--out", str(tmp_path), *SMOKE],
                          capture_output=True, text=True, timeout=300, cwd=naive.REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(done.stdout)
    rows = table_lines(done.stdout)
    assert list(rows) == ["expand check", "expand", "loader", "torchrun", "resume", "trainer"]
    [check] = rows["expand check"]
    assert "cpu tensor ops = cpu numba" in check
    assert ("ok: 12 integer tensors bit-exact (direct and through the loader), floats max "
            "|diff| 0.0e+00") in check
    assert "1 worker, batch 1024 -> cpu" in rows["loader"][0]
    [torchrun] = rows["torchrun"]
    assert "1 process, gloo, GlobalBatchNorm2d, DDP" in torchrun and "ok:" in torchrun
    [resume] = rows["resume"]
    assert "from its step-2 checkpoint to step 4" in resume
    assert "ok: outputs max |diff| 0.0e+00" in resume  # a CPU resume is exact
    assert [("amp off" in r, "amp bf16" in r) for r in rows["trainer"]] == [(True, False),
                                                                          (False, True)]
    assert all("batch 16" in r and "eager" in r and "4 steps in" in r
               for r in rows["trainer"])
    assert "all checks passed" in done.stdout
    assert "\r" not in done.stdout + done.stderr  # no progress-bar frames off a terminal


def test_expansion_check_names_a_target_that_differs(shards, monkeypatch):
    chunk = gpu_check.first_chunk(shards, positions=256)
    assert gpu_check.expansion_check(chunk, torch.device("cpu")).result.startswith("ok:")
    real = gpu_check.expand

    def off_by_one(batch, *args, fused=None, **kwargs):
        x, targets = real(batch, *args, fused=fused, **kwargs)
        if not fused:
            targets["wdl"] = targets["wdl"].clone()
            targets["wdl"][7] += 1
        return x, targets

    monkeypatch.setattr(gpu_check, "expand", off_by_one)
    with pytest.raises(gpu_check.CheckFailed, match=r"wdl: integer targets differ, first at "
                                                    r"index \[7\]"):
        gpu_check.expansion_check(chunk, torch.device("cpu"))


def test_print_table_is_plain_and_aligned(capsys):
    rows = [gpu_check.Row("expand", "chunk of 4,096", pos_s=1234567.8, memory_mb=12.3),
            gpu_check.Row("trainer", "batch 96", pos_s=12.0, data_wait=0.015, result="ok")]
    gpu_check.print_table(rows)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["check", "setting", "pos/s", "data", "wait", "memory", "MB",
                                "result"]
    assert "1,234,568" in lines[2] and "1.5%" in lines[3] and lines[3].endswith("ok")
    end = lines[0].index("pos/s") + len("pos/s")  # numbers are right-aligned under it
    assert lines[2][:end].endswith(" 1,234,568") and lines[3][:end].endswith(" 12")


# ----------------------------------------------------------------------------- AMP dtype


@pytest.mark.parametrize("bf16, want", [(True, (torch.bfloat16, False)),
                                        (False, (torch.float16, True))])
def test_use_amp_picks_bf16_on_cuda_where_the_hardware_has_it(monkeypatch, bf16, want):
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert trainer.amp_precision(torch.device("cuda")) == want
    assert asked == [False]  # emulated bf16 (before compute capability 8.0) is slow


def test_use_amp_on_cpu_and_mps_is_unchanged():
    assert trainer.amp_precision(torch.device("cpu")) == (torch.bfloat16, False)
    assert trainer.amp_precision(torch.device("mps")) == (torch.float16, True)


# ----------------------------------------------------------------------------- fused AdamW


def tiny_model(seed: int = 0) -> ChessNet:
    torch.manual_seed(seed)
    return ChessNet(ModelConfig(blocks=1, channels=8))


def fake_steps(model: ChessNet, optimizer: torch.optim.Optimizer, steps: int, seed: int) -> None:
    """Optimizer steps with seeded gradients (the same for every optimizer)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=g)
        optimizer.step()


def test_adamw_is_fused_only_when_the_parameters_are_on_cuda():
    cpu = trainer.make_optimizer(tiny_model(), 1e-3, 1e-4)
    # the CPU optimizer is torch's default AdamW, as before
    assert [g["fused"] for g in cpu.param_groups] == [None, None]
    assert [g["weight_decay"] for g in cpu.param_groups] == [1e-4, 0.0]
    fused = trainer.make_optimizer(tiny_model(), 1e-3, 1e-4, fused=True)
    assert [g["fused"] for g in fused.param_groups] == [True, True]


def test_fused_adamw_makes_the_same_update():
    models = [tiny_model(), tiny_model()]
    opts = [trainer.make_optimizer(models[0], 1e-2, 1e-4),
            trainer.make_optimizer(models[1], 1e-2, 1e-4, fused=True)]
    for model, opt in zip(models, opts, strict=True):
        fake_steps(model, opt, 5, seed=1)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("saved_fused, now_fused", [(True, False), (False, True)])
def test_optimizer_state_resumes_with_this_runs_kernel(saved_fused, now_fused):
    model = tiny_model()
    saved = trainer.make_optimizer(model, 1e-2, 1e-4, fused=saved_fused)
    fake_steps(model, saved, 3, seed=2)
    state = copy.deepcopy(saved.state_dict())  # as from a file: no tensor shared
    twin = tiny_model()
    twin.load_state_dict(model.state_dict())

    resumed = trainer.make_optimizer(twin, 1e-2, 1e-4, fused=now_fused)
    trainer.load_optimizer_state(resumed, state)
    assert [g["fused"] for g in resumed.param_groups] == [now_fused or None] * 2
    steps = [s["step"] for s in resumed.state.values()]
    assert all(s.device.type == "cpu" and s.dtype == torch.float32 and s.item() == 3
               for s in steps)
    fake_steps(model, saved, 2, seed=3)  # the saved optimizer goes on, and the resumed one
    fake_steps(twin, resumed, 2, seed=3)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)


def test_resume_across_precisions_starts_a_fresh_grad_scaler(shards, tmp_path, monkeypatch):
    """A bf16 run (no scaler) resumed where --use-amp means fp16 with a scaler: the
    checkpoint's empty scaler state is not loaded (GradScaler raises on it)."""
    settings = {"shards": str(shards), "checkpoint_out": str(tmp_path / "ck" / "final.pt"),
                "run_dir": str(tmp_path / "runs"), "tensorboard": False,
                "heartbeat_seconds": 0.0, "eval_every": 0, "batch_size": 16,
                "use_amp": True, "save_every": 2, "model.blocks": 1, "model.channels": 8,
                "loader.workers": 0}
    trainer.train(load_run_config(None, {**settings, "steps": 2}))
    assert ckpt.load(ckpt.step_path(tmp_path / "ck", "pretrained", 2))["scaler"] == {}
    monkeypatch.setattr(trainer, "amp_precision", lambda device: (torch.bfloat16, True))
    summary = trainer.train(load_run_config(None, {**settings, "steps": 4,
                                                   "auto_resume": True}))
    assert summary["step"] == 4 and summary["nonfinite_total"] == 0
    assert ckpt.load(tmp_path / "ck" / "final.pt")["scaler"]["scale"] > 0


# ----------------------------------------------------------------------------- process group


def test_one_process_takes_the_process_group_path_only_when_asked(monkeypatch):
    monkeypatch.setenv(distributed.PROCESS_GROUP_ENV, "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)  # not under torchrun: plain, as before
    assert not distributed.setup(torch.device("cpu")).enabled
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv(distributed.PROCESS_GROUP_ENV, "0")
    assert not distributed.setup(torch.device("cpu")).enabled
