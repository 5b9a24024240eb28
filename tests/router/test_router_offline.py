"""The learned router's tools: metrics, calibration, data files and the CLI, on small labelled fixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from router_helpers import EASY, HARD, write_labelled

from scrimp.cli import main
from scrimp.router import metrics
from scrimp.router.calibrate import calibrate
from scrimp.router.data import DataError, read


def test_metrics_rank_oracle_above_random():
    rng = np.random.default_rng(0)
    strong = (rng.random(2000) < 0.8).astype(float)
    cheap = np.where(rng.random(2000) < 0.7, strong, 0.0)
    oracle = metrics.summary(metrics.oracle_scores(cheap, strong), cheap, strong)
    rand = metrics.random_summary(cheap, strong)
    assert oracle["apgr"] > 0.85 and oracle["cpt50"] < 0.2
    assert abs(rand["apgr"] - 0.5) < 0.05 and abs(rand["cpt50"] - 0.5) < 0.08
    # a router that is always wrong about who needs the strong model is worse than random
    worst = metrics.summary(-metrics.oracle_scores(cheap, strong), cheap, strong)
    assert worst["apgr"] < rand["apgr"] < oracle["apgr"]


def test_calibration_meets_the_quality_target_on_fresh_data():
    rng = np.random.default_rng(1)

    def draw(n):
        hard = rng.random(n) < 0.3
        strong = (rng.random(n) < 0.9).astype(float)
        cheap = np.where(hard, 0.0, strong)
        p = np.where(hard, rng.uniform(0, 0.6, n), rng.uniform(0.4, 1, n))
        return p, cheap, strong

    cal = calibrate(*draw(3000), target=0.95)
    assert cal.quality_ratio_lower >= 0.95 and 0 < cal.strong_share < 1
    p, cheap, strong = draw(50_000)
    routed = np.where(p >= cal.threshold, cheap, strong).mean()
    assert routed >= 0.95 * strong.mean() - 0.005


def test_data_errors_name_the_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "a", "scores": {"m1": 1, "m2": 0}}\n{"prompt": "b", "scores": {"m1": 1}}\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: no score for m2"):
        read(f, "m1", "m2")
    f.write_text('{"prompt": "a", "scores": {"m1": 3, "m2": 0}}\n')
    with pytest.raises(DataError, match="between 0 and 1"):
        read(f, "m1", "m2")


def test_cli_train_calibrate_eval_predict(tmp_path):
    data = write_labelled(tmp_path / "train.jsonl", n_each=30)
    router = str(tmp_path / "r.json")
    runner = CliRunner()
    assert runner.invoke(main, ["router", "train", "--data", data, "--cheap", "gpt-4o-mini", "--strong", "gpt-4o",
                                "--out", router]).exit_code == 0
    assert runner.invoke(main, ["router", "calibrate", "--router", router, "--data", data]).exit_code == 0
    held_out = tmp_path / "test.jsonl"
    held_out.write_text("".join(json.dumps({"prompt": p, "scores": {"gpt-4o-mini": s, "gpt-4o": 1.0}}) + "\n"
                                for p, s in [(q, 1.0) for q in EASY[30:]] + [(q, 0.0) for q in HARD[30:]]))
    out = runner.invoke(main, ["router", "eval", "--router", router, "--data", str(held_out), "--json",
                               "--plot", str(tmp_path / "curve.png")])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["router"]["apgr"] == pytest.approx(result["oracle"]["apgr"])
    assert result["router"]["apgr"] > result["random"]["apgr"] + 0.2
    assert result["calibrated"]["quality_ratio"] >= 0.95
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    out = runner.invoke(main, ["router", "predict", "--router", router, "--data", str(held_out)])
    lines = [json.loads(x) for x in out.output.splitlines()]
    assert len(lines) == 20 and set(lines[0]) == {"prompt", "p_cheap_ok"}
    easy_p = [x["p_cheap_ok"] for x in lines if x["prompt"] in EASY]
    hard_p = [x["p_cheap_ok"] for x in lines if x["prompt"] in HARD]
    assert min(easy_p) > max(hard_p)


def test_cli_refuses_bad_input(tmp_path):
    runner = CliRunner()
    data = write_labelled(tmp_path / "train.jsonl", n_each=5)
    out = runner.invoke(main, ["router", "train", "--data", data, "--cheap", "nope", "--strong", "gpt-4o",
                               "--out", str(tmp_path / "r.json")])
    assert out.exit_code != 0 and "no score for nope" in out.output and not (tmp_path / "r.json").exists()
    (tmp_path / "junk.json").write_text("{}")
    out = runner.invoke(main, ["router", "eval", "--router", str(tmp_path / "junk.json"), "--data", data])
    assert out.exit_code != 0 and "not a router file" in out.output


def test_router_file_round_trip_and_training_prompts_scored_as_unseen(tmp_path):
    from scrimp.router.model import Router

    prompts = EASY[:30] + HARD[:30]
    cheap = np.asarray([1.0] * 30 + [0.0] * 30)
    r = Router("gpt-4o-mini", "gpt-4o").fit(prompts, cheap, np.ones(60), progress=False)
    path = tmp_path / "r.npz"
    r.save(path)
    loaded = Router.load(path)
    fresh = EASY[30:] + HARD[30:]
    assert np.allclose(loaded.p_cheap_ok(fresh), r.p_cheap_ok(fresh))
    assert loaded.seen_in_training(prompts + fresh) == 60
    # the training prompts get the score they had when held out, not the one they fit
    oof = loaded.p_cheap_ok(prompts, out_of_fold=True)
    assert np.allclose(oof, r.oof_p) and oof[:30].mean() > oof[30:].mean()

    out = CliRunner().invoke(main, ["router", "calibrate", "--router", str(path),
                                    "--data", write_labelled(tmp_path / "d.jsonl", 30)])
    assert out.exit_code == 0 and "60 of 60 prompts were in the training data" in out.output

    meta = dict(np.load(path))
    meta["meta"] = np.asarray(str(meta["meta"]).replace('"version": 2', '"version": 1'))
    np.savez(tmp_path / "old.npz", **meta)
    with pytest.raises(ValueError, match="version 1, this scrimp reads 2: train it again"):
        Router.load(tmp_path / "old.npz")
