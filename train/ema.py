"""The exponential moving average (EMA) of the weights that evaluation uses.

A fixed decay of 0.999 keeps ``0.999 ** t`` of the initial random weights after
``t`` steps: 22% after 1,500 steps, which made the EMA of a short run far worse
than its raw weights. The decay therefore warms up, as TensorFlow's
``ExponentialMovingAverage(num_updates=...)`` and timm's ``ModelEmaV3`` do::

    decay_t = min(decay, (1 + t) / (10 + t))      t = updates so far

so the EMA follows the weights closely at first (0.18 at the second update, 0.9
at t = 80, 0.99 at t = 890) and averages over ~1 / (1 - decay) steps once
``(1 + t) / (10 + t)`` passes ``decay`` (t = 8,990 for 0.999). The trainer
starts averaging only at ``ema_start`` (by default the end of the learning-rate
warmup: until then the weights move faster than any average can follow, and
an EMA 250 steps into a run was 0.38 nats of held-out policy cross-entropy
worse than the weights); before that the EMA is a copy of the weights.

BatchNorm buffers (running mean and variance) are averaged with the same decay
as the weights (``use_buffers=True``): the EMA network's statistics are then an
average over the same window of steps as its weights, instead of the statistics
of the latest raw weights (``use_buffers=False`` would copy those, which match
weights the EMA has not caught up with). Integer buffers (BatchNorm's
``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

__all__ = ["decay_at", "make_ema", "ema_weights"]


def decay_at(updates: int | torch.Tensor, decay: float, warmup: bool = True):
    """The decay of the update after ``updates`` earlier ones: ``min(decay, (1 + t) /
    (10 + t))`` with warmup, else ``decay``. Works on ints and on tensors (no device sync).

    >>> round(decay_at(0, 0.999), 4), round(decay_at(80, 0.999), 4), decay_at(10**6, 0.999)
    (0.1, 0.9, 0.999)
    """
    if not warmup:
        return decay
    if isinstance(updates, torch.Tensor):
        t = updates.to(torch.float64)
        return torch.clamp((1 + t) / (10 + t), max=decay)
    return min(decay, (1 + updates) / (10 + updates))


def _multi_avg_fn(decay: float, warmup: bool):
    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor],
               n_averaged: torch.Tensor) -> None:
        # AveragedModel calls this once per (device, dtype) group, after its first update
        # copied the weights; n_averaged counts the updates so far (>= 1 here)
        if not (torch.is_floating_point(ema[0]) or torch.is_complex(ema[0])):
            torch._foreach_copy_(ema, current)
            return
        d = decay_at(n_averaged, decay, warmup)
        weight = 1 - d
        if isinstance(weight, torch.Tensor):
            weight = weight.to(ema[0].dtype)
        torch._foreach_lerp_(ema, current, weight)

    return update


def make_ema(model: nn.Module, decay: float, warmup: bool = True) -> AveragedModel:
    """An EMA copy of ``model`` (its weights and BatchNorm statistics), updated by
    ``ema.update_parameters(model)`` after every optimizer step."""
    return AveragedModel(model, multi_avg_fn=_multi_avg_fn(decay, warmup), use_buffers=True)


def ema_weights(ema: AveragedModel) -> dict:
    """The EMA model's state dict without AveragedModel's ``module.`` prefix."""
    return {k.removeprefix("module."): v for k, v in ema.state_dict().items()
            if k != "n_averaged"}
