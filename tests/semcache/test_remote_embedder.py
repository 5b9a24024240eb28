"""The semantic cache with a remote OpenAI-compatible embeddings endpoint of any dimension: the simulator's
/v1/embeddings (text-embedding-3-small, 1536 dimensions; 256 when the model asks for `dimensions`)."""

from __future__ import annotations

import json
import time

import numpy as np
import openai
import pytest


def ask(gw, text: str):
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    return c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], temperature=0, max_tokens=40,
        extra_headers={"x-scrimp-tenant": "acme"})


def remote_model(tmp_path, sim_url: str, dimensions: int | None = None) -> str:
    """A model directory whose embedder is the simulator's endpoint; no verifier, so the decision is the
    cosine (the simulator's vectors put these paraphrases at ~0.77-0.85, unrelated questions under 0.2)."""
    embedder = {"kind": "remote", "base_url": sim_url + "/v1", "model": "text-embedding-3-small"}
    if dimensions:
        embedder["dimensions"] = dimensions
    directory = tmp_path / f"remote-model-{dimensions or 'native'}"
    directory.mkdir()
    (directory / "semantic.json").write_text(json.dumps({"embedder": embedder, "threshold": 0.7, "floor": 0.5}))
    return str(directory)


@pytest.mark.parametrize(("backend", "dimensions"), [("sqlite", None), ("postgres", None), ("sqlite", 256)])
def test_a_remote_embedder_of_any_dimension_stores_and_hits(make_gateway, sim_upstream, tmp_path, backend,
                                                            dimensions):
    sim_url, _ = sim_upstream
    gw = make_gateway(backend, model=remote_model(tmp_path, sim_url, dimensions))
    expected_dim = dimensions or 1536
    first = ask(gw, "How can I reset my password?")
    assert first.headers["x-scrimp-cache"] == "miss"
    gw.wait_stored(1)
    calls = gw.sim_calls()
    second = ask(gw, "How do I reset my password?")
    assert second.headers["x-scrimp-cache"] == "semantic"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert 0.7 <= float(second.headers["x-scrimp-cache-similarity"]) < 1.0
    # the hit made no chat call upstream (only the embedding of the question)
    assert gw.sim.counters.snapshot()["totals"]["requests"] - calls <= 1
    entry = gw.stage.cache.store.get(int(second.headers["x-scrimp-cache-entry"]))
    assert entry.vector.shape == (expected_dim,)
    assert gw.stage.cache.model.dim == expected_dim
    assert ask(gw, "What is the capital of France?").headers["x-scrimp-cache"] == "miss"


def test_a_saved_1536_dimension_graph_is_read_back_after_a_restart(make_gateway, sim_upstream, tmp_path):
    sim_url, _ = sim_upstream
    model = remote_model(tmp_path, sim_url)
    questions = ["How can I reset my password?", "What is the capital of France?", "How do I bake sourdough bread?"]
    gw = make_gateway("sqlite", schema="remote-restart", model=model, hnsw_from=2)
    for n, q in enumerate(questions, start=1):
        ask(gw, q)
        gw.wait_stored(n)
    gw.stop()  # a graceful stop saves the HNSW graph
    assert len(list((tmp_path / "semantic.db.indexes").glob("*.usearch"))) == 1

    again = make_gateway("sqlite", schema="remote-restart", model=model, hnsw_from=2)
    deadline = time.monotonic() + 20
    while not again.stage.cache._indexes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ask(again, "How do I reset my password?").headers["x-scrimp-cache"] == "semantic"
    (index,) = again.stage.cache._indexes.values()
    assert index.kind == "hnsw" and index.dim == 1536 and len(index) == 3 and not index.dirty


def test_entries_and_graphs_of_another_dimension_are_left_out(tmp_path, caplog):
    """A changed embedder (another dimension) on an existing store: its old rows are not mixed into the
    new index, and a graph saved for the old vectors is set aside and rebuilt."""
    from scrimp.cache.semantic.index import AutoIndex
    from scrimp.cache.semantic.snapshots import IndexSnapshots
    from scrimp.cache.semantic.store import SQLiteSemanticStore

    rng = np.random.default_rng(0)

    def unit(n: int, dim: int) -> np.ndarray:
        v = rng.normal(size=(n, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    store = SQLiteSemanticStore(tmp_path / "sem.db")
    old = unit(3, 384)
    for i, v in enumerate(old):
        store.insert("t", "ns", "f", f"old{i}", v, b"answer", 0.0, 3600)
    index = AutoIndex(hnsw_from=2)
    index.add(*store.vectors("ns"))
    snaps = IndexSnapshots(tmp_path / "indexes")
    assert index.kind == "hnsw" and index.dim == 384 and snaps.save("ns", index)

    new = unit(1, 1536)[0]
    new_id = store.insert("t", "ns", "f", "new", new, b"answer", 0.0, 3600)
    ids, vecs = store.vectors("ns", dim=1536)
    assert ids.tolist() == [new_id] and vecs.shape == (1, 1536)
    assert store.ids("ns", dim=384).tolist() == [1, 2, 3]
    assert snaps.load("ns", store, hnsw_from=2, dim=1536) is None
    assert "holds 384-dimension vectors, the embedder makes 1536" in caplog.text
    loaded = snaps.load("ns", store, hnsw_from=2, dim=384)
    assert loaded is None  # the graph was set aside: the table is the record

    rebuilt = AutoIndex(hnsw_from=10, dim=1536)
    rebuilt.add(*store.vectors("ns", dim=1536))
    assert rebuilt.search(new, 1)[0].tolist() == [new_id]
    with pytest.raises(ValueError, match="384 dimensions; this index holds 1536"):
        rebuilt.add(np.asarray([99]), old[:1])
    store.close()
