"""One click-feature implementation, two sources of counts: the store gives what the in-memory counts give.

A Best Buy-format click log (a synthetic one, and a slice of the shared file when present) is cut
by time; its history is loaded into a real store with ``shoprank.store.load`` and counted in
memory from the same rows. For every test search the two sources feed the same feature code:
the feature rows agree within 1e-12, the blend's scores and rankings are identical, and a whole
test period ranked live from the store (each click written back once the clock passes it) gives
exactly ``ClickBlend(online=True).rank``'s lists, the numbers of ``shoprank eval --clicks``.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import redis
from shoprank.clicks.bm25 import BM25
from shoprank.clicks.counts import ClickCounts
from shoprank.clicks.features import FEATURES, USER, USER_ANY, BlendWeights, ClickRequest, click_features
from shoprank.clicks.text import compact_query
from shoprank.eval.clickblend import ClickBlend, click_months
from shoprank.store.events import Event
from shoprank.store.load import load_events, read_events
from shoprank.store.reader import StoreClickSource
from shoprank.store.writer import StoreWriter

from tests.conftest import shared_file

HEADER = ["user", "sku", "category", "query", "click_time", "query_time"]
QUERIES = ["call of duty", "Call of Duty black ops", "skyrim", "ipad 2", "ipad case", "gears of war 3",
           "iphone 4 case", "beats headphones", "headphones", "case case", "xbox 360", "halo reach"]  # fmt: skip
# searched in the test period: known, misspelt (trigram neighbours), unseen words, nothing alike, empty key
NEW_QUERIES = ["skyrm", "call of dut", "ipad cases", "gears war 3", "sony headphones", "zzqx", "!!!"]


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def synthetic_log(n: int = 1600, days: float = 40.0, seed: int = 0) -> list[list[str]]:
    """Best Buy-format rows: 12 queries over 30 skus, 60 users (some blank), a skewed choice per query."""
    rng = np.random.default_rng(seed)
    start = datetime(2011, 8, 11, 4)
    out = []
    for t in np.sort(rng.uniform(0, days, size=n)):
        q = int(rng.zipf(1.6)) % len(QUERIES)
        sku = 1000 + (q * 5 + int(rng.zipf(1.8)) % 7) % 30
        u = int(rng.integers(60))
        when = start + timedelta(days=float(t))
        out.append([f"user{u}" if u else "", str(sku), "abcat0701002", QUERIES[q], f"{when:%Y-%m-%d %H:%M:%S.%f}"[:-3],
                    f"{when - timedelta(seconds=30):%Y-%m-%d %H:%M:%S.%f}"[:-3]])  # fmt: skip
    # the test period's new queries, a few times each, late
    for n_new, q in enumerate(NEW_QUERIES * 3):
        when = start + timedelta(days=days + 1 + n_new / 10)
        out.append([f"user{n_new % 7 + 1}", str(1000 + n_new % 30), "abcat0701002", q,
                    f"{when:%Y-%m-%d %H:%M:%S.%f}"[:-3], f"{when:%Y-%m-%d %H:%M:%S.%f}"[:-3]])  # fmt: skip
    return out


def split_files(rows: list[list[str]], tmp: Path, test_share: float = 0.15) -> tuple[Path, Path]:
    """The log cut by click time into a history file and a test file (both in the Best Buy format)."""
    stamp = [datetime.fromisoformat(r[4]) for r in rows]
    cut = sorted(stamp)[int(len(rows) * (1 - test_share))]
    history = [r for r, t in zip(rows, stamp, strict=True) if t < cut]
    test = [r for r, t in zip(rows, stamp, strict=True) if t >= cut]
    return _write_csv(tmp / "history.csv", history), _write_csv(tmp / "test.csv", test)


def catalogue(frame: pl.DataFrame) -> pl.DataFrame:
    """Each clicked sku with a text (its most common query): BM25 and the stand-in model read it."""
    top = frame.group_by("item_id", "query").len().sort(["item_id", "len", "query"], descending=[False, True, False])
    first = top.group_by("item_id", maintain_order=True).first()
    return first.select("item_id", pl.col("query").alias("item")).sort("item_id")


def model_ranking(items: pl.DataFrame):
    """A stand-in model: the catalogue by BM25, ties broken by a hash of query and month (deterministic,
    imperfect; the month changes the order as a pair head's month input may)."""
    bm, ids = BM25(items["item"].to_list()), items["item_id"].to_list()

    def rank(keys: list[tuple[str, int]]) -> dict[tuple[str, int], list[str]]:
        out = {}
        for q, m in keys:
            s = bm.scores(q)
            salt = [int(hashlib.blake2b(f"{q}|{m}|{i}".encode(), digest_size=4).hexdigest(), 16) for i in ids]
            out[(q, m)] = [ids[j] for j in np.lexsort((salt, -s))]
        return out

    return rank


def load_both(store: str, history_csv: Path) -> tuple[pl.DataFrame, ClickCounts]:
    """The history loaded into the store (``shoprank.store.load``) and counted in memory, same rows."""
    report = load_events(history_csv, "bestbuy-clicks", store)
    frame = read_events(history_csv, "bestbuy-clicks")[0]
    assert report.skipped == {} and report.events == report.accepted == frame.height
    return frame, ClickCounts.of(frame)


def assert_same_features(store: str, history_csv: Path, test_csv: Path, min_requests: int) -> None:
    history, counts = load_both(store, history_csv)
    test = read_events(test_csv, "bestbuy-clicks")[0]
    users = [u for u in history["user_hash"].to_list() if u][:3]
    requests = list(dict.fromkeys(
        [ClickRequest(q, u) for q, u in zip(test["query"].to_list(), test["user_hash"].to_list(), strict=True)]
        + [ClickRequest(q, u) for q in [*QUERIES, *NEW_QUERIES] for u in (None, *users)]
    ))  # fmt: skip
    assert len(requests) >= min_requests
    items = catalogue(pl.concat([history, test]))
    index = {i: n for n, i in enumerate(items["item_id"].to_list())}
    bm25 = BM25(items["item"].to_list())
    ranked = model_ranking(items)([(r.query, 0) for r in requests])
    reader = StoreClickSource(store)
    reader.lookup(requests[:1])  # loads the read script on this server (NOSCRIPT once)
    trips = reader.round_trips
    from_store = reader.lookup(requests)
    assert reader.round_trips == trips + 1, "one round trip for the whole batch"
    from_memory = counts.lookup(requests)
    fitted = ClickBlend(items, model_ranking(items)).fit(*_fit_periods(history))
    rng = np.random.default_rng(7)
    weights = [fitted.blend, BlendWeights(rng.normal(size=len(FEATURES)).astype(np.float32),
                                          rng.normal(size=len(FEATURES)).astype(np.float32),
                                          rng.uniform(0.5, 2.0, size=len(FEATURES)).astype(np.float32))]  # fmt: skip
    seen = Counter()
    for r, mem, sto in zip(requests, from_memory, from_store, strict=True):
        c_mem, x_mem = click_features(mem, bm25, index, r.query, ranked[(r.query, 0)])
        c_sto, x_sto = click_features(sto, bm25, index, r.query, ranked[(r.query, 0)])
        assert c_sto == c_mem, r
        np.testing.assert_allclose(x_sto, x_mem, rtol=0, atol=1e-12, err_msg=str(r))
        for w in weights:
            np.testing.assert_allclose(w.score(x_sto), w.score(x_mem), rtol=0, atol=1e-12, err_msg=str(r))
            assert w.rank(c_sto, x_sto, 10) == w.rank(c_mem, x_mem, 10), r
        seen["known"] += mem.known
        seen["neighbours"] += bool(mem.neighbours)
        seen["words"] += any(mem.words) and not mem.known
        seen["user"] += bool(x_mem[:, USER].any())
        seen["user_any"] += bool(x_mem[:, USER_ANY].any())
    # every kind of signal was exercised (the comparison could have failed on each)
    assert all(seen[k] > 0 for k in ("known", "neighbours", "words", "user", "user_any")), seen
    assert any(not m.known and not m.neighbours for m in from_memory)
    reader.close()


def _fit_periods(history: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    ordered = history.sort("timestamp", maintain_order=True)
    cut = ordered.height - ordered.height // 5
    return ordered.head(cut), ordered.tail(ordered.height - cut)


def store_walk(store: str, blend: ClickBlend, test: pl.DataFrame, k: int) -> list[list[str]]:
    """``ClickBlend(online=True).rank`` done live on the store: each test click ranked from one store
    read, and written to the store (``StoreWriter``) once the clock has passed it."""
    ordered = test.with_row_index("__row").sort("timestamp", maintain_order=True)
    keys = list(zip(ordered["query"].to_list(), click_months(ordered), strict=True))
    ranked = blend.rank_fn(list(dict.fromkeys(keys)))
    reader, writer = StoreClickSource(store), StoreWriter(store)
    out: list[list[str]] = [[] for _ in range(test.height)]
    pending: list[Event] = []
    cols = ("__row", "user_hash", "query", "item_id")
    t_us = ordered["timestamp"].dt.epoch("us").to_list()
    rows = zip(zip(*(ordered[c].to_list() for c in cols), strict=True), t_us, keys, strict=True)
    for (row, u, q, i), t, key in rows:
        if pending and t != pending[-1].time_us:
            writer.write(pending, log=False)
            pending = []
        view = reader.lookup([ClickRequest(q, u)])[0]
        cands, x = click_features(view, blend.bm25, blend.index, q, ranked.get(key, []), use_user=blend.use_user)
        out[row] = blend.blend.rank(cands, x, k)
        pending.append(Event(q, i, "click", t, u))
    reader.close()
    writer.close()
    return out


def assert_same_rankings(store: str, history_csv: Path, test_csv: Path) -> None:
    history, _ = load_both(store, history_csv)
    test = read_events(test_csv, "bestbuy-clicks")[0]
    items = catalogue(pl.concat([history, test]))
    blend = ClickBlend(items, model_ranking(items), online=True).fit(*_fit_periods(history))
    offline = blend.rank(history, test, k=5)
    assert store_walk(store, blend, test, k=5) == offline
    assert sum(lst[0] == i for lst, i in zip(offline, test["item_id"].to_list(), strict=True)) > 0


def test_store_and_memory_give_the_same_features(store, tmp_path: Path) -> None:  # noqa: F811
    history_csv, test_csv = split_files(synthetic_log(), tmp_path)
    assert_same_features(store, history_csv, test_csv, min_requests=80)


def test_ranking_live_from_the_store_equals_the_offline_blend(store, tmp_path: Path) -> None:  # noqa: F811
    history_csv, test_csv = split_files(synthetic_log(seed=1), tmp_path)
    assert_same_rankings(store, history_csv, test_csv)


def test_reader_reads_nothing_twice_and_survives_a_script_flush(store) -> None:  # noqa: F811
    """Repeated queries and users cost one read each; a server that lost its scripts (restart,
    SCRIPT FLUSH) costs one reload, and the answer is the same."""
    t = int(datetime(2011, 9, 1).timestamp() * 1e6)
    StoreWriter(store).write([Event("skyrim", "s1", "click", t, "u1"), Event("skyrim", "s2", "click", t + 1, "u2")])
    reader = StoreClickSource(store)
    reqs = [ClickRequest("skyri", "u1"), ClickRequest("Skyri", "u1"), ClickRequest("skyri", None)]
    first = reader.lookup(reqs)
    assert [(sim, set(t)) for sim, t in first[0].neighbours] == [(4 / 7, {"s1", "s2"})]
    assert first[0].user_any == {"s1"} and not first[2].user_any
    redis.Redis.from_url(store).script_flush()
    trips = reader.round_trips
    again = reader.lookup(reqs)
    assert reader.round_trips == trips + 3  # the batch, NOSCRIPT -> load, the batch again
    assert first == again and not first[0].known and first[0] == first[1]
    assert reader.lookup([]) == []
    reader.close()


@pytest.mark.shared_data
def test_same_features_and_rankings_on_the_shared_best_buy_log(
    store,  # noqa: F811
    shared_data: Path,
    tmp_path: Path,
) -> None:
    """A slice of the shared Best Buy log (every 8th row, about 4,200 clicks over the whole period)."""
    with shared_file(shared_data, "bestbuy/clicks.csv").open(newline="") as f:
        rows = [r for n, r in enumerate(csv.reader(f)) if n and n % 8 == 0]
    history_csv, test_csv = split_files(rows, tmp_path, test_share=0.05)
    assert_same_features(store, history_csv, test_csv, min_requests=150)
    redis.Redis.from_url(store).flushall()
    assert_same_rankings(store, history_csv, test_csv)


def test_compact_keys_meet() -> None:
    assert compact_query("Call of Duty") == compact_query("callofduty")
