"""Losses of the trainer and the metrics the evaluator reports.

Every loss is computed in float32 (logits are cast up), so the same code runs
under bf16/fp16 autocast. Targets come from ``train.expand.expand_targets``;
head outputs from ``train.model.ChessNet``.

Total loss (the trainer's job)::

    policy_loss + value_weight * value_loss + stalemate_weight * stalemate_loss
        + mate_weight * mate_loss
        + ssl_weight(step) * ssl_total(ssl_losses, SSLWeights)

Metrics come as *counts* that add up over batches (:func:`policy_counts`,
:func:`ssl_counts`), turned into rates once at the end
(:func:`metrics_from_counts`): an F1 averaged over batches is not the F1 of
the whole set, and pins are rare enough that most batches have none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as _checkpoint

from labelers import MASK_NAMES
from train.expand import CLASS_TASKS, IGNORE_INDEX, MAP_TASKS, SSL_MASKS, SSL_TASKS

__all__ = [
    "CLASS_TASKS",
    "add_counts",
    "MAP_TASKS",
    "mate_counts",
    "mate_loss",
    "VALUE_HUBER_DELTA",
    "SSLPositiveWeights",
    "SSLWeights",
    "metrics_from_counts",
    "policy_counts",
    "policy_loss",
    "ssl_counts",
    "ssl_losses",
    "ssl_losses_chunked",
    "ssl_metrics",
    "ssl_total",
    "stalemate_counts",
    "stalemate_loss",
    "value_loss",
    "wdl_loss",
]

#: Huber threshold of the value loss, on tanh outputs and targets in [-1, 1]. With
#: delta = 1 the loss is quadratic (0.5 e^2) for |e| <= 1 and linear beyond, so a
#: confidently wrong sign (|e| up to 2) costs at most 1.5 instead of MSE's 4. An
#: untrained net outputs ~0, which costs exactly 0.5 on every decisive game:
#: the original tool's "value loss stable at 0.5 (Huber threshold)" plateau.
VALUE_HUBER_DELTA = 1.0


@dataclass(kw_only=True)
class _PerTask:
    """A number per SSL task, each checked when made."""

    _ZERO_ALLOWED: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or value < 0 or (value == 0 and not self._ZERO_ALLOWED)):
                raise ValueError(f"{type(self).__name__}.{f.name} must be a number "
                                 f"{'>= 0' if self._ZERO_ALLOWED else '> 0'}, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(kw_only=True)
class SSLWeights(_PerTask):
    """Weight of each SSL task in :func:`ssl_total` (the original tool's defaults). The
    overall SSL weight and its warm-up are the trainer's, applied on top."""

    piece: float = 1.0
    """Piece on each square: 13-class cross-entropy."""
    threat: float = 0.8
    """Threatened pieces (us, them): binary maps."""
    pin: float = 0.7
    """Absolutely pinned pieces (us, them): binary maps."""
    fork: float = 0.6
    """Forking pieces (us, them): binary maps."""
    control: float = 0.5
    """Square control {neither, us, them}: 3-class cross-entropy."""
    pawn_structure: float = 0.4
    """Passed, isolated, doubled, connected pawns (us, them each): 8 binary maps."""
    king_safety: float = 0.4
    """Attacked king zone and pawn shield (us, them each): 4 binary maps."""



@dataclass(kw_only=True)
class SSLPositiveWeights(_PerTask):
    """Weight of a set square against an empty one in each binary SSL task's loss (the
    ``pos_weight`` of binary cross-entropy; 1 = plain BCE). The masks are sparse: on the
    sample data a pinned piece is on 0.1% of the squares and a forking piece on 0.05%,
    so with plain BCE the cheapest answer is "never", and the head's F1 stays 0. A
    positive weight w moves the decision threshold of the trained head from a
    probability of 1/2 to 1/(1 + w). The defaults (about the square root of each task's
    empty-to-set ratio) were chosen by held-out F1 after 2,000 CPU steps (README)."""

    threat: float = 4.0
    """Threatened pieces: about 0.6% of the squares are set."""
    pin: float = 10.0
    """Pinned pieces: about 0.1%."""
    fork: float = 20.0
    """Forking pieces: about 0.05%."""
    pawn_structure: float = 2.0
    """Passed, isolated, doubled, connected pawns: 0.5-5% by map."""
    king_safety: float = 2.0
    """Attacked king zone and pawn shield: about 2%."""

    _ZERO_ALLOWED: ClassVar[bool] = False


assert tuple(f.name for f in fields(SSLPositiveWeights)) == MAP_TASKS


# --------------------------------------------------------------------------
# losses


def _masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the targets that are not IGNORE_INDEX; 0 (not NaN) if none."""
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (target != IGNORE_INDEX).sum().clamp_min(1)


def policy_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, 4672) logits against (B,) policy indices, averaged over the
    positions that have a move (IGNORE_INDEX, i.e. NO_MOVE, is skipped)."""
    return _masked_cross_entropy(logits, target)


def stalemate_loss(logits: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
    """``-log(1 - p)``, p the policy's probability of the moves that stalemate the
    opponent (``targets["stalemate"]``: (B, K) policy indices, -1 after them), averaged
    over the positions that have one; 0 (not NaN) if none does. An unlikelihood loss:
    the policy cross-entropy already rewards the target move, this names the moves
    that throw a win away, which the cross-entropy weighs no more than any other."""
    logits = logits.float()
    hit, rows = _hit(logits, moves)
    everything = torch.logsumexp(logits, dim=-1)
    # p itself where it is small (-log1p(-p) is exact there; a difference of two
    # log-sum-exps would cancel), the log-sum-exp of the other moves where it is not;
    # -1e4, not -inf: a row without a stalemating move keeps finite gradients (of 0)
    p = torch.exp(torch.logsumexp(logits.masked_fill(~hit, -1e4), dim=-1) - everything)
    rest = torch.logsumexp(logits.masked_fill(hit, float("-inf")), dim=-1)
    per_row = torch.where(p < 0.5, -torch.log1p(-p.clamp_max(0.5)), everything - rest)
    return torch.where(rows, per_row, 0.0).sum() / rows.sum().clamp_min(1)


def _hit(logits: torch.Tensor, moves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 4672) bool of the policy indices in ``moves`` ((B, K), -1 after them) and the
    (B,) bool of the rows that have one."""
    valid = moves >= 0
    hit = torch.zeros_like(logits).scatter_add_(1, moves.clamp_min(0), valid.to(logits.dtype)) > 0
    return hit, valid.any(dim=-1)


def mate_loss(logits: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
    """``-log p``, p the policy's probability of the moves that checkmate the opponent
    (``targets["mate"]``: (B, K) policy indices, -1 after them), averaged over the
    positions that have one; 0 (not NaN) if none does. Any mate is right: the target
    move of a position with several is one of them, and the cross-entropy counts the
    others as wrong as a blunder."""
    logits = logits.float()
    hit, rows = _hit(logits, moves)
    # -1e4, not -inf: a row without a mating move keeps finite gradients (of 0)
    per_row = torch.logsumexp(logits, dim=-1) - torch.logsumexp(logits.masked_fill(~hit, -1e4),
                                                                dim=-1)
    return torch.where(rows, per_row, 0.0).sum() / rows.sum().clamp_min(1)


def wdl_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, 3) win/draw/loss logits against ``targets["wdl"]``."""
    return _masked_cross_entropy(logits, target)


def value_loss(
    value: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    delta: float = VALUE_HUBER_DELTA,
) -> torch.Tensor:
    """Huber loss (threshold ``delta``, see VALUE_HUBER_DELTA) of the (B,) tanh value,
    averaged over the positions where ``mask`` (``targets["value_mask"]``) is True."""
    loss = F.huber_loss(value.float(), target.float(), reduction="none", delta=delta)
    if mask is None:
        return loss.mean()
    mask = mask.to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp_min(1)


def ssl_losses(heads: dict[str, torch.Tensor], targets: dict,
               pos_weights: SSLPositiveWeights | None = None) -> dict[str, torch.Tensor]:
    """Task -> loss, each a mean over positions and squares (and maps): cross-entropy
    for ``piece`` and ``control``, binary cross-entropy with logits for the maps, with
    each task's positive weight from ``pos_weights`` (default: 1, plain BCE)."""
    losses = {}
    for task in SSL_TASKS:
        logits = heads[task].float()
        if task in CLASS_TASKS:
            losses[task] = F.cross_entropy(logits, targets[task])
            continue
        w = getattr(pos_weights, task) if pos_weights is not None else 1.0
        pos_weight = None if w == 1.0 else logits.new_tensor(w)
        losses[task] = F.binary_cross_entropy_with_logits(
            logits, targets[task].to(logits.dtype), pos_weight=pos_weight)
    return losses


def ssl_total(losses: dict[str, torch.Tensor], weights: SSLWeights | None = None) -> torch.Tensor:
    """``sum(weights.<task> * losses[task])`` over the tasks in ``losses``."""
    weights = weights or SSLWeights()
    return sum(getattr(weights, task) * loss for task, loss in losses.items())


def _chunk_ssl_losses(model, features: torch.Tensor, targets: dict,
                      pos_weights: SSLPositiveWeights | None) -> dict[str, torch.Tensor]:
    return ssl_losses(model.ssl_heads(features), targets, pos_weights)


def ssl_losses_chunked(
    model,
    features: torch.Tensor,
    targets: dict,
    chunk_size: int,
    weights: SSLWeights | None = None,
    *,
    checkpoint: bool | None = None,
    task_losses: dict[str, torch.Tensor] | None = None,
    pos_weights: SSLPositiveWeights | None = None,
) -> torch.Tensor:
    """``ssl_total(ssl_losses(model.ssl_heads(features), targets, pos_weights), weights)``, computed
    over chunks of at most ``chunk_size`` positions, each weighted by its share of the
    batch, so the value (and its gradient) equals the unchunked one.

    Chunking caps memory only if a chunk's activations are freed before the next
    one runs: with ``checkpoint`` (default: whenever a gradient will flow) each
    chunk's head runs under ``torch.utils.checkpoint`` and is recomputed in
    backward, so peak memory holds one chunk of SSL activations, not the batch's.

    ``task_losses``, if given, is filled with the unweighted per-task losses of the
    whole batch (detached tensors, for logging; no device sync here).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    n = features.shape[0]
    if n == 0:
        raise ValueError("ssl_losses_chunked needs at least one position")
    if checkpoint is None:
        checkpoint = torch.is_grad_enabled() and features.requires_grad
    total = features.new_zeros((), dtype=torch.float32)
    if task_losses is not None:
        task_losses.clear()
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        chunk_targets = {task: targets[task][start:stop] for task in SSL_TASKS}
        args = (model, features[start:stop], chunk_targets, pos_weights)
        if checkpoint:
            losses = _checkpoint(_chunk_ssl_losses, *args, use_reentrant=False)
        else:
            losses = _chunk_ssl_losses(*args)
        share = (stop - start) / n
        total = total + share * ssl_total(losses, weights)
        if task_losses is not None:
            for task, loss in losses.items():
                task_losses[task] = task_losses.get(task, 0.0) + share * loss.detach()
    return total


# --------------------------------------------------------------------------
# metrics


@torch.no_grad()
def policy_counts(
    logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 3)
) -> dict[str, torch.Tensor]:
    """Summable counts: ``policy_n`` positions with a move, ``policy_top{k}`` of them whose
    move is among the k highest logits (ties broken by ``torch.topk``)."""
    valid = target != IGNORE_INDEX
    top = logits.topk(max(ks), dim=-1).indices  # (B, kmax)
    hit = top == target.unsqueeze(-1)
    counts = {"policy_n": valid.sum()}
    for k in ks:
        counts[f"policy_top{k}"] = (hit[:, :k].any(dim=-1) & valid).sum()
    return counts


@torch.no_grad()
def stalemate_counts(logits: torch.Tensor, moves: torch.Tensor) -> dict[str, torch.Tensor]:
    """Summable counts: ``stalemate_n`` positions with a stalemating move, ``stalemate_top1``
    of them whose highest logit is one (the rate a raw policy would stalemate there)."""
    return _top1_counts(logits, moves, "stalemate")


@torch.no_grad()
def mate_counts(logits: torch.Tensor, moves: torch.Tensor) -> dict[str, torch.Tensor]:
    """Summable counts: ``mate_n`` positions with a mating move, ``mate_top1`` of them
    whose highest logit is one (the rate a raw policy mates in one where it can)."""
    return _top1_counts(logits, moves, "mate")


def _top1_counts(logits: torch.Tensor, moves: torch.Tensor, name: str) -> dict[str, torch.Tensor]:
    valid = moves >= 0
    top = logits.argmax(dim=-1, keepdim=True)
    return {f"{name}_n": valid.any(dim=-1).sum(),
            f"{name}_top1": ((moves == top) & valid).any(dim=-1).sum()}


@torch.no_grad()
def ssl_counts(heads: dict[str, torch.Tensor], targets: dict) -> dict[str, torch.Tensor]:
    """Summable counts of the SSL heads: ``{task}_correct`` / ``{task}_n`` squares for the
    class tasks; ``{task}_tp`` / ``_fp`` / ``_fn`` (one entry per map, shape (K,)) for the
    binary maps, a map square being predicted set when its logit is > 0."""
    counts = {}
    for task in CLASS_TASKS:
        pred = heads[task].argmax(dim=1)
        counts[f"{task}_correct"] = (pred == targets[task]).sum()
        counts[f"{task}_n"] = torch.tensor(pred.numel(), device=pred.device)
    for task in MAP_TASKS:
        pred = heads[task] > 0
        truth = targets[task] != 0
        counts[f"{task}_tp"] = (pred & truth).sum(dim=(0, 2))
        counts[f"{task}_fp"] = (pred & ~truth).sum(dim=(0, 2))
        counts[f"{task}_fn"] = (~pred & truth).sum(dim=(0, 2))
    return counts


def _f1(tp: float, fp: float, fn: float) -> float:
    # nothing to find and nothing found is a perfect score, not a division by zero
    return 1.0 if tp + fp + fn == 0 else 2.0 * tp / (2.0 * tp + fp + fn)


def metrics_from_counts(counts: dict[str, torch.Tensor]) -> dict[str, float]:
    """Rates from (summed) counts: ``policy_top{k}``, ``stalemate_top1``, ``mate_top1``,
    ``piece_acc``,
    ``control_acc``,
    ``{task}_f1`` (micro over the task's maps) and ``f1/{mask name}`` per map. Keys
    whose counts are absent are left out; a rate over zero positions is NaN."""
    c = {k: v.detach().cpu().double() for k, v in counts.items()}
    out = {}
    if "policy_n" in c:
        n = float(c["policy_n"])
        for key in sorted(k for k in c if k.startswith("policy_top")):
            out[key] = float(c[key]) / n if n else float("nan")
    for name in ("stalemate", "mate"):
        if f"{name}_n" in c:
            n = float(c[f"{name}_n"])
            out[f"{name}_top1"] = float(c[f"{name}_top1"]) / n if n else float("nan")
    for task in CLASS_TASKS:
        if f"{task}_n" in c:
            n = float(c[f"{task}_n"])
            out[f"{task}_acc"] = float(c[f"{task}_correct"]) / n if n else float("nan")
    for task in MAP_TASKS:
        if f"{task}_tp" not in c:
            continue
        tp, fp, fn = (c[f"{task}_{kind}"] for kind in ("tp", "fp", "fn"))
        out[f"{task}_f1"] = _f1(float(tp.sum()), float(fp.sum()), float(fn.sum()))
        for i, mask in enumerate(SSL_MASKS[task]):
            out[f"f1/{MASK_NAMES[mask]}"] = _f1(float(tp[i]), float(fp[i]), float(fn[i]))
    return out


def ssl_metrics(heads: dict[str, torch.Tensor], targets: dict) -> dict[str, float]:
    """``metrics_from_counts(ssl_counts(heads, targets))`` for one batch."""
    return metrics_from_counts(ssl_counts(heads, targets))


def add_counts(total: dict[str, torch.Tensor], counts: dict[str, torch.Tensor]) -> None:
    """``total += counts``, key by key (keys missing from ``total`` are added)."""
    for key, value in counts.items():
        total[key] = total[key] + value if key in total else value.clone()
