"""Runs own their files (train/runs.py): a new run refuses to write over another's,
--auto-resume continues only the same run, --overwrite replaces it. Real short runs
on CPU, on shards built from the sample data."""

from __future__ import annotations

import json
import logging

import pytest

from dataengine.build import build
from tests import naive
from tests.test_train import TINY
from train import checkpoint as ckpt
from train.__main__ import main
from train.config import load_run_config
from train.curriculum import load_curriculum
from train.loader import BatchLoader, LoaderConfig
from train.runs import RunError
from train.trainer import train

#: the refusal's three ways on
WAYS = ("--auto-resume continues it", "--checkpoint-prefix NAME", "--overwrite replaces it")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "shards"
    build(naive.SAMPLE_INPUTS, out, quiet=True)
    return out


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Runs in tmp_path with the default file layout (checkpoints/, runs/)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def config(shards, **overrides):
    """A tiny run with the default layout: checkpoints/<prefix>.pt, runs/<prefix>/."""
    base = {"shards": str(shards), "tensorboard": False, "heartbeat_seconds": 0.0,
            "lr_warmup_steps": 2, "ssl_warmup_steps": 2, "batch_size": 16, "eval_every": 0,
            "steps": 4, "save_every": 2, "keep_checkpoints": 0, "progress_interval": 2,
            **TINY}
    return load_run_config(None, {**base, **overrides})


def steps_logged(prefix="pretrained") -> list[int]:
    path = f"runs/{prefix}/metrics.jsonl"
    return [json.loads(line)["step"] for line in open(path).read().splitlines()]


def files_of(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_a_new_run_refuses_to_write_over_a_finished_one(shards, in_tmp, capsys):
    train(config(shards))
    before = files_of(in_tmp)
    with pytest.raises(RunError) as e:
        train(config(shards, steps=2))
    message = str(e.value)
    assert message.startswith("run 'pretrained' already exists (step 4: "), message
    assert "checkpoints/pretrained.pt" in message and "runs/pretrained/metrics.jsonl" in message
    assert "pretrained_step00000004.pt and 1 older" in message
    assert all(way in message for way in WAYS) and "\n" not in message
    assert files_of(in_tmp) == before  # nothing written, nothing appended

    # the command line: one line on stderr, exit 2, not even its log appended to
    args = ["--shards", str(shards), "--steps", "2", "--blocks", "1", "--channels", "16",
            "--workers", "0", "--no-tensorboard", "--eval-every", "0"]
    capsys.readouterr()  # what train() logged
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"error: {message}", err
    assert files_of(in_tmp) == before


def test_metrics_without_a_checkpoint_are_a_run_too(shards, in_tmp):
    (in_tmp / "runs" / "pretrained").mkdir(parents=True)
    (in_tmp / "runs" / "pretrained" / "metrics.jsonl").write_text('{"step": 7, "policy": 8}\n')
    with pytest.raises(RunError, match=r"'pretrained' already exists \(step 7, no checkpoint: "):
        train(config(shards))


def test_a_new_prefix_runs_beside_the_old_run(shards, in_tmp):
    train(config(shards))
    old = files_of(in_tmp / "checkpoints")
    summary = train(config(shards, steps=2, checkpoint_prefix="second"))
    assert summary["checkpoint"] == "checkpoints/second.pt"
    now = files_of(in_tmp / "checkpoints")
    assert {k: v for k, v in now.items() if k.startswith("pretrained")} == old
    assert sorted(k for k in now if k.startswith("second")) == \
        ["second.pt", "second_step00000002.pt"]
    assert steps_logged("pretrained") == [2, 4] and steps_logged("second") == [2]


def test_checkpoint_out_naming_another_runs_final_is_refused(shards, in_tmp):
    train(config(shards, steps=2))
    for resume in (False, True):
        with pytest.raises(RunError, match="is the final checkpoint of run 'pretrained'"):
            train(config(shards, checkpoint_prefix="b", auto_resume=resume,
                         checkpoint_out="checkpoints/pretrained.pt"))
    train(config(shards, steps=1, checkpoint_prefix="b", overwrite=True,
                 checkpoint_out="checkpoints/pretrained.pt"))
    assert ckpt.peek("checkpoints/pretrained.pt") == {"step": 1, "prefix": "b"}


def test_overwrite_replaces_the_old_run(shards, in_tmp, caplog):
    train(config(shards, steps=6))
    with caplog.at_level("INFO", logger="train"):
        train(config(shards, steps=2, overwrite=True))
    assert any(r.getMessage().startswith("--overwrite: deleted run 'pretrained' (step 6")
               for r in caplog.records)
    assert ckpt.load("checkpoints/pretrained.pt")["step"] == 2
    assert [s for s, _ in ckpt.intermediate(in_tmp / "checkpoints", "pretrained")] == [2]
    assert steps_logged() == [2]


def test_auto_resume_extends_a_finished_run_without_a_warning(shards, in_tmp, caplog):
    train(config(shards))
    with caplog.at_level("INFO", logger="train"):
        summary = train(config(shards, steps=6, auto_resume=True, lr=0.002))
    messages = [r.getMessage() for r in caplog.records]
    assert "resuming from checkpoints/pretrained_step00000004.pt at step 4 (run 'pretrained')" \
        in messages
    assert any(m.startswith("extending the run from 4 to 6 steps") for m in messages)
    assert "settings changed since the checkpoint: lr 0.001 -> 0.002" in messages
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], messages
    assert summary["step"] == 6 and ckpt.load("checkpoints/pretrained.pt")["step"] == 6
    assert steps_logged() == [2, 4, 6]


