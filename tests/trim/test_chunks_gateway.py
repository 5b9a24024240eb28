"""Retrieved chunks through the gateway: re-ranked against the question, pruned, kept in their order; the saving
recorded under trim.chunks at the model's input price."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

DOCS = [
    ("Lighthouses", "A lighthouse is a tower with a bright lamp that guides ships along dangerous coasts at night."),
    ("Sourdough", "Sourdough bread is leavened by wild yeast and lactic acid bacteria kept alive in a starter."),
    ("Volcanoes", "A volcano is an opening in the crust where molten rock, ash and gases escape from below."),
    ("Orchids", "Orchids are a large family of flowering plants, many of which grow on the bark of trees."),
    ("Mount Etna", "Mount Etna in Sicily is one of the most active volcanoes in the world; it erupted in 2021."),
    ("Chess", "Chess is a board game for two players in which each side commands sixteen pieces."),
    ("Tides", "Tides are the rise and fall of sea levels caused by the gravity of the Moon and the Sun."),
    ("Jazz", "Jazz is a music genre that grew in New Orleans from blues and ragtime around 1900."),
]
QUESTION = "When did the volcano Mount Etna in Sicily last erupt?"
TRIM = {"default": {"chunks": {"keep_ratio": 0.3, "min_chunks": 4}}}


def document(title, text):
    return {"type": "document", "title": title, "source": {"type": "text", "media_type": "text/plain", "data": text}}


@pytest.mark.parametrize("trim_gateway", [(TRIM, False)], indirect=True)
def test_document_blocks_are_pruned_in_their_order_and_the_saving_recorded(trim_gateway):
    gw = trim_gateway
    client = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)
    content = [document(t, x) for t, x in DOCS] + [{"type": "text", "text": QUESTION}]
    reply = client.messages.create(model="claude-sonnet-4-6", max_tokens=20,
                                   messages=[{"role": "user", "content": content}])
    assert reply.content
    sent = gw.upstream("claude-sonnet-4-6")[0]["messages"][0]["content"]
    titles = [b["title"] for b in sent if b["type"] == "document"]
    assert "Mount Etna" in titles and "Volcanoes" in titles  # what the question needs
    assert len(titles) < len(DOCS) / 2
    assert titles == [t for t, _ in DOCS if t in titles]  # original order
    assert sent[-1] == {"type": "text", "text": QUESTION}

    (decisions,) = gw.rows("SELECT decisions FROM calls")[0]
    removed = json.loads(decisions)["trim"]["chunks"]
    (saving,) = [usd for lever, usd in gw.rows("SELECT lever, usd FROM savings") if lever == "trim.chunks"]
    assert removed > 50
    assert saving == pytest.approx(removed * 3.00 / 1e6)  # claude-sonnet-4-6: $3 per million input tokens


@pytest.mark.parametrize("trim_gateway", [(TRIM, False)], indirect=True)
def test_the_document_text_convention_over_chat_completions(trim_gateway):
    gw = trim_gateway
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    docs = "\n".join(f'<document index="{i}" title="{t}">{x}</document>' for i, (t, x) in enumerate(DOCS))
    client.chat.completions.create(model="gpt-4o-mini", max_tokens=10,
                                   messages=[{"role": "user", "content": f"{docs}\n\n{QUESTION}"}])
    sent = gw.upstream("gpt-4o-mini")[0]["messages"][0]["content"]
    text = sent if isinstance(sent, str) else "".join(p["text"] for p in sent)
    assert 'title="Mount Etna"' in text and QUESTION in text
    kept = [t for t, _ in DOCS if f'title="{t}"' in text]
    assert len(kept) < len(DOCS) / 2 and text.index("Volcanoes") < text.index("Mount Etna")
    (saving,) = [usd for lever, usd in gw.rows("SELECT lever, usd FROM savings") if lever == "trim.chunks"]
    assert saving > 0


@pytest.mark.parametrize("trim_gateway", [({"default": {"chunks": {"enabled": False}}}, False)], indirect=True)
def test_chunk_pruning_can_be_switched_off(trim_gateway):
    gw = trim_gateway
    client = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)
    content = [document(t, x) for t, x in DOCS] + [{"type": "text", "text": QUESTION}]
    client.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": content}])
    sent = gw.upstream("claude-sonnet-4-6")[0]["messages"][0]["content"]
    assert sum(b["type"] == "document" for b in sent) == len(DOCS)
    assert not gw.rows("SELECT lever FROM savings")
