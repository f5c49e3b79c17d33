"""python -m train: train a network on shards built by `make shards`.

Flags have the original tool's names and defaults; they override config.yaml.
On several GPUs (or CPU processes), launch it with torchrun; --batch-size is per
process, so the global batch is nproc x batch-size:

    torchrun --standalone --nproc-per-node 4 -m train --batch-size 256 ...

A run is named by --checkpoint-prefix and owns its checkpoints and its log
directory (train/runs.py): where another run's files are, a new run refuses to
start; --auto-resume continues that run, a new prefix starts one beside it,
--overwrite replaces it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from dataengine.config import ConfigError
from train.checkpoint import CheckpointError
from train.config import add_flags, load_run_config
from train.distributed import DistributedError, env_rank
from train.loader import DataError
from train.runs import RunError, claim
from train.trainer import TrainingError, train


class _TqdmHandler(logging.Handler):
    """Log lines that do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(log_file: Path | None, rank: int = 0) -> None:
    """INFO to stderr and `log_file`; under torchrun only rank 0 does that, the other
    ranks print their warnings and errors, marked with their rank, and write no file."""
    if rank:
        fmt = logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(message)s",
                                "%H:%M:%S")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(fmt)
        logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
        return
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [_TqdmHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for h in handlers:
        h.setFormatter(fmt)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    add_flags(ap)
    args = vars(ap.parse_args(argv))
    config_path = args.pop("config")
    rank = 0
    try:
        rank = env_rank()
        run = load_run_config(config_path, args)
        cfg = run.train
        notes = claim(cfg, main=not rank)  # before the log file: another run's log it may be
        setup_logging(Path(cfg.run_dir) / cfg.checkpoint_prefix / "train.log", rank)
        for note in notes:
            logging.getLogger("train").info("%s", note)
        summary = train(run)
    except (ConfigError, DataError, CheckpointError, TrainingError, DistributedError,
            RunError) as e:
        print(f"error{f' (rank {rank})' if rank else ''}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if not rank:
            print("interrupted: rerun with --auto-resume to continue from the last checkpoint",
                  file=sys.stderr)
        return 130
    if not rank:
        print(f"done: {summary['step']} steps, checkpoint {summary['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
