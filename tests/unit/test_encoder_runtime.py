"""ONNX encoder runtimes (issue 18): export -> load parity, rebuild on new weights, the parity gate, and
the one ``encoder_runtime`` switch reaching serving, campaign scoring and index builds. No Ray."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from shoprank.batch.embed import ItemEmbedder, embeddings_of
from shoprank.model import ModelConfig, MultiTaskModel, load_model, save_checkpoint
from shoprank.model import onnx_export as ox
from shoprank.model.checkpoint import load_checkpoint, read_manifest
from shoprank.model.runtime import OnnxEncoder
from shoprank.serve_app.intent import QueryIntent
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import SearchPipeline

from tests.serving_helpers import index_with_model, small_catalogue, text_of

QUERIES = ["winter boots", "garden hose", "frying pan", "bluetooth speaker", "kids raincoat", "wool coat"]


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretrained-only exports go to a per-test cache dir."""
    monkeypatch.setenv(ox.CACHE_ENV, str(tmp_path / "cache"))


def tiny_checkpoint(directory: Path, seed: int = 0) -> Path:
    model = MultiTaskModel(ModelConfig(encoder="tiny", tasks=["retrieval", "relevance", "click"], seed=seed))
    return save_checkpoint(model, directory, trained_tasks=["retrieval"])


def top10(items: np.ndarray, queries: np.ndarray) -> list[list[int]]:
    return [list(np.argsort(-(items @ q), kind="stable")[:10]) for q in queries]


@pytest.mark.parametrize("runtime", ["onnx", "onnx-int8"])
def test_export_load_same_top10_as_torch(tmp_path: Path, runtime: str) -> None:
    ck = tiny_checkpoint(tmp_path / "ck")
    cat = small_catalogue(300)
    texts = [text_of(cat, i) for i in range(cat.height)]
    torch_model, _ = load_checkpoint(ck)
    onnx_model, _ = load_checkpoint(ck, encoder_runtime=runtime)
    assert torch_model.encoder_runtime == "torch" and onnx_model.encoder_runtime == runtime
    assert (ck / "onnx" / ox.FILES[runtime]).is_file()  # exported next to the weights
    ref_items, ref_q = torch_model.embed(texts), torch_model.embed(QUERIES)
    got_items, got_q = onnx_model.embed(texts), onnx_model.embed(QUERIES)
    assert got_items.dtype == np.float32 and np.allclose(np.linalg.norm(got_items, axis=1), 1.0, atol=1e-5)
    assert ox.cosine_parity(ref_items, got_items)["min"] > 0.999
    got, ref = top10(got_items, got_q), top10(ref_items, ref_q)
    if runtime == "onnx":
        assert got == ref  # fp32: the same lists, in the same order
    else:  # int8: the same ten items (near-ties may swap places)
        assert [set(g) for g in got] == [set(r) for r in ref]


def test_minilm_int8_parity_and_top10(tmp_path: Path) -> None:
    """The real encoder: int8 keeps mean cosine >= 0.99 on the gate's sample and the same top-10 sets
    on a small catalogue (pretrained, exported into the cache dir)."""
    t0 = time.perf_counter()
    model, _ = load_model(None, encoder="minilm", encoder_runtime="onnx-int8")
    assert model.encoder_runtime == "onnx-int8"
    doc = ox.read_onnx_manifest(ox.onnx_dir(model, None, None))
    assert doc is not None and doc["variants"]["onnx-int8"]["cosine"]["mean"] >= ox.MIN_COSINE
    cat = small_catalogue(200)
    texts = [text_of(cat, i) for i in range(cat.height)]
    got = top10(model.embed(texts), model.embed(QUERIES))
    model.runtime = None  # the same model on torch
    ref = top10(model.embed(texts), model.embed(QUERIES))
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, ref, strict=True)])
    assert overlap >= 0.9, overlap
    assert time.perf_counter() - t0 < 120


def test_rebuilt_when_the_weights_change(tmp_path: Path) -> None:
    ck = tiny_checkpoint(tmp_path / "ck", seed=0)
    load_checkpoint(ck, encoder_runtime="onnx")
    first = ox.read_onnx_manifest(ck / "onnx")
    assert first is not None and first["weights_sha256"] == read_manifest(ck)["weights_sha256"]
    # new weights in the same directory: the ONNX files no longer match and are rebuilt at load
    tiny_checkpoint(ck, seed=1)
    model, manifest = load_checkpoint(ck, encoder_runtime="onnx")
    second = ox.read_onnx_manifest(ck / "onnx")
    assert second is not None and second["weights_sha256"] == manifest["weights_sha256"] != first["weights_sha256"]
    got = model.embed(QUERIES)
    model.runtime = None
    assert ox.cosine_parity(model.embed(QUERIES), got)["min"] > 0.9999  # the new weights', not the old ones'


