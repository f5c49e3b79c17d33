"""The training run, top to bottom: setup, model or resume, optimizer, data, loop.

The step loop only moves compact batches to the device, expands them with
tensor ops (train.expand) and computes losses: no chess logic here. Under
torchrun the same loop runs in every process, data-parallel (train.distributed).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from dataengine.shm import remove_stale_semaphores
from train import checkpoint as ckpt
from train import distributed, runs
from train.config import RunConfig, TrainConfig
from train.curriculum import load_curriculum
from train.distributed import Dist, env_rank
from train.ema import ema_weights, make_ema
from train.expand import IGNORE_INDEX, INPUT_FORMAT_VERSION, device_batches
from train.loader import BatchLoader, verify_shards
from train.losses import (
    SSLPositiveWeights,
    SSLWeights,
    mate_loss,
    policy_loss,
    ssl_losses_chunked,
    stalemate_loss,
    value_loss,
    wdl_loss,
)
from train.model import ChessNet, ModelConfig
from train.monitor import Heartbeat, MemoryMonitor, MetricsLog, memory_figures
from train.validation import Validation

log = logging.getLogger("train")

MEMORY_LEVELS = ("ok", "warning", "critical")  # MemoryMonitor.check's answers, mildest first


class TrainingError(RuntimeError):
    """The run cannot go on (explained in the message); a checkpoint was saved if possible."""


# ----------------------------------------------------------------------------- setup helpers


def pick_device(name: str) -> torch.device:
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        return torch.device("mps" if has_mps else "cuda" if torch.cuda.is_available() else "cpu")
    if name == "mps" and not has_mps:
        raise TrainingError("--device mps was asked for, but MPS is not available here "
                            "(it needs Apple silicon and a torch build with MPS)")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to min_ratio at `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def ssl_scale(step: int, weight: float, warmup: int) -> float:
    return weight * min(1.0, (step + 1) / warmup) if warmup else weight


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                   fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW, without weight decay on biases and norm parameters.

    ``fused`` (default: when every parameter is on a CUDA device) runs each update as
    torch's fused AdamW kernel instead of its default loop over tensors (on a GPU the
    loop is a few kernel launches per parameter tensor every step). Elsewhere the
    optimizer is torch's default AdamW, as it always was."""
    params = list(model.parameters())
    if fused is None:
        fused = bool(params) and all(p.device.type == "cuda" for p in params)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr,
                             **({"fused": True} if fused else {}))


