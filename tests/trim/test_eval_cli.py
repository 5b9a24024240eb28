"""`scrimp trim eval` on small fixtures written here (never the evaluation data)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from scrimp.cli import main

TOPICS = ["the lighthouse keeper polished the great lamp every evening before the storm",
          "sourdough starters need flour and water every day to keep the yeast alive",
          "the chess club met on thursdays to study endgames with rooks and pawns",
          "tides rise and fall twice a day because of the pull of the moon",
          "jazz musicians in new orleans mixed blues and ragtime into something new",
          "orchids often grow on the bark of rainforest trees far above the ground"]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def rag_rows():
    rows = []
    for q, (question, gold) in enumerate([("Why do tides rise and fall?", 3), ("What do sourdough starters need?", 1),
                                          ("When did the chess club meet?", 2)]):
        chunks = [{"title": f"T{i}", "text": (TOPICS[i] + ". ") * 4} for i in range(len(TOPICS))]
        rows.append({"id": str(q), "question": question, "answer": "", "type": "bridge", "chunks": chunks,
                     "gold": [gold]})
    return rows


def history_conv():
    turns = []
    for i in range(240):
        text = ("My sister Ottilie adopted a three-legged greyhound named Biscuit last spring." if i == 14
                else f"{TOPICS[i % len(TOPICS)]} and that reminded me of day {i}")
        turns.append({"id": f"D1:{i + 1}", "session": 1, "date": "1 May 2023", "speaker": "Ann" if i % 2 == 0 else "Bo",
                      "text": text})
    return {"id": "c1", "speakers": ["Ann", "Bo"], "turns": turns,
            "questions": [{"question": "What is the name of the greyhound Ottilie adopted?", "answer": "Biscuit",
                           "evidence": ["D1:15"], "category": 4}]}


def test_rag_eval_prints_one_json_object(tmp_path):
    data = write(tmp_path / "rag.jsonl", rag_rows())
    result = CliRunner().invoke(main, ["trim", "eval", "--kind", "rag", "--data", data, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["examples"] == 3 and out["evidence_recall"] == 1.0
    assert 0.5 <= out["token_reduction"] < 0.7  # the shipped default keeps at most 40% of the chunk tokens


def test_history_eval_keeps_the_evidence_turn_verbatim(tmp_path):
    data = write(tmp_path / "conv.jsonl", [history_conv()])
    result = CliRunner().invoke(main, ["trim", "eval", "--kind", "history", "--data", data, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["examples"] == 1 and out["evidence_recall"] == 1.0
    assert out["token_reduction"] > 0.6


def test_the_config_decides(tmp_path):
    data = write(tmp_path / "rag.jsonl", rag_rows())
    config = tmp_path / "scrimp.yaml"
    config.write_text("stages:\n  - trim:\n      default:\n        chunks: {top_k: 1, keep_ratio: null}\n")
    result = CliRunner().invoke(main, ["trim", "eval", "--kind", "rag", "--data", data, "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("3 examples: 83.5% of chunk tokens removed, 100.0% of gold chunks kept")  # 1 of 6 kept


def test_a_file_in_the_wrong_format_is_refused(tmp_path):
    data = write(tmp_path / "rag.jsonl", rag_rows())
    result = CliRunner().invoke(main, ["trim", "eval", "--kind", "history", "--data", data])
    assert result.exit_code != 0 and "not the history format" in result.output