def test_a_damaged_variant_is_rebuilt(tmp_path: Path) -> None:
    ck = tiny_checkpoint(tmp_path / "ck")
    load_checkpoint(ck, encoder_runtime="onnx-int8")
    path = ck / "onnx" / ox.FILES["onnx-int8"]
    path.write_bytes(b"not an onnx graph")
    model, _ = load_checkpoint(ck, encoder_runtime="onnx-int8")
    assert model.encoder_runtime == "onnx-int8" and path.stat().st_size > 1000
    assert model.embed(["boots"]).shape == (1, model.encoder.dim)


def test_gate_refuses_and_load_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ck = tiny_checkpoint(tmp_path / "ck")
    model, manifest = load_checkpoint(ck)
    # a floor no variant reaches: every variant refused, torch kept, and the report says why
    doc = ox.export_onnx(model, manifest, ck, min_cosine=1.5)
    for name in ("onnx", "onnx-int8"):
        v = doc["variants"][name]
        assert not v["passed"] and v["reason"].startswith("refused: mean cosine") and "< 1.5" in v["reason"]
    assert doc["kept"] == "torch" and "no ONNX variant passed" in doc["why"]
    assert json.loads((ck / "onnx" / "manifest.json").read_text())["kept"] == "torch"
    with caplog.at_level(logging.WARNING, logger="shoprank.model"):
        loaded, _ = load_checkpoint(ck, encoder_runtime="onnx-int8")
    assert loaded.encoder_runtime == "torch" and loaded.runtime is None
    assert any("fell back to torch" in r.getMessage() for r in caplog.records)


def test_gate_refuses_an_over_quantised_variant(tmp_path: Path) -> None:
    """A floor between what int8 and fp32 reach: int8 is refused, fp32 kept, and a load asking for int8
    gets fp32 (the best passing variant)."""
    ck = tiny_checkpoint(tmp_path / "ck")
    model, manifest = load_checkpoint(ck)
    good = ox.export_onnx(model, manifest, ck, variants=("onnx-int8",))["variants"]["onnx-int8"]
    floor = (1.0 + good["cosine"]["mean"]) / 2  # above what int8 reaches, below fp32's 1.0
    doc = ox.export_onnx(model, manifest, ck, min_cosine=floor)
    assert doc["variants"]["onnx"]["passed"] and not doc["variants"]["onnx-int8"]["passed"]
    assert doc["kept"] == "onnx" and "onnx-int8" in doc["why"]
    loaded, _ = load_checkpoint(ck, encoder_runtime="onnx-int8")
    assert loaded.encoder_runtime == "onnx"  # the best passing variant


def test_eval_gate_reports_missing_sources(tmp_path: Path) -> None:
    ck = tiny_checkpoint(tmp_path / "ck")
    model, manifest = load_checkpoint(ck)
    doc = ox.export_onnx(model, manifest, ck, evaluate=lambda runtime: {})
    assert doc["eval"]["run"] is False and "train_config" in doc["eval"]["why"]
    assert json.loads((ck / "onnx" / "manifest.json").read_text())["eval"]["run"] is False
    manifest["train_config"] = {"sources": {"x": {"path": str(tmp_path / "nope.csv"), "parts": []}}}
    assert "not available" in (ox.eval_sources_missing(manifest) or "")


def test_eval_gate_refuses_a_metric_drop(tmp_path: Path) -> None:
    """The eval half of the gate: a variant losing more than 0.003 of a gated metric is refused (named in
    the reason); one within it passes; metrics the gate does not hold (rmse) are ignored."""
    ck = tiny_checkpoint(tmp_path / "ck")
    model, manifest = load_checkpoint(ck)
    manifest["train_config"] = {"sources": {}}  # sources present (none to find missing)
    metrics = {
        "torch": {"relevance/hd/ndcg@10": 0.80, "click/bb/map@5": 0.50, "intent/w/accuracy": 0.90, "x/rmse": 0.2},
        "onnx": {"relevance/hd/ndcg@10": 0.80, "click/bb/map@5": 0.499, "intent/w/accuracy": 0.90, "x/rmse": 0.9},
        "onnx-int8": {"relevance/hd/ndcg@10": 0.79, "click/bb/map@5": 0.50, "intent/w/accuracy": 0.90, "x/rmse": 0.2},
    }
    doc = ox.export_onnx(model, manifest, ck, evaluate=metrics.__getitem__)
    assert doc["eval"]["run"] is True and set(doc["eval"]["torch"]) == set(list(metrics["torch"])[:3])
    int8, fp32 = doc["variants"]["onnx-int8"], doc["variants"]["onnx"]
    assert not int8["passed"] and "relevance/hd/ndcg@10 drops by 0.0100 > 0.003" in int8["reason"]
    assert fp32["passed"] and fp32["eval_deltas"]["click/bb/map@5"] == pytest.approx(-0.001)
    assert doc["kept"] == "onnx" and ox.read_onnx_manifest(ck / "onnx")["kept"] == "onnx"