#: The param-group keys that choose AdamW's update kernel rather than the optimisation.
KERNEL_KEYS = ("fused", "foreach", "capturable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """``optimizer.load_state_dict(saved)``, keeping this run's update kernel.

    The saved param groups carry the saving run's ``fused`` / ``foreach`` flags, which
    ``load_state_dict`` would adopt: a checkpoint from a GPU would make a CPU resume
    fused, one from a CPU would leave a GPU resume unfused. This run's flags are put
    back, and each ``step`` count goes where that kernel wants it (a fused or
    capturable update: on the parameter's device; the others: on the CPU)."""
    kernels = [{k: g[k] for k in KERNEL_KEYS if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, kept in zip(optimizer.param_groups, kernels, strict=True):
        group.update(kept)
        on_device = bool(group.get("fused") or group.get("capturable"))
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if isinstance(state.get("step"), torch.Tensor):
                where = p.device if on_device else torch.device("cpu")
                state["step"] = state["step"].to(device=where, dtype=torch.float32)


def amp_precision(device: torch.device) -> tuple[torch.dtype, bool]:
    """``--use-amp``'s autocast dtype on ``device`` and whether it needs a GradScaler.

    bf16 has float32's exponent range, so it needs no loss scaling: it is used on a CUDA
    GPU that has it natively (``torch.cuda.is_bf16_supported(including_emulation=False)``:
    compute capability 8.0 and later, e.g. A100, H100, H200) and on the CPU. Older CUDA
    GPUs and MPS get fp16 with a GradScaler."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return torch.bfloat16, False
        return torch.float16, True
    if device.type == "mps":
        return torch.float16, True
    return torch.bfloat16, False


def init_from(model: torch.nn.Module, path: str) -> None:
    """--checkpoint-in: weights (EMA when present) from another run, keys reported."""
    state = ckpt.load(path)
    weights = state.get("ema_model") or state.get("model") or state
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise TrainingError(f"--checkpoint-in {path!r} does not fit this model: {e}") from None
    log.info("initialised from %s: %d missing keys %s, %d unexpected keys %s", path,
             len(result.missing_keys), result.missing_keys[:5],
             len(result.unexpected_keys), result.unexpected_keys[:5])


class StepLosses(torch.nn.Module):
    """The model and its losses as one module, so that a step's whole backward starts from
    one forward. DistributedDataParallel must see that forward: the SSL heads run outside
    ChessNet.forward (in chunks, and on some steps only), and DDP would not know they were
    used otherwise.

    Returns the losses by name and ``"loss"``, the total to backpropagate. With `shares`
    (several processes, :func:`loss_shares`) every loss is this rank's share of the
    global batch's loss: the shares of all ranks add up to what one process computes on
    the whole batch.
    """

    def __init__(self, model: ChessNet, ssl_weights: SSLWeights,
                 ssl_pos_weights: SSLPositiveWeights | None = None,
                 stalemate_weight: float = 0.0, mate_weight: float = 0.0):
        super().__init__()
        self.model, self.ssl_weights, self.ssl_pos_weights = model, ssl_weights, ssl_pos_weights
        self.weights = {"stalemate": stalemate_weight, "mate": mate_weight}

    def forward(self, x: torch.Tensor, targets: dict[str, torch.Tensor], *, with_ssl: bool,
                ssl_scale: float, ssl_chunk: int,
                shares: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        out = self.model(x)
        losses = {"policy": policy_loss(out["policy"], targets["policy"]),
                  "value": value_loss(out["value"], targets["value"], targets["value_mask"])}
        if "wdl" in out:
            losses["wdl"] = wdl_loss(out["wdl"], targets["wdl"])
        for name, loss_of in (("stalemate", stalemate_loss), ("mate", mate_loss)):
            if self.weights[name] > 0:
                losses[name] = loss_of(out["policy"], targets[name])
        if shares is not None:
            losses = {k: v * shares[k] for k, v in losses.items()}
        loss = sum(v * self.weights.get(k, 1.0) for k, v in losses.items())
        if with_ssl:
            tasks: dict[str, torch.Tensor] = {}
            ssl = ssl_losses_chunked(self.model, out["features"], targets, ssl_chunk,
                                     self.ssl_weights, task_losses=tasks,
                                     pos_weights=self.ssl_pos_weights)
            if shares is not None:  # plain means over positions: the share is the rows'
                ssl = ssl * shares["ssl"]
                tasks = {k: v * shares["ssl"] for k, v in tasks.items()}
            losses["ssl"] = ssl
            losses.update({f"ssl_{k}": v for k, v in tasks.items()})
            loss = loss + ssl_scale * ssl
        return {"loss": loss, **losses}


def loss_shares(targets: dict[str, torch.Tensor], ddp: Dist) -> dict[str, torch.Tensor] | None:
    """Per loss, this rank's share of the global batch's count of its targets (positions
    with a move, with a value target, with a result, with a stalemating move, with a mating
    move; all positions
    for SSL), or None in a single process. A masked mean times its share, summed over
    ranks, is the masked mean over the global batch, however unevenly the masks fall on
    the ranks."""
    if not ddp.enabled:
        return None
    policy = targets["policy"]
    counts = torch.stack([(policy != IGNORE_INDEX).sum(), targets["value_mask"].sum(),
                          (targets["wdl"] != IGNORE_INDEX).sum(),
                          (targets["stalemate"] >= 0).any(dim=-1).sum(),
                          (targets["mate"] >= 0).any(dim=-1).sum(),
                          torch.tensor(len(policy), device=policy.device)])
    return dict(zip(("policy", "value", "wdl", "stalemate", "mate", "ssl"),
                    ddp.shares(counts).unbind(), strict=True))


# ----------------------------------------------------------------------------- monitoring


@dataclass
class ProgressWindow:
    """What the steps since the last metrics line add up to: loss sums (tensors, so that
    no step waits for the device), steps, and seconds waited for data."""

    steps: int = 0
    wait: float = 0.0
    t0: float = field(default_factory=time.perf_counter)
    sums: dict[str, torch.Tensor] = field(default_factory=dict)

    def add(self, values: dict[str, torch.Tensor], weight: float = 1.0) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * weight

    def pause(self, seconds: float) -> None:
        """Leave ``seconds`` (a held-out evaluation) out of the training speed."""
        self.t0 += seconds

    def figures(self, positions_per_step: int) -> dict[str, float]:
        """Mean losses over the window's steps, speed and data wait."""
        n = max(1, self.steps)
        dt = time.perf_counter() - self.t0
        return {**{k: float(v) / n for k, v in self.sums.items()},
                "steps_per_s": n / dt, "positions_per_s": n * positions_per_step / dt,
                "data_wait_frac": self.wait / dt}


def start_message(run: RunConfig, cfg: TrainConfig, device: torch.device, model: torch.nn.Module,
                  amp: torch.dtype | None, step: int) -> str:
    """The run's first log line: where, what model, how much data, from which step."""
    batch = (f"batches of {cfg.batch_size} positions" if cfg.accum_steps == 1 else
             f"batches of {cfg.accum_steps} x {cfg.batch_size} positions (gradients "
             f"accumulated over {cfg.accum_steps} micro-batches)")
    start = f", from step {step}" if step else ""
    return (f"run {cfg.checkpoint_prefix!r} on {device}: {run.model.blocks} blocks x "
            f"{run.model.channels} channels ({sum(p.numel() for p in model.parameters()):,} "
            f"parameters), {cfg.steps} steps of {batch}{start}, curriculum {cfg.curriculum}, "
            f"mixed precision {str(amp).removeprefix('torch.') if amp else 'off'}")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def progress_message(step: int, steps: int, line: dict) -> str:
    """The periodic log line: the total loss and its main parts, lr, speed, time left.
    Every loss (each SSL task's too) is in metrics.jsonl and TensorBoard."""
    speed = line["steps_per_s"]
    eta = (steps - step) / speed if speed > 0 else math.inf
    losses = " ".join(f"{k} {line[k]:.3f}" for k in ("loss", "policy", "value") if k in line)
    return (f"step {step}/{steps} ({100 * step / steps:.0f}%) | {losses} | lr {line['lr']:.1e} "
            f"| {speed:.1f} steps/s, {line['positions_per_s']:,.0f} positions/s | "
            f"ETA {_duration(eta)}")


def ssl_message(step: int, line: dict) -> str:
    """The SSL losses, logged every SSL_LINE_EVERY progress lines."""
    tasks = " ".join(f"{k.removeprefix('ssl_')} {v:.3f}" for k, v in line.items()
                     if k.startswith("ssl_") and k != "ssl_scale")
    return f"step {step} SSL loss {line['ssl']:.3f} (weight {line['ssl_scale']:.3g}): {tasks}"


#: The SSL losses get a log line of their own every this many progress lines.
SSL_LINE_EVERY = 10


def held_out_message(step: int, positions: int, held_out: dict[str, float]) -> str:
    return f"step {step} held-out ({positions} positions) | " + " | ".join(
        f"{name} top-1 {held_out[f'val_{name}/policy_top1']:.3f} "
        f"CE {held_out[f'val_{name}/policy_ce']:.3f} "
        f"value MAE {held_out[f'val_{name}/value_mae']:.3f}" for name in ("ema", "raw"))


# ----------------------------------------------------------------------------- the run


def train(run: RunConfig) -> dict:
    """Train as configured; returns a summary (final losses, steps, checkpoint path).

    Under torchrun (WORLD_SIZE > 1) this process is one rank of a data-parallel job:
    the process group is set up here (unless the caller did) and torn down at the end."""
    notes = runs.claim(run.train, main=env_rank() == 0)  # before anything is written
    if env_rank() == 0:
        remove_stale_semaphores()  # left by killed runs (kill -9 takes the tracker too)
        for note in notes:
            log.info("%s", note)
    ddp = distributed.setup(pick_device(run.train.device))
    try:
        return _train(run, ddp)
    finally:
        ddp.close()


def _train(run: RunConfig, ddp: Dist) -> dict:
    cfg = run.train
    device = ddp.device
    files = runs.RunFiles.of(cfg)
    out_dir, run_dir = files.checkpoint_dir, files.log_dir

    if cfg.verify_shards:
        t0 = time.perf_counter()
        n = verify_shards(cfg.shards)
        log.info("--verify-shards: %d shard files match the manifest (%.1f s)", n,
                 time.perf_counter() - t0)

    # -- model, or resume ---------------------------------------------------------------
    resume_path, state = (ckpt.latest_loadable(out_dir, cfg.checkpoint_prefix,
                                               final=files.final)
                          if cfg.auto_resume else (None, None))
    if state is not None:
        notes = runs.check_resume(resume_path, state, run, ddp.world)
        # the model's shape comes from the checkpoint, not from the command line
        run = dataclasses.replace(run, model=ModelConfig(**state["config"]["model"]))
        log.info("resuming from %s at step %d (run %r)", resume_path, state["step"],
                 cfg.checkpoint_prefix)
        for note in notes:
            log.info("%s", note)
    elif cfg.auto_resume:
        log.info("--auto-resume: no checkpoint of run %r in %s, starting it from step 0",
                 cfg.checkpoint_prefix, out_dir)
    torch.manual_seed(cfg.seed)
    model = ChessNet(run.model)
    if ddp.enabled:  # BatchNorm statistics of the global batch, as one process has them
        model = distributed.sync_batchnorm(model, device)
    model = model.to(device)
    if cfg.checkpoint_in and state is None:
        init_from(model, cfg.checkpoint_in)
    ema = make_ema(model, cfg.ema_decay, cfg.ema_warmup)
    ema_start = cfg.lr_warmup_steps if cfg.ema_start is None else cfg.ema_start

    # -- optimizer, schedule, precision -------------------------------------------------
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.lr_warmup_steps, cfg.steps, cfg.min_lr_ratio))
    amp_dtype, scaled = amp_precision(device)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.use_amp and scaled)

    # -- data ---------------------------------------------------------------------------
    curriculum = load_curriculum(cfg.curriculum, run.curricula)
    loader = BatchLoader(cfg.shards, curriculum, steps=cfg.steps * cfg.accum_steps,
                         batch_size=cfg.batch_size, seed=cfg.seed, cfg=run.loader,
                         rank=ddp.rank, world=ddp.world)

    step, nonfinite_total, ssl_chunk = 0, 0, cfg.ssl_chunk_size
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        load_optimizer_state(optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved without a scaler (bf16, or no AMP)
            scaler.load_state_dict(state["scaler"])
        loader.load_state_dict(state["loader"])
        ckpt.set_rng_state(state["rng"])
        step, nonfinite_total = state["step"], state["nonfinite_total"]
        ssl_chunk = state.get("ssl_chunk_size", ssl_chunk)
    if ddp.enabled and ddp.all_max(step) != -ddp.all_max(-step):
        raise TrainingError("the processes resumed from different steps: every one must see "
                            "the same checkpoints (on several machines, a shared filesystem)")
    # after the resume: DDP starts every rank from rank 0's weights
    net = ddp.wrap(StepLosses(model, cfg.ssl_weights, cfg.ssl_pos_weights, cfg.stalemate_weight,
                              cfg.mate_weight),
                   find_unused_parameters=cfg.ssl_every_n > 1 or cfg.ssl_weight == 0)

    def snapshot() -> dict:
        return {
            "step": step, "model": model.state_dict(), "ema": ema.state_dict(),
            "ema_model": ema_weights(ema), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "loader": loader.state_dict(), "rng": ckpt.rng_state(),
            "nonfinite_total": nonfinite_total, "ssl_chunk_size": ssl_chunk,
            "config": run.to_dict(), "world": ddp.world,
            "input_format_version": INPUT_FORMAT_VERSION,
        }

    def save(path: Path, prune: bool = False) -> Path:
        # rank 0 writes; the others wait, so that no rank stops (at the end, or after
        # non-finite losses) and tears the group down while the checkpoint is written
        if ddp.main:
            ckpt.save(path, snapshot())
            if prune:
                ckpt.prune(out_dir, cfg.checkpoint_prefix, cfg.keep_checkpoints)
        ddp.barrier()
        return path

    def save_intermediate() -> Path:
        return save(ckpt.step_path(out_dir, cfg.checkpoint_prefix, step), prune=True)

    # -- monitoring ---------------------------------------------------------------------
    if cfg.auto_resume and ddp.main:  # steps after the checkpoint are trained again
        dropped = runs.trim_metrics(files, step)
        if dropped:
            log.info("dropped %d metrics lines after step %d from %s", dropped, step,
                     files.metrics)
    metrics = MetricsLog(run_dir, cfg.tensorboard, enabled=ddp.main,
                         purge_step=step + 1 if cfg.auto_resume else None)
    heartbeat = Heartbeat(cfg.heartbeat_seconds)
    memory = MemoryMonitor(device, cfg.memory_warning, cfg.memory_critical)
    log.info("%s", start_message(run, cfg, device, model, amp_dtype if cfg.use_amp else None,
                                 step))
    if ddp.enabled:
        log.info("%d processes (%s): global batch %d = %d x %d per process", ddp.world,
                 ddp.backend, loader.global_batch_size, ddp.world, cfg.batch_size)
    validation = Validation(cfg.shards, device, positions=cfg.eval_positions, seed=cfg.seed,
                            teacher_mix=cfg.teacher_mix,
                            policy_from_teacher=cfg.policy_from_teacher) \
        if cfg.eval_every and ddp.main else None
    window = ProgressWindow()
    consecutive_nonfinite, lines_logged = 0, 0
    # a bar on a terminal; elsewhere (a log file, nohup, CI) the log line of every
    # progress_interval steps reports progress, and frames of a bar would only clutter it
    bar = tqdm(total=cfg.steps, initial=step, desc="train", dynamic_ncols=True, unit="step",
               disable=not ddp.main or not sys.stderr.isatty())
    batches = device_batches(loader, device, teacher_mix=cfg.teacher_mix,
                             policy_from_teacher=cfg.policy_from_teacher)

    # -- the loop -----------------------------------------------------------------------
    while step < cfg.steps:
        optimizer.zero_grad(set_to_none=True)
        with_ssl = step % cfg.ssl_every_n == 0 and cfg.ssl_weight > 0
        scale = ssl_scale(step, cfg.ssl_weight, cfg.ssl_warmup_steps)
        finite = True
        for micro in range(cfg.accum_steps):
            t_wait = time.perf_counter()
            _, x, targets = next(batches)  # expanded on the device (train.expand)
            window.wait += time.perf_counter() - t_wait
            shares = loss_shares(targets, ddp)
            with ddp.no_sync(net, last=micro == cfg.accum_steps - 1):
                with torch.autocast(device.type, dtype=amp_dtype, enabled=cfg.use_amp):
                    losses = net(x, targets, with_ssl=with_ssl, ssl_scale=scale,
                                 ssl_chunk=ssl_chunk, shares=shares)
                loss = losses.pop("loss")
                # the global batch's losses on every rank, so all of them skip a step together
                seen = ddp.all_sum({"loss": loss, **losses})
                if not torch.isfinite(seen["loss"]):
                    finite = False
                    break
                if ddp.enabled:  # DDP averages the ranks' gradients; the shares' sum is wanted
                    loss = loss * ddp.world
                scaler.scale(loss / cfg.accum_steps).backward()
            window.add(seen, 1 / cfg.accum_steps)
        if finite:
            consecutive_nonfinite = 0
            scaler.unscale_(optimizer)
            grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
                         if cfg.grad_clip_norm > 0 else torch.tensor(0.0))
            scaler.step(optimizer)
            scaler.update()
            if step < ema_start:  # the EMA follows the weights, then averages from here
                ema.n_averaged.zero_()
            ema.update_parameters(model)
            window.steps += 1
            window.add({"grad_norm": grad_norm.detach().float()})
        else:
            # the step is skipped (and the rest of its micro-batches' data stays consumed)
            nonfinite_total += 1
            consecutive_nonfinite += 1
            log.warning("step %d: non-finite loss, step skipped (%d in a row, %d in total)",
                        step, consecutive_nonfinite, nonfinite_total)
            if consecutive_nonfinite >= cfg.max_nonfinite:
                path = save_intermediate()
                raise TrainingError(f"{consecutive_nonfinite} non-finite losses in a row at "
                                    f"step {step}; saved {path}. Lower --lr, or check the data")
            optimizer.zero_grad(set_to_none=True)
        step += 1
        scheduler.step()
        bar.update(1)
        if not finite:
            continue

        # -- monitoring and saving ------------------------------------------------------
        held_out = {}
        if validation is not None and validation.enabled and (
                step % cfg.eval_every == 0 or step == cfg.steps):
            t_eval = time.perf_counter()
            held_out = validation.measure({"ema": ema.module, "raw": model})
            window.pause(time.perf_counter() - t_eval)
            log.info("%s", held_out_message(step, validation.positions, held_out))
        if ddp.main and (step % cfg.progress_interval == 0 or step == cfg.steps
                         or heartbeat.due()):
            line = {**window.figures(loader.global_batch_size * cfg.accum_steps),
                    "lr": scheduler.get_last_lr()[0], "ssl_scale": scale,
                    "phase": loader.schedule.phase_name(loader.step - 1),
                    "nonfinite_total": nonfinite_total, **memory_figures(device), **held_out}
            metrics.write(step, line)
            bar.set_postfix(policy=f"{line['policy']:.3f}", value=f"{line['value']:.3f}",
                            ssl=f"{line.get('ssl', float('nan')):.3f}")
            log.info("%s", progress_message(step, cfg.steps, line))
            lines_logged += 1
            if "ssl" in line and (lines_logged % SSL_LINE_EVERY == 0 or step == cfg.steps):
                log.info("%s", ssl_message(step, line))
            window = ProgressWindow()
        elif held_out:
            metrics.write(step, held_out)
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            save_intermediate()
        if step % cfg.memory_check_every == 0:
            # the worst status of all ranks: all of them shrink the chunk and save together
            status = MEMORY_LEVELS[ddp.all_max(MEMORY_LEVELS.index(memory.check(step)))]
            if status == "critical":
                ssl_chunk = max(1, ssl_chunk // 2)
                path = save_intermediate()
                log.warning("memory critical: SSL chunk size now %d, checkpoint %s",
                            ssl_chunk, path)
    bar.close()

    # -- the end ------------------------------------------------------------------------
    save(Path(cfg.checkpoint_out))
    if cfg.save_every:
        save_intermediate()
    metrics.close()
    log.info("saved %s after %d steps", cfg.checkpoint_out, step)
    return {"step": step, "checkpoint": cfg.checkpoint_out, "nonfinite_total": nonfinite_total,
            "world": ddp.world, "rank": ddp.rank,
            "last_metrics": metrics.last}


__all__ = ["StepLosses", "TrainingError", "amp_precision", "load_optimizer_state",
           "loss_shares", "lr_factor", "make_optimizer", "pick_device", "train"]
