"""The semantic cache's parts: embeddings, index, verifier, calibration, pair files, and the CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from scrimp.cache.semantic.calibrate import calibrate
from scrimp.cache.semantic.index import AutoIndex, ExactIndex, HnswIndex
from scrimp.cache.semantic.model import load_model
from scrimp.cache.semantic.pair_features import lexical
from scrimp.cache.semantic.pairs import PairsError, group_split, read_pairs
from scrimp.cli import main

# a small labelled set written for the tests: paraphrases and near-misses of support questions
DUPLICATES = [
    ("How can I reset my password?", "How do I reset my password?"),
    ("What is the best way to learn Python?", "What's the best way to learn Python?"),
    ("How do I cancel my subscription?", "How can I cancel my subscription?"),
    ("Where can I download my invoice?", "Where do I download my invoice?"),
    ("How do I change my email address?", "How can I change my email address?"),
    ("What payment methods do you accept?", "Which payment methods do you accept?"),
]
NON_DUPLICATES = [
    ("Is chocolate safe for dogs?", "Is chocolate safe for cats?"),
    ("Can I get a refund after 30 days?", "Can I get a refund after 60 days?"),
    ("How do I convert 10 miles to kilometers?", "How do I convert 10 kilometers to miles?"),
    ("What is the capital of France?", "What is the capital of Germany?"),
    ("How do I reset my password?", "How do I bake sourdough bread?"),
    ("Who won the 2018 World Cup?", "Who won the 2022 World Cup?"),
]


def write_pairs(path, rows) -> str:
    path.write_text("".join(json.dumps({"text_a": a, "text_b": b, "label": y}) + "\n" for a, b, y in rows))
    return str(path)


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_onnx_embeddings_match_pytorch(model, tmp_path):
    from scrimp.embedding.embedder import LocalEmbedder, default_model_path
    from scrimp.embedding.onnx_embedder import OnnxEmbedder

    texts = ["How do refunds work?", "What's your refund policy?", "a much longer question " * 20]
    torch_vecs = LocalEmbedder().embed(texts)
    exact = OnnxEmbedder(default_model_path(), tmp_path / "fused.onnx").embed(texts)  # a padded batch
    assert exact.shape == (3, 384)
    assert np.abs(exact - torch_vecs).max() < 1e-4
    # the shipped model's int8 embedder stays close (its thresholds were calibrated on it)
    shipped = model.embedder.embed(texts)
    assert (shipped * torch_vecs).sum(axis=1).min() > 0.9
    assert np.allclose(np.linalg.norm(shipped, axis=1), 1, atol=1e-5)


def test_the_shipped_model_tells_paraphrases_from_near_misses(model):
    a = [p[0] for p in DUPLICATES + NON_DUPLICATES]
    b = [p[1] for p in DUPLICATES + NON_DUPLICATES]
    u, v = model.embed(a), model.embed(b)
    cos = np.einsum("ij,ij->i", u, v)
    hits = model.accepts(cos, model.scores(a, b, u, v))
    assert hits[len(DUPLICATES):].sum() == 0  # no near-miss served
    assert hits[:len(DUPLICATES)].mean() >= 0.5


def test_lexical_features_see_what_a_cosine_misses():
    names = dict(zip(["jaccard", "content_jaccard", "bigram_jaccard", "char3_jaccard", "len_ratio", "len_diff",
                      "only_a", "only_b", "only_min", "only_max", "num_mismatch", "num_one_side", "neg_mismatch",
                      "proper_mismatch", "unit_mismatch", "date_mismatch", "qword_mismatch", "same_bag_reordered"],
                     range(18)))
    f = lexical("Can I get a refund after 30 days?", "Can I get a refund after 60 days?")
    assert f[names["num_mismatch"]] == 1
    assert lexical("Why is the sky blue?", "Why isn't the sky blue?")[names["neg_mismatch"]] == 1
    assert lexical("Is Paris bigger than Rome?", "Is Rome bigger than Paris?")[names["same_bag_reordered"]] == 1
    assert lexical("Is it 5 km away?", "Is it 5 miles away?")[names["unit_mismatch"]] == 1
    assert lexical("Flights in May?", "Flights in June?")[names["date_mismatch"]] == 1
    assert lexical("How do I reset my password?", "How do I reset my password?")[names["only_max"]] == 0


@pytest.mark.parametrize("kind", [ExactIndex, HnswIndex, lambda: AutoIndex(hnsw_from=50)])
def test_indexes_find_the_nearest_and_forget_removed(kind):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(200, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = kind()
    index.add(np.arange(1, 201), vecs)
    ids, sims = index.search(vecs[17], 3)
    assert ids[0] == 18 and sims[0] == pytest.approx(1.0, abs=1e-4)
    assert list(sims) == sorted(sims, reverse=True)
    index.remove(18)
    assert 18 not in index.search(vecs[17], 3)[0]
    assert len(index) == 199


def test_auto_index_moves_to_hnsw_past_its_size():
    index = AutoIndex(hnsw_from=10)
    vecs = np.eye(384, dtype=np.float32)[:12]
    index.add(np.arange(1, 10), vecs[:9])
    assert index.kind == "exact"
    index.add(np.arange(10, 13), vecs[9:])
    assert index.kind == "hnsw" and index.search(vecs[11], 1)[0][0] == 12


def test_an_index_being_saved_holds_its_writes_and_keeps_answering():
    vecs = np.eye(384, dtype=np.float32)[:14]
    index = AutoIndex(hnsw_from=10)
    index.add(np.arange(1, 13), vecs[:12])
    index.dirty = False  # as after a save
    index.hold_writes()
    index.add(np.asarray([13]), vecs[12:13])
    index.remove(5)
    assert index.search(vecs[4], 1)[0][0] == 5 and index.search(vecs[12], 1)[0][0] != 13  # not yet
    assert len(index) == 12 and not index.dirty and index.max_id == 13
    index.release_writes()
    assert index.search(vecs[12], 1)[0][0] == 13 and 5 not in index.search(vecs[4], 3)[0]
    assert len(index) == 12 and index.dirty and not index.saving


def test_verifier_export_matches_scikit_learn(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from scrimp.cache.semantic.verifier import TreeVerifier

    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 19))
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values take the learned side
    y = ((np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 3]) + rng.normal(0, 0.3, 600)) > 0).astype(int)
    ours = TreeVerifier.fit(X, y, interactions=False, max_iter=50)
    theirs = HistGradientBoostingClassifier(max_iter=50, learning_rate=0.05, max_leaf_nodes=31,
                                            l2_regularization=1.0, random_state=0, early_stopping=False).fit(X, y)
    assert np.abs(ours.score(X) - theirs.predict_proba(X)[:, 1]).max() < 1e-9
    ours.save(tmp_path / "v.npz")
    assert np.array_equal(TreeVerifier.load(tmp_path / "v.npz").score(X), ours.score(X))


def test_calibration_keeps_the_false_hit_rate_on_fresh_pairs():
    rng = np.random.default_rng(2)

    def draw(n):
        labels = (rng.random(n) < 0.4).astype(int)
        return rng.normal(labels * 2.0, 1.0), labels

    scores, labels = draw(8000)
    cal = calibrate(scores, labels, 0.01, confidence=0.95)
    assert cal.false_hit_rate <= 0.01 and cal.false_hit_upper <= 0.01
    fresh, fresh_labels = draw(200_000)
    assert (fresh[fresh_labels == 0] >= cal.threshold).mean() <= 0.011  # holds on pairs never seen
    assert 0.2 < cal.hit_rate < 0.5


def test_pairs_files_fail_clearly_and_split_by_question(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text_a": "a", "text_b": "b", "label": 1}\n{"text_a": "a", "label": 0}\n')
    with pytest.raises(PairsError, match=r"bad.jsonl:2"):
        read_pairs(bad)
    with pytest.raises(PairsError, match="no such file"):
        read_pairs(tmp_path / "missing.jsonl")
    rows = [("q1", "q2", 1), ("q2", "q3", 0), ("q4", "q5", 1), ("q6", "q7", 0), ("q8", "q9", 1)] * 3
    pairs = read_pairs(write_pairs(tmp_path / "p.jsonl", rows))
    first, second = group_split(pairs, (0.5, 0.5), seed=3)
    assert (first ^ second).all()
    side = {}
    for i, (a, b) in enumerate(zip(pairs.text_a, pairs.text_b)):
        for q in (a, b):
            assert side.setdefault(q, bool(first[i])) == bool(first[i])  # a question never on both sides


def test_cli_eval_calibrate_and_bad_input(tmp_path):
    rows = [(a, b, 1) for a, b in DUPLICATES] + [(a, b, 0) for a, b in NON_DUPLICATES]
    pairs = write_pairs(tmp_path / "pairs.jsonl", rows)
    runner = CliRunner()
    out = runner.invoke(main, ["cache", "eval", "--pairs", pairs, "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["pairs"] == 12 and result["false_hit_rate"] == 0.0 and result["hit_rate"] >= 0.5

    # 6 non-duplicates cannot back 20% (tests/semcache/test_calibration_cli.py): --force writes it anyway
    out = runner.invoke(main, ["cache", "calibrate", "--pairs", pairs, "--max-false-hit", "0.2",
                               "--out", str(tmp_path / "mine"), "--force"])
    assert out.exit_code == 0, out.output
    assert "threshold" in out.output and (tmp_path / "mine" / "semantic.json").exists()
    spec = json.loads((tmp_path / "mine" / "semantic.json").read_text())
    assert spec["calibration"]["target_false_hit"] == 0.2 and spec["calibration"]["pairs"] == 12
    out = runner.invoke(main, ["cache", "eval", "--pairs", pairs, "--model", str(tmp_path / "mine"), "--json"])
    assert json.loads(out.output)["threshold"] == spec["threshold"]

    out = runner.invoke(main, ["cache", "calibrate", "--pairs", pairs])
    assert out.exit_code != 0 and "--out" in out.output  # never overwrites the shipped model
    (tmp_path / "broken.jsonl").write_text("not json\n")
    out = runner.invoke(main, ["cache", "eval", "--pairs", str(tmp_path / "broken.jsonl")])
    assert out.exit_code != 0 and "broken.jsonl:1" in out.output
    out = runner.invoke(main, ["cache", "eval", "--pairs", pairs, "--model", str(tmp_path)])
    assert out.exit_code != 0 and "not a semantic-cache model" in out.output


@pytest.fixture(params=["sqlite", "postgres"])
def entry_store(request, tmp_path):
    """An empty semantic-cache store; PostgreSQL in a schema of its own (SCRIMP_TEST_PG_DSN to point elsewhere)."""
    import uuid

    import psycopg

    from scrimp.cache.semantic.store import PostgresSemanticStore, SQLiteSemanticStore

    pg_dsn = os.environ.get("SCRIMP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    if request.param == "sqlite":
        store = SQLiteSemanticStore(tmp_path / "sem.db")
        yield store
        store.close()
        return
    schema = f"scrimp_test_snap_{uuid.uuid4().hex[:10]}"
    store = PostgresSemanticStore(pg_dsn, schema)
    yield store
    store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_saved_hnsw_index_comes_back_up_to_date_with_the_store(entry_store, tmp_path, caplog):
    from scrimp.cache.semantic.snapshots import IndexSnapshots

    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(300, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = entry_store
    ids = [store.insert("t", "ns", "f", f"q{i}", v, b"answer", 0.01, 3600) for i, v in enumerate(vecs[:250])]
    store.insert("t", "other-ns", "f", "elsewhere", vecs[299], b"answer", 0.01, 3600)
    index = AutoIndex(hnsw_from=100)
    index.add(*store.vectors("ns"))
    snaps = IndexSnapshots(tmp_path / "indexes")
    assert index.kind == "hnsw" and snaps.save("ns", index) and not index.dirty
    assert not snaps.save("small", AutoIndex(hnsw_from=100))  # exact indexes are rebuilt, not saved

    # while the gateway was down: entries deleted, one expired, new ones added
    store.delete_ids(ids[:10])
    store._run("UPDATE semantic_cache SET expires = 0 WHERE id = ?", (ids[10],), fetch=False, commit=True)
    new = [store.insert("t", "ns", "f", f"new{i}", v, b"answer", 0.01, 3600) for i, v in enumerate(vecs[250:260])]

    loaded = snaps.load("ns", store, hnsw_from=100)
    assert loaded.kind == "hnsw" and len(loaded) == 250 - 11 + 10 and loaded.dirty
    assert loaded.search(vecs[255], 1)[0][0] == new[5]  # added since the save
    assert ids[3] not in loaded.search(vecs[3], 3)[0]  # deleted since the save
    assert ids[10] not in loaded.search(vecs[10], 3)[0]  # expired since the save
    assert loaded.search(vecs[100], 1)[0][0] == ids[100]
    assert snaps.load("never-saved", store, hnsw_from=100) is None

    # a damaged file is set aside and the index rebuilt from the store, with a warning
    graph = next((tmp_path / "indexes").glob("*.usearch"))
    graph.write_bytes(b"not an index")
    assert snaps.load("ns", store, hnsw_from=100) is None
    assert "rebuilding it from the store" in caplog.text
    assert not graph.exists() and graph.with_name(graph.name + ".bad").exists()
