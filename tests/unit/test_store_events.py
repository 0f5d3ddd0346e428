"""Event validation: a batch is valid whole or rejected naming its event and field, and then nothing is stored."""

from __future__ import annotations

import random
from types import SimpleNamespace as NS

import pytest
import redis
from shoprank.hashing import hash_id
from shoprank.store.config import StoreConfig
from shoprank.store.events import InvalidEvent, parse_event, parse_events, row_event_id
from shoprank.store.writer import StoreWriter
from shoprank.v1 import search_pb2 as pb2

NOW_MS = 1_800_000_000_000  # 2027-01-15
CFG = StoreConfig(max_batch_events=20)


def good(**over) -> NS:
    e = dict(query="gears of war", item_id="9854804", type=2, user_id="user-7", event_time_ms=NOW_MS - 1000,
             position=3, request_id="r1", event_id="")  # fmt: skip
    e.update(over)
    return NS(**e)


def test_a_good_event_is_kept_with_a_hashed_user() -> None:
    e = parse_event(0, good(), CFG, NOW_MS)
    assert (e.query, e.item_id, e.type, e.position, e.request_id) == ("gears of war", "9854804", "click", 3, "r1")
    assert e.time_us == (NOW_MS - 1000) * 1000
    assert e.user_hash == hash_id("user-7") and "user-7" not in repr(e)
    assert parse_event(0, good(type="add_to_cart", user_id=""), CFG, NOW_MS).user_hash is None
    assert parse_event(0, good(event_time_ms=0), CFG, NOW_MS).time_us == NOW_MS * 1000  # 0 = now


def test_protobuf_events_parse() -> None:
    req = pb2.FeedbackRequest(
        events=[pb2.FeedbackEvent(query="q", item_id="i", type=pb2.PURCHASE, event_time_ms=NOW_MS, event_id="e1")]
    )
    (e,) = parse_events(req.events, CFG, NOW_MS)
    assert (e.type, e.event_id, e.position, e.user_hash) == ("purchase", "e1", None, None)


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 257}, "query"),
        ({"item_id": ""}, "item_id"),
        ({"item_id": "a\nb"}, "item_id"),
        ({"item_id": "x" * 129}, "item_id"),
        ({"type": 0}, "type"),
        ({"type": 9}, "type"),
        ({"type": "view"}, "type"),
        ({"event_time_ms": 1}, "event_time_ms"),
        ({"event_time_ms": NOW_MS + 86_400_001}, "event_time_ms"),
        ({"event_time_ms": 1.5e12}, "event_time_ms"),
        ({"position": -1}, "position"),
        ({"user_id": "u" * 257}, "user_id"),
        ({"request_id": "r\x00"}, "request_id"),
        ({"event_id": "e" * 129}, "event_id"),
        ({"query": 5}, "query"),
    ],
)
def test_each_rule_names_the_event_and_field(over: dict, field: str) -> None:
    batch = [good(), good(), good(**over)]
    with pytest.raises(InvalidEvent) as err:
        parse_events(batch, CFG, NOW_MS)
    assert (err.value.index, err.value.field) == (2, field)
    assert str(err.value).startswith(f"events[2].{field}: ")


def test_batch_bounds() -> None:
    with pytest.raises(InvalidEvent, match=r"^events: empty batch"):
        parse_events([], CFG, NOW_MS)
    with pytest.raises(InvalidEvent, match=r"^events: 21 events, at most 20 per call"):
        parse_events([good()] * 21, CFG, NOW_MS)
    assert len(parse_events([good()] * 20, CFG, NOW_MS)) == 20


def test_row_ids_count_repeats_but_not_reloads() -> None:
    e = parse_event(0, good(), CFG, NOW_MS)
    assert row_event_id(e, 0) == row_event_id(e, 0) != row_event_id(e, 1)


MALFORMED = [
    ("query", lambda r: r.choice(["", " ", "\t", "q" * 300])),
    ("item_id", lambda r: r.choice(["", "  ", "a\x01b", "i" * 200])),
    ("type", lambda r: r.choice([0, 5, 99, -1, "clicked", ""])),
    ("event_time_ms", lambda r: r.choice([r.randrange(1, 946_684_800_000), NOW_MS + r.randrange(86_400_001, 10**12)])),
    ("position", lambda r: r.choice([-1, -100, 10_001])),
    ("user_id", lambda r: "u" * r.randrange(257, 400)),
    ("request_id", lambda r: "r" * r.randrange(129, 200)),
    ("event_id", lambda r: r.choice(["e\x7f", "e" * 129])),
]


def test_1000_random_malformed_events_are_rejected_and_nothing_is_stored(store) -> None:  # noqa: F811
    """Each malformed event, hidden at a random place in a batch of good ones: the batch is rejected
    naming it, and the store stays empty (the ingress's path: validate the whole batch, then write)."""
    rng = random.Random(24)
    writer = StoreWriter(store, CFG)
    for n in range(1000):
        field, bad = MALFORMED[n % len(MALFORMED)]
        events = [
            good(item_id=f"sku{k}", user_id=f"user{k}", event_id=f"ev{n}-{k}") for k in range(rng.randrange(1, 20))
        ]
        at = rng.randrange(len(events) + 1)
        events.insert(at, good(**{field: bad(rng)}))
        with pytest.raises(InvalidEvent) as err:
            writer.write(parse_events(events, CFG, NOW_MS))
        assert (err.value.index, err.value.field) == (at, field), (n, field)
    client = redis.Redis.from_url(store)
    assert client.dbsize() == 0
    writer.write(parse_events([good()], CFG, NOW_MS))  # and the same path does store a good batch
    assert client.hget("sr:stats", "events") == b"1"
