"""The store's writes: the counters hold exactly what the offline click features count, batches are
atomic, and event ids make writes idempotent. Real server (store_fixtures)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import redis
from shoprank.eval.baselines import compact_query
from shoprank.eval.clickblend import ClickCounts
from shoprank.store.config import StoreConfig
from shoprank.store.events import Event
from shoprank.store.keys import Keys, trigrams
from shoprank.store.load import frame_events
from shoprank.store.writer import StoreWriter

from tests.store_fixtures import dump

QUERIES = ["call of duty", "Call of Duty", "callofduty black ops", "skyrim", "skyrm", "ipad 2", "ipad case",
           "gears of war 3", "iphone 4 case", "beats headphones", "!!!"]  # fmt: skip
K = Keys()


def clicks(n: int, days: float, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = datetime(2011, 8, 1)
    q = rng.integers(len(QUERIES), size=n)
    return pl.DataFrame(
        {
            "user_hash": [f"u{u:03d}" if u else None for u in rng.integers(40, size=n)],
            "query": [QUERIES[i] for i in q],
            "item_id": [f"sku{(i * 7 + j) % 30}" for i, j in zip(q, rng.integers(6, size=n), strict=True)],
            "event_type": ["click"] * n,
            "timestamp": [start + timedelta(days=float(d)) for d in np.sort(rng.uniform(0, days, size=n))],
            "position": pl.Series([None] * n, dtype=pl.Int32),
        }
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("us")))


def write_frame(url: str, frame: pl.DataFrame) -> None:
    events = list(frame_events(frame, StoreConfig(), Counter()))
    StoreWriter(url).write_batches([events[i : i + 97] for i in range(0, len(events), 97)], ttl_s=0, log=False)


def shares(h: dict[str, str]) -> dict[str, float]:
    values = {k: float(v) for k, v in h.items() if k != ""}
    total = sum(values.values())
    return {k: v / total for k, v in values.items()}


def offline_shares(counter: Counter) -> dict[str, float]:
    total = sum(counter.values())
    return {k: v / total for k, v in counter.items()}


def assert_same_counts(url: str, frame: pl.DataFrame) -> None:
    """Everything ClickCounts builds from ``frame``, read back from the store."""
    c, d = ClickCounts.of(frame), dump(url)
    for q in set(frame["query"].to_list()):
        key = compact_query(q)
        for name, lookup in (("7d", c.share7), ("2d", c.share2), ("12h", c.share12)):
            assert shares(d[K.query_clicks(name, q)]) == pytest.approx(dict(lookup.scores(q)), rel=1e-12, abs=1e-300)
        assert {i: int(v) for i, v in d[K.query_clicks("all", q)].items()} == c.share_all.table[key]
    for name, lookup in (("7d", c.share7), ("2d", c.share2), ("12h", c.share12)):
        assert shares(d[K.popular(name)]) == pytest.approx(offline_shares(lookup.popularity), rel=1e-12, abs=1e-300)
    for word, counter in c.words.words.items():
        assert shares(d[K.word_clicks(word)]) == pytest.approx(offline_shares(counter), rel=1e-12)
    assert d[K.queries] == set(c.neighbours.table)
    for gram, posting in c.neighbours._postings.items():
        assert d[K.gram(gram)] == {c.neighbours._keys[n] for n in posting}
    for (user, key), items in c.user_items.items():
        assert d[f"sr:u:{user}:q:{key}"] == items
    for user, items in c.user_any.items():
        assert d[K.user_any(user)] == items


def test_counters_hold_what_the_offline_click_features_count(store) -> None:  # noqa: F811
    frame = clicks(3000, days=60)
    write_frame(store, frame)
    assert_same_counts(store, frame)


def test_nearest_queries_from_the_trigram_postings(store) -> None:  # noqa: F811
    """The postings are enough to find QueryLookup.nearest's neighbours of a query never seen whole."""
    frame = clicks(500, days=10)
    write_frame(store, frame)
    lookup = ClickCounts.of(frame).neighbours
    client = redis.Redis.from_url(store, decode_responses=True)
    found = 0
    for q in ("skyri", "call of dut", "ipad  cases", "gears war", "beats headphone", "iphone case"):
        grams = trigrams(compact_query(q))
        shared: Counter[str] = Counter()
        for g in grams:
            shared.update(client.smembers(K.gram(g)))
        sims = [(s / (len(grams) + len(trigrams(k)) - s), k) for k, s in shared.items()]
        got = sorted((x for x in sims if x[0] >= lookup.min_similarity), key=lambda x: (-x[0], x[1]))[:3]
        assert got == lookup.nearest(q), q
        found += len(got)
    assert found >= 4