def test_auto_resume_takes_the_final_checkpoint_when_it_is_the_only_one(shards, in_tmp, caplog):
    train(config(shards, save_every=0))
    assert not ckpt.intermediate(in_tmp / "checkpoints", "pretrained")
    with caplog.at_level("INFO", logger="train"):
        train(config(shards, save_every=0, steps=6, auto_resume=True))
    assert any(r.getMessage() == "resuming from checkpoints/pretrained.pt at step 4 (run "
               "'pretrained')" for r in caplog.records)
    assert ckpt.load("checkpoints/pretrained.pt")["step"] == 6


def test_auto_resume_refuses_other_data(shards, in_tmp):
    train(config(shards, steps=2))
    before = files_of(in_tmp)
    for change, named in (({"seed": 3}, "with seed 0; this command has seed 3"),
                          ({"batch_size": 8}, "with global batch 16; this command has global "
                                              "batch 8"),
                          ({"curriculum": "uniform"}, "curriculum stockfish")):
        with pytest.raises(RunError) as e:
            train(config(shards, steps=4, auto_resume=True, **change))
        assert named in str(e.value), str(e.value)
        assert "--checkpoint-in checkpoints/pretrained_step00000002.pt --checkpoint-prefix" \
            in str(e.value)
    assert files_of(in_tmp) == before


def test_auto_resume_drops_the_metrics_logged_after_the_checkpoint(shards, in_tmp):
    train(config(shards, steps=6, progress_interval=1, save_every=2))
    for step in (4, 6):  # as if killed after step 6's metrics and before its checkpoints
        ckpt.step_path(in_tmp / "checkpoints", "pretrained", step).unlink()
    (in_tmp / "checkpoints" / "pretrained.pt").unlink()
    train(config(shards, steps=6, progress_interval=1, auto_resume=True))
    assert steps_logged() == [1, 2, 3, 4, 5, 6]


def test_a_checkpoint_of_earlier_code_still_resumes_and_initialises(shards, in_tmp):
    train(config(shards, steps=2))
    path = ckpt.step_path(in_tmp / "checkpoints", "pretrained", 2)
    state = ckpt.load(path)
    # what earlier code wrote: no `overwrite` setting, and the final checkpoint spelled out
    del state["config"]["train"]["overwrite"]
    state["config"]["train"]["checkpoint_out"] = "checkpoints/pretrained.pt"
    ckpt.save(path, state)
    (in_tmp / "checkpoints" / "pretrained.pt").unlink()
    assert train(config(shards, steps=4, auto_resume=True))["step"] == 4
    # --checkpoint-in, for a new run
    train(config(shards, steps=1, checkpoint_prefix="init", checkpoint_in=str(path)))
    assert ckpt.load("checkpoints/init.pt")["step"] == 1


def test_loader_warns_of_another_data_stream_but_not_of_more_steps(shards, caplog):
    curriculum = load_curriculum("uniform")
    cfg = LoaderConfig(workers=0)
    old = BatchLoader(shards, curriculum, steps=4, batch_size=16, seed=0, cfg=cfg).state_dict()
    for seed, steps, warned in ((0, 8, False), (1, 4, True)):
        caplog.clear()
        loader = BatchLoader(shards, curriculum, steps=steps, batch_size=16, seed=seed, cfg=cfg)
        with caplog.at_level("WARNING", logger="train"):
            loader.load_state_dict(old)
        said = any("batch sequence differs" in r.getMessage() for r in caplog.records)
        assert said == warned, (seed, steps)


def test_overwrite_and_auto_resume_contradict():
    from dataengine.config import ConfigError

    with pytest.raises(ConfigError, match="give one of them"):
        load_run_config(None, {"overwrite": True, "auto_resume": True})
    with pytest.raises(ConfigError, match="plain name"):
        load_run_config(None, {"checkpoint_prefix": "a/b"})
