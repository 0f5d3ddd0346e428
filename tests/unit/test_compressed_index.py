"""Compressed (IVF-PQ + exact re-scoring) and sharded indexes: recall, filters, artefact round trips."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from shoprank.errors import DataError
from shoprank.retrieval.artefact import load_artefact, read_index_manifest, write_artefact
from shoprank.retrieval.compressed import IVFPQParams
from shoprank.retrieval.index import FilterSpec, VectorIndex, exact_topk
from shoprank.retrieval.shards import merge_topk, shard_bounds
from shoprank.retrieval.synthetic import clustered_vectors, synthetic_catalogue
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import Retriever

N, DIM = 4000, 64
PARAMS = IVFPQParams(nlist=32, m=16, nprobe=8, rerank_factor=8, rerank_min=200)


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    emb = clustered_vectors(N + 50, DIM, clusters=40, seed=3, noise=0.08)
    return synthetic_catalogue(N, seed=1), emb[:N], emb[N:]


@pytest.fixture(scope="module")
def compressed_dir(tmp_path_factory, data) -> object:
    cat, emb, _ = data
    out = tmp_path_factory.mktemp("cidx") / "index"
    write_artefact(out, cat, emb, model_version="m1", compressed_threshold=1000, ivfpq=PARAMS)
    return out


def _recall(found: list[tuple[np.ndarray, np.ndarray]], truth: np.ndarray) -> float:
    hits = [len(set(f[0].tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def test_compressed_recall_vs_exact(compressed_dir, data) -> None:
    _, emb, queries = data
    art = load_artefact(compressed_dir, verify=True)
    assert art.compressed is not None and art.manifest["ann"]["kind"] == "ivfpq"
    index = VectorIndex(art.embeddings, art.items, compressed=art.compressed)
    assert index.kind == "ivfpq"
    assert isinstance(index.embeddings, np.memmap)  # the rows stay on disk
    assert np.shares_memory(Retriever(art, ServingConfig()).index.embeddings, art.embeddings)  # no copy
    found = index.search(queries, 20)
    truth, truth_scores = exact_topk(queries, emb, 20)
    assert _recall(found, truth) >= 0.95
    # re-scored exactly: a found item's score is its true inner product
    pos, sc = found[0]
    np.testing.assert_allclose(sc, emb[pos] @ queries[0], rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(sc) <= 1e-7)
    # the codes are far smaller than the rows
    assert art.compressed.ram_bytes() < emb.nbytes / 2


def test_compressed_filters_respected(compressed_dir, data) -> None:
    cat, _, queries = data
    art = load_artefact(compressed_dir)
    index = VectorIndex(art.embeddings, art.items, compressed=art.compressed, exact_subset_max=500)
    wide = FilterSpec(in_stock=True)  # 80% pass: the bitmap inside the IVF scan
    narrow = FilterSpec(category="Apparel > Swimwear", price_max=60.0)  # few pass: exact on the subset
    res = index.search(queries[:4], 10, [wide, narrow, None, wide])
    stock = cat["in_stock"].to_numpy()
    for b in (0, 3):
        assert len(res[b][0]) == 10 and stock[res[b][0]].all()
    mask = index.mask(narrow)
    assert mask is not None and res[1][0].size == min(10, int(mask.sum()))
    assert mask[res[1][0]].all()
    truth, _ = exact_topk(queries[1:2], np.asarray(art.embeddings)[mask], 10)
    assert set(res[1][0].tolist()) == set(np.flatnonzero(mask)[truth[0]].tolist())


def test_compressed_artefact_checksum(compressed_dir, tmp_path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(compressed_dir, copy)
    load_artefact(copy, verify=True)
    with open(copy / "ivfpq.faiss", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    with pytest.raises(DataError, match="checksum"):
        load_artefact(copy, verify=True)


@pytest.mark.parametrize("kind", ["exact", "ivfpq"])
def test_sharded_same_topk_as_unsharded(tmp_path, data, kind) -> None:
    cat, emb, queries = data
    thr = 1000 if kind == "ivfpq" else 10**9
    whole = write_artefact(tmp_path / "one", cat, emb, model_version="m1", compressed_threshold=thr, ivfpq=PARAMS)
    split = write_artefact(tmp_path / "three", cat, emb, model_version="m1", compressed_threshold=thr, ivfpq=PARAMS,
                           shards=3, index_version=read_index_manifest(whole)["index_version"])  # fmt: skip
    m = read_index_manifest(split)
    assert [(s["lo"], s["hi"]) for s in m["shards"]] == shard_bounds(N, 3)
    assert {s["kind"] for s in m["shards"]} == {kind}
    cfg = ServingConfig()
    one = Retriever(load_artefact(whole), cfg)
    parts = [Retriever(load_artefact(split, shard=s, verify=True), cfg) for s in range(3)]
    assert parts[1].offset == shard_bounds(N, 3)[1][0]
    filters = [None, FilterSpec(in_stock=True), FilterSpec(category="Home"), None]
    want = one.search(queries[:4], filters, 15)
    per_shard = [p.search(queries[:4], filters, 15) for p in parts]
    for b in range(4):
        pos, _ = merge_topk([r[b] for r in per_shard], 15)
        if kind == "exact":
            assert pos.tolist() == want[b][0].tolist()
        else:  # each shard's shortlist holds at least its part of the whole index's
            assert len(set(pos.tolist()) & set(want[b][0].tolist())) >= 14
    with pytest.raises(DataError, match="no shard 3"):
        load_artefact(split, shard=3)
    assert json.loads((split / "manifest.json").read_text())["shards"][0]["files"] == m["shards"][0]["files"]


def test_merge_topk_orders_by_score() -> None:
    a = (np.array([5, 1]), np.array([0.9, 0.2], np.float32))
    b = (np.array([7, 3, 2]), np.array([0.95, 0.5, 0.2], np.float32))
    pos, sc = merge_topk([a, b, (np.zeros(0, np.int64), np.zeros(0, np.float32))], 4)
    assert pos.tolist() == [7, 5, 3, 1] and sc[0] == pytest.approx(0.95)
    assert merge_topk([], 3)[0].size == 0