def test_decayed_counters_rescale_without_changing_shares(store) -> None:  # noqa: F811
    """400 days at a 12-hour half-life is 2^800: the script moves the landmark, shares stay exact."""
    frame = clicks(600, days=400, seed=3)
    write_frame(store, frame)
    landmark = float(redis.Redis.from_url(store).hget(K.popular("12h"), ""))
    assert landmark > frame["timestamp"].min().timestamp() / 86400 + 200  # it was moved
    assert_same_counts(store, frame)


def test_order_of_arrival_does_not_matter(store, store_server) -> None:  # noqa: F811
    frame = clicks(400, days=30, seed=5)
    write_frame(store, frame.reverse())
    assert_same_counts(store, frame)


def ev(n: int, **kw) -> Event:
    base = dict(query="q", item_id="x", type="click", time_us=1_315_000_000_000_000 + n, user_hash="h1")
    base.update(kw)
    return Event(**base)


def test_event_ids_make_writes_idempotent(store) -> None:  # noqa: F811
    w = StoreWriter(store)
    batch = [ev(n, event_id=f"id{n}") for n in range(5)] + [ev(9)]  # the last has no id: always counts
    first = w.write(batch)
    second = w.write(batch[:3] + [ev(7, event_id="id7")])
    assert (first.accepted, first.duplicates) == (6, 0)
    assert (second.accepted, second.duplicates) == (1, 3)
    after = dump(store)
    assert after["sr:c:all:q:q"] == {"x": "7"}  # 6, then only the new event
    assert {k for k in after if k.startswith("sr:e:")} == {f"sr:e:api:id{n}" for n in (0, 1, 2, 3, 4, 7)}
    assert after["sr:stats"] == {"events": "7", "duplicates": "3", "type:click": "7"}
    assert len(after["sr:log"]) == 7  # the Feedback event log: what was applied


def test_other_event_types_are_counted_apart(store) -> None:  # noqa: F811
    w = StoreWriter(store)
    w.write([ev(0, type="impression"), ev(1, type="impression"), ev(2, type="purchase"), ev(3, type="add_to_cart")])
    d = dump(store)
    assert d["sr:n:impression:q:q"] == {"x": "2"} and d["sr:n:purchase:pop"] == {"x": "1"}
    assert d["sr:n:add_to_cart:q:q"] == {"x": "1"}
    assert not any(k.startswith(("sr:c:", "sr:u:")) for k in d)  # clicks only feed the click features


def test_no_reader_ever_sees_half_a_batch(store) -> None:  # noqa: F811
    """Batches of 10 clicks, written while a reader snapshots (MULTI) the event count and the counter
    they increment: every snapshot is a whole number of batches, and the two always agree."""
    w, reader = StoreWriter(store), redis.Redis.from_url(store)
    done = threading.Event()

    def write() -> None:
        for b in range(150):
            w.write([ev(b * 10 + n) for n in range(10)], log=False)
        done.set()

    t = threading.Thread(target=write)
    t.start()
    seen = []
    while not done.is_set() or not seen:
        pipe = reader.pipeline(transaction=True)
        pipe.hget("sr:stats", "events").hget("sr:c:all:q:q", "x")
        events, count = (int(v or 0) for v in pipe.execute())
        assert events == count and events % 10 == 0, (events, count)
        seen.append(events)
    t.join()
    assert int(reader.hget("sr:stats", "events")) == 1500 and len(set(seen)) > 1