def test_served_query_embedding_is_the_onnx_runtimes(tmp_path: Path) -> None:
    cat = small_catalogue(200)
    model, _ = load_model(None, encoder="tiny")
    index = index_with_model(model, cat, tmp_path / "index", "pretrained-tiny")
    pipe = SearchPipeline(index, encoder="tiny", config=ServingConfig(encoder_runtime="onnx-int8"))
    enc = pipe.encoder.model
    assert enc.encoder_runtime == "onnx-int8"
    session = OnnxEncoder(ox.onnx_dir(enc, None, None) / ox.FILES["onnx-int8"], "onnx-int8")
    ids, mask = enc.encoder.tokenize(["winter boots"]).values()
    direct = session(ids.numpy(), mask.numpy())
    np.testing.assert_allclose(pipe.encoder.encode(["winter boots"]), direct, atol=1e-6)
    # the Serve deployment's class (constructed without Serve): serving.encoder_runtime reaches it
    intent = QueryIntent.func_or_class(str(index), None, "tiny", serving={"encoder_runtime": "onnx-int8"})
    assert intent.batch_stats()["encoder_runtime"] == "onnx-int8"
    np.testing.assert_allclose(intent.process(["winter boots"])[0].embedding, direct[0], atol=1e-6)
    with pytest.raises(ValueError):
        ServingConfig(encoder_runtime="tensorrt")


def test_index_build_and_campaign_embedders_use_the_runtime(tmp_path: Path) -> None:
    from shoprank.campaign.scoring import CampaignScorer

    ck = tiny_checkpoint(tmp_path / "ck")
    cat = small_catalogue(50)
    batch = pa.Table.from_pylist(cat.select(["item_id", "title", "category_path", "description"]).to_dicts())
    embedder = ItemEmbedder(str(ck), encoder_runtime="onnx")  # the index build's Ray Data callable
    assert embedder.model.encoder_runtime == "onnx"
    out = embedder(batch)
    session = OnnxEncoder(ck / "onnx" / ox.FILES["onnx"], "onnx")
    texts = out.column("text").to_pylist()
    ids, mask = embedder.model.encoder.tokenize(texts[:1]).values()
    np.testing.assert_allclose(embeddings_of(out)[:1], session(ids.numpy(), mask.numpy()), atol=1e-5)
    scorer = CampaignScorer(
        {"name": "c", "season": "winter", "themes": ["snow"]}, checkpoint=str(ck), encoder_runtime="onnx-int8"
    )
    assert scorer.model.encoder_runtime == "onnx-int8"


def test_cli_options_reach_the_runners() -> None:
    from shoprank.cli import build_parser

    parser = build_parser()
    b = parser.parse_args(["index", "build", "--catalogue", "c.parquet", "--out", "o", "--encoder-runtime", "onnx"])
    assert b.encoder_runtime == "onnx"
    s = parser.parse_args(["serve", "--encoder-runtime", "onnx-int8"])
    assert s.encoder_runtime == "onnx-int8"
    e = parser.parse_args(["export-onnx", "--checkpoint", "ck", "--no-eval"])
    assert e.no_eval and e.variants == ["onnx", "onnx-int8"]
    assert parser.parse_args(["train", "--config", "c.yaml", "--out", "o", "--export-onnx"]).export_onnx
    c = parser.parse_args(["campaign", "run", "--campaign", "x", "--catalogue", "y", "--encoder-runtime", "onnx"])
    assert c.encoder_runtime == "onnx"
    with pytest.raises(SystemExit):
        parser.parse_args(["campaign", "run", "--campaign", "x", "--catalogue", "y", "--encoder-runtime", "fp8"])


def test_training_keeps_torch() -> None:
    model, _ = load_model(None, encoder="tiny", encoder_runtime="onnx")
    assert model.runtime is not None
    with torch.enable_grad():
        emb = model.encode_batch(["boots"])  # the training path: torch, with gradients
    assert emb.requires_grad
