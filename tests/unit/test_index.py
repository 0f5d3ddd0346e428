"""Retrieval: exact and HNSW top-k, filters, and the versioned index artefact (no Ray)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from shoprank.errors import DataError
from shoprank.retrieval.artefact import load_artefact, read_index_manifest, write_artefact
from shoprank.retrieval.index import FilterSpec, VectorIndex, exact_topk
from shoprank.retrieval.synthetic import synthetic_catalogue


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def cat() -> pl.DataFrame:
    return synthetic_catalogue(2000)


def test_exact_topk_matches_brute_force() -> None:
    emb, q = _unit(500, 16), _unit(3, 16, seed=1)
    pos, sc = exact_topk(q, emb, 10)
    for b in range(3):
        want = np.argsort(-(emb @ q[b]), kind="stable")[:10]
        assert list(pos[b]) == list(want)
        assert np.all(np.diff(sc[b]) <= 1e-7)


def test_filters_are_applied_exactly(cat: pl.DataFrame) -> None:
    emb = _unit(cat.height, 16)
    index = VectorIndex(emb, cat, hnsw_threshold=10**9)
    q = _unit(1, 16, seed=3)
    f = FilterSpec(category="apparel > footwear", price_min=20.0, price_max=100.0, in_stock=True)
    ((pos, _),) = index.search(q, 50, [f])
    assert len(pos) == 50
    rows = cat[pos.tolist()]
    assert rows["category_path"].str.starts_with("Apparel > Footwear").all()
    assert ((rows["price"] >= 20) & (rows["price"] <= 100)).all()
    assert rows["in_stock"].all()
    # exact on the filtered subset: the same as brute force over the items that pass
    keep = np.flatnonzero(index.mask(f))
    want = keep[np.argsort(-(emb[keep] @ q[0]), kind="stable")[:50]]
    assert list(pos) == list(want)
    # a filter nothing passes gives no candidates, not an error
    ((none, _),) = index.search(q, 10, [FilterSpec(category="no such category")])
    assert len(none) == 0


def test_hnsw_above_threshold_recall_and_filters(cat: pl.DataFrame) -> None:
    emb = _unit(cat.height, 32)
    index = VectorIndex(emb, cat, hnsw_threshold=1000, ef_search=200)
    assert index.kind == "hnsw"
    q = _unit(20, 32, seed=5)
    got = index.search(q, 20)
    exact, _ = exact_topk(q, emb, 20)
    recall = np.mean([len(set(g[0]) & set(e)) / 20 for g, e in zip(got, exact, strict=True)])
    assert recall >= 0.95
    f = FilterSpec(in_stock=True, price_max=250.0)  # keeps most items: HNSW over-fetch path
    for pos, _ in index.search(q[:5], 20, [f] * 5):
        assert len(pos) == 20 and index.mask(f)[pos].all()
    small = VectorIndex(emb[:100], cat.head(100), hnsw_threshold=1000)
    assert small.kind == "exact"


def test_artefact_roundtrip_atomic_and_versioned(tmp_path, cat: pl.DataFrame) -> None:
    emb = _unit(cat.height, 8)
    out = tmp_path / "index"
    write_artefact(out, cat, emb, model_version="pretrained-tiny", encoder="tiny", hnsw_threshold=1000)
    m = read_index_manifest(out)
    assert m["index_version"].startswith("idx-") and m["model_version"] == "pretrained-tiny"
    assert m["num_items"] == cat.height and m["dim"] == 8 and m["hnsw"]["M"] == 32
    assert set(m["files"]) == {"embeddings.npy", "items.parquet", "hnsw.bin"}
    assert "Apparel" in m["categories"]
    a = load_artefact(out, verify=True)
    assert np.allclose(np.asarray(a.embeddings), emb) and a.hnsw is not None
    assert a.items["item_id"].to_list() == cat["item_id"].to_list()
    pos, unknown = a.positions(["SKU0000003", "nope"])
    assert list(pos) == [3] and unknown == ["nope"]
    # rewriting replaces the directory atomically: new version, no temporary directories left
    write_artefact(out, cat.head(50), emb[:50], model_version="pretrained-tiny", hnsw_threshold=1000)
    m2 = read_index_manifest(out)
    assert m2["num_items"] == 50 and m2["index_version"] != m["index_version"] and m2["hnsw"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["index"]


def test_artefact_errors(tmp_path, cat: pl.DataFrame) -> None:
    with pytest.raises(DataError, match="not a shoprank index"):
        load_artefact(tmp_path)
    out = write_artefact(tmp_path / "i", cat.head(10), _unit(10, 4), model_version="m")
    (out / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="format"):
        load_artefact(out)
    with pytest.raises(DataError, match="does not match"):
        write_artefact(tmp_path / "j", cat.head(10), _unit(9, 4), model_version="m")
    # embeddings are read with allow_pickle=False: an object array is refused
    out = write_artefact(tmp_path / "k", cat.head(3), _unit(3, 4), model_version="m")
    np.save(out / "embeddings.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="cannot read embeddings"):
        load_artefact(out)
