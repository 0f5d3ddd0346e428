"""The task registry is the one task list: every per-task table covers exactly its tasks."""

from __future__ import annotations

import numpy as np
import pytest
from shoprank.data.calendar import MONTH_SEASON, SEASON_MONTHS, SEASONS
from shoprank.eval.task_report import REPORT_ROWS
from shoprank.eval.tasks import EVALUATORS
from shoprank.model import ModelConfig, MultiTaskModel
from shoprank.model.embeddings import EmbeddingCache, embed_unique
from shoprank.model.prototypes import ZeroShotClasses, class_name_text, softmax_cosine
from shoprank.model.registry import CLASS_TASKS, PAIR_TASKS, REGISTRY, SPECS, TASKS, spec
from shoprank.tasks.examples import BUILDERS
from shoprank.train.losses import LOSSES
from shoprank.tune.config import TASK_METRICS


def test_every_table_covers_exactly_the_registered_tasks():
    assert TASKS == ("intent", "retrieval", "relevance", "click", "category", "season", "demand")
    assert set(BUILDERS) == set(EVALUATORS) == set(TASK_METRICS) == set(REGISTRY) == set(TASKS)
    assert {s.kind for s in SPECS} == set(REPORT_ROWS)
    assert {s.loss for s in SPECS} <= set(LOSSES)
    for s in SPECS:
        assert s.primary in s.metrics and TASK_METRICS[s.name] == (*s.metrics, "loss")
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        spec("nope")


def test_model_heads_follow_the_registry():
    model = MultiTaskModel(ModelConfig(encoder="tiny", max_length=16, hidden=8), {t: ["a", "b"] for t in CLASS_TASKS})
    assert set(model.classifiers) == set(CLASS_TASKS)
    assert tuple(model.pair_tasks) == PAIR_TASKS
    assert set(model.lexical) == {t for t in TASKS if spec(t).lexical}
    assert all(model.has_head(t) for t in TASKS)


@pytest.fixture(scope="module")
def tiny() -> MultiTaskModel:
    return MultiTaskModel(ModelConfig(encoder="tiny", max_length=16, hidden=8, tasks=["retrieval"]), {})


def test_embedding_cache_embeds_each_distinct_text_once(tiny):
    cache = EmbeddingCache(tiny)
    texts = ["red shoes", "blue coat", "red shoes"]
    first = embed_unique(tiny, texts, cache)
    assert first.shape == (3, tiny.encoder.dim) and len(cache) == 2
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_allclose(first, embed_unique(tiny, texts), atol=1e-6)
    embed_unique(tiny, ["blue coat", "green hat"], cache)
    assert len(cache) == 3
    assert embed_unique(tiny, [], cache).shape == (0, tiny.encoder.dim)
    other = MultiTaskModel(ModelConfig(encoder="tiny", max_length=16, hidden=8, tasks=["retrieval"]), {})
    with pytest.raises(ValueError, match="another model"):
        embed_unique(other, texts, cache)


def test_zero_shot_classes_are_the_softmax_of_cosine_at_the_callers_temperature(tiny):
    names = ["Shoes > Boots", "Coats", "Dresses"]
    texts = [class_name_text(n) for n in names]
    assert texts == ["Boots", "Coats", "Dresses"]
    emb = tiny.embed(["warm winter boots", "a light summer dress"])
    protos = tiny.embed(texts)
    for temperature, dtype in ((0.05, np.float32), (0.05, np.float64), (1.0, np.float64)):
        zs = ZeroShotClasses(tiny, texts, temperature, dtype=dtype)
        logits = (emb @ protos.T).astype(dtype) / temperature
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        expected = p / p.sum(axis=1, keepdims=True)
        got = zs.probs(emb)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        np.testing.assert_array_equal(zs.predict(emb), (emb @ protos.T).argmax(axis=1))
        assert zs.prototypes is zs.prototypes  # embedded once, then kept
    np.testing.assert_allclose(softmax_cosine(emb, protos, 0.05).sum(axis=1), 1.0)


def test_season_calendar_is_one_consistent_table():
    assert SEASONS == ("winter", "spring", "summer", "fall")
    assert sorted(MONTH_SEASON) == list(range(1, 13))
    assert all(MONTH_SEASON[m] == s for s, ms in SEASON_MONTHS.items() for m in ms)
    assert MONTH_SEASON[12] == MONTH_SEASON[1] == "winter" and MONTH_SEASON[9] == "fall"
