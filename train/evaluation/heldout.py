"""Held-out metrics of a network on the validation split, and A - B with a paired bootstrap.

Every metric is a ratio of sums over positions, ``sum(num) / sum(den)``, so it is
kept as two per-position arrays (:func:`position_values`): a bootstrap resample
is then a weighted sum, and the same resample weights serve both models (paired).

=====================  ===========================================================
metric                 per position: numerator / denominator
=====================  ===========================================================
policy_top1, _top3     target move among the k highest logits / has a move
policy_ce              cross-entropy of the logits at the target move / has a move
stalemate_top1         the highest logit is a move that stalemates the opponent / has
                       such a move (the rate a raw policy throws a win away there)
mate_top1              the highest logit is a move that checkmates the opponent / has
                       such a move (the rate a raw policy mates in one where it can)
value_mae              ``|v - target|`` / has a value target
value_huber            Huber (delta ``VALUE_HUBER_DELTA``) of ``v - target`` / same
wdl_acc                the value's class equals the result's / has a result
ssl_<task>             the task's loss (mean over its squares and maps) / 1
piece_acc, control_acc correctly classified squares / 64
<map task>_f1          2 TP / (2 TP + FP + FN) over its maps and squares (micro F1;
                       1 when there is nothing to find and nothing found)
=====================  ===========================================================

The targets are the trainer's (``train.expand.expand_targets``): the policy
target is the move played, or the teacher's move where known with
``policy_from_teacher``; the value target blends result and teacher eval by
``teacher_mix``. W/D/L accuracy reads the tanh value ``v`` as a class, win when
``v > 1/3``, loss when ``v < -1/3``, else draw (the value range cut in three equal
parts), against the game result (records with one). The losses, the top-k
counts and the SSL counts are those of ``train.losses`` (a test checks the sums
against ``policy_counts`` / ``ssl_counts`` / ``metrics_from_counts``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dataengine import schema
from dataengine.progress import progress as progress_bar
from train.batch import from_numpy
from train.expand import IGNORE_INDEX, expand_inputs, expand_targets
from train.losses import CLASS_TASKS, MAP_TASKS, VALUE_HUBER_DELTA
from train.model import ChessNet

__all__ = ["METRICS", "Metric", "aggregate", "base_rates", "paired_bootstrap",
           "position_values", "sample_indices"]

#: The value's W/D/L cut: > WDL_CUT is a win, < -WDL_CUT a loss, else a draw.
WDL_CUT = 1.0 / 3.0


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    empty: float = float("nan")
    """The value of 0 / 0 (NaN, except F1's "nothing to find, nothing found" = 1)."""


METRICS: tuple[Metric, ...] = (
    Metric("policy_top1", "policy top-1 accuracy", True),
    Metric("policy_top3", "policy top-3 accuracy", True),
    Metric("policy_ce", "policy cross-entropy", False),
    Metric("stalemate_top1", "stalemating top-1 rate", False),
    Metric("mate_top1", "mate-in-one top-1 rate", True),
    Metric("value_mae", "value MAE", False),
    Metric("value_huber", "value Huber loss", False),
    Metric("wdl_acc", "W/D/L accuracy (value)", True),
    *(m for task in ("piece", "threat", "pin", "fork", "control", "pawn_structure",
                     "king_safety")
      for m in (Metric(f"ssl_{task}", f"{task} loss", False),
                Metric(f"{task}_acc", f"{task} accuracy", True) if task in CLASS_TASKS
                else Metric(f"{task}_f1", f"{task} F1", True, empty=1.0))),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}

Values = dict[str, tuple[np.ndarray, np.ndarray]]
"""metric key -> (numerator, denominator), float64 arrays of one entry per position."""


@torch.no_grad()
def _batch_values(net: ChessNet, batch: dict, *, teacher_mix: float,
                  policy_from_teacher: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    out = net(expand_inputs(batch))
    heads = net.ssl_heads(out["features"])
    t = expand_targets(batch, teacher_mix=teacher_mix, policy_from_teacher=policy_from_teacher)
    ones = torch.ones_like(out["value"], dtype=torch.float32)
    v = {}

    logits = out["policy"].float()
    has_move = (t["policy"] != IGNORE_INDEX).float()
    target = t["policy"].clamp_min(0)
    top = logits.topk(3, dim=-1).indices == target.unsqueeze(-1)
    ce = -logits.log_softmax(-1).gather(1, target.unsqueeze(-1)).squeeze(-1)
    v["policy_top1"] = (top[:, 0].float() * has_move, has_move)
    v["policy_top3"] = (top.any(-1).float() * has_move, has_move)
    v["policy_ce"] = (ce * has_move, has_move)
    best = logits.argmax(-1, keepdim=True)
    for name in ("stalemate", "mate"):
        moves = t[name]
        has = (moves >= 0).any(-1).float()
        v[f"{name}_top1"] = ((moves == best).any(-1).float() * has, has)

    value = out["value"].float()
    has_value = t["value_mask"].float()
    err = value - t["value"].float()
    huber = F.huber_loss(value, t["value"].float(), reduction="none", delta=VALUE_HUBER_DELTA)
    v["value_mae"] = (err.abs() * has_value, has_value)
    v["value_huber"] = (huber * has_value, has_value)
    has_result = (t["wdl"] != IGNORE_INDEX).float()
    predicted = torch.where(value > WDL_CUT, 0, torch.where(value < -WDL_CUT, 2, 1))
    v["wdl_acc"] = ((predicted == t["wdl"]).float() * has_result, has_result)

    for task in CLASS_TASKS:
        task_logits = heads[task].float()  # (B, K, 64)
        loss = F.cross_entropy(task_logits, t[task], reduction="none").mean(-1)
        correct = (task_logits.argmax(1) == t[task]).float().sum(-1)
        v[f"ssl_{task}"] = (loss, ones)
        v[f"{task}_acc"] = (correct, ones * 64)
    for task in MAP_TASKS:
        task_logits = heads[task].float()  # (B, K, 64)
        truth = t[task] > 0.5
        loss = F.binary_cross_entropy_with_logits(task_logits, t[task].float(),
                                                  reduction="none").mean((1, 2))
        pred = task_logits > 0
        tp = (pred & truth).float().sum((1, 2))
        fp = (pred & ~truth).float().sum((1, 2))
        fn = (~pred & truth).float().sum((1, 2))
        v[f"ssl_{task}"] = (loss, ones)
        v[f"{task}_f1"] = (2 * tp, 2 * tp + fp + fn)
    return v


def position_values(net: ChessNet, block: schema.Block, device: torch.device, *,
                    batch_size: int = 512, teacher_mix: float = 0.5,
                    policy_from_teacher: bool = True, progress: bool = False,
                    desc: str = "held-out") -> Values:
    """Per-position numerators and denominators of every metric in ``METRICS``."""
    n = schema.block_len(block)
    parts: dict[str, tuple[list, list]] = {m.key: ([], []) for m in METRICS}
    net.eval()
    with progress_bar(total=n, desc=desc, unit="pos", disable=not progress, dynamic_ncols=True,
              leave=False) as bar:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            batch = from_numpy(schema.take(block, slice(start, stop)), device)
            values = _batch_values(net, batch, teacher_mix=teacher_mix,
                                   policy_from_teacher=policy_from_teacher)
            for key, (num, den) in values.items():
                parts[key][0].append(num.double().cpu().numpy())
                parts[key][1].append(den.double().cpu().numpy())
            bar.update(stop - start)
    return {k: (np.concatenate(num) if num else np.zeros(0), np.concatenate(den) if den
                else np.zeros(0)) for k, (num, den) in parts.items()}


def sample_indices(n: int, limit: int | None, seed: int = 0) -> np.ndarray | None:
    """Sorted indices of a seeded random sample of ``limit`` of ``n`` positions, or None
    (all of them) when ``limit`` is None, 0 or at least ``n``."""
    if not limit or limit >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def base_rates(block: schema.Block, *, batch_size: int = 4096) -> dict[str, float]:
    """Share of set squares of each binary SSL task (over its maps and the 64 squares):
    the F1 of a head is read against how rare its positives are."""
    n = schema.block_len(block)
    set_squares = dict.fromkeys(MAP_TASKS, 0)
    total = dict.fromkeys(MAP_TASKS, 0)
    for start in range(0, n, batch_size):
        t = expand_targets(from_numpy(schema.take(block, slice(start, min(n, start + batch_size)))))
        for task in MAP_TASKS:
            set_squares[task] += int(t[task].sum())
            total[task] += t[task].numel()
    return {task: set_squares[task] / total[task] if total[task] else float("nan")
            for task in MAP_TASKS}


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


def aggregate(values: Values) -> dict[str, float]:
    """Each metric over all positions."""
    return {k: float(_ratio(np.sum(num), np.sum(den), METRIC_BY_KEY[k].empty))
            for k, (num, den) in values.items()}


def paired_bootstrap(a: Values, b: Values, *, resamples: int = 1000, seed: int = 0,
                     level: float = 0.95, chunk: int = 64) -> dict[str, tuple[float, float]]:
    """Percentile interval of ``metric(A) - metric(B)`` under resampling positions with
    replacement, the same resample for both models. NaN where undefined."""
    keys = [k for k in a if k in b]
    n = len(next(iter(a.values()))[0]) if a else 0
    if resamples < 1 or n == 0 or not keys:
        return {k: (float("nan"), float("nan")) for k in keys}
    empty = np.array([METRIC_BY_KEY[k].empty for k in keys])
    matrices = [np.stack([values[k][part] for k in keys], axis=1)
                for values in (a, b) for part in (0, 1)]  # A num, A den, B num, B den: (n, K)
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, resamples, chunk):
        r = min(chunk, resamples - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=r).astype(np.float64)
        # one product per matrix, all of one shape: identical models give identical sums
        a_num, a_den, b_num, b_den = (weights @ m for m in matrices)
        diffs.append(_ratio(a_num, a_den, empty) - _ratio(b_num, b_den, empty))
    diff = np.concatenate(diffs)
    tail = 100.0 * (1.0 - level) / 2.0
    out = {}
    for j, k in enumerate(keys):
        column = diff[:, j][~np.isnan(diff[:, j])]
        if column.size == 0:
            out[k] = (float("nan"), float("nan"))
        else:
            lo, hi = np.percentile(column, [tail, 100.0 - tail])
            out[k] = (float(lo), float(hi))
    return out
