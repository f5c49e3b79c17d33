"""``--eval-every``: held-out metrics of the EMA and the raw weights while training.

Every ``eval_every`` steps (and at the last one) the trainer measures both
networks on a fixed sample of the validation split (``SHARDS/val.zarr``, at most
``eval_positions`` positions, the same sample at every evaluation) with the
metrics of ``train.evaluation.heldout`` and the targets the run trains on. The
figures go to metrics.jsonl and TensorBoard as ``val_ema/<metric>`` and
``val_raw/<metric>``; ``make plot`` draws them beside the training losses.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from dataengine import schema
from dataengine.build import VAL_ZARR, read_val_zarr
from train.evaluation import heldout

log = logging.getLogger("train")

__all__ = ["LOGGED", "Validation"]

#: The held-out metrics written at every evaluation (all of ``heldout.METRICS`` but the
#: per-task SSL losses, which the training losses already show).
LOGGED = tuple(m.key for m in heldout.METRICS if not m.key.startswith("ssl_"))


class Validation:
    """The validation sample of a run, read once; :meth:`measure` evaluates networks."""

    def __init__(self, shards: str | Path, device: torch.device, *, positions: int,
                 seed: int, teacher_mix: float, policy_from_teacher: bool) -> None:
        self.device, self.block = device, None
        self.targets = {"teacher_mix": teacher_mix, "policy_from_teacher": policy_from_teacher}
        path = Path(shards) / VAL_ZARR
        if not path.is_dir():
            log.warning("--eval-every: no validation split at %s (built with "
                        "val_fraction 0?): no held-out metrics", path)
            return
        import zarr

        n = int(zarr.open_group(str(path), mode="r").attrs["records"])
        if n == 0:
            log.warning("--eval-every: the validation split at %s is empty", path)
            return
        self.block = read_val_zarr(path, heldout.sample_indices(n, positions, seed))
        self.positions = schema.block_len(self.block)
        self.base_rates = heldout.base_rates(self.block)
        log.info("held-out metrics on %d of %d validation positions; set squares per binary "
                 "SSL task: %s", self.positions, n,
                 ", ".join(f"{k} {v:.3%}" for k, v in self.base_rates.items()))

    @property
    def enabled(self) -> bool:
        return self.block is not None

    def measure(self, nets: dict[str, torch.nn.Module]) -> dict[str, float]:
        """``{"val_<name>/<metric>": value}`` for each network (left in the mode it was in)."""
        out: dict[str, float] = {}
        for name, net in nets.items():
            was_training = net.training
            values = heldout.position_values(net, self.block, self.device, **self.targets)
            net.train(was_training)
            metrics = heldout.aggregate(values)
            out.update({f"val_{name}/{k}": metrics[k] for k in LOGGED})
        return out
