"""The network: a residual convolution tower with policy, value and seven SSL heads.

::

    x (B, 19, 8, 8)  ->  stem conv3x3-BN-ReLU  ->  `blocks` residual blocks  ->  features
    features -> policy head -> (B, 4672) logits, index = from_square * 73 + plane
    features -> value head  -> (B,) tanh value  [and (B, 3) W/D/L logits with `wdl`]
    features -> ssl_heads   -> seven (B, K, 64) logit maps (see SSL_OUTPUTS)

The input is ``train.expand.expand_inputs``; the policy layout is
``dataengine.policy``'s. The SSL heads are a separate call,
:meth:`ChessNet.ssl_heads`, so that the trainer can run them every N steps
and over chunks of positions. Each is a per-square MLP (two 1x1 convolutions)
on the trunk features. They have no BatchNorm on purpose: with batch
statistics a chunk's output would depend on the other positions in its chunk,
and chunked SSL losses would no longer equal unchunked ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dataengine.policy import N_PLANES, N_POLICY
from train.expand import N_INPUT_PLANES, SSL_TASKS

__all__ = ["SSL_OUTPUTS", "ChessNet", "ModelConfig", "policy_logits_from_planes"]

#: SSL task -> channels of its head: class logits (piece, control) or binary maps.
SSL_OUTPUTS: dict[str, int] = {
    "piece": 13,
    "threat": 2,
    "pin": 2,
    "fork": 2,
    "control": 3,
    "pawn_structure": 8,
    "king_safety": 4,
}
assert tuple(SSL_OUTPUTS) == SSL_TASKS


@dataclass(kw_only=True)
class ModelConfig:
    """Shape of a :class:`ChessNet`. Saved in each checkpoint; on resume the model is
    built from the checkpoint's copy, not from the command line."""

    blocks: int = 6
    """Residual blocks in the tower (each two conv3x3-BN layers). A small default that
    trains usefully on a laptop CPU."""

    channels: int = 64
    """Width of the tower: channels of every trunk convolution. A small default that
    trains usefully on a laptop CPU."""

    value_hidden: int = 128
    """Units of the value head's hidden fully connected layer."""

    value_channels: int = 8
    """Channels of the value head's 1x1 convolution, flattened (x 64 squares) into its
    hidden layer. Kept small on purpose: with 32 (a fan-in of 2048) Adam at lr 3e-3
    drove the tanh to +-1 within 15 steps in 2 of 3 seeded overfit runs, where its
    gradient vanishes and the value head never recovers; 8 recovered in every run."""

    policy_channels: int = 32
    """Channels of the policy head's conv3x3 before its 1x1 convolution to the 73 move planes."""

    ssl_channels: int = 32
    """Hidden channels of each SSL head: a per-square MLP (conv1x1-ReLU-conv1x1). The heads
    are kept this light on purpose, so that the trunk features themselves must carry
    what the tasks ask for (and they cost ~3% of the tower's compute)."""

    wdl: bool = False
    """Also output win/draw/loss logits (``out["wdl"]``) beside the tanh value."""

    def __post_init__(self) -> None:
        for name in ("channels", "value_hidden", "value_channels", "policy_channels",
                     "ssl_channels"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.blocks, int) or isinstance(self.blocks, bool) or self.blocks < 0:
            raise ValueError(f"ModelConfig.blocks must be an int >= 0, got {self.blocks!r}")
        if not isinstance(self.wdl, bool):
            raise ValueError(f"ModelConfig.wdl must be a bool, got {self.wdl!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def policy_logits_from_planes(planes: torch.Tensor) -> torch.Tensor:
    """(B, 73, 8, 8) move-plane logits -> (B, 4672) in ``dataengine.policy`` order.

    The plane ``p`` logit at ``[rank, file]`` is the move of kind ``p`` from square
    ``s = rank * 8 + file``, so it must land at ``s * 73 + p``: move the plane axis
    last, then flatten (rank, file, plane).
    """
    b = planes.shape[0]
    return planes.permute(0, 2, 3, 1).reshape(b, N_POLICY)


def _conv_bn(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    # no conv bias: BatchNorm's shift replaces it
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out)
    )


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the input, then ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(channels, channels, 3)
        self.conv2 = _conv_bn(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class ChessNet(nn.Module):
    """AlphaZero-style network with self-supervised heads; see the module doc."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        c = config.channels
        self.stem = nn.Sequential(_conv_bn(N_INPUT_PLANES, c, 3), nn.ReLU())
        self.tower = nn.Sequential(*(ResidualBlock(c) for _ in range(config.blocks)))

        self.policy_head = nn.Sequential(
            _conv_bn(c, config.policy_channels, 3),
            nn.ReLU(),
            nn.Conv2d(config.policy_channels, N_PLANES, 1),
        )
        self.value_conv = nn.Sequential(_conv_bn(c, config.value_channels, 1), nn.ReLU())
        self.value_fc = nn.Sequential(
            nn.Flatten(), nn.Linear(config.value_channels * 64, config.value_hidden), nn.ReLU()
        )
        self.value_out = nn.Linear(config.value_hidden, 1)
        self.wdl_out = nn.Linear(config.value_hidden, 3) if config.wdl else None

        self.ssl = nn.ModuleDict({
            task: nn.Sequential(
                nn.Conv2d(c, config.ssl_channels, 1),
                nn.ReLU(),
                nn.Conv2d(config.ssl_channels, n_out, 1),
            )
            for task, n_out in SSL_OUTPUTS.items()
        })  # fmt: skip

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` (B, 19, 8, 8) -> ``policy`` (B, 4672) logits, ``value`` (B,) in [-1, 1],
        ``wdl`` (B, 3) logits (win, draw, loss; only with ``config.wdl``) and
        ``features`` (B, channels, 8, 8), the trunk output for :meth:`ssl_heads`."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (N_INPUT_PLANES, 8, 8):
            raise ValueError(f"input must be (B, {N_INPUT_PLANES}, 8, 8), got {tuple(x.shape)}")
        features = self.tower(self.stem(x))
        hidden = self.value_fc(self.value_conv(features))
        out = {
            "policy": policy_logits_from_planes(self.policy_head(features)),
            "value": torch.tanh(self.value_out(hidden)).squeeze(-1),
            "features": features,
        }
        if self.wdl_out is not None:
            out["wdl"] = self.wdl_out(hidden)
        return out

    def ssl_heads(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Trunk ``features`` (B, channels, 8, 8) -> task -> (B, K, 64) logits, K from
        ``SSL_OUTPUTS``, square ``s`` at ``[..., s]``. Positions are independent, so
        ``ssl_heads(features[i:j])`` equals ``ssl_heads(features)[task][i:j]``."""
        b = features.shape[0]
        return {task: head(features).reshape(b, -1, 64) for task, head in self.ssl.items()}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
