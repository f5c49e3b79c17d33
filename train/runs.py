"""Each training run owns its files; a new run never writes over another's.

A run is named by its ``checkpoint_prefix`` (default ``pretrained``) and owns

* its final checkpoint, ``checkpoint_out`` (default ``checkpoints/<prefix>.pt``),
* its step checkpoints, ``<dir of checkpoint_out>/<prefix>_step<N>.pt``,
* its log directory, ``<run_dir>/<prefix>/``: ``metrics.jsonl``, ``train.log``,
  TensorBoard event files, ``losses.png``.

:func:`claim` runs before anything is written. Where a checkpoint or the metrics of
a run are there already it refuses, in one line naming that run (its step, its
files) and the ways on: ``--auto-resume`` continues it, a new
``--checkpoint-prefix`` starts another run beside it, ``--overwrite`` deletes its
files and starts again in its place.

``--auto-resume`` continues a run exactly, so it takes a checkpoint only on the
same data (:func:`check_resume`: shards, seed, global batch, accumulation,
curriculum); other settings may change and are reported, and more ``--steps``
extend a finished run. Metrics that an interrupted run logged after its last
checkpoint are cut (:func:`trim_metrics`): those steps are trained again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from dataengine.fileio import atomic_write
from train import checkpoint as ckpt
from train.config import RunConfig, TrainConfig
from train.model import ModelConfig

log = logging.getLogger("train")

__all__ = ["RunError", "RunFiles", "check_resume", "claim", "trim_metrics"]

#: Training settings that define the batches a step sees: a resume must keep them.
DATA_KEYS = ("shards", "seed", "curriculum", "accum_steps")
#: Settings whose change on a resume is expected and not worth a note.
UNREPORTED = ("auto_resume", "overwrite", "steps", "checkpoint_in", "checkpoint_out",
              "verify_shards", "device", "batch_size", "curricula", "run_dir")


class RunError(RuntimeError):
    """Starting here would mix two runs' files (explained in one line)."""


@dataclass(frozen=True)
class RunFiles:
    """Where run ``prefix`` keeps its files (module doc)."""

    prefix: str
    final: Path
    log_dir: Path

    @classmethod
    def of(cls, cfg: TrainConfig) -> RunFiles:
        return cls(cfg.checkpoint_prefix, Path(cfg.checkpoint_out),
                   Path(cfg.run_dir) / cfg.checkpoint_prefix)

    @property
    def checkpoint_dir(self) -> Path:
        return self.final.parent

    @property
    def metrics(self) -> Path:
        return self.log_dir / "metrics.jsonl"

    def steps(self) -> list[tuple[int, Path]]:
        """(step, path) of the step checkpoints, oldest first."""
        return ckpt.intermediate(self.checkpoint_dir, self.prefix)

    def events(self) -> list[Path]:
        """TensorBoard event files."""
        return sorted(self.log_dir.glob("events.out.tfevents.*")) \
            if self.log_dir.is_dir() else []

    def logs(self) -> list[Path]:
        """Every file of the log directory that a run writes."""
        named = [self.log_dir / n for n in ("metrics.jsonl", "train.log", "losses.png")]
        return [p for p in named if p.is_file()] + self.events()


def _last_metrics_step(path: Path) -> int | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _describe(files: RunFiles, final: dict | None) -> tuple[str, str] | None:
    """(name of the run found at ``files``, "step N: its files") or None where there is
    none. A run is there when its final or a step checkpoint is, or its metrics."""
    steps = files.steps()
    has_metrics = files.metrics.is_file() and files.metrics.stat().st_size > 0
    if not (files.final.is_file() or steps or has_metrics):
        return None
    found, step = [], None
    if files.final.is_file():
        found.append(str(files.final))
        step = final["step"] if final else None
    if steps:
        step = max(step or 0, steps[-1][0])
        older = f" and {len(steps) - 1} older" if len(steps) > 1 else ""
        found.append(f"{steps[-1][1]}{older}")
    if has_metrics:
        logged = _last_metrics_step(files.metrics)
        step = step if step is not None else logged
        found.append(str(files.metrics))
    name = (final or {}).get("prefix") or files.prefix
    at = f"step {step}" if step is not None else "step unknown"
    if not files.final.is_file() and not steps:
        at += ", no checkpoint"
    return name, f"{at}: {', '.join(found)}"


