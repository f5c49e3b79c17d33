"""make gpu-check: the GPU path, measured, in one table (on a CPU: the same checks, small).

    python bench/gpu_check.py --shards DIR [--device auto|cuda|cpu] [--out runs/gpu-check]
    bash bench/gpu_check.sh          # venv, CUDA torch, shards, then this (make gpu-check)

Rows, each a real run of the project's code on the shards:

* ``trainer``: ``train.trainer.train``, the whole step loop (loader workers, expansion
  on the device, forward, chunked SSL heads, backward, AdamW, EMA), for each batch size,
  AMP off and on (the dtype the trainer picks on this device: bf16 where the hardware
  has it, else fp16 with a GradScaler), eager and with ChessNet's forward compiled
  (``torch.compile``, tried where asked; a failure is reported, not fatal).
  Positions/s and the share of time spent waiting for the next batch are the trainer's
  own figures over the second half of the run (warm-up and compilation excluded).
* ``expand``: ``train.expand.expand`` of one chunk of compact records already on the
  device (tensor ops on a GPU, the numba kernel on a CPU): device-ready positions/s.
* ``loader``: ``train.expand.device_batches`` into the device with 1, 2, 4 worker
  processes: compact records read from the shards, copied to the device and expanded.
* ``torchrun``: ``torchrun --nproc-per-node 1 -m train`` with ``TRAIN_PROCESS_GROUP=1``,
  so that one process takes the multi-process path: a process group (NCCL on CUDA, gloo
  on CPU), SyncBatchNorm (GlobalBatchNorm2d on CPU) and DDP. It saves at step N and
  ends at 2N.
* ``resume``: the same command resumed from its step-N checkpoint with ``--auto-resume``;
  its network at 2N is compared with the uninterrupted run's (training-mode outputs on
  a fixed batch, and the largest parameter difference).
* ``expand check``: the device's expansion of one chunk against the CPU numba expansion
  of the same chunk: integer targets bit-exact, float inputs and values within 1e-6
  (their largest difference is printed). On a CPU it checks the tensor ops against
  the numba kernel.

The memory column is the peak that torch allocated on the GPU during the row; on a
CPU it is the resident set of the process measured (this one, or the torchrun worker).
Exits 1 when a check fails; rows past ``--budget`` seconds are printed as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import torch  # noqa: E402

from dataengine.build import build  # noqa: E402
from train import checkpoint as ckpt  # noqa: E402
from train import trainer  # noqa: E402
from train.batch import columns_of  # noqa: E402
from train.config import load_run_config  # noqa: E402
from train.curriculum import load_curriculum  # noqa: E402
from train.distributed import PROCESS_GROUP_ENV  # noqa: E402
from train.expand import device_batches, expand, expand_inputs  # noqa: E402
from train.loader import BatchLoader, LoaderConfig  # noqa: E402
from train.model import ChessNet, ModelConfig  # noqa: E402

#: What the shards are built from: the test suite's part of the sample data (200 games,
#: 300 puzzles, one opening file), about 22,000 training positions: small, every stream.
SMALL_INPUTS = [str(REPO / "dataengine" / "sample_data" / name) for name in
                ("sf_selfplay_200.pgn", "lichess_puzzles_300.csv", "openings_a.tsv")]
#: The trainer's default targets (config.yaml): the expansion is checked as it runs.
TEACHER_MIX, POLICY_FROM_TEACHER = 0.5, True
#: The batch size of the loader rows.
LOADER_BATCH = 1024
#: Largest difference allowed between the device's and the CPU's float expansion.
FLOAT_ATOL = 1e-6
#: Largest difference allowed between the resumed and the uninterrupted network's
#: outputs: on a CPU both runs round alike (0 expected); a GPU's convolution kernels may
#: sum in another order. A resume that breaks (optimizer, schedule, data) moves them by
#: 1e-2 and more.
RESUME_ATOL = {"cpu": 1e-5, "cuda": 1e-3}

#: Per device: the sizes a run uses unless flags say otherwise.
DEFAULTS = {
    "cuda": {"batch_sizes": "96,1024,4096", "steps": 60, "blocks": 6, "channels": 64,
             "loader_workers": "1,2,4", "train_workers": 4, "seconds": 3.0,
             "torchrun_steps": 10, "torchrun_batch": 256, "budget": 240.0},
    "cpu": {"batch_sizes": "32,96", "steps": 6, "blocks": 1, "channels": 16,
            "loader_workers": "1,2", "train_workers": 0, "seconds": 1.0,
            "torchrun_steps": 2, "torchrun_batch": 32, "budget": 0.0},
}


@dataclass
class Row:
    """One line of the table: what was measured, its figures, and whether it passed."""

    check: str
    setting: str
    pos_s: float | None = None
    data_wait: float | None = None
    memory_mb: float | None = None
    result: str = ""
    failed: bool = False


class CheckFailed(RuntimeError):
    """A correctness check did not hold (the message says what differed)."""


# ----------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def memory_mb(device: torch.device) -> float:
    """Peak GPU memory torch allocated since :func:`reset_peak`, or this process's RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return psutil.Process().memory_info().rss / 2**20


