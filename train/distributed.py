"""Data-parallel training over several processes (torchrun): the process group,
BatchNorm over the global batch, and the few collectives the trainer needs.

    torchrun --nproc-per-node 4 -m train --batch-size 256 ...

K processes with batch B train the same weights as one process with batch K * B,
up to float rounding, because every part of a step is taken over the global batch:

* data: rank r gets rows [r * B, (r + 1) * B) of global batch k (train.loader);
* BatchNorm: statistics over all ranks (:func:`sync_batchnorm`);
* losses: a masked mean (policy, value, W/D/L) divides by the global count of its
  targets, not by each rank's own (:meth:`Dist.shares`), so a rank's loss is its
  share of the global batch's loss;
* gradients: DDP averages them over ranks, so each rank backpropagates ``world``
  times its share, and the average is the gradient of the global batch's loss.

A plain ``python -m train`` (no WORLD_SIZE in the environment) is world size 1 and
none of this runs; neither does a torchrun job of one process, unless
``TRAIN_PROCESS_GROUP=1`` is in its environment (:data:`PROCESS_GROUP_ENV`): then the
one process sets up its process group, SyncBatchNorm and DDP as each of several would,
so that the multi-process path can be checked on a machine with one GPU
(``make gpu-check``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["PROCESS_GROUP_ENV", "Dist", "DistributedError", "GlobalBatchNorm2d", "env_rank",
           "setup", "sync_batchnorm"]

#: ``TRAIN_PROCESS_GROUP=1``: a torchrun job of one process still takes the multi-process
#: path (process group, SyncBatchNorm, DDP); without it one process trains plainly.
PROCESS_GROUP_ENV = "TRAIN_PROCESS_GROUP"


class DistributedError(RuntimeError):
    """This process cannot join its torchrun job (explained in the message)."""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name}={value!r} in the environment is not an integer") from None


def env_rank() -> int:
    """This process's rank as torchrun announces it (0 without torchrun)."""
    return _env_int("RANK", 0)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (world 1 for a plain run) and its collectives;
    each is a no-op in a single process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False
    """setup() created the process group, so close() destroys it."""
    grouped: bool = False
    """A process group is in use (world > 1, or one process with PROCESS_GROUP_ENV)."""

    @property
    def enabled(self) -> bool:
        return self.grouped

    @property
    def backend(self) -> str:
        return dist.get_backend() if self.enabled else "none"

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs, shows progress and writes checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_sum(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Detached float32 copies of scalar `values`, summed over ranks (one all-reduce)."""
        out = {k: v.detach().float() for k, v in values.items()}
        if not self.enabled:
            return out
        packed = torch.stack(list(out.values()))
        dist.all_reduce(packed)
        return dict(zip(out, packed.unbind(), strict=True))

    def all_max(self, value: int) -> int:
        """The largest `value` over ranks: makes a per-process decision (memory) a common one."""
        if not self.enabled:
            return value
        t = torch.tensor([value], device=self.device)  # NCCL reduces device tensors only
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def shares(self, counts: torch.Tensor) -> torch.Tensor | None:
        """``counts / (counts summed over ranks)``, each total clamped to >= 1: weights that
        turn each rank's masked mean into its share of the global batch's masked mean
        (None in a single process, where no weighting is needed)."""
        if not self.enabled:
            return None
        counts = counts.detach().float()
        total = counts.clone()
        dist.all_reduce(total)
        return counts / total.clamp_min(1)

    def wrap(self, module: nn.Module, find_unused_parameters: bool) -> nn.Module:
        """`module` in DistributedDataParallel (itself in a single process)."""
        if not self.enabled:
            return module
        # DDP broadcasts rank 0's buffers before each forward: BatchNorm running statistics
        # are global (sync_batchnorm) and so equal on every rank anyway, and only a few KB
        return DistributedDataParallel(
            module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters)

    def no_sync(self, net: nn.Module, last: bool):
        """DDP's no_sync() on every micro-step of a gradient accumulation but the last, so
        that gradients are all-reduced once per optimizer step."""
        if self.enabled and not last:
            return net.no_sync()
        return contextlib.nullcontext()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: torch.device) -> Dist:
    """Join this process's torchrun job, if there is one, and return its place in it.

    `device` is the single-process choice (trainer.pick_device); with several processes
    CUDA becomes ``cuda:LOCAL_RANK`` and the group uses NCCL, CPU uses gloo. A process
    group that the caller already set up (tests, other launchers) is used as it is."""
    if dist.is_available() and dist.is_initialized():
        rank, world, owns = dist.get_rank(), dist.get_world_size(), False
        local_rank = _env_int("LOCAL_RANK", 0)
    else:
        world, owns = _env_int("WORLD_SIZE", 1), True
        rank, local_rank = env_rank(), _env_int("LOCAL_RANK", 0)
    one_group = owns and "WORLD_SIZE" in os.environ and os.environ.get(PROCESS_GROUP_ENV) == "1"
    if world <= 1 and not one_group:
        return Dist(device=device)
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1, but this torch build has no torch.distributed")
    if device.type not in ("cuda", "cpu"):
        raise DistributedError(f"several processes train on CUDA or CPU, not {device.type}: "
                               f"pass --device cuda or --device cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DistributedError(f"LOCAL_RANK {local_rank}, but this machine has {count} CUDA "
                                   f"device(s): --nproc-per-node must not exceed its GPUs")
        device = torch.device("cuda", local_rank)
        # before anything touches CUDA: pinned memory and NCCL use the current device
        torch.cuda.set_device(device)
    if owns:
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device, owns_group=owns,
                grouped=True)


# ----------------------------------------------------------------------------- BatchNorm


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with every BatchNorm2d taking its training statistics over all ranks:
    torch.nn.SyncBatchNorm on CUDA, :class:`GlobalBatchNorm2d` on CPU. Parameter and
    buffer names do not change, so checkpoints move freely between one process and many."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return GlobalBatchNorm2d.convert(model)


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) whose backward is all_reduce(SUM) of the output gradients: every
    rank's loss depends on every rank's input through the sum (SyncBatchNorm's backward
    reduces the same way)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of all ranks' batches together, on
    any device and backend (gloo on CPU included).

    torch.nn.SyncBatchNorm does this with fused kernels, but only for accelerator inputs:
    on CPU it raises ValueError, and its kernels (``torch.batch_norm_stats`` and kin) have
    no CPU implementation (torch 2.13). Here the per-channel sum, sum of squares and
    count go through one all-reduce, accumulated in float64 (``E[x^2] - E[x]^2`` would
    lose digits in float32). Outside training, or in a single process, it is BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        c, dims = x.shape[1], (0, 2, 3)
        xf = x.float()
        local = torch.cat([xf.sum(dims, dtype=torch.float64),
                           (xf * xf).sum(dims, dtype=torch.float64),
                           xf.new_full((1,), x.numel() // c, dtype=torch.float64)])
        total = _SumOverRanks.apply(local)
        n = total[2 * c]
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean * mean).clamp_min(0)  # biased, as BN normalises
        shape = (1, c, 1, 1)
        y = (xf - mean.float().view(shape)) * torch.rsqrt(var + self.eps).float().view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                            else self.momentum)
                unbiased = var * n / (n - 1).clamp_min(1)
                # BatchNorm's own update: (1 - m) * running + m * batch
                for running, batch in ((self.running_mean, mean), (self.running_var, unbiased)):
                    running.mul_(1 - momentum).add_(momentum * batch.to(running.dtype))
        return y.to(x.dtype)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """`module` with every plain BatchNorm2d replaced by one of these, sharing its
        parameters and buffers (like SyncBatchNorm.convert_sync_batchnorm)."""
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, cls):
            new = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats)
            if module.affine:
                new.weight, new.bias = module.weight, module.bias
            if module.track_running_stats:
                new.running_mean, new.running_var = module.running_mean, module.running_var
                new.num_batches_tracked = module.num_batches_tracked
            new.train(module.training)
            return new
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module
