"""make quality (bench/quality.py) at a smoke size: two real training runs, the tables."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dataengine.build import build
from dataengine.config import BuildConfig
from tests import naive
from train import checkpoint as ckpt

SCRIPT = naive.REPO / "bench" / "quality.py"
TINY_RUN = ("--blocks 1 --channels 8 --workers 0 --batch-size 16 --lr-warmup-steps 1 "
            "--ssl-warmup-steps 1 --no-tensorboard")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality") / "shards"
    build(naive.SAMPLE_INPUTS, out, cfg=BuildConfig(val_min_positions=1000), quiet=True)
    return out


def run_quality(shards, out, *extra):
    cmd = [sys.executable, str(SCRIPT), "--steps", "4", "--shards", str(shards), "--games", "2",
           "--bootstrap", "50", "--eval-every", "2", "--max-plies", "30", "--device", "cpu", "--out", str(out), "--puzzle-limit", "30",
           "--train-args", TINY_RUN, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=naive.REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_quality_trains_both_arms_and_prints_the_tables(shards, tmp_path):
    from bench.quality import ARMS, ROWS, WEIGHTS
    from train.puzzles import wilson

    out = tmp_path / "q"
    printed = run_quality(shards, out)
    # two real runs, identical but for the SSL weight
    configs = {arm: ckpt.load(out / arm / "final.pt")["config"]["train"] for arm in ARMS}
    assert configs["ssl"]["ssl_weight"] > 0 and configs["no_ssl"]["ssl_weight"] == 0
    assert {k: v for k, v in configs["ssl"].items() if k not in ("ssl_weight", "checkpoint_out",
                                                                  "checkpoint_prefix")} == \
        {k: v for k, v in configs["no_ssl"].items() if k not in ("ssl_weight", "checkpoint_out",
                                                                  "checkpoint_prefix")}
    for arm in ARMS:  # each run measured itself on the validation split while training
        lines = (out / "runs" / arm / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines if "val_ema/policy_top1" in x] == [2, 4]

    report = json.loads((out / "quality.json").read_text())
    assert report["steps"] == 4 and report["val_positions"] >= 1000
    assert set(report["base_rates"]) == {"threat", "pin", "fork", "pawn_structure",
                                         "king_safety"}
    assert all(0 < r < 0.05 for r in report["base_rates"].values())
    for weights in WEIGHTS:
        for key, _, _ in ROWS:
            row = report["heldout"][weights][key]
            assert row["diff"] == pytest.approx(row["ssl"] - row["no_ssl"])
            lo, hi = row["ci95"]
            assert lo <= hi
    # the raw policy of each arm and weight set on the same 30 held-out puzzles
    puzzles = report["puzzles"]
    assert puzzles["n"] == 30 and puzzles["file"].endswith("lichess_puzzles_heldout.csv")
    for weights in WEIGHTS:
        for figure in ("first", "line"):
            row = puzzles[weights][figure]
            for arm in ARMS:
                k = round(row[arm] * 30)
                assert row[arm] == pytest.approx(k / 30)
                assert row[f"{arm}_ci95"] == pytest.approx(list(wilson(k, 30)))
            assert row["diff"] == pytest.approx(row["ssl"] - row["no_ssl"])
            lo, hi = row["ci95"]
            assert lo <= hi and -1 <= lo and hi <= 1
        assert puzzles[weights]["line"]["ssl"] <= puzzles[weights]["first"]["ssl"]
    # 2 arms x 2 weight sets x 2 baselines, 2 games each
    assert len(report["matches"]) == 8
    for m in report["matches"].values():
        assert m["games"] == 2 and m["wins"] + m["draws"] + m["losses"] == 2
    for text in ("held-out, EMA weights", "held-out, raw weights", "SSL - no SSL",
                 "policy top-1", "pin F1", "vs random", "vs material", "SSL, ema", "no SSL, raw",
                 "held-out puzzles: 30", "EMA, first move", "raw, full line"):
        assert text in printed, text
    assert printed.count("\n") > 30
    assert (out / "quality.txt").read_text().strip() in printed

    # the same settings again reuse both runs and give the same figures
    again = run_quality(shards, out)
    assert again.count("reusing") == 2
    again_report = json.loads((out / "quality.json").read_text())
    assert again_report["heldout"] == report["heldout"]
    assert again_report["puzzles"] == report["puzzles"]


def test_quality_with_two_seeds_pools_them_and_adds_an_interval_over_seeds(shards, tmp_path):
    from bench.quality import ARMS, ROWS, T95, t_interval

    out = tmp_path / "q"
    printed = run_quality(shards, out, "--seeds", "2", "--seed", "3", "--games", "0")
    seeds = {arm: [ckpt.load(out / arm / "final.pt")["config"]["train"]["seed"],
                   ckpt.load(out / arm / "seed4" / "final.pt")["config"]["train"]["seed"]]
             for arm in ARMS}
    assert seeds == {"ssl": [3, 4], "no_ssl": [3, 4]}
    report = json.loads((out / "quality.json").read_text())
    assert report["seeds"] == [3, 4]
    for weights in ("ema", "raw"):
        for key, _, _ in ROWS:
            row = report["heldout"][weights][key]
            assert len(row["seed_diffs"]) == 2
            lo, hi = row["ci95_seeds"]
            mean = sum(row["seed_diffs"]) / 2
            assert lo <= mean <= hi
            if key == "policy_ce":  # pooled over seeds with equal denominators: the mean
                assert row["diff"] == pytest.approx(mean, rel=1e-6, abs=1e-9)
    for weights in ("ema", "raw"):
        for figure in ("first", "line"):
            row = report["puzzles"][weights][figure]
            assert len(row["seed_diffs"]) == 2
            assert row["diff"] == pytest.approx(sum(row["seed_diffs"]) / 2)
            lo, hi = row["ci95_seeds"]
            assert lo <= row["diff"] + 1e-12 and row["diff"] <= hi + 1e-12
    assert "solves pooled over 2 seeds" in printed
    assert "each seed" in printed and "95% CI over seeds" in printed
    assert "seeds 3, 4 (figures pooled over them)" in printed
    # the interval: mean -+ t(0.975, k - 1) sd / sqrt(k)
    lo, hi = t_interval([1.0, 2.0, 3.0])
    assert (lo + hi) / 2 == pytest.approx(2.0)
    assert (hi - lo) / 2 == pytest.approx(T95[2] * 1.0 / 3 ** 0.5)
    assert t_interval([1.0]) is None


def test_paired_bootstrap_over_puzzles():
    import numpy as np

    from bench.quality import paired_bootstrap_rate

    rng = np.random.default_rng(0)
    a = rng.random(400) < 0.6
    assert paired_bootstrap_rate(a, a, resamples=200) == (0.0, 0.0)  # the same solves
    b = a.copy()
    b[:40] = False  # B fails 40 puzzles more (those A solved among them)
    d = a.mean() - b.mean()
    lo, hi = paired_bootstrap_rate(a, b, resamples=2000, seed=1)
    assert 0 <= lo < d < hi
    # paired: far tighter than two independent proportions' interval would be
    assert hi - lo < 2 * 1.96 * np.sqrt(2 * 0.25 / 400) / 2
    assert paired_bootstrap_rate(a, b, resamples=500, seed=3) == \
        paired_bootstrap_rate(a, b, resamples=500, seed=3)
    assert all(np.isnan(paired_bootstrap_rate(a[:0], b[:0])))


def test_quality_names_missing_shards(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--shards", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120, cwd=naive.REPO)
    assert done.returncode == 2 and "make shards" in done.stderr
