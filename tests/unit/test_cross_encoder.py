"""The cross-encoder phase on the tiny encoder: checkpoints, scoring, the training loop body."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from shoprank.errors import CheckpointError, ConfigError
from shoprank.model.cross_encoder import (
    LEGACY_SERVED_PAIR,
    CrossEncoder,
    CrossEncoderConfig,
    cross_version,
    load_cross_encoder,
    pair_recipe,
    save_cross_encoder,
)
from shoprank.model.text import MANIFEST_KEY, PAIR, TextRecipe, recipes_to_json
from shoprank.retrieval.artefact import TEXT_COLUMN, write_artefact
from shoprank.serving.config import ServingConfig
from shoprank.serving.rerank import Reranker, rank_then_rerank, rerank_jobs
from shoprank.serving.stages import RankedList, RankJob, RerankJob
from shoprank.tasks.examples import build_task_data, catalogue_view, val_frame
from shoprank.train.cross import (
    CrossTrainConfig,
    load_cross_config,
    make_optimizer,
    manifest_extra,
    run_cross_training,
    train_step,
)
from shoprank.triton.backend.numpy_cross import NumpyCrossEncoder
from shoprank.triton.export import export_cross_encoder, read_repository_version
from shoprank.yamlconfig import validate_mapping

REPO = Path(__file__).resolve().parents[2]
TINY = CrossEncoderConfig(encoder="tiny", max_length=32)
QUERIES = ["cordless drill", "cordless drill", "garden hose", "garden hose"]
TEXTS = ["18v cordless drill driver kit", "25 ft garden hose", "18v cordless drill driver kit", "25 ft garden hose"]


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    model = CrossEncoder(TINY, seed=3)
    before = model.score(QUERIES, TEXTS)
    save_cross_encoder(model, tmp_path, {"note": "x"})
    loaded, manifest = load_cross_encoder(tmp_path)
    assert manifest["note"] == "x" and manifest["model_config"]["encoder"] == "tiny"
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    after = loaded.score(QUERIES, TEXTS)
    assert set(after) == {"relevance", "click"}
    for t in before:
        np.testing.assert_array_equal(before[t], after[t])


def test_corrupt_weights_are_refused(tmp_path: Path) -> None:
    save_cross_encoder(CrossEncoder(TINY), tmp_path)
    with (tmp_path / "model.safetensors").open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(CheckpointError, match="checksum"):
        load_cross_encoder(tmp_path)


def test_scores_read_the_query_and_the_item_together() -> None:
    model = CrossEncoder(TINY, seed=1)
    s = model.score(QUERIES, TEXTS)
    assert s["relevance"].shape == (4,) and ((s["relevance"] > 0) & (s["relevance"] < 1)).all()
    # same item, another query: another score (cross-attention sees the query)
    assert s["relevance"][0] != s["relevance"][2] and s["click"][1] != s["click"][3]
    # batching and order do not change a pair's score
    one = model.score(QUERIES[:1], TEXTS[:1], batch_size=1)
    np.testing.assert_allclose(one["click"][0], s["click"][0], rtol=1e-5, atol=1e-6)


def test_a_few_steps_lower_the_loss() -> None:
    cfg = load_cross_config(REPO / "configs" / "cross_encoder_tiny.yaml", REPO)
    cfg = cfg.model_copy(update={"warmup_steps": 0, "steps": 80, "lr": 3e-3})
    torch.manual_seed(0)
    model = CrossEncoder(cfg.model)
    opt, sched = make_optimizer(model, cfg)
    labels = np.array([1.0, 0.0, 0.0, 1.0], dtype=np.float32)
    losses = [train_step(model, model, opt, sched, "click", QUERIES, TEXTS, labels, 1.0) for _ in range(60)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_the_loop_reports_and_checkpoints_its_best(tmp_path: Path) -> None:
    cfg = load_cross_config(REPO / "configs" / "cross_encoder_tiny.yaml", REPO)
    data = build_task_data(cfg)
    train = {t: data.split(t, "train") for t in cfg.tasks}
    val = {t: val_frame(data, t, cfg) for t in cfg.tasks}
    reports: list[tuple[dict, bool]] = []

    def report(metrics: dict, ckpt: str | None) -> None:
        if ckpt is not None:
            model, manifest = load_cross_encoder(ckpt)
            assert manifest["step"] == metrics["step"] and model.config.tasks == ["relevance", "click"]
        reports.append((metrics, ckpt is not None))

    last = run_cross_training(cfg, train, val, report)
    assert [m["step"] for m, _ in reports] == [6, 12] and last["step"] == 12
    assert reports[0][1]  # the first report always improves on nothing
    assert {"val/relevance/ndcg@10", "val/click/auc", "val_score", "train/click/loss"} <= set(last)
    running = -np.inf
    for m, saved in reports:  # a checkpoint exactly when val_score beat every earlier report
        assert saved == (m["val_score"] > running)
        running = max(running, m["val_score"])


def test_config_takes_only_cross_tasks() -> None:
    base = {"sources": {"s": {"format": "synthetic"}}}
    ok = validate_mapping(CrossTrainConfig, {**base, "tasks": {"click": {"sources": ["s"]}}}, "t")
    assert ok.model.tasks == ["click"]
    with pytest.raises(ConfigError, match="cross-encoder trains"):
        validate_mapping(CrossTrainConfig, {**base, "tasks": {"season": {"sources": ["s"]}}}, "t")


def _ranked(n: int) -> RankedList:
    items = [{"item_id": f"i{r}", "title": f"item number {r} drill" if r % 2 else f"hose {r}", "score": 1.0 - r / n,
              "scores": {"relevance": 0.5}, "category_path": "tools", "rank": r + 1} for r in range(n)]  # fmt: skip
    return RankedList(items=items, model_version="m")


def test_reranker_reorders_the_top_n_and_keeps_the_tail() -> None:
    model = CrossEncoder(TINY, seed=2)
    rr = Reranker(model, "v")
    ranked = _ranked(8)
    (out,) = rr([RerankJob(query="cordless drill", ranked=ranked, top_n=5, k=6)])
    assert len(out.items) == 6 and [it["rank"] for it in out.items] == list(range(1, 7))
    head = out.items[:5]
    assert {it["item_id"] for it in head} == {f"i{r}" for r in range(5)}  # the same five, reordered
    rel = [it["scores"]["cross_relevance"] for it in head]
    assert rel == sorted(rel, reverse=True) and all(0 < it["scores"]["cross_click"] < 1 for it in head)
    assert out.items[5]["item_id"] == "i5" and "cross_relevance" not in out.items[5]["scores"]
    assert out.rerank_ms > 0 and ranked.items[0]["rank"] == 1  # the input list is left as it was
    expect = model.score(["cordless drill"] * 5, [f"{it['title']} | tools" for it in ranked.items[:5]])["relevance"]
    assert [it["item_id"] for it in head] == [f"i{r}" for r in np.argsort(-expect, kind="stable")]


def test_rank_then_rerank_widens_the_ranker_and_cuts_to_k() -> None:
    asked: list[int] = []

    def rank(jobs: list[RankJob]) -> list[RankedList]:
        asked.extend(j.k for j in jobs)
        return [_ranked(j.k) for j in jobs]

    stage = rank_then_rerank(rank, Reranker(CrossEncoder(TINY), "v", score="click"), top_n=6)
    out = stage([RankJob(q_emb=np.zeros(4, np.float32), k=3, weights={}, query="hose")])
    assert asked == [6] and len(out[0].items) == 3
    clicks = [it["scores"]["cross_click"] for it in out[0].items]
    assert clicks == sorted(clicks, reverse=True)


def test_serving_config_rerank_needs_a_model() -> None:
    with pytest.raises(ValueError, match="cross_encoder_dir"):
        ServingConfig(rerank_top_n=10)
    assert ServingConfig().rerank_top_n == 0


def test_serving_config_triton_rerank_needs_a_url() -> None:
    with pytest.raises(ValueError, match="rerank_backend_options.url"):
        ServingConfig(rerank_backend="triton")
    cfg = ServingConfig(rerank_backend="triton", rerank_backend_options={"url": "127.0.0.1:8001"})
    assert cfg.rerank_backend == "triton" and ServingConfig().rerank_backend == "inprocess"


# -- served pair text == training pair text (the manifest's recipe) ----------------------------------------
CATALOGUE = pl.DataFrame(
    {
        "item_id": ["a", "b"],
        "title": ["18v cordless drill", "25 ft garden hose"],
        "category_path": ["tools > drills", "garden > hoses"],
        "description": ["Brushless motor, two batteries and a case. " * 8, None],
        "price": [99.0, 19.0],
        "rating": [4.5, 4.0],
        "popularity": [3.0, 1.0],
    }
)


def _served_index(tmp_path: Path, recipes: dict) -> Path:
    """An index artefact as the index job writes it: the embedded ``pair`` text and its recipe."""
    items = CATALOGUE.with_columns(pl.Series(TEXT_COLUMN, catalogue_view(CATALOGUE, PAIR, recipes)["item"]))
    emb = np.eye(2, 4, dtype=np.float32)
    return write_artefact(tmp_path / "index", items, emb, model_version="m",
                          extra={MANIFEST_KEY: recipes_to_json(recipes)})  # fmt: skip


def _served_texts(rr: Reranker, index_dir: str) -> list[str]:
    """The texts the reranker reads for ranked items as the ranker hands them over (no description)."""
    items = [{"item_id": r["item_id"], "title": r["title"], "category_path": r["category_path"], "scores": {}}
             for r in CATALOGUE.iter_rows(named=True)]  # fmt: skip
    job = RankJob(q_emb=np.zeros(4, np.float32), k=2, weights={}, query="drill", index_dir=index_dir)
    (rj,) = rerank_jobs([job], [RankedList(items=items)], top_n=2)
    return rr.texts(rj, 2)


def test_served_pair_text_is_the_training_text(tmp_path: Path) -> None:
    cfg = load_cross_config(REPO / "configs" / "cross_encoder_tiny.yaml", REPO)
    data = build_task_data(cfg)
    extra = manifest_extra(cfg, data)
    assert extra[MANIFEST_KEY][PAIR]["parts"] == ["title", "category_path", "description"]
    save_cross_encoder(CrossEncoder(TINY), tmp_path / "cross", extra)
    rr = Reranker.load(tmp_path / "cross")
    assert rr.recipe == data.recipes[PAIR] == pair_recipe(extra)
    trained = catalogue_view(CATALOGUE, PAIR, data.recipes)["item"].to_list()  # what training reads per row
    assert "Brushless motor" in trained[0] and trained[1] == "25 ft garden hose | garden > hoses"
    index = _served_index(tmp_path, data.recipes)
    assert _served_texts(rr, str(index)) == trained  # with and without a description
    # an index whose texts follow another recipe is not read: the item's own fields, by the model's recipe
    other = {**data.recipes, PAIR: TextRecipe(("title", "description"), description_chars=20)}
    index2 = _served_index(tmp_path / "other", other)
    assert _served_texts(rr, str(index2)) == ["18v cordless drill | tools > drills", trained[1]]


def test_older_manifest_serves_title_and_category(tmp_path: Path) -> None:
    save_cross_encoder(CrossEncoder(TINY), tmp_path)  # no item_text recipe: a model from before it was recorded
    rr = Reranker.load(tmp_path)
    assert rr.recipe == LEGACY_SERVED_PAIR and not rr.index_texts.needed
    assert _served_texts(rr, "") == ["18v cordless drill | tools > drills", "25 ft garden hose | garden > hoses"]


# -- Triton export (the server itself: tests/ray/test_triton.py) ------------------------------------------
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_exported_cross_encoder_scores_like_torch(tmp_path: Path, pooling: str) -> None:
    model = CrossEncoder(TINY.model_copy(update={"pooling": pooling}), seed=4).eval()
    save_cross_encoder(model, tmp_path / "ck")
    _, manifest = load_cross_encoder(tmp_path / "ck")
    path = export_cross_encoder(model, tmp_path / "repo", manifest=manifest, max_batch_size=64)
    assert read_repository_version(tmp_path / "repo", "shoprank_cross") == cross_version(manifest)
    files = sorted(p.name for p in path.rglob("*") if p.is_file())
    assert files == ["config.pbtxt", "cross.json", "cross.safetensors", "model.py", "numpy_cross.py", "numpy_ranker.py"]
    pbtxt = (path / "config.pbtxt").read_text()
    assert "dynamic_batching" in pbtxt and pbtxt.count("allow_ragged_batch: true") == 3 and "TYPE_INT64" in pbtxt
    numpy_model = NumpyCrossEncoder.load(path / "1")
    batch = model.tokenize(QUERIES + ["a much longer query about a drill"], TEXTS + ["x"])
    with torch.inference_mode():
        want = {t: v.numpy() for t, v in model(**batch).items()}
    got = numpy_model.outputs(*(batch[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids")))
    assert set(got) == set(want) == {"relevance", "click"}
    for t in want:
        np.testing.assert_allclose(got[t], want[t], atol=1e-4, err_msg=t)
    # scored through the ``raw`` hook (what the Triton backend plugs in): the same scores as in process
    raw = model.score(QUERIES, TEXTS, raw=lambda b: numpy_model.outputs(b["input_ids"], b["attention_mask"],
                                                                        b["token_type_ids"]))  # fmt: skip
    for t, v in model.score(QUERIES, TEXTS).items():
        np.testing.assert_allclose(raw[t], v, atol=1e-4, err_msg=t)


def test_cross_export_refuses_corrupt_weights_and_no_version(tmp_path: Path) -> None:
    model = CrossEncoder(TINY)
    with pytest.raises(ValueError, match="manifest or an explicit version"):
        export_cross_encoder(model, tmp_path)
    path = export_cross_encoder(model, tmp_path, version="c-1")
    w = path / "1" / "cross.safetensors"
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ValueError, match="checksum"):
        NumpyCrossEncoder.load(path / "1")
