"""Every score a response carries stays in its documented range (protos/shoprank/v1/search.proto).

- ``similarity`` is the cosine clipped to 0..1 (it was the raw cosine, negative for unrelated pairs),
  the relevance/click zero-shot fallbacks are that same clipped value, and the raw cosine is kept
  (``PairScores.cosine``) so the zero-shot ranking still orders by it, as eval's does;
- trained heads: click a sigmoid, relevance and demand clipped, all in 0..1 whatever the raw output;
- the final score is sum(weight x task score) with the response's float32 weights, to float32 rounding;
- the click blend's score is its softmax probability over the candidates: 0..1, in the blend's order;
- the gRPC fuzz's cases (tests/ray/test_fuzz_grpc.py) run in process here through ``SearchPipeline.handle``
  (validation + flow): clean ones are answered and hold every invariant, junk ones are InvalidRequest.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from shoprank.model import ModelConfig, MultiTaskModel, load_model
from shoprank.model.features import item_numeric_features
from shoprank.model.scoring import score_pairs, scores_from_raw
from shoprank.serving.blend import blend, top_k
from shoprank.serving.clicks import choice_probs
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import SearchPipeline
from shoprank.serving.protos import pb2
from shoprank.serving.validation import InvalidRequest
from shoprank.store.load import load_events

from tests.ray.test_fuzz_grpc import SERVING, Case, catalogue_rows, check_response, make_cases, tally
from tests.serving_helpers import index_with_model, small_catalogue, text_of
from tests.unit.test_served_clicks import fitted_blend, search, world  # noqa: F401 - world: a fixture


@pytest.fixture(scope="module")
def tiny():
    model, _ = load_model(None, encoder="tiny")
    return model


def test_similarity_is_the_cosine_clipped_and_ranking_keeps_the_raw_cosine(tiny) -> None:
    cat = small_catalogue(20)
    items = tiny.embed([text_of(cat, i) for i in range(20)])
    q = -items[3] + 0.05 * items[7]  # opposite of item 3: negative cosine with most items
    num = item_numeric_features(cat["price"].to_numpy(), cat["rating"].to_numpy(), cat["popularity"].to_numpy())
    ps = score_pairs(tiny, q, items, num, 0)
    cos = items @ q
    assert (cos < 0).sum() >= 5  # the case the issue saw: negative cosine
    assert ps.cosine is not None and np.allclose(ps.cosine, cos.clip(-1, 1), atol=1e-5)
    sim = ps.scores["similarity"]
    assert sim.min() >= 0.0 and sim.max() <= 1.0
    assert np.array_equal(sim, ps.cosine.clip(0.0, 1.0))
    assert ps.zero_shot == {"relevance", "click"}
    for task in ("relevance", "click"):  # the registry's "cosine similarity clipped to 0..1"
        assert np.array_equal(ps.scores[task], sim)
    # the zero-shot order is the raw cosine's (clipping would tie every negative item at 0)
    assert list(top_k(ps.cosine, 0)) == list(np.argsort(-cos, kind="stable"))


def test_trained_heads_stay_in_0_1_whatever_their_raw_output() -> None:
    model = MultiTaskModel(ModelConfig(encoder="tiny", tasks=["relevance", "click", "demand"]), {})
    model.trained_tasks = {"relevance", "click", "demand"}
    out = np.array([-1e4, -3.0, -0.2, 0.0, 0.4, 1.7, 1e4], dtype=np.float32)
    raw = {t: out.copy() for t in ("relevance", "click", "demand")}
    sim = np.array([-1.0, -0.5, -0.07, 0.0, 0.3, 0.9, 1.0], dtype=np.float32)
    with np.errstate(over="ignore"):
        ps = scores_from_raw(model, raw, sim)
    assert set(ps.scores) == {"similarity", "relevance", "click", "demand"} and not ps.zero_shot
    for name, s in ps.scores.items():
        assert np.isfinite(s).all() and s.min() >= 0.0 and s.max() <= 1.0, name
    assert list(ps.scores["click"]) == sorted(ps.scores["click"])  # a sigmoid: monotone
    assert ps.scores["relevance"][0] == 0.0 and ps.scores["demand"][-1] == 1.0


def test_final_score_is_the_weighted_sum_with_the_responses_float32_weights() -> None:
    rng = np.random.default_rng(0)
    names = ("relevance", "click", "season_fit", "similarity", "popularity")
    scores = {n: rng.random(500, dtype=np.float32) for n in names}
    cases = [{"relevance": 0.6, "click": 0.3, "season_fit": 0.1}, {n: 10.0 for n in names},
             {"similarity": 1e-6, "popularity": 7.3}, {n: float(rng.uniform(0, 10)) for n in names}]  # fmt: skip
    for weights in cases:
        final = blend(scores, weights)
        w32 = {n: np.float32(w) for n, w in weights.items()}  # what SearchResponse.blend_weights carries
        client = sum(float(w32[n]) * scores[n].astype(np.float64) for n in weights)
        assert np.array_equal(final, client.astype(np.float32)), weights  # equal after float32 rounding
        assert final.min() >= 0.0 and final.max() <= sum(float(w) for w in w32.values())


def test_click_blend_probabilities_are_in_0_1_and_keep_the_blends_order() -> None:
    logits = np.array([3.0, -2.0, 50.0, 0.5, -800.0, 50.0], dtype=np.float32)
    cands = ["a", "b", "c", "d", "e", "f"]
    ranked = [(cands[j], float(logits[j])) for j in np.lexsort((np.array(cands), -logits))]
    probs = choice_probs(ranked, logits)
    assert [c for c, _ in probs] == ["c", "f", "a", "d", "b", "e"]
    p = [v for _, v in probs]
    assert all(0.0 <= v <= 1.0 for v in p) and p == sorted(p, reverse=True)
    assert sum(p) == pytest.approx(1.0) and p[0] == p[1] == pytest.approx(0.5)
    assert sum(v for _, v in choice_probs(ranked[:2], logits)) < 1.0  # top-k of a longer list
    assert choice_probs([], np.zeros(0)) == []


def test_served_click_blend_lists_score_in_0_1_best_first(world, store) -> None:  # noqa: F811
    """The served click blend (store + fitted weights): score = scores["click_blend"], a probability."""
    _, history_csv, _, test, raw_users, _, index, _ = world
    load_events(history_csv, "bestbuy-clicks", store)
    cfg = ServingConfig(click_blend_weights=fitted_blend(world).blend.to_dict())
    served = SearchPipeline(index, encoder="tiny", device="cpu", config=cfg, store_url=store)
    try:
        asks = zip(test["query"].to_list()[:40], raw_users[:40], range(1, 41), strict=True)
        got = [search(served, q, u, k=k) for q, u, k in asks]
    finally:
        served.close()
    assert not any(r.degraded for r in got)
    for r in got:
        p = [it.scores["click_blend"] for it in r.items]
        assert [it.score for it in r.items] == p and p == sorted(p, reverse=True)
        assert all(0.0 <= v <= 1.0 for v in p) and sum(p) <= 1.0 + 1e-5
        assert [it.rank for it in r.items] == list(range(1, len(p) + 1))
        for it in r.items:
            assert all(0.0 <= v <= 1.0 for v in it.scores.values()), dict(it.scores)
    assert sum(len(r.items) for r in got) > 40 and any(r.items[0].score > 0.2 for r in got)


@pytest.fixture(scope="module")
def fuzz_pipe(tmp_path_factory, tiny):
    cat = small_catalogue()
    cfg = ServingConfig.model_validate(SERVING)
    index = index_with_model(tiny, cat, tmp_path_factory.mktemp("fuzz") / "index", "pretrained-tiny")
    return SearchPipeline(index, encoder="tiny", device="cpu", config=cfg), cat, cfg


def test_the_checker_catches_each_broken_invariant(fuzz_pipe) -> None:
    pipe, cat, cfg = fuzz_pipe
    rows = catalogue_rows(cat)
    req = pb2.SearchRequest(query="snow boots", k=5, filters=pb2.Filters(category="apparel", in_stock=True))
    case = Case("search", req, k=5, filters={"category": "apparel", "in_stock": True})
    assert check_response(case, pipe.handle(req, pb2), rows, cfg) == []
    outside = next(r["item_id"] for r in rows.values() if not r["category_path"].startswith("Apparel"))
    breaks = {
        "score": lambda r: setattr(r.items[1], "score", r.items[1].score + 0.01),
        "range": lambda r: r.items[0].scores.__setitem__("similarity", -0.07),
        "rank": lambda r: setattr(r.items[2], "rank", 7),
        "order": lambda r: (r.items[0].CopyFrom(r.items[4]), setattr(r.items[0], "rank", 1)),
        "filter": lambda r: setattr(r.items[3], "item_id", outside),
        "k": lambda r: r.items.pop(),
        "nan": lambda r: setattr(r.items[0], "score", float("nan")),
        "weights": lambda r: r.blend_weights.__setitem__("popularity", 1.0),
    }
    for name, brk in breaks.items():
        resp = pipe.handle(req, pb2)
        brk(resp)
        assert check_response(case, resp, rows, cfg), name


def test_fuzz_cases_in_process_hold_every_invariant(fuzz_pipe) -> None:
    pipe, cat, cfg = fuzz_pipe
    cases = make_cases(cat, cfg, 400, seed=7)
    outcomes = []
    for case in cases:
        try:
            outcomes.append(("OK", pipe.handle(case.request, pb2)))
        except InvalidRequest as e:
            outcomes.append(("INVALID_ARGUMENT", str(e)))
        except Exception as e:  # noqa: BLE001 - what the server would answer INTERNAL/UNKNOWN
            outcomes.append(("INTERNAL", f"{type(e).__name__}: {e}"))
    counts, problems = tally(cases, outcomes, catalogue_rows(cat), cfg)
    assert not problems, f"{len(problems)} of {len(cases)}: {problems[:5]}"
    assert counts["search OK"] + counts["rank OK"] >= 0.4 * len(cases), counts
    assert counts["search INVALID_ARGUMENT"] + counts["rank INVALID_ARGUMENT"] >= 0.2 * len(cases), counts
    assert Counter(c.rpc for c in cases)["rank"] >= 100
