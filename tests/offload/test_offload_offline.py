"""Training, evaluation and refusal through the CLI; the label and calibration rules on their own."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROWS
from offload_helpers import write

from scrimp.cli import main
from scrimp.offload.calibrate import calibrate
from scrimp.offload.labels import label_of
from scrimp.offload.model import OffloadModel
from scrimp.offload.training import embed


def test_labels_ignore_case_spacing_quotes_and_json_layout():
    assert label_of("  Card_Arrival. ") == label_of('"card_arrival"') == "card_arrival"
    fenced = '```json\n{"urgent":false,"intent":"refund"}\n```'
    assert label_of('{"intent": "refund", "urgent": false}') == label_of(fenced)
    assert label_of("Refund") != label_of("Refund please")


def test_calibration_holds_the_bound_and_says_when_it_cannot():
    rng = np.random.default_rng(0)
    conf = rng.random(4000)
    agrees = rng.random(4000) < conf  # confident answers are right more often
    cal = calibrate(conf, agrees, target=0.95, confidence=0.95)
    served = conf >= cal.threshold
    assert cal.supported and cal.served == served.sum()
    assert agrees[served].mean() == pytest.approx(cal.agreement)
    assert cal.agreement_lower >= 0.95 and cal.agreement > 0.95
    assert cal.coverage == pytest.approx(served.mean())
    few = calibrate(np.ones(20), np.ones(20, bool), target=0.98)  # 20 agreeing examples cannot show 98%
    assert not few.supported and few.coverage == 0 and "at least 149" in few.shortfall()


def test_train_then_eval_decides_as_the_model_does(trained_model, tmp_path):
    model = OffloadModel.load(trained_model)
    assert sorted(model.renderings.values()) == sorted({r["answer"] for r in ROWS})
    with open(trained_model + "/offload.json") as fh:
        meta = json.load(fh)
    assert meta["calibration"]["supported"] and meta["calibration"]["target_agreement"] == 0.95
    data = write(tmp_path / "eval.jsonl", ROWS)
    out = CliRunner().invoke(main, ["offload", "eval", "--model", trained_model, "--data", data, "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    prompts = [r["prompt"] for r in ROWS]
    decisions = model.decide(prompts, embed(prompts))
    served = [d for d in decisions if d.served]
    assert result["examples"] == len(ROWS)
    assert result["coverage"] == pytest.approx(len(served) / len(ROWS)) and result["coverage"] > 0.5
    agreed = sum(d.label == label_of(r["answer"]) for d, r in zip(decisions, ROWS) if d.served)
    assert result["agreement"] == pytest.approx(agreed / len(served))


def test_free_text_answers_are_refused_with_the_reason_and_nothing_is_written(tmp_path):
    rows = [{"prompt": f"Write a haiku about item {i}", "answer": f"Line {i} of a poem about autumn number {i}"}
            for i in range(80)]
    out_dir = tmp_path / "model"
    out = CliRunner().invoke(main, ["offload", "train", "--data", write(tmp_path / "free.jsonl", rows),
                                    "--out", str(out_dir)])
    assert out.exit_code != 0
    assert "not offloadable" in out.output and "free text" in out.output and "80 distinct answers" in out.output
    assert not out_dir.exists()


def test_a_refused_retrain_leaves_the_model_in_place(trained_model, tmp_path):
    import shutil

    target = tmp_path / "served"
    shutil.copytree(trained_model, target)
    before = (target / "offload.json").read_text()
    rows = [{"prompt": "q", "answer": "one label for everything"}] * 60
    out = CliRunner().invoke(main, ["offload", "train", "--data", write(tmp_path / "one.jsonl", rows),
                                    "--out", str(target)])
    assert out.exit_code != 0 and "nothing to classify" in out.output
    assert (target / "offload.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.jsonl", "served"]  # no temporary left behind


def test_bad_data_lines_are_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "answer": "b"}\n{"prompt": "a"}\n')
    out = CliRunner().invoke(main, ["offload", "train", "--data", str(path), "--out", str(tmp_path / "m")])
    assert out.exit_code != 0 and "bad.jsonl:2" in out.output


def test_calibration_holds_if_a_rare_label_becomes_common():
    rng = np.random.default_rng(1)
    n_in, n_oos = 4000, 100  # "oos" is rare here, and its confident answers are often wrong
    conf = rng.random(n_in + n_oos)
    agrees = np.concatenate([rng.random(n_in) < 0.9 + 0.1 * conf[:n_in], rng.random(n_oos) < 0.8])
    labels = np.array([f"intent{i % 4}" for i in range(n_in)] + ["oos"] * n_oos, dtype=object)
    plain = calibrate(conf, agrees, target=0.95)
    robust = calibrate(conf, agrees, target=0.95, labels=labels, shift=0.25)
    assert robust.supported and robust.threshold > plain.threshold and robust.worst_label == "oos"
    served = conf >= robust.threshold
    # a mix where oos is a quarter of the calls: agreement still at the target
    wrong_oos = (served & ~agrees)[n_in:].sum() / n_oos
    wrong_in = (served & ~agrees)[:n_in].sum() / n_in
    served_oos, served_in = served[n_in:].mean(), served[:n_in].mean()
    mixed = 1 - (0.25 * wrong_oos + 0.75 * wrong_in) / (0.25 * served_oos + 0.75 * served_in)
    assert mixed >= 0.95 and mixed == pytest.approx(robust.worst_label_agreement)
