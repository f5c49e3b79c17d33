"""Progress bars: frames on a terminal, a few whole lines anywhere else."""

from __future__ import annotations

import io
import subprocess
import sys

from tqdm import tqdm

from dataengine.progress import LogLines, progress
from tests import naive


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_tqdm_bar():
    out = FakeTerminal()
    with progress(total=50, desc="t", file=out) as bar:
        for _ in range(50):
            bar.update(1)
    assert type(bar) is tqdm
    assert "\r" in out.getvalue()


def test_a_log_gets_whole_lines_at_most_every_interval():
    out = io.StringIO()
    with progress(total=10_000, desc="job", file=out, log_seconds=3600) as bar:
        for _ in range(10_000):
            bar.update(1)
    assert isinstance(bar, LogLines)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2  # where it started and where it ended, nothing in between
    assert lines[0].startswith("job:   0%") and lines[-1].startswith("job: 100%")
    assert "10000/10000" in lines[-1]

    out = io.StringIO()  # a postfix or description changed every step draws no line
    with progress(total=1_000, desc="job", file=out, log_seconds=3600) as bar:
        for i in range(1_000):
            bar.update(1)
            bar.set_postfix(pos_s=i)
            bar.set_postfix_str(f"at {i}")
            bar.set_description(f"job {i % 3}")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("job 0: 100%"), lines

    out = io.StringIO()
    for _ in progress(range(5), desc="each", file=out, log_seconds=0):
        pass
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and all(line.startswith("each:") for line in lines)
    assert lines[-1].startswith("each: 100%") and out.getvalue().count("100%") == 1


def test_a_build_into_a_log_file_writes_no_frames(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dataengine.build", *naive.SAMPLE_INPUTS,
                           "--out", str(tmp_path / "s"), "--workers", "1"],
                          capture_output=True, text=True, timeout=300, cwd=naive.REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stderr
    lines = done.stderr.splitlines()
    assert 2 <= len(lines) <= 8, lines  # a start and an end line per stage
    assert any(line.startswith("parse+label: 100%") for line in lines)
    assert any(line.startswith("write: 100%") for line in lines)
