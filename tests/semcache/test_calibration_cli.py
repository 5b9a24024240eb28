"""`scrimp cache calibrate` and `train` refuse a target their pairs cannot support (unless --force, which
warns), and the model they write records the data it was made from."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from scrimp.cli import main

TOPICS = ["password", "invoice", "subscription", "email address", "billing plan", "delivery address", "username",
          "profile photo", "phone number", "payment card", "language setting", "time zone", "newsletter",
          "two-factor login", "shipping option", "account name", "order history", "gift card", "wishlist",
          "saved search", "notification sound", "dark mode", "export file", "api token", "team member",
          "storage quota", "backup copy", "calendar link", "receipt", "coupon code"]


def write_pairs(path, duplicates: int, non_duplicates: int) -> str:
    """Paraphrases ("How do I change my X?" / "How can I change my X?") and near misses ("change my X" /
    "delete my Y"), no question shared between pairs (so a split by question groups can put each pair on
    either side)."""
    rows = [{"text_a": f"How do I change my {TOPICS[i % len(TOPICS)]} ({i})?",
             "text_b": f"How can I change my {TOPICS[i % len(TOPICS)]} ({i})?", "label": 1}
            for i in range(duplicates)]
    rows += [{"text_a": f"How do I change my {TOPICS[i % len(TOPICS)]} (case {i})?",  # near misses
              "text_b": f"How do I delete my {TOPICS[(i + 7) % len(TOPICS)]} (case {i})?", "label": 0}
             for i in range(non_duplicates)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def check_provenance(data: dict, path: str, pairs: int) -> None:
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    assert data["path"] == str(Path(path).resolve())
    assert data["pairs"] == pairs and data["sha256"] == digest
    made = datetime.fromisoformat(data["date"])
    assert made.tzinfo is not None and abs((datetime.now(UTC) - made).total_seconds()) < 600


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def test_calibrate_refuses_a_target_its_pairs_cannot_support(runner, tmp_path):
    # 6 non-duplicates: with no false hit at all the 95% bound is 39%, so 20% cannot be promised
    few = write_pairs(tmp_path / "few.jsonl", 6, 6)
    out = runner.invoke(main, ["cache", "calibrate", "--pairs", few, "--max-false-hit", "0.2",
                               "--out", str(tmp_path / "refused")])
    assert out.exit_code == 1, out.output
    assert "cannot support a false-hit rate of 20.00%" in out.output
    assert "upper bound on the false-hit rate is 39.30%" in out.output
    assert "at least 14 non-duplicates" in out.output and "--force" in out.output
    assert not (tmp_path / "refused").exists()

    forced = runner.invoke(main, ["cache", "calibrate", "--pairs", few, "--max-false-hit", "0.2",
                                  "--out", str(tmp_path / "forced"), "--force"])
    assert forced.exit_code == 0, forced.output
    assert "WARNING" in forced.stderr and "does NOT keep false hits under the target" in forced.stderr
    spec = json.loads((tmp_path / "forced" / "semantic.json").read_text())
    assert spec["calibration"]["forced"] is True and spec["calibration"]["supported"] is False
    assert spec["calibration"]["false_hit_upper"] > 0.2
    check_provenance(spec["calibration"]["data"], few, 12)
    assert list(spec["calibration_curve"]) == ["0.2"]  # no supported target besides the forced one

    # 40 non-duplicates support 20% (the bound with none let through is 7.2%): written, no warning
    enough = write_pairs(tmp_path / "enough.jsonl", 10, 40)
    ok = runner.invoke(main, ["cache", "calibrate", "--pairs", enough, "--max-false-hit", "0.2",
                              "--out", str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output
    assert "WARNING" not in ok.output
    spec = json.loads((tmp_path / "ok" / "semantic.json").read_text())
    assert spec["calibration"]["supported"] is True and spec["calibration"]["false_hit_upper"] <= 0.2
    assert "forced" not in spec["calibration"]
    check_provenance(spec["calibration"]["data"], enough, 50)


def test_train_refuses_a_target_its_calibration_part_cannot_support(runner, tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 60, 60)
    base = ["cache", "train", "--pairs", pairs, "--no-adapt-embedder", "--calibration-share", "0.5"]
    # ~30 non-duplicates in the calibration part cannot back 1% (299 would be needed with no false hit)
    out = runner.invoke(main, [*base, "--out", str(tmp_path / "refused"), "--max-false-hit", "0.01"])
    assert out.exit_code == 1, out.output
    assert "cannot support a false-hit rate of 1.00%" in out.output and "at least 299 non-duplicates" in out.output
    assert "--force" in out.output and not (tmp_path / "refused").exists()

    forced = runner.invoke(main, [*base, "--out", str(tmp_path / "forced"), "--max-false-hit", "0.01", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "WARNING" in forced.stderr
    spec = json.loads((tmp_path / "forced" / "semantic.json").read_text())
    assert spec["calibration"]["forced"] is True and spec["calibration"]["supported"] is False
    check_provenance(spec["trained_on"]["data"], pairs, 120)

    ok = runner.invoke(main, [*base, "--out", str(tmp_path / "ok"), "--max-false-hit", "0.2"])
    assert ok.exit_code == 0, ok.output
    assert "WARNING" not in ok.output
    spec = json.loads((tmp_path / "ok" / "semantic.json").read_text())
    assert spec["calibration"]["supported"] is True and "forced" not in spec["calibration"]
    check_provenance(spec["trained_on"]["data"], pairs, 120)
    check_provenance(spec["calibration"]["data"], pairs, 120)
