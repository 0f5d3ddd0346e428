"""The in-process SearchPipeline (the same components the deployments wrap), without Ray."""

from __future__ import annotations

import pytest
from shoprank.errors import ConfigError
from shoprank.model import ModelConfig, MultiTaskModel, load_model, save_checkpoint
from shoprank.model.checkpoint import expected_model_version
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import SearchPipeline
from shoprank.serving.protos import pb2
from shoprank.serving.validation import InvalidRequest, Query

from tests.serving_helpers import index_with_model, small_catalogue, text_of


@pytest.fixture(scope="module")
def cat():
    return small_catalogue()


@pytest.fixture(scope="module")
def zero_shot(tmp_path_factory, cat):
    model, _ = load_model(None, encoder="tiny")
    index = index_with_model(model, cat, tmp_path_factory.mktemp("zs") / "index", "pretrained-tiny")
    return SearchPipeline(index, encoder="tiny", config=ServingConfig(num_candidates=50))


def test_exact_text_query_finds_its_item(zero_shot, cat) -> None:
    for i in (5, 123, 250):
        resp = zero_shot.handle(pb2.SearchRequest(query=text_of(cat, i), k=5), pb2)
        assert resp.items[0].item_id == cat["item_id"][i]
        assert resp.items[0].rank == 1 and len(resp.items) == 5
        assert set(resp.items[0].scores) >= {"relevance", "click", "season_fit", "similarity", "popularity"}
    assert resp.model_version == "pretrained-tiny" and resp.index_version.startswith("idx-")
    assert sorted(resp.zero_shot_tasks) == ["click", "relevance"]  # untrained heads reported as zero-shot
    assert resp.intent.zero_shot and resp.intent.label in {"Apparel", "Home", "Electronics", "Toys"}
    assert set(resp.timings_ms) >= {"intent", "retrieve", "rank", "total"}


def test_filters_and_blend_in_process(zero_shot, cat) -> None:
    q = Query(query="winter boots", k=20, month=12, weights={"season_fit": 1.0})
    q.filters = type(q.filters)(category="Apparel > Footwear", in_stock=True, price_max=150.0)
    res = zero_shot.search(q)
    assert res.items and all(it["category_path"].startswith("Apparel > Footwear") for it in res.items)
    assert all(it["in_stock"] and it["price"] <= 150 for it in res.items)
    # with all weight on season fit in December, winter items (boots) outrank summer ones (sandals)
    assert res.items[0]["scores"]["season_fit"] == 1.0
    assert all(it["score"] == pytest.approx(it["scores"]["season_fit"]) for it in res.items)


def test_rank_in_process(zero_shot, cat) -> None:
    ids = cat["item_id"][10:20].to_list()
    res = zero_shot.search(Query(query=text_of(cat, 15), k=0 or 10, item_ids=ids, weights={"similarity": 1.0}))
    assert res.items[0]["item_id"] == cat["item_id"][15] and len(res.items) == 10
    with pytest.raises(InvalidRequest, match="unknown id"):
        zero_shot.search(Query(query="x", k=1, item_ids=["nope"], weights={"click": 1.0}))


def test_one_flow_sync_and_async(zero_shot, cat) -> None:
    """run_flow over awaited stages (as the Serve ingress runs it) answers as the in-process pipeline;
    a request that fails comes back in its own slot; run_sync refuses stages that really await."""
    import asyncio

    from shoprank.serving.flow import Stages, run_flow, run_sync

    qs = [Query(query=text_of(cat, i), k=5, weights={"similarity": 1.0}) for i in (7, 77)]
    qs.append(Query(query="x", k=1, item_ids=["nope"], weights={"click": 1.0}))
    qs.append(Query(query=text_of(cat, 150), k=3, item_ids=cat["item_id"][145:155].to_list(), weights={"click": 1.0}))

    def awaited(stage):
        async def call(items):
            await asyncio.sleep(0)  # really suspends, like a deployment handle
            return stage(items)

        return call

    stages = Stages(awaited(zero_shot.encoder), awaited(zero_shot.retriever), awaited(zero_shot.ranker))
    got = asyncio.run(run_flow(stages, qs, zero_shot.config.num_candidates))
    want = zero_shot.search_batch(qs)
    assert isinstance(got[2], InvalidRequest) and isinstance(want[2], InvalidRequest) and "unknown id" in str(got[2])
    for g, w in zip(got[:2] + got[3:], want[:2] + want[3:], strict=True):
        assert [it["item_id"] for it in g.items] == [it["item_id"] for it in w.items] and g.items
        assert g.intent == w.intent and g.batch_size == w.batch_size == 3
    assert got[0].items[0]["item_id"] == cat["item_id"][7]
    with pytest.raises(RuntimeError, match="pending awaitable"):
        run_sync(run_flow(stages, qs, 10))


def test_checkpoint_serves_trained_heads(tmp_path, cat) -> None:
    label_maps = {"intent": ["boots", "kitchen", "audio"]}
    model = MultiTaskModel(ModelConfig(encoder="tiny", tasks=["intent", "relevance", "click"]), label_maps)
    model.trained_tasks = {"intent", "relevance", "click"}
    ck = save_checkpoint(model, tmp_path / "ck")
    version = expected_model_version(ck)
    assert version.startswith("tiny-")
    loaded, _ = load_model(ck)
    index = index_with_model(loaded, cat, tmp_path / "index", version)
    pipe = SearchPipeline(index, ck, config=ServingConfig(num_candidates=30))
    resp = pipe.handle(pb2.SearchRequest(query="snow boots", k=3, context=pb2.Context(month=1)), pb2)
    assert resp.model_version == version and list(resp.zero_shot_tasks) == []
    assert not resp.intent.zero_shot and resp.intent.label in label_maps["intent"]
    assert 0 < resp.intent.confidence <= 1 and len(resp.items) == 3
    # the pretrained encoder cannot serve an index embedded by the checkpoint
    with pytest.raises(ConfigError, match="rebuild the index"):
        SearchPipeline(index, encoder="tiny")


def test_the_flow_drops_queries_whose_deadline_has_passed() -> None:
    """A query past its deadline when its batch reaches ranking is not computed; the others are."""
    import time

    from shoprank.serving.flow import DeadlineExpired, Stages, run_flow, run_sync
    from shoprank.serving.stages import EncodedQuery, RankedList, Retrieved
    from shoprank.serving.validation import Query

    ranked: list[str] = []

    def encode(texts):
        return [EncodedQuery(embedding=None, intent=None, encode_ms=0.0) for _ in texts]

    def retrieve(jobs):
        return [Retrieved(positions=[], index_dir="", index_version="v", search_ms=0.0) for _ in jobs]

    def rank(jobs):
        ranked.extend(j.query for j in jobs)
        return [RankedList(items=[], model_version="m", index_version="v", batch_size=len(jobs)) for _ in jobs]

    live, late = Query(query="live", k=1), Query(query="late", k=1, deadline=time.monotonic() - 1)
    out = run_sync(run_flow(Stages(encode, retrieve, rank), [live, late], 10))
    assert ranked == ["live"]
    assert not isinstance(out[0], DeadlineExpired) and isinstance(out[1], DeadlineExpired)
