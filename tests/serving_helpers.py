"""Shared helpers for the serving tests: a small catalogue, its index, exact-text queries."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from shoprank.model.text import item_text
from shoprank.retrieval.artefact import write_artefact
from shoprank.retrieval.synthetic import synthetic_catalogue

N_ITEMS = 300


def small_catalogue(n: int = N_ITEMS) -> pl.DataFrame:
    return synthetic_catalogue(n, seed=0)


def text_of(cat: pl.DataFrame, i: int) -> str:
    """The exact text the index embedded for row ``i`` (so it is that item's nearest neighbour)."""
    r = cat.row(i, named=True)
    return item_text(r["title"], r["description"], r["category_path"])


def index_with_model(model, cat: pl.DataFrame, out: Path, model_version: str, **kw) -> Path:
    """An artefact embedded directly with ``model`` (no Ray), for fast tests."""
    emb = model.embed([text_of(cat, i) for i in range(cat.height)])
    return write_artefact(out, cat, emb, model_version=model_version, encoder=model.config.encoder, **kw)



def indexed_catalogue(tmp: Path, index_name: str = "index") -> tuple[pl.DataFrame, dict]:
    """The small catalogue written to ``tmp/catalogue.parquet`` and indexed by the index job (tiny
    encoder, Ray Data) into ``tmp/index_name``: the catalogue and the index manifest.

    The job runs once per test session (into ``_tiny_index`` beside ``tmp``, in pytest's session
    temp dir); later callers get a copy of that artefact, byte for byte what the job would write
    again (the tiny encoder is seeded), so each module still serves its own directory."""
    from shoprank.retrieval.artefact import read_index_manifest
    from shoprank.retrieval.build import build_index

    cat = small_catalogue()
    cat.write_parquet(tmp / "catalogue.parquet")
    built = tmp.parent / "_tiny_index"
    if not (built / "manifest.json").is_file():
        build_index(tmp / "catalogue.parquet", built, encoder="tiny", batch_size=100)
    shutil.copytree(built, tmp / index_name)
    return cat, read_index_manifest(tmp / index_name)


def deploy_tiny(index_dir: Path, name: str, **args: object) -> int:
    """Serve's gRPC proxy (the session's, started on a free port by the first caller) and the app
    ``name`` over ``index_dir`` (tiny encoder, the test replicas' CPUs; ``args``: more app args); the
    port. The caller's module deletes its app when done (``serve.delete(name)``)."""
    from shoprank.serve_app import server

    port = server.start_serve(reuse_running=True)  # one Serve for the modules: each deletes its app at the end
    server.deploy({"index_dir": str(index_dir), "encoder": "tiny", **args, **TEST_REPLICA_CPUS}, name=name)
    return port

# -- the golden search set: 100 fixed requests over the small catalogue ------------------------
GOLDEN_WORDS = ["boots", "snow boots", "sandals", "parka", "wool coat", "swimsuit", "frying pan", "wok",
                "garden hose", "rake", "headphones", "bluetooth speaker", "sled", "kite", "raincoat"]  # fmt: skip
GOLDEN_ADJ = ["waterproof", "lightweight", "premium", "vintage", "kids", "black", "red", "cheap"]
GOLDEN_FILTERS = [
    {"category": "Apparel > Footwear", "in_stock": True},
    {"category": "home", "price_max": 80.0},
    {"category": "Electronics > Audio", "price_min": 20.0, "price_max": 300.0},
    {"category": "apparel > outerwear", "in_stock": False},
    {"price_min": 50.0},
    {"category": "Toys", "price_max": 0.01},  # matches nothing: an empty, valid answer
]
GOLDEN_WEIGHTS = [
    {"similarity": 1.0},
    {"similarity": 0.5, "season_fit": 1.0, "popularity": 0.25},
    {"relevance": 0.2, "click": 0.8},
    {"popularity": 1.0, "similarity": 0.1},
    {"relevance": 1.0, "season_fit": 0.5},
]


def golden_specs(cat: pl.DataFrame) -> list[dict]:
    """100 fixed Search/Rank requests (as plain dicts): exact-item texts, free text, filters,
    blend weights, months, Rank over given ids, and Rank requests naming unknown ids (errors)."""
    ids = cat["item_id"].to_list()
    specs: list[dict] = []
    for i in range(30):
        specs.append({"rpc": "search", "query": text_of(cat, (i * 10 + 3) % cat.height), "k": 10, "month": i % 13})
    for i in range(30):
        text = f"{GOLDEN_ADJ[i % len(GOLDEN_ADJ)]} {GOLDEN_WORDS[i % len(GOLDEN_WORDS)]}"
        specs.append({"rpc": "search", "query": text, "k": 5 + (i % 4) * 5, "month": (i * 5) % 13})
    for i in range(15):
        specs.append({"rpc": "search", "query": GOLDEN_WORDS[(i * 3) % len(GOLDEN_WORDS)], "k": 10,
                      "month": (i * 7) % 13, "filters": GOLDEN_FILTERS[i % len(GOLDEN_FILTERS)]})  # fmt: skip
    for i in range(10):
        specs.append({"rpc": "search", "query": f"{GOLDEN_WORDS[(i * 2 + 1) % len(GOLDEN_WORDS)]} for winter",
                      "k": 8, "month": 1 + i, "weights": GOLDEN_WEIGHTS[i % len(GOLDEN_WEIGHTS)]})  # fmt: skip
    for i in range(12):
        start = (i * 23) % (cat.height - 15)
        specs.append({"rpc": "rank", "query": text_of(cat, start + i % 15), "k": (i % 2) * 5,
                      "month": i % 13, "item_ids": ids[start : start + 15],
                      "weights": GOLDEN_WEIGHTS[i % len(GOLDEN_WEIGHTS)] if i % 3 else None})  # fmt: skip
    for i in range(3):
        specs.append({"rpc": "rank", "query": GOLDEN_WORDS[i], "k": 0, "month": 0,
                      "item_ids": [ids[i], f"NOPE-{i}", ids[i + 1]]})  # fmt: skip
    assert len(specs) == 100
    return specs


def golden_request(spec: dict, pb2) -> object:
    """The protobuf request for a golden spec (exactly what SearchClient sends)."""
    from shoprank.serving.client import build_filters

    ctx = pb2.Context(month=spec.get("month", 0))
    weights = spec.get("weights") or {}
    if spec["rpc"] == "rank":
        return pb2.RankRequest(query=spec["query"], item_ids=spec["item_ids"], k=spec["k"], context=ctx,
                               blend_weights=weights)  # fmt: skip
    return pb2.SearchRequest(query=spec["query"], k=spec["k"], context=ctx, blend_weights=weights,
                             filters=build_filters(spec.get("filters")))  # fmt: skip


def golden_record(resp) -> dict:
    """What the golden file keeps of a SearchResponse: ids, final scores, intent, candidates."""
    return {
        "ids": [it.item_id for it in resp.items],
        "scores": [float(it.score) for it in resp.items],
        "intent": {
            "label": resp.intent.label,
            "confidence": float(resp.intent.confidence),
            "zero_shot": bool(resp.intent.zero_shot),
        },
        "num_candidates": int(resp.num_candidates),
    }


GOLDEN_NUM_CANDIDATES = 60


def golden_pipeline(tmp: Path):
    """The in-process SearchPipeline the golden file was recorded with (tiny encoder, seed-0 catalogue)."""
    from shoprank.model.checkpoint import load_model
    from shoprank.serving.config import ServingConfig
    from shoprank.serving.pipeline import SearchPipeline

    model, _ = load_model(None, encoder="tiny")
    index = index_with_model(model, small_catalogue(), tmp / "golden_index", "pretrained-tiny")
    config = ServingConfig(num_candidates=GOLDEN_NUM_CANDIDATES)
    return SearchPipeline(index, encoder="tiny", device="cpu", config=config)  # as recorded, GPU or not


def golden_run(pipe, specs: list[dict]) -> list[dict]:
    """Each spec through ``pipe.handle`` (validation included): its record, or ``{"error": message}``."""
    from shoprank.serving.protos import pb2
    from shoprank.serving.validation import InvalidRequest

    out = []
    for spec in specs:
        try:
            out.append(golden_record(pipe.handle(golden_request(spec, pb2), pb2)))
        except InvalidRequest as e:
            out.append({"error": golden_error(str(e))})
    return out


def golden_error(message: str) -> str:
    """An error message without its index version (which carries the build time)."""
    return re.sub(r"idx-[0-9T]+-[0-9a-f]+", "<index>", message)


TOL = 1e-5  # golden scores: CPU float noise is ~1e-7, the smallest score gap ~5e-6


def assert_same(got: dict, want: dict, where: str) -> None:
    """One answer against its golden record (ids exact, scores within TOL)."""
    if "error" in want:
        assert got == want, where
        return
    assert got["ids"] == want["ids"], where
    assert got["scores"] == pytest.approx(want["scores"], abs=TOL), where
    assert got["num_candidates"] == want["num_candidates"], where
    gi, wi = got["intent"], want["intent"]
    assert (gi["label"], gi["zero_shot"]) == (wi["label"], wi["zero_shot"]), where
    assert gi["confidence"] == pytest.approx(wi["confidence"], abs=TOL), where


# Replica CPUs for a test app on a 2-core machine (fractional: the whole graph fits beside the tests).
TEST_REPLICA_CPUS = {
    "ranker_num_cpus": 0.25,
    "intent_num_cpus": 0.25,
    "retriever_num_cpus": 0.1,
    "ingress_num_cpus": 0.1,
}
