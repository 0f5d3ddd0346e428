"""Hybrid retrieval: the BM25 index in the artefact, RRF fusion in the retriever, filters, shards, fallback."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pytest
from shoprank.errors import DataError
from shoprank.files import sha256_file
from shoprank.retrieval.artefact import load_artefact, read_index_manifest, write_artefact
from shoprank.retrieval.index import FilterSpec
from shoprank.retrieval.lexical import LEXICAL_COLUMN, lexical_texts, rrf_fuse, tokenize
from shoprank.retrieval.shards import merge_fused
from shoprank.retrieval.synthetic import synthetic_catalogue
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import Retriever

N, DIM = 200, 16
TARGET = 137  # the item whose title names a model number the vectors know nothing about
MODEL_NO = "DW80K-5050US"


@pytest.fixture(scope="module")
def cat() -> pl.DataFrame:
    cat = synthetic_catalogue(N, seed=0)
    titles = cat["title"].to_list()
    titles[TARGET] = f"Samsung dishwasher {MODEL_NO}"
    return cat.with_columns(pl.Series("title", titles))


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def emb() -> np.ndarray:
    return _unit(N, DIM)


def _far_query(emb: np.ndarray) -> np.ndarray:
    """A query vector whose nearest neighbours exclude TARGET (the target is among the farthest)."""
    q = -emb[TARGET] + 0.05 * _unit(1, DIM, seed=3)[0]
    return (q / np.linalg.norm(q)).astype(np.float32)[None, :]


def test_tokenize_keeps_model_numbers_and_drops_stopwords() -> None:
    toks = tokenize("The Samsung dishwashers DW80K-5050US, 3/4 in.")
    assert "dw80k5050us" in toks and "dw80k" in toks and "5050us" in toks
    assert "dishwasher" in toks and "the" not in toks  # plural stemmed, stop word gone


def test_lexical_text_names_fields_and_falls_back_to_titles() -> None:
    full = pl.DataFrame({"item_id": ["a"], "title": ["Drill"], "description": ["cordless 18V"],
                         "attributes": ['{"manufacturer": "DeWalt", "price": 99, "ids": ["x1"]}']})  # fmt: skip
    assert lexical_texts(full) == ["Drill cordless 18V DeWalt"]  # text attribute values only
    assert lexical_texts(pl.DataFrame({"item_id": ["a"], "title": ["Drill"]})) == ["Drill"]


def test_lexical_index_in_the_artefact_manifest_and_checked(tmp_path, cat, emb) -> None:
    out = write_artefact(tmp_path / "idx", cat, emb, model_version="m", lexical=True)
    m = read_index_manifest(out)
    lexical_files = {k: v for k, v in m["files"].items() if k.startswith("lexical/")}
    on_disk = {f"lexical/{p.name}" for p in (out / "lexical").iterdir()}
    assert set(lexical_files) == on_disk and any(k.endswith(".npy") for k in on_disk)
    assert all(sha256_file(out / k) == v for k, v in lexical_files.items())
    assert not any(p.suffix in (".pkl", ".pickle") for p in out.rglob("*"))
    for k in on_disk:  # plain numeric arrays: readable without pickle
        if k.endswith(".npy"):
            assert np.load(out / k, allow_pickle=False).dtype != object
    a = load_artefact(out, verify=True)
    assert a.lexical is not None and m["lexical"]["num_items"] == N and LEXICAL_COLUMN in a.items.columns
    # the checksum covers the lexical files: a replaced one is refused
    victim = out / "lexical" / "data.csc.index.npy"
    victim.chmod(0o644)
    arr = np.load(victim, allow_pickle=False)
    np.save(victim, arr * 2, allow_pickle=False)
    with pytest.raises(DataError, match="checksum"):
        load_artefact(out, verify=True)


def test_hybrid_finds_a_model_number_the_vectors_miss(tmp_path, cat, emb) -> None:
    a = load_artefact(write_artefact(tmp_path / "idx", cat, emb, model_version="m", lexical=True))
    q, text = _far_query(emb), [f"samsung {MODEL_NO.lower()}"]
    vector = Retriever(a, ServingConfig(retrieval="vector"))
    hybrid = Retriever(a, ServingConfig(retrieval="hybrid"))
    assert vector.mode == "vector" and hybrid.mode == "hybrid"
    assert TARGET not in vector.retrieve(q, [None], 20, text)[0]
    got = hybrid.retrieve(q, [None], 20, text)[0]
    # BM25's rank 1 ties the vector side's rank 1 (1/61 each): right behind it, far from the vector-only miss
    assert list(got[:2]) == [vector.retrieve(q, [None], 1)[0][0], TARGET] and len(got) == 20
    # written without separators, as customers type it, it is still found
    assert TARGET in hybrid.retrieve(q, [None], 20, ["dw80k5050us"])[0]
    # the vector side keeps its place: its top hits stay in the fused list
    assert set(vector.retrieve(q, [None], 5)[0]) <= set(got)


def test_filters_hold_on_lexical_hits(tmp_path, cat, emb) -> None:
    a = load_artefact(write_artefact(tmp_path / "idx", cat, emb, model_version="m", lexical=True))
    hybrid = Retriever(a, ServingConfig(retrieval="hybrid"))
    q, text = _far_query(emb), [f"samsung {MODEL_NO}"]
    target_category = cat["category_path"][TARGET]
    other = next(c for c in cat["category_path"].to_list() if c.split(" > ")[0] != target_category.split(" > ")[0])
    f = FilterSpec(category=other.split(" > ")[0])
    got = hybrid.retrieve(q, [f], 20, text)[0]
    assert TARGET not in got and hybrid.index.mask(f)[got].all()
    f2 = FilterSpec(category=target_category)
    got2 = hybrid.retrieve(q, [f2], 20, text)[0]
    assert TARGET in got2[:2] and hybrid.index.mask(f2)[got2].all()


def test_without_lexical_index_falls_back_to_vector(tmp_path, cat, emb, caplog) -> None:
    out = write_artefact(tmp_path / "idx", cat, emb, model_version="m")  # no lexical index asked for
    m = read_index_manifest(out)
    assert m["lexical"] is None and not (out / "lexical").exists()
    a = load_artefact(out)
    with caplog.at_level(logging.WARNING, logger="shoprank.serving"):
        r = Retriever(a, ServingConfig(retrieval="hybrid"))
    assert r.mode == "vector" and "falls back to vector" in caplog.text
    q = _far_query(emb)
    want = Retriever(a, ServingConfig(retrieval="vector")).retrieve(q, [None], 20)[0]
    assert list(r.retrieve(q, [None], 20, ["samsung dw80k5050us"])[0]) == list(want)


def test_sharded_lexical_slices_merge_to_the_unsharded_hybrid(tmp_path, cat, emb) -> None:
    """Each shard holds a row slice of one global BM25 index: merged and fused, the same candidates."""
    flat = load_artefact(write_artefact(tmp_path / "flat", cat, emb, model_version="m", lexical=True))
    out = write_artefact(tmp_path / "sharded", cat, emb, model_version="m", lexical=True, shards=3)
    m = read_index_manifest(out)
    assert all(any(k.startswith("lexical/") for k in s["files"]) for s in m["shards"])
    cfg = ServingConfig(retrieval="hybrid", lexical_candidates=30)
    want_r = Retriever(flat, cfg)
    shards = [Retriever(load_artefact(out, shard=s, verify=True), cfg) for s in range(3)]
    whole = Retriever(load_artefact(out), cfg)  # a sharded artefact loaded whole: its slices at their offsets
    queries = ["samsung dishwasher", "black boots acme", MODEL_NO, "frying pan"]
    qemb = _unit(len(queries), DIM, seed=7)
    filters = [None, FilterSpec(in_stock=True), None, FilterSpec(price_max=80.0)]
    want = want_r.search(qemb, filters, 25, queries)
    parts = [s.search_parts(qemb, filters, 25, queries) for s in shards]
    for b in range(len(queries)):
        pos, _ = merge_fused([p[b] for p in parts], 25, cfg.lexical_candidates, cfg.rrf_k)
        assert list(pos) == list(want[b][0]), queries[b]
    assert [list(p) for p, _ in whole.search(qemb, filters, 25, queries)] == [list(p) for p, _ in want]


def test_rrf_fuse_rewards_agreement_and_breaks_ties_by_the_vector_rank() -> None:
    pos, sc = rrf_fuse([np.array([1, 2, 3]), np.array([9, 3])], n=10, k=60)
    assert list(pos) == [3, 1, 9, 2]  # 3 in both lists wins; 1 (vector rank 1) ties 9 (BM25 rank 1) and goes first
    assert sc[0] == pytest.approx(1 / 63 + 1 / 62) and sc[1] == sc[2] == pytest.approx(1 / 61)
    assert list(rrf_fuse([np.array([5, 4]), np.array([], dtype=np.int64)], n=1)[0]) == [5]
    assert len(rrf_fuse([np.array([], dtype=np.int64)], n=3)[0]) == 0


def test_search_pipeline_passes_the_query_text_to_the_lexical_side(tmp_path, cat) -> None:
    """The one flow (in process) hands each query's text to the retriever: hybrid reaches the model-number item."""
    from shoprank.model.checkpoint import load_model
    from shoprank.serving.pipeline import SearchPipeline
    from shoprank.serving.protos import pb2
    from shoprank.serving.validation import validate_search

    model, _ = load_model(None, encoder="tiny")
    texts = [f"{t} | {c}" for t, c in zip(cat["title"].to_list(), cat["category_path"].to_list(), strict=True)]
    index = write_artefact(tmp_path / "idx", cat, model.embed(texts), model_version="pretrained-tiny",
                           encoder="tiny", lexical=True)  # fmt: skip
    target = cat["item_id"][TARGET]
    found = {}
    for mode in ("vector", "hybrid"):
        pipe = SearchPipeline(index, encoder="tiny", device="cpu",
                              config=ServingConfig(retrieval=mode, num_candidates=5, max_k=5))  # fmt: skip
        assert pipe.retriever.mode == mode
        res = pipe.search(validate_search(pb2.SearchRequest(query="dw80k5050us", k=5), pipe.config))
        found[mode] = [it["item_id"] for it in res.items]
    assert target in found["hybrid"]
    assert found["vector"] != found["hybrid"]  # the fused candidates differ from the ANN's alone
