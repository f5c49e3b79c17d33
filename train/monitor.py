"""Monitoring for long runs: metrics log (JSONL + TensorBoard), heartbeat, memory."""

from __future__ import annotations

import gc
import json
import logging
import time
from pathlib import Path

import psutil
import torch

log = logging.getLogger("train")


class MetricsLog:
    """Appends one JSON object per line to metrics.jsonl (and TensorBoard scalars)."""

    def __init__(self, run_dir: Path, tensorboard: bool, enabled: bool = True,
                 purge_step: int | None = None):
        """``purge_step``: a resumed run's first step; TensorBoard hides the events that
        the interrupted run logged from there on (they are logged again)."""
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.last: dict = {}  # the last line written by this process
        self.writer = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)
            except ImportError as e:  # tensorboard is a dependency; degrade, don't die
                log.warning("TensorBoard logging off: %s", e)

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        self.last = {"step": step, **metrics}
        with open(self.path, "a") as f:
            f.write(json.dumps(self.last, sort_keys=True) + "\n")
        if self.writer is not None:
            for k, v in metrics.items():
                if isinstance(v, int | float):
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def memory_figures(device: torch.device) -> dict[str, float]:
    """Process RSS and system RAM use, plus the device allocator's figures, in MB / fractions."""
    vm = psutil.virtual_memory()
    out = {
        "rss_mb": psutil.Process().memory_info().rss / 2**20,
        "ram_used_frac": vm.percent / 100.0,
    }
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        out["device_allocated_mb"] = torch.cuda.memory_allocated(device) / 2**20
        out["device_reserved_mb"] = torch.cuda.memory_reserved(device) / 2**20
        out["device_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["device_used_frac"] = torch.cuda.memory_reserved(device) / total
    elif device.type == "mps":
        out["device_allocated_mb"] = torch.mps.current_allocated_memory() / 2**20
        out["device_driver_mb"] = torch.mps.driver_allocated_memory() / 2**20
        limit = torch.mps.recommended_max_memory()
        out["device_used_frac"] = torch.mps.driver_allocated_memory() / limit if limit else 0.0
    return out


def clear_caches(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


class MemoryMonitor:
    """Checked every N steps: clears caches; above `warning` logs it; above `critical`
    asks the trainer to shrink the SSL chunk and save a checkpoint."""

    def __init__(self, device: torch.device, warning: float, critical: float):
        self.device, self.warning, self.critical = device, warning, critical
        self.warnings = 0
        self.criticals = 0

    def check(self, step: int) -> str:
        """'ok', 'warning' or 'critical' after the periodic cleanup."""
        clear_caches(self.device)
        figures = memory_figures(self.device)
        used = max(figures["ram_used_frac"], figures.get("device_used_frac", 0.0))
        if used >= self.critical:
            self.criticals += 1
            log.warning("step %d: memory critical (%.0f%% used): %s", step, used * 100, figures)
            return "critical"
        if used >= self.warning:
            self.warnings += 1
            log.warning("step %d: memory high (%.0f%% used): %s", step, used * 100, figures)
            return "warning"
        return "ok"


class Heartbeat:
    """Logs a status line every `seconds` (the original tool's 5-minute heartbeat)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.last = time.monotonic()

    def due(self) -> bool:
        if self.seconds <= 0:
            return False
        now = time.monotonic()
        if now - self.last >= self.seconds:
            self.last = now
            return True
        return False
