"""Baselines (BM25, query lookup with recency and word back-off, blending) and the report writer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest
from shoprank.eval.baselines import BM25, QueryLookup, back_off, blend, score_pairs_bm25
from shoprank.eval.report import markdown_table, write_report


def test_bm25_prefers_matching_docs():
    bm = BM25(["red running shoe", "blue winter coat", "red coat"])
    s = bm.scores("red coat")
    assert s.argmax() == 2 and s[1] > 0 and s[0] > 0
    assert bm.scores("zebra").sum() == 0.0
    pairs = score_pairs_bm25(["red", "red"], ["red shoe", "blue hat"])
    assert pairs[0] > pairs[1] == 0.0


def test_lookup_counts_recency_and_word_backoff():
    now = datetime(2011, 10, 1)
    queries = ["xbox", "xbox", "Xbox ", "xbox", "halo game"]
    items = ["old", "old", "old", "new", "halo"]
    times = [now - timedelta(days=60)] * 3 + [now, now]
    plain = QueryLookup(queries, items)
    assert plain.rank("XBOX", 2) == ["old", "new"]
    recent = QueryLookup(queries, items, times, half_life_days=7.0, word_weight=0.1)
    assert recent.rank("xbox", 2) == ["new", "old"]  # 3 clicks two months ago < 1 click today
    assert plain.rank("halo 3", 1) == [] and recent.rank("halo 3", 1) == ["halo"]  # word back-off
    # a misspelt query backs off to the nearest known query, a query seen whole does not
    fuzzy = QueryLookup(queries, items, neighbour_weight=1.0)
    assert plain.rank("xbxo", 1) == [] and fuzzy.rank("xboxx", 2) == ["old", "new"]
    assert fuzzy.nearest("halo gaem")[0][1] == "halogame" and fuzzy.nearest("zzz") == []
    assert fuzzy.scores("xbox") == plain.scores("xbox")
    assert back_off(["a"], ["a", "b", "c"], 2) == ["a", "b"]
    assert blend({"a": 1.0}, ["b", "a"], 0.05, 2) == ["a", "b"]
    assert blend({}, ["b", "a"], 0.05, 2) == ["b", "a"]


def test_report_files(tmp_path):
    rows = [{"task": "season", "metric": "accuracy", "model": 0.7, "majority": float("nan")}]
    md = markdown_table(rows)
    assert "| season | accuracy | 0.7000 | – |" in md
    paths = write_report({"metrics": {"a": 1.0}, "table": rows}, tmp_path)
    assert json.loads(paths["json"].read_text())["metrics"] == {"a": 1.0}
    assert "season" in paths["md"].read_text()
    assert np.isnan(rows[0]["majority"])


def test_click_ranking_reports_every_system_under_the_ceiling():
    import polars as pl
    from shoprank.eval.runner import click_ranking
    from shoprank.model import ModelConfig, MultiTaskModel

    model = MultiTaskModel(ModelConfig(encoder="tiny", hidden=8, max_length=16, tasks=["click"]))
    model.trained_tasks = {"click"}
    names = ["halo 3", "gears of war", "skyrim", "fifa 12", "forza 4", "rage"]
    items = pl.DataFrame(
        {"item_id": [f"s{n}" for n in range(6)], "item": names, "price": [20.0] * 6, "rating": [4.0] * 6}
    ).with_columns(pl.lit(1.0).alias("popularity"))
    t0 = datetime(2011, 10, 1)
    qs = ["halo", "halo", "gears", "skyrim", "skyrim", "fifa"] * 5
    clicked = ["s0", "s0", "s1", "s2", "s2", "s3"] * 5
    train = pl.DataFrame({"query": qs, "item_id": clicked, "timestamp": [t0 + timedelta(hours=n) for n in range(30)]})
    test = pl.DataFrame({"query": ["halo", "skyrom", "forza", "halo"], "item_id": ["s0", "s2", "s4", "s5"]})
    res = click_ranking(model, None, train, test, items)
    assert {"model", "lookup+model", "lookup", "lookup_recency_words", "popularity", "bm25", "ceiling"} <= set(res)
    assert {"learned_blend", "learned_blend_no_user", "learned_blend_static"} <= set(res)
    for name, m in res.items():  # one list per query (live counts change a query's list over time)
        top = 1.0 if name in ("learned_blend", "learned_blend_no_user") else res["ceiling"]["map@5"]
        assert 0.0 <= m["map@5"] <= top + 1e-12, name
    # "halo" -> s0 (1, then 1/2 for its s5 click), "skyrom" -> s2 through the nearest known query
    assert res["lookup_recency_words"]["map@5"] > res["lookup"]["map@5"]
    assert res["ceiling"]["recall@100"] == 1.0


def test_click_blend_learns_that_users_do_not_click_the_same_item_twice():
    """Every user clicks s0 for "halo", most then s1 on a second search: fitted on a later
    period, the blend puts s1 first for a user who already has s0 and s0 first for a new user."""
    import polars as pl
    from shoprank.eval.clickblend import FEATURES, ClickBlend

    items = pl.DataFrame({"item_id": ["s0", "s1", "s2"], "item": ["halo 3", "halo reach", "skyrim"]})
    t0 = datetime(2011, 10, 1)
    rows = []
    for u in range(60):
        rows.append(("halo", "s0", f"u{u}", t0 + timedelta(hours=2 * u)))
        if u % 3:
            rows.append(("halo", "s1", f"u{u}", t0 + timedelta(hours=2 * u + 1)))
    log = pl.DataFrame(rows, schema=["query", "item_id", "user_hash", "timestamp"], orient="row")
    rank = lambda qs: {q: ["s2", "s1", "s0"] for q in qs}  # noqa: E731 - a model that gets it wrong
    cb = ClickBlend(items, rank).fit(log.head(70), log.tail(30))
    assert cb.fitted_on == 30
    assert cb.weights[FEATURES.index("user_clicked")] < 0
    test = pl.DataFrame(
        {"query": ["halo", "halo"], "item_id": ["s0", "s1"], "user_hash": ["new", "new"],
         "timestamp": [t0 + timedelta(days=9), t0 + timedelta(days=9, hours=1)]}
    )  # fmt: skip
    with pytest.raises(ValueError, match="candidates"):
        ClickBlend(items, rank).fit(log.head(70), log.tail(30).with_columns(pl.lit("gone").alias("item_id")))
    first, second = cb.rank(log, test, k=2)
    assert first[0] == "s0" and second[0] == "s1"  # the second search already has s0 in its history
    blind = ClickBlend(items, rank, use_user=False).fit(log.head(70), log.tail(30))
    assert [lst[0] for lst in blind.rank(log, test, k=2)] == ["s0", "s0"]  # it cannot tell the two apart


def test_online_blend_counts_the_test_period_as_it_goes():
    """A query first searched in the test period: with live counters its earlier clicks rank its
    item first for the next searchers; with counters frozen at the period's start they cannot."""
    import polars as pl
    from shoprank.eval.clickblend import FEATURES, ClickBlend

    items = pl.DataFrame({"item_id": ["s0", "s1", "s2", "s3"], "item": ["halo 3", "halo reach", "skyrim", "fifa 12"]})
    t0 = datetime(2011, 10, 1)
    rows = [("halo", "s0" if u % 4 else "s1", f"u{u}", t0 + timedelta(hours=2 * u)) for u in range(80)]
    log = pl.DataFrame(rows, schema=["query", "item_id", "user_hash", "timestamp"], orient="row")
    rank = lambda qs: {q: ["s2", "s1", "s0", "s3"] for q in qs}  # noqa: E731 - a model that gets it wrong
    later = t0 + timedelta(days=9)
    test = pl.DataFrame(
        {"query": ["soccer"] * 5, "item_id": ["s3"] * 5, "user_hash": [f"n{n}" for n in range(5)],
         "timestamp": [later, later, *(later + timedelta(hours=n) for n in (1, 2, 3))]}
    )  # fmt: skip
    lists = {}
    for online in (True, False):
        blend = ClickBlend(items, rank, online=online).fit(log.head(60), log.tail(20))
        blend.weights = np.eye(len(FEATURES), dtype=np.float32)[FEATURES.index("share_7d")]  # the counts alone
        lists[online] = blend.rank(log, test, k=1)
    live, frozen = lists[True], lists[False]
    # the first two searches share a timestamp: neither sees the other's click
    assert [lst[0] == "s3" for lst in live] == [False, False, True, True, True]
    assert "s3" not in [lst[0] for lst in frozen]
