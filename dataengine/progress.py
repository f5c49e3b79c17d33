"""Progress bars that fit where their output goes.

On a terminal, :func:`progress` is an ordinary tqdm bar. Anywhere else (a log
file, ``nohup``, CI, a pipe) a bar's redrawn frames would pile up as one
endless line of ``\\r`` updates, so there it writes one whole line at most
every ``log_seconds`` (60 by default) and one at the end::

    write: 45%|####5     | 4/9 [00:01<00:01, 3.68it/s]

Every long job of the project (build, teacher, selfplay, inspect, evaluation,
training, benchmarks) makes its bars here.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["LogLines", "is_terminal", "progress", "tqdm"]

#: Seconds between two lines of a bar written to a non-terminal.
LOG_SECONDS = 60.0


def is_terminal(stream=None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


class LogLines(tqdm):
    """A tqdm bar that writes whole lines (at most one every ``mininterval`` seconds and a
    last one at the end) instead of redrawing one line with carriage returns."""

    def display(self, msg=None, pos=None):
        text = self.__str__() if msg is None else msg
        if text:
            self.fp.write(text.replace("\r", "") + "\n")
            self.fp.flush()
        return True

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        # tqdm redraws on every postfix change; a log waits for the next interval
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s="", refresh=True):
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc=None, refresh=True):
        super().set_description(desc, refresh=False)

    def close(self):
        if self.disable:
            return
        if getattr(self, "last_print_n", None) != self.n or self.n == 0:
            self.display()  # the final state, once
        self.disable = True
        self._decr_instances(self)


def progress(iterable=None, *, log_seconds: float = LOG_SECONDS, file=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal, else :class:`LogLines` with
    ``mininterval=log_seconds`` (and no dynamic width)."""
    out = sys.stderr if file is None else file
    if is_terminal(out):
        return tqdm(iterable, file=file, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    kwargs.setdefault("ncols", 100)
    kwargs["mininterval"] = log_seconds
    return LogLines(iterable, file=file, **kwargs)