def claim(cfg: TrainConfig, main: bool = True) -> list[str]:
    """Check that this run may write its files, before it writes any; returns notes for
    the log. Raises :class:`RunError` where another run's files are (module doc). With
    ``--overwrite`` the old run's files are deleted (by the ``main`` process only).
    Event files of an attempt that saved neither a checkpoint nor metrics are removed:
    TensorBoard would draw them into this run."""
    files = RunFiles.of(cfg)
    final = ckpt.peek(files.final) if files.final.is_file() else None
    final_prefix = (final or {}).get("prefix")
    if files.final.is_file() and final_prefix not in (None, files.prefix) and not cfg.overwrite:
        # --checkpoint-out names another run's final checkpoint
        step = final["step"] if final else "unknown"
        raise RunError(f"{files.final} is the final checkpoint of run {final_prefix!r} (step "
                       f"{step}), not of {files.prefix!r}: give this run another "
                       "--checkpoint-out, or --overwrite to replace that file")
    if cfg.auto_resume:
        return []  # the trainer takes the newest checkpoint of this prefix, if any
    if cfg.overwrite and not main:
        return []  # the main process deletes (and describes) what is there
    found = _describe(files, final)
    if found is None:
        stale = files.events()
        if main:
            for p in stale:
                p.unlink(missing_ok=True)
        return [f"removed {len(stale)} TensorBoard event files of an earlier attempt that "
                f"saved no checkpoint and no metrics ({files.log_dir})"] if stale else []
    name, where = found
    if not cfg.overwrite:
        new = "a new --checkpoint-prefix NAME"
        if files.final != Path(TrainConfig(checkpoint_prefix=files.prefix).checkpoint_out):
            new += " (and --checkpoint-out PATH)"
        raise RunError(f"run {name!r} already exists ({where}): --auto-resume continues it, "
                       f"{new} starts another run beside it, --overwrite replaces it")
    doomed = [p for p in (files.final, *(p for _, p in files.steps()), *files.logs())
              if p.is_file()]
    if main:
        for p in doomed:
            p.unlink(missing_ok=True)
    return [f"--overwrite: deleted run {name!r} ({where}; {len(doomed)} files)"]


def check_resume(path: Path, state: dict, run: RunConfig, world: int) -> list[str]:
    """Raise :class:`RunError` unless checkpoint ``state`` (read from ``path``) was trained
    on the same data as ``run`` would be with ``world`` processes; returns notes on what
    else differs (more steps, other settings, the model taken from the checkpoint)."""
    saved_run = state.get("config") or {}
    saved = saved_run.get("train") or {}
    now = run.train
    step = state.get("step")
    differs: list[tuple[str, object, object]] = []
    for key in DATA_KEYS:
        if key not in saved:  # a checkpoint older than the setting
            continue
        before, after = saved[key], getattr(now, key)
        if key == "shards":
            before, after = str(Path(before).resolve()), str(Path(after).resolve())
        if before != after:
            differs.append((key, saved[key], getattr(now, key)))
    saved_batch = (state.get("loader") or {}).get("batch_size")
    if saved_batch is not None and saved_batch != now.batch_size * world:
        differs.append(("global batch", saved_batch, now.batch_size * world))
    name = now.curriculum
    if saved.get("curriculum") == name and \
            (saved_run.get("curricula") or {}).get(name) != run.curricula.get(name):
        differs.append((f"curriculum {name!r}", "as then defined", "as now defined"))
    if differs:
        was = ", ".join(f"{k} {a}" for k, a, _ in differs)
        asks = ", ".join(f"{k} {b}" for k, _, b in differs)
        raise RunError(f"--auto-resume: {path} (run {now.checkpoint_prefix!r}, step {step}) "
                       f"was trained with {was}; this command has {asks}: give the same "
                       f"values to continue it, or start a new run from its weights with "
                       f"--checkpoint-in {path} --checkpoint-prefix NAME")
    notes = []
    before_steps = saved.get("steps")
    if isinstance(before_steps, int) and before_steps != now.steps:
        verb = "extending" if now.steps > before_steps else "shortening"
        notes.append(f"{verb} the run from {before_steps} to {now.steps} steps: the learning-"
                     f"rate schedule and the curriculum's phases now span {now.steps} steps")
    changed = [f"{k} {saved[k]} -> {v}" for k, v in vars(now).items()
               if k in saved and k not in UNREPORTED and k not in DATA_KEYS
               and _plain(saved[k]) != _plain(v)]
    if changed:
        notes.append("settings changed since the checkpoint: " + ", ".join(changed))
    model = saved_run.get("model")
    if isinstance(model, dict):
        try:
            theirs = ModelConfig(**model)
        except (TypeError, ValueError):
            theirs = None
        if theirs is not None and theirs != run.model:
            ours = vars(run.model)
            other = [f"{k} {v}" for k, v in vars(theirs).items() if ours.get(k) != v]
            notes.append(f"the model comes from the checkpoint ({', '.join(other)}), not from "
                         "this command's model settings")
    return notes


def _plain(value: object) -> object:
    """A setting as the checkpoint stores it (nested dataclasses as dicts)."""
    return vars(value) if hasattr(value, "__dataclass_fields__") else value


def trim_metrics(files: RunFiles, step: int) -> int:
    """Drop the metrics lines after ``step`` (logged by an interrupted run after its last
    checkpoint: the resumed run logs those steps again); returns how many were dropped."""
    path = files.metrics
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            late = int(json.loads(line)["step"]) > step
        except (ValueError, KeyError, TypeError):
            late = False
        if late:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        atomic_write(path, "".join(f"{line}\n" for line in kept).encode())
    return dropped
