"""The cross-encoder phase under Serve (issue 23): ``rerank_top_n`` > 0 deploys the reranker behind the ranker,
and a Search over gRPC comes back reranked (what the in-process pipeline returns for the same request)."""

from __future__ import annotations

import pytest
from shoprank.model.cross_encoder import CrossEncoder, CrossEncoderConfig, save_cross_encoder
from shoprank.serving.client import SearchClient
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import SearchPipeline
from shoprank.serving.validation import Query

from tests.serving_helpers import deploy_tiny, indexed_catalogue

APP = "cross_rerank"
TOP_N = 6


@pytest.fixture(scope="module")
def app(ray_local, tmp_path_factory):
    from ray import serve

    tmp = tmp_path_factory.mktemp("cross_rerank")
    indexed_catalogue(tmp)
    save_cross_encoder(CrossEncoder(CrossEncoderConfig(encoder="tiny", max_length=32), seed=4), tmp / "cross")
    serving = {"rerank_top_n": TOP_N, "cross_encoder_dir": str(tmp / "cross"), "request_timeout_s": 60}
    port = deploy_tiny(tmp / "index", APP, serving=serving)
    client = SearchClient(f"localhost:{port}", application=APP, timeout=60)
    yield {"client": client, "index": tmp / "index", "serving": serving}
    client.close()
    serve.delete(APP)


def test_served_search_is_reranked_as_in_process(app) -> None:
    resp = app["client"].search("waterproof snow boots", k=4)
    assert len(resp.items) == 4 and [it.rank for it in resp.items] == [1, 2, 3, 4]
    rel = [it.scores["cross_relevance"] for it in resp.items]
    assert rel == sorted(rel, reverse=True) and resp.timings_ms["rerank"] > 0
    pipe = SearchPipeline(app["index"], encoder="tiny", config=ServingConfig.model_validate(app["serving"]))
    local = pipe.search(Query(query="waterproof snow boots", k=4, weights=dict(ServingConfig().blend_weights)))
    assert [it.item_id for it in resp.items] == [it["item_id"] for it in local.items]
