"""Trainer configuration: the original tool's flags, with its names and defaults.

Precedence: built-in defaults < ``config.yaml`` (sections ``train:``, ``model:``,
``loader:``, ``curricula:``) < command-line flags. Every field has a docstring;
an unknown key or a bad value is an error that names it.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

from dataengine.config import ConfigError, field_docs, load_section, read_yaml
from train.loader import LoaderConfig
from train.losses import SSLPositiveWeights, SSLWeights
from train.model import ModelConfig

DEVICES = ("auto", "mps", "cuda", "cpu")


@dataclass(kw_only=True)
class TrainConfig:
    """One training run. Saved inside every checkpoint."""

    steps: int = 100_000
    """Optimizer steps of the run."""
    batch_size: int = 96
    """Positions per step (per accumulation micro-step)."""
    lr: float = 0.001
    """Peak learning rate: linear warmup, then cosine decay to lr * min_lr_ratio."""
    lr_warmup_steps: int = 500
    """Steps of linear learning-rate warmup."""
    min_lr_ratio: float = 0.05
    """Final learning rate as a fraction of lr."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights (evaluation uses the EMA)."""
    ema_warmup: bool = True
    """Warm the EMA decay up as min(ema_decay, (1 + t) / (10 + t)) after t updates, so that
    the EMA of a short run is not mostly its random initial weights (train/ema.py)."""
    ema_start: int | None = None
    """Until this step the EMA is a copy of the weights and averaging starts there, t
    counted from it (None = lr_warmup_steps: while the learning rate warms up the weights
    move faster than an average can follow)."""
    stalemate_weight: float = 1.0
    """Weight of the stalemate loss, -log(1 - p) with p the policy's probability of the
    moves that stalemate the opponent (the shards' stalemate_moves; 0 = off)."""
    mate_weight: float = 0.5
    """Weight of the mate loss, -log p with p the policy's probability of the moves that
    checkmate the opponent (the shards' mate_moves; 0 = off)."""
    ssl_weight: float = 0.15
    """Overall weight of the SSL loss."""
    ssl_warmup_steps: int = 500
    """The SSL weight rises linearly from 0 over these first steps."""
    ssl_weights: SSLWeights = field(default_factory=SSLWeights)
    """Weight of each SSL task inside the SSL loss."""
    ssl_pos_weights: SSLPositiveWeights = field(default_factory=SSLPositiveWeights)
    """Positive weight of each binary SSL task's cross-entropy (set squares are rare)."""
    ssl_every_n: int = 1
    """Compute the SSL loss on every N-th step only (2 halves its cost; the other steps
    train policy and value alone)."""
    ssl_chunk_size: int = 128
    """Positions per chunk of the SSL heads: they run, and are recomputed in backward
    (activation checkpointing), over chunks of this many positions, so peak memory holds
    one chunk's SSL activations instead of the batch's. Halved by itself when memory is
    critical. Smaller saves memory at a little speed; the result is the same."""
    teacher_mix: float = 0.5
    """Value target where a record has both a game result (+1/0/-1) and a teacher
    (engine) eval: (1 - teacher_mix) x result + teacher_mix x tanh(cp ln10 / 800) (an
    expected score; a mate is +-1); a record with only one of them uses it alone.
    0 = results only, 1 = teacher evals wherever known."""
    policy_from_teacher: bool = True
    """Policy target: the teacher's (Stockfish's, from `make teacher`) best move where a
    record has one, else the move played in the game or puzzle line."""
    grad_clip_norm: float = 0.5
    """Clip the gradient norm to this every step (0 = no clipping)."""
    accum_steps: int = 1
    """Gradient accumulation micro-steps per optimizer step (effective batch = batch x accum)."""
    use_amp: bool = False
    """Mixed precision: bf16 autocast on CUDA GPUs that have bf16 (compute capability 8.0+)
    and on CPU; fp16 with a grad scaler on older CUDA GPUs and on MPS."""
    max_nonfinite: int = 20
    """A step whose loss is NaN or inf is skipped (no update, its data stays used); after
    this many such steps in a row the run saves a checkpoint and stops with an error."""
    curriculum: str = "stockfish"
    """Named curriculum (config.yaml `curricula:` or built in: stockfish, uniform)."""
    shards: str = "shards"
    """Directory with manifest.json from `make shards`."""
    verify_shards: bool = False
    """Before the first step, check every shard file's size and sha256 against the
    manifest and stop with the list of bad files (reads every shard once: about a second
    per GB), so that damage is found before hours of training rather than in the middle."""
    checkpoint_in: str | None = None
    """Initialise the weights from this checkpoint (a new run; missing/unexpected keys reported)."""
    checkpoint_out: str | None = None
    """The final checkpoint (None: checkpoints/<checkpoint_prefix>.pt)."""
    checkpoint_prefix: str = "pretrained"
    """The run's name: its intermediate checkpoints are
    <dir of checkpoint_out>/<prefix>_step<N>.pt, its metrics and log <run_dir>/<prefix>/.
    A new run refuses to start where another run's files are (train/runs.py):
    --auto-resume continues that run, a new prefix starts one beside it, --overwrite
    replaces it."""
    save_every: int = 5000
    """Save an intermediate checkpoint every N steps (0 = only the final one)."""
    keep_checkpoints: int = 3
    """How many intermediate <prefix>_step<N>.pt checkpoints to keep, the oldest deleted
    first (0 = all); the final checkpoint_out is never deleted."""
    auto_resume: bool = False
    """Continue this run (this prefix) from its newest checkpoint, if there is one: the
    same data (shards, seed, batch size, curriculum) is required; more --steps extend it."""
    overwrite: bool = False
    """Delete the files of the run already at this prefix (its checkpoints, metrics and
    log) and start a new one in its place."""
    progress_interval: int = 100
    """Every N steps: a metrics line (losses, lr, steps/s, data wait, memory) in
    metrics.jsonl, TensorBoard and the log."""
    eval_every: int = 1000
    """Every N steps (and at the last step) measure the EMA and the raw weights on the
    validation split (policy top-1/CE, value MAE, W/D/L, SSL F1) into metrics.jsonl and
    TensorBoard as val_ema/* and val_raw/* (0 = never)."""
    eval_positions: int = 10_000
    """Validation positions that --eval-every measures: a fixed seeded sample of this
    many when the split is larger (0 = the whole split)."""
    heartbeat_seconds: float = 300.0
    """Log a heartbeat (step, losses, memory, lr, device) at least every this many seconds,
    however long the progress interval (0 = only at the progress interval)."""
    memory_check_every: int = 1000
    """Check memory (and clear caches) every N steps."""
    memory_warning: float = 0.85
    """Memory use (fraction of RAM, or of the device's memory) that triggers a cache cleanup."""
    memory_critical: float = 0.95
    """Memory use that halves the SSL chunk size and saves a checkpoint."""
    device: str = "auto"
    """auto (MPS, then CUDA, then CPU), mps, cuda or cpu."""
    seed: int = 0
    """Seeds the model's initialisation and the data order."""
    run_dir: str = "runs"
    """Metrics go to <run_dir>/<checkpoint_prefix>/ (metrics.jsonl, TensorBoard events)."""
    tensorboard: bool = True
    """Also write TensorBoard event files."""

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "accum_steps", "ssl_every_n", "ssl_chunk_size",
                    "progress_interval", "memory_check_every", "max_nonfinite")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr_warmup_steps", "ssl_warmup_steps", "save_every", "keep_checkpoints",
                     "eval_every", "eval_positions"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "ssl_weight", "stalemate_weight", "mate_weight",
                     "grad_clip_norm",
                     "heartbeat_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.ema_start is not None and self.ema_start < 0:
            raise ConfigError(f"train.ema_start must be >= 0 or null, got {self.ema_start}")
        for name in ("ema_decay", "min_lr_ratio", "teacher_mix"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"train.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.memory_warning <= self.memory_critical:
            raise ConfigError("train.memory_warning must be > 0 and <= memory_critical")
        if self.device not in DEVICES:
            raise ConfigError(f"train.device must be one of {DEVICES}, got {self.device!r}")
        prefix = self.checkpoint_prefix
        if not prefix or prefix in (".", "..") or any(c in prefix for c in "/\\"):
            raise ConfigError(f"train.checkpoint_prefix must be a plain name (it names the "
                              f"run's files), got {prefix!r}")
        if self.auto_resume and self.overwrite:
            raise ConfigError("--auto-resume continues the run at this prefix and --overwrite "
                              "replaces it: give one of them")
        if self.checkpoint_out is None:
            self.checkpoint_out = str(Path("checkpoints") / f"{prefix}.pt")


@dataclass(kw_only=True)
class RunConfig:
    """Everything a run needs: saved in each checkpoint."""

    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    curricula: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Nested TrainConfig fields -> the flag of each of their fields, from the field's name.
NESTED_FLAGS = {"ssl_weights": "ssl-{}-weight", "ssl_pos_weights": "ssl-{}-pos-weight"}


# the original tool's flags -> the config field they set ("ssl_weights.piece" = a nested field)
def _flag_fields() -> dict[str, str]:
    flags = {f.name.replace("_", "-"): f.name for f in dataclasses.fields(TrainConfig)
             if f.name not in NESTED_FLAGS}
    defaults = TrainConfig()
    for nested, pattern in NESTED_FLAGS.items():
        for f in dataclasses.fields(getattr(defaults, nested)):
            flags[pattern.format(f.name.replace("_", "-"))] = f"{nested}.{f.name}"
    return flags


FLAGS = _flag_fields()


METAVARS = {int: "N", float: "X", str: "TEXT"}


def _optional_type(cls: type, name: str) -> type:
    """The X of a field annotated ``X | None`` (the type its flag parses)."""
    hint = typing.get_type_hints(cls)[name]
    return next((a for a in typing.get_args(hint) if a is not type(None)), str)


def add_flags(ap: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (and per SSL task weight), defaulting to None so that
    only flags given on the command line override the config file. Each flag's help is
    its field's docstring (one source for the code, config.yaml and --help)."""
    defaults = TrainConfig()
    docs = field_docs(TrainConfig)
    nested_docs = {nested: field_docs(type(getattr(defaults, nested))) for nested in NESTED_FLAGS}
    for flag, name in FLAGS.items():
        if "." in name:
            nested, attr = name.split(".")
            obj = getattr(defaults, nested)
        else:
            obj, attr = defaults, name
        default = getattr(obj, attr)
        doc = (nested_docs[nested] if "." in name else docs).get(attr, "")
        kind = type(default) if default is not None else _optional_type(TrainConfig, attr)
        text = f"{doc} (default: {default})".strip().replace("%", "%%")
        if kind is bool:
            ap.add_argument(f"--{flag}", dest=name, action=argparse.BooleanOptionalAction,
                            default=None, help=text)
        else:
            ap.add_argument(f"--{flag}", dest=name, type=kind, default=None,
                            metavar=METAVARS.get(kind, "X"), help=text)
    for flag, section, cls in (("blocks", "model", ModelConfig), ("channels", "model", ModelConfig),
                               ("workers", "loader", LoaderConfig)):
        default = getattr(cls(), flag)
        text = f"{field_docs(cls).get(flag, '')} (default: {default})".replace("%", "%%")
        ap.add_argument(f"--{flag}", dest=f"{section}.{flag}", type=int, default=None,
                        metavar="N", help=text)


def load_run_config(path: str | Path | None, overrides: dict | None = None) -> RunConfig:
    """Defaults < YAML file < overrides (flat keys like "lr", "ssl_weights.piece",
    "model.blocks", "loader.workers")."""
    data = read_yaml(path) if path else {}
    sections = {k: dict(data.get(k) or {}) for k in ("train", "model", "loader")}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key.startswith(("model.", "loader.")):
            section, attr = key.split(".", 1)
            sections[section][attr] = value
        elif key.split(".", 1)[0] in NESTED_FLAGS:
            nested, attr = key.split(".", 1)
            sections["train"].setdefault(nested, {})[attr] = value
        else:
            sections["train"][key] = value
    try:
        model = load_section(ModelConfig, sections["model"], "model")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return RunConfig(
        train=load_section(TrainConfig, sections["train"], "train"),
        model=model,
        loader=load_section(LoaderConfig, sections["loader"], "loader"),
        curricula=data.get("curricula") or {},
    )
