"""The trim stage's parts on their own: tool-output shrinking, chunk detection, checkpoints, config checks."""

from __future__ import annotations

import json

import pytest

from scrimp.options import ConfigError
from scrimp.trim.chunks import find_chunks, rebuild
from scrimp.trim.history import checkpoints, wanted_checkpoint
from scrimp.trim.options import HistoryPolicy
from scrimp.trim.tool_output import collapse_repeats, html_to_text, prune_json, shrink_text


def test_html_to_text_keeps_visible_text_only():
    html = "<html><head><style>p{}</style><script>alert(1)</script></head><body><h1>Title</h1><p>One &amp; two</p></body></html>"
    assert html_to_text(html) == "Title\nOne & two"


def test_json_pruning_notes_what_was_dropped():
    pruned = prune_json({"a": None, "b": [], "c": list(range(12)), "d": "x" * 30}, max_items=3, max_string=10)
    assert pruned == {"c": [0, 1, 2, "... 9 more items omitted (12 in all)"],
                      "d": "xxxxxxxxxx... (20 more characters omitted)"}


def test_log_lines_differing_only_in_timestamps_collapse_but_a_table_does_not():
    logs = "\n".join(f"2026-01-01T00:00:{i:02d}Z retry" for i in range(5)) + "\nDONE"
    assert collapse_repeats(logs) == "2026-01-01T00:00:00Z retry\n[previous line repeated 4 more times]\nDONE"
    table = "\n".join(f"row {i}: {i * 3}" for i in range(5))
    assert collapse_repeats(table) == table


def test_shrink_text_leaves_plain_prose_alone():
    text = "The deployment finished. Nothing else to report.\nAll good.\nBye."
    assert shrink_text(text) == (text, None)
    assert shrink_text(json.dumps({"a": None, "b": 1}))[1] == "json"


def test_document_convention_and_blocks_are_found_and_rebuilt_in_order():
    content = [{"type": "document", "title": "A", "source": {"type": "text", "data": "alpha"}},
               {"type": "text", "text": '<document title="B">beta</document>\n<document><title>C</title>gamma'
                                        '</document>\nWhich is beta?'},
               {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "x"}}]
    chunks, question = find_chunks(content)
    assert [c.title for c in chunks] == ["A", "B", "C"] and question == "Which is beta?"
    rebuilt = rebuild(content, chunks, kept={1})
    assert rebuilt[0]["text"] == '<document title="B">beta</document>\nWhich is beta?'
    assert rebuilt[1]["source"]["type"] == "base64"  # a PDF is never dropped


def _conversation(n):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": [{"type": "text", "text": f"m{i}"}]}
            for i in range(n)]


def test_checkpoints_are_fixed_turn_starts_so_the_prefix_moves_in_steps():
    msgs = _conversation(40)
    assert checkpoints(msgs, 40, 10) == [10, 20, 30]
    policy = HistoryPolicy(keep_recent=6, checkpoint_every=10)
    # as the conversation grows by a turn, the checkpoint stays put until a whole step has passed
    assert [wanted_checkpoint(msgs, n, policy) for n in (26, 28, 34, 36, 38)] == [20, 20, 20, 30, 30]


def test_a_tool_result_message_is_never_a_cut_point():
    msgs = _conversation(12)
    msgs[10] = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}
    assert checkpoints(msgs, 12, 10) == []


def test_config_errors_name_the_key(tmp_path):
    from scrimp.gateway.config import load

    path = tmp_path / "scrimp.yaml"
    path.write_text("models:\n  - {name: m, provider: openai, base_url: 'http://x', api_key: k}\nstages:\n"
                    "  - trim:\n      default:\n        history: {keep_ratio: 2}\n")
    with pytest.raises(ConfigError, match=r"line 6: stages.trim.default.history.keep_ratio: must be in \(0, 1\]"):
        load(path)
    path.write_text("models:\n  - {name: m, provider: openai, base_url: 'http://x', api_key: k}\nstages:\n"
                    "  - trim:\n      default:\n        chunks: {top_kk: 3}\n")
    with pytest.raises(ConfigError, match="top_kk: unknown key"):
        load(path)


def test_an_unknown_summary_model_is_refused():
    from scrimp.stage import StageContext, build_stage

    with pytest.raises(ConfigError, match="stages.trim.default.history.summary_model: unknown model 'nope'"):
        build_stage("trim", {"default": {"history": {"summary_model": "nope"}}}, StageContext({}, None))


def test_search_result_blocks_inside_a_tool_result_are_pruned():
    from scrimp.canonical import ChatRequest
    from scrimp.trim.options import TrimPolicy
    from scrimp.trim.trimmer import Trimmer

    topics = ["volcano eruption lava Etna Sicily", "bread flour yeast oven", "chess rook pawn endgame",
              "tides moon gravity sea", "jazz blues trumpet New Orleans"]
    results = [{"type": "search_result", "source": f"https://x/{i}", "title": t.split()[0],
                "content": [{"type": "text", "text": (t + ". ") * 5}]} for i, t in enumerate(topics)]
    req = ChatRequest(model="m", messages=[
        {"role": "user", "content": [{"type": "text", "text": "When did Etna in Sicily erupt?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "search", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": results}]}])
    policy = TrimPolicy()
    policy.chunks.bm25_weight = 1.0  # lexical only: no embedder in this test
    prepared = Trimmer(policy, None).prepare(req)
    kept = prepared.messages[2]["content"][0]["content"]
    # at most 40% of the chunk tokens: two of five equal results, the relevant one among them, in order
    assert len(kept) == 2 and kept[0]["title"] == "volcano" and prepared.removed["chunks"] > 0


def test_earlier_chunks_are_pruned_the_same_way_on_later_turns():
    from scrimp.canonical import ChatRequest
    from scrimp.trim.options import TrimPolicy
    from scrimp.trim.trimmer import Trimmer

    topics = ["volcano eruption lava Etna Sicily", "bread flour yeast oven", "chess rook pawn endgame",
              "tides moon gravity sea", "jazz blues trumpet New Orleans"]
    results = [{"type": "search_result", "source": f"https://x/{i}", "title": t.split()[0],
                "content": [{"type": "text", "text": (t + ". ") * 5}]} for i, t in enumerate(topics)]
    turn = [{"role": "user", "content": [{"type": "text", "text": "When did Etna in Sicily erupt?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "search", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": results}]}]
    later = [{"role": "assistant", "content": [{"type": "text", "text": "In 2021."}]},
             {"role": "user", "content": [{"type": "text", "text": "Tell me about jazz trumpet in New Orleans"}]}]
    policy = TrimPolicy()
    policy.chunks.bm25_weight = 1.0
    trimmer = Trimmer(policy, None)
    first = trimmer.prepare(ChatRequest(model="m", messages=turn)).messages
    second = trimmer.prepare(ChatRequest(model="m", messages=[*turn, *later])).messages
    assert second[:3] == first  # ranked against the question of its own turn, not the latest one