def ensure_shards(shards: Path, workers: int) -> Path:
    """Shards at ``shards``, built from SMALL_INPUTS unless a manifest is there already."""
    if not (shards / "manifest.json").is_file():
        print(f"gpu-check: building shards into {shards}", file=sys.stderr)
        build(SMALL_INPUTS, shards, workers=workers, quiet=True)
    return shards


def chunk_loader(shards: Path, positions: int) -> BatchLoader:
    """A loader whose batches are whole chunks of ``positions`` rows, read in-process."""
    return BatchLoader(shards, load_curriculum("stockfish"), steps=100_000,
                       batch_size=positions, seed=0, cfg=LoaderConfig(workers=0))


def first_chunk(shards: Path, positions: int = 4096) -> torch.Tensor:
    """The first chunk of compact rows (``positions`` of them) the trainer would read,
    on the CPU."""
    _, _, rows = next(chunk_loader(shards, positions).chunks())
    return rows.clone()


def loader_expansion(shards: Path, positions: int,
                     device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The first batch that ``device_batches`` hands the step loop from the loader of
    :func:`first_chunk`: its rows copied to the device (pinned, non-blocking on CUDA) and
    expanded there, as in training."""
    batches = device_batches(chunk_loader(shards, positions), device, teacher_mix=TEACHER_MIX,
                             policy_from_teacher=POLICY_FROM_TEACHER)
    _, x, targets = next(batches)
    batches.close()
    return x, targets


def amp_label(device: torch.device) -> str:
    dtype, scaled = trainer.amp_precision(device)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype] + (" + scaler" if scaled
                                                                      else "")


@contextlib.contextmanager
def compiled_forward():
    """Inside: every ChessNet the trainer builds has its forward compiled in place
    (``nn.Module.compile``: the same parameters and state-dict keys), what a compile
    option of the trainer would do. The SSL heads stay eager."""
    make_net, make_ema = trainer.ChessNet, trainer.make_ema

    def compiled_net(config):
        net = make_net(config)
        net.compile()
        return net

    def ema_of(model, *args):
        ema = make_ema(model, *args)
        # the deep copy shares the original's compiled call: the copy must run its own
        ema.module._compiled_call_impl = None
        return ema

    trainer.ChessNet, trainer.make_ema = compiled_net, ema_of
    try:
        yield
    finally:
        trainer.ChessNet, trainer.make_ema = make_net, make_ema


def trainer_setting(device: torch.device, batch_size: int, amp: bool, compiled: bool) -> str:
    return (f"batch {batch_size}, amp {amp_label(device) if amp else 'off'}, "
            f"{'compiled' if compiled else 'eager'}")


def loader_setting(device: torch.device, workers: int, batch_size: int) -> str:
    return f"{workers} worker{'s' if workers > 1 else ''}, batch {batch_size} -> {device.type}"


def setting_of(group: str, params: tuple, device: torch.device) -> str:
    """The setting column of a planned row (for one that was skipped or broke)."""
    if group == "trainer":
        return trainer_setting(device, *params)
    if group == "loader":
        return loader_setting(device, params[0], LOADER_BATCH)
    return {"expand check": f"{device.type} tensor ops = cpu numba",
            "expand": f"one chunk on {device.type}",
            "torchrun": "1 process through the process group, then resume"}[group]


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:120]


# ----------------------------------------------------------------------------- measurements


def trainer_row(shards: Path, device: torch.device, batch_size: int, amp: bool,
                compiled: bool, args: argparse.Namespace) -> Row:
    """One short run of the real trainer; its figures over the second half of the run."""
    row = Row("trainer", trainer_setting(device, batch_size, amp, compiled))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_run_config(None, {
            "shards": str(shards), "device": device.type, "steps": args.steps,
            "batch_size": batch_size, "use_amp": amp, "progress_interval": max(1, args.steps // 2),
            "save_every": 0, "eval_every": 0, "tensorboard": False, "heartbeat_seconds": 0.0,
            "checkpoint_out": str(Path(tmp) / "final.pt"), "run_dir": tmp,
            "model.blocks": args.blocks, "model.channels": args.channels,
            "loader.workers": args.train_workers,
        })
        reset_peak(device)
        t0 = time.perf_counter()
        with compiled_forward() if compiled else contextlib.nullcontext():
            summary = trainer.train(cfg)
        seconds = time.perf_counter() - t0
    m = summary["last_metrics"]
    row.pos_s, row.data_wait, row.memory_mb = m["positions_per_s"], m["data_wait_frac"], \
        memory_mb(device)
    if summary["nonfinite_total"]:
        row.result, row.failed = f"{summary['nonfinite_total']} non-finite steps", True
    else:
        row.result = f"{args.steps} steps in {seconds:.1f} s"
    return row


def expand_row(chunk: torch.Tensor, device: torch.device, seconds: float) -> Row:
    """Device-ready positions/s of train.expand.expand on one chunk already on the device."""
    how = "numba kernel" if device.type == "cpu" else "tensor ops"
    row = Row("expand", f"chunk of {len(chunk):,} on {device.type}, {how}")
    batch = columns_of(chunk.to(device))
    reset_peak(device)
    for _ in range(5):  # warm-up: tables, kernels, the allocator's blocks
        expand(batch, teacher_mix=TEACHER_MIX, policy_from_teacher=POLICY_FROM_TEACHER)
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            expand(batch, teacher_mix=TEACHER_MIX, policy_from_teacher=POLICY_FROM_TEACHER)
        sync(device)
        n += 10 * len(chunk)
    row.pos_s, row.memory_mb = n / (time.perf_counter() - t0), memory_mb(device)
    return row


def loader_row(shards: Path, device: torch.device, workers: int, batch_size: int,
               seconds: float) -> Row:
    """Positions/s that train.expand.device_batches hands the step loop: read by
    `workers` processes, copied to the device (pinned, non-blocking on CUDA), expanded."""
    row = Row("loader", loader_setting(device, workers, batch_size))
    loader = BatchLoader(shards, load_curriculum("stockfish"), steps=100_000,
                         batch_size=batch_size, seed=0, cfg=LoaderConfig(workers=workers))
    reset_peak(device)
    batches = device_batches(loader, device, teacher_mix=TEACHER_MIX,
                             policy_from_teacher=POLICY_FROM_TEACHER)
    try:
        per_chunk = loader.chunk_steps
        for _ in itertools.islice(batches, 4 * per_chunk * workers):  # workers start
            pass
        sync(device)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _, x, _ in itertools.islice(batches, per_chunk):
                n += len(x)
            sync(device)
        row.pos_s = n / (time.perf_counter() - t0)
    finally:
        batches.close()  # stops the worker processes
    row.memory_mb = memory_mb(device)
    return row


def compare_expansions(want: dict[str, torch.Tensor], got: dict[str, torch.Tensor],
                       what: str) -> tuple[int, float]:
    """Raises CheckFailed unless every integer / bool tensor of `got` equals `want`'s and
    every float one is within FLOAT_ATOL; returns (exact tensors, largest float diff)."""
    if want.keys() != got.keys():
        raise CheckFailed(f"{what}: different targets: {sorted(want)} vs {sorted(got)}")
    worst, exact = 0.0, 0
    for key, a in want.items():
        b = got[key].cpu()
        if a.dtype != b.dtype or a.shape != b.shape:
            raise CheckFailed(f"{what}: {key} is {b.dtype} {tuple(b.shape)}, not {a.dtype} "
                              f"{tuple(a.shape)}")
        if a.is_floating_point():
            diff = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
            if not diff <= FLOAT_ATOL:
                raise CheckFailed(f"{what}: {key}: floats differ by up to {diff:.2e} "
                                  f"(> {FLOAT_ATOL})")
            worst = max(worst, diff)
        elif not torch.equal(a, b):
            bad = (a != b).nonzero()[0].tolist()
            raise CheckFailed(f"{what}: {key}: integer targets differ, first at index {bad}")
        else:
            exact += 1
    return exact, worst


def expansion_check(chunk: torch.Tensor, device: torch.device,
                    shards: Path | None = None) -> Row:
    """The device's tensor-op expansion of `chunk` against the CPU numba expansion of the
    same rows: every integer / bool target equal, the float tensors within FLOAT_ATOL.
    With `shards` (those `chunk` is the first chunk of), the batch the loader hands the
    step loop is compared too: the same expansion after the pinned, non-blocking copy."""
    row = Row("expand check", f"{device.type} tensor ops = cpu numba, {len(chunk):,} positions")
    kwargs = {"teacher_mix": TEACHER_MIX, "policy_from_teacher": POLICY_FROM_TEACHER}
    want_x, want = expand(columns_of(chunk), fused=True, **kwargs)
    got_x, got = expand(columns_of(chunk.to(device)), fused=False, **kwargs)
    exact, worst = compare_expansions({"x": want_x, **want}, {"x": got_x, **got}, "expand")
    how = ""
    if shards is not None:
        x, targets = loader_expansion(shards, len(chunk), device)
        _, diff = compare_expansions({"x": want_x, **want}, {"x": x, **targets},
                                     "loader batch")
        worst, how = max(worst, diff), " (direct and through the loader)"
    row.result = (f"ok: {exact} integer tensors bit-exact{how}, floats max |diff| "
                  f"{worst:.1e}")
    return row


# ----------------------------------------------------------------------------- torchrun


def loopback_interface() -> str:
    return next((name for _, name in socket.if_nameindex() if name.startswith("lo")), "lo")


def torchrun_command() -> list[str]:
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun)] if torchrun.exists() else [sys.executable, "-m",
                                                      "torch.distributed.run"]


def run_torchrun(shards: Path, device: torch.device, out: Path, args: argparse.Namespace,
                 resume: bool) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 1 -m train`` on the multi-process path, into `out`:
    steps 2N, saving at N (N = --torchrun-steps)."""
    n = args.torchrun_steps
    flags = {"device": device.type, "shards": shards, "steps": 2 * n, "save-every": n,
             "keep-checkpoints": 0, "batch-size": args.torchrun_batch,
             "lr-warmup-steps": 1, "ssl-warmup-steps": 1, "progress-interval": n,
             "eval-every": 0, "heartbeat-seconds": 0, "blocks": args.blocks,
             "channels": args.channels, "workers": args.train_workers,
             "checkpoint-out": out / "ck" / "final.pt", "run-dir": out / "runs"}
    cmd = [*torchrun_command(), "--standalone", "--local-addr", "127.0.0.1",
           "--nproc-per-node", "1", "-m", "train", "--no-tensorboard",
           *(["--auto-resume"] if resume else []),
           *itertools.chain.from_iterable((f"--{k}", str(v)) for k, v in flags.items())]
    env = {**os.environ, PROCESS_GROUP_ENV: "1", "PYTHONPATH": str(REPO)}
    if device.type == "cpu":
        env |= {"GLOO_SOCKET_IFNAME": loopback_interface(), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=args.torchrun_timeout)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CheckFailed(f"torchrun exited {done.returncode}: " + " | ".join(tail))
    return done


def run_figures(out: Path, device: torch.device) -> tuple[float, float]:
    """Positions/s and memory of a run's last metrics line (its second half)."""
    lines = (out / "runs" / "pretrained" / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    return last["positions_per_s"], last["device_peak_mb" if device.type == "cuda" else "rss_mb"]


def network_outputs(path: Path, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """A checkpoint's network's training-mode outputs on `x` (on the CPU): what the loss
    sees, independent of the one weight direction that BatchNorm cancels (see
    tests/test_distributed.py)."""
    state = ckpt.load(path)
    net = ChessNet(ModelConfig(**state["config"]["model"]))
    net.load_state_dict(state["model"])
    with torch.no_grad():
        out = net.train()(x)
    return {k: out[k] for k in ("policy", "value", "features")}


def torchrun_rows(shards: Path, device: torch.device, out: Path, chunk: torch.Tensor,
                  args: argparse.Namespace) -> list[Row]:
    """The torchrun row (one process through the process group, SyncBatchNorm and DDP)
    and the resume row (its step-N checkpoint resumed, compared at 2N)."""
    n = args.torchrun_steps
    backend = "nccl" if device.type == "cuda" else "gloo"
    bn = "SyncBatchNorm" if device.type == "cuda" else "GlobalBatchNorm2d"
    first = Row("torchrun", f"1 process, {backend}, {bn}, DDP, batch {args.torchrun_batch}")
    second = Row("resume", f"from its step-{n} checkpoint to step {2 * n}")
    whole, resumed = out / "whole", out / "resumed"
    for d in (whole, resumed):
        shutil.rmtree(d, ignore_errors=True)
    try:
        run_torchrun(shards, device, whole, args, resume=False)
        log = (whole / "runs" / "pretrained" / "train.log").read_text()
        if f"1 processes ({backend})" not in log:
            raise CheckFailed(f"the run did not take the process-group path ({backend}): "
                              "no '1 processes' line in its train.log")
    except CheckFailed as e:
        first.result, first.failed = f"FAILED: {e}", True
        second.result, second.failed = "FAILED: not run (the torchrun run failed)", True
        return [first, second]
    first.pos_s, first.memory_mb = run_figures(whole, device)
    first.result = f"ok: {2 * n} steps through the {backend} process group"
    try:
        (resumed / "ck").mkdir(parents=True)
        middle = ckpt.step_path(Path("ck"), "pretrained", n)
        shutil.copy(whole / middle, resumed / middle)
        run_torchrun(shards, device, resumed, args, resume=True)
        _, second.memory_mb = run_figures(resumed, device)  # its speed: mostly start-up
        end = ckpt.step_path(Path("ck"), "pretrained", 2 * n)
        a, b = ckpt.load(whole / end), ckpt.load(resumed / end)
        if (a["step"], a["loader"]["step"]) != (b["step"], b["loader"]["step"]):
            raise CheckFailed(f"resumed run ended at step {b['step']} (loader "
                              f"{b['loader']['step']}), the whole run at {a['step']}")
        x = expand_inputs(columns_of(chunk[:64]))
        outputs = [network_outputs(p, x) for p in (whole / end, resumed / end)]
        out_diff = max((outputs[0][k] - outputs[1][k]).abs().max().item() for k in outputs[0])
        param_diff = max(((v - b["model"][k]).abs().max().item() for k, v in a["model"].items()
                          if v.is_floating_point()), default=0.0)
        atol = RESUME_ATOL[device.type]
        if not out_diff <= atol:
            raise CheckFailed(f"the resumed network's outputs differ by {out_diff:.1e} "
                              f"(> {atol:.0e})")
        second.result = f"ok: outputs max |diff| {out_diff:.1e}, weights {param_diff:.1e}"
    except CheckFailed as e:
        second.result, second.failed = f"FAILED: {e}", True
    return [first, second]


# ----------------------------------------------------------------------------- the table


def planned_rows(args: argparse.Namespace, device: torch.device) -> list[tuple[str, tuple]]:
    """(group, parameters) of every row, in the order they are measured: the checks and
    the cheap rows first, compiled trainer runs last (the slowest to start), those with
    AMP first (what a GPU run would use), so that a tight --budget skips the others."""
    rows: list[tuple[str, tuple]] = [("expand check", ()), ("expand", ())]
    rows += [("loader", (w,)) for w in args.loader_workers]
    rows += [("torchrun", ())]
    rows += [("trainer", (b, amp, False)) for b in args.batch_sizes for amp in (False, True)]
    if args.compile:
        rows += [("trainer", (b, amp, True)) for amp in (True, False) for b in args.batch_sizes]
    return rows


def print_table(rows: list[Row], out=None) -> None:
    """A plain table, one line a row (no frames: it goes to logs as it is)."""
    out = out or sys.stdout
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    cells = [("check", "setting", "pos/s", "data wait", "memory MB", "result")]
    cells += [(r.check, r.setting, num(r.pos_s, ",.0f"), num(r.data_wait, ".1%"),
               num(r.memory_mb, ",.0f"), r.result) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    right = {2, 3, 4}
    for i, line in enumerate(cells):
        text = "  ".join(c.rjust(w) if j in right else c.ljust(w)
                         for j, (c, w) in enumerate(zip(line, widths, strict=True)))
        print(text.rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)


def describe(device: torch.device, shards: Path, args: argparse.Namespace) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        where = f"{name}, CUDA {torch.version.cuda}, amp {amp_label(device)}"
    else:
        where = f"CPU ({platform.processor() or platform.machine()})"
    manifest = json.loads((shards / "manifest.json").read_text())
    records = manifest["splits"]["train"]["records"]
    return (f"make gpu-check on {where}, torch {torch.__version__}, {os.cpu_count()} cores\n"
            f"shards {shards} ({records:,} train records); model {args.blocks}x{args.channels}; "
            f"trainer rows: {args.steps} steps, {args.train_workers} loader workers, figures "
            f"from the second half")


def measure_row(group: str, params: tuple, args: argparse.Namespace, device: torch.device,
                shards: Path, out: Path, chunk: torch.Tensor) -> list[Row]:
    """The row(s) of one planned measurement."""
    if group == "expand check":
        return [expansion_check(chunk, device, shards)]
    if group == "expand":
        return [expand_row(chunk, device, args.seconds)]
    if group == "loader":
        return [loader_row(shards, device, params[0], LOADER_BATCH, args.seconds)]
    if group == "torchrun":
        return torchrun_rows(shards, device, out, chunk, args)
    return [trainer_row(shards, device, *params, args)]


def measure(args: argparse.Namespace, device: torch.device, shards: Path,
            out: Path) -> list[Row]:
    """Every planned row, in order. A row that breaks is reported in the table (FAILED,
    or for a compiled trainer run "compile failed", after which the other compiled runs
    are skipped); rows planned past the budget are listed as skipped."""
    chunk = first_chunk(shards)
    # the budget counts from the wrapper's start (bench/gpu_check.sh), installs included
    t0 = float(os.environ.get("GPU_CHECK_STARTED") or time.time())
    deadline = t0 + args.budget if args.budget else None
    rows: list[Row] = []
    compile_failed = None
    for group, params in planned_rows(args, device):
        setting = setting_of(group, params, device)
        compiled = group == "trainer" and params[2]
        if deadline is not None and time.time() > deadline:
            rows.append(Row(group, setting, result=f"skipped: past the --budget of "
                                                   f"{args.budget:.0f} s"))
            continue
        if compiled and compile_failed:
            rows.append(Row(group, setting, result="skipped: compile failed above"))
            continue
        print(f"gpu-check: {group}: {setting} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            rows += measure_row(group, params, args, device, shards, out, chunk)
        except CheckFailed as e:
            rows.append(Row(group, setting, result=f"FAILED: {e}", failed=True))
        except Exception as e:  # a measurement that broke: the table still comes out
            if compiled:  # torch.compile does not work with the model here: a finding
                compile_failed = first_line(e)
                rows.append(Row(group, setting, result=f"compile failed: {compile_failed}"))
            else:
                rows.append(Row(group, setting, result=f"FAILED: {first_line(e)}",
                                failed=True))
        print(f"gpu-check: ... {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
    return rows


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, torch.device]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    ap.add_argument("--shards", type=Path, default=REPO / "runs" / "gpu-check" / "shards",
                    help="shards to measure on (built from the small sample inputs if absent)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "gpu-check",
                    help="the torchrun runs go here")
    ap.add_argument("--batch-sizes", help="trainer rows, comma separated "
                    "(cuda: 96,1024,4096; cpu: 32,96)")
    ap.add_argument("--steps", type=int, help="steps of each trainer row (cuda 60, cpu 6)")
    ap.add_argument("--blocks", type=int, help="model blocks (cuda 6, the default model; cpu 1)")
    ap.add_argument("--channels", type=int, help="model channels (cuda 64; cpu 16)")
    ap.add_argument("--loader-workers", help="loader rows' worker counts (cuda 1,2,4; cpu 1,2)")
    ap.add_argument("--train-workers", type=int, help="loader workers of the trainer rows "
                    "(cuda 4, cpu 0)")
    ap.add_argument("--seconds", type=float, help="per expand / loader row (cuda 3, cpu 1)")
    ap.add_argument("--torchrun-steps", type=int, help="N: the torchrun run saves at N and "
                    "ends at 2N (cuda 10, cpu 2)")
    ap.add_argument("--torchrun-batch", type=int, help="batch of the torchrun runs "
                    "(cuda 256, cpu 32)")
    ap.add_argument("--torchrun-timeout", type=float, default=300.0)
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                    help="trainer rows with a compiled forward too (auto: on CUDA only)")
    ap.add_argument("--budget", type=float, help="seconds from the start (of "
                    "bench/gpu_check.sh, where it ran) after which no row starts "
                    "(cuda 240, cpu 0 = none)")
    args = ap.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device cuda, but torch {torch.__version__} sees no CUDA device "
                 "(bench/gpu_check.sh installs a CUDA build of torch where a GPU is visible)")
    for key, value in DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
    args.loader_workers = [int(w) for w in str(args.loader_workers).split(",")]
    args.compile = args.compile == "on" or (args.compile == "auto" and args.device == "cuda")
    return args, torch.device(args.device)


def main(argv: list[str] | None = None) -> int:
    args, device = parse_args(argv)
    shards = ensure_shards(args.shards, os.cpu_count() or 1)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    rows = measure(args, device, shards, args.out)
    print()
    print(describe(device, shards, args))
    print()
    print_table(rows)
    failed = [r for r in rows if r.failed]
    print(f"\n{len(rows)} rows in {time.monotonic() - t0:.0f} s; "
          f"{'all checks passed' if not failed else f'{len(failed)} FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
