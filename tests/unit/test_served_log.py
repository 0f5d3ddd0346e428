"""The served-results log (shoprank.feedback.served_log) and its training source (format ``served-log``).

Writer: a full buffer drops and counts records and never blocks (the flush held slow on purpose);
part files are atomic and partitioned by date; close writes everything. Join: every shown item is an
impression with its position; actions match by request_id, else the latest earlier search of the same
user and query; feedback on items never shown is quarantined, not joined.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from shoprank.data.loaders import load
from shoprank.data.sources.served_log import NOT_SHOWN, UNREADABLE_FILE
from shoprank.feedback.served_log import FEEDBACK, SEARCHES, ServedLog, partition_dir
from shoprank.store.events import Event


def _us(day: str, hour: int = 12, minute: int = 0) -> int:
    d = datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)
    return int(d.timestamp() * 1e6)


def search(rid: str, t_us: int, items: list[str], user: str | None = "u1", query: str = "snow boots") -> dict:
    return {
        "request_id": rid, "time": t_us, "kind": "search", "user_hash": user, "query": query, "month": 1, "k": 5,
        "model_version": "m1", "index_version": "idx-1", "degraded": False, "degraded_reason": "",
        "signals": ["query_clicks"],
        "items": [{"item_id": i, "position": p, "score": 1.0 / p} for p, i in enumerate(items, 1)],
    }  # fmt: skip


def event(item: str, t_us: int, kind: str = "click", rid: str | None = None, user: str | None = "u1",
          query: str = "snow boots", eid: str | None = None) -> Event:  # fmt: skip
    return Event(query=query, item_id=item, type=kind, time_us=t_us, user_hash=user, request_id=rid, event_id=eid)


def parts(root: Path, stream: str) -> list[Path]:
    return sorted((root / stream).glob("date=*/part-*.parquet"))


class SlowLog(ServedLog):
    """A writer whose file writes wait for ``gate`` (a slow disk), to fill the buffer behind it."""

    def __init__(self, *a, **kw) -> None:
        self.gate = threading.Event()
        self.writing = threading.Event()
        super().__init__(*a, **kw)

    def write_file(self, path: Path, df: pl.DataFrame) -> None:
        self.writing.set()
        assert self.gate.wait(30)
        super().write_file(path, df)


# -- the writer -----------------------------------------------------------------------------
def test_full_buffer_drops_and_counts_without_blocking(tmp_path: Path, caplog) -> None:
    log = SlowLog(tmp_path, max_buffer=10, max_rows=1, flush_s=60, warn_every=5)
    t = _us("2026-03-01")
    assert log.log(SEARCHES, [search("r0", t, ["a"])])
    assert log.writing.wait(10)  # the writer is stuck writing r0; everything else waits in the buffer
    caplog.set_level("WARNING", logger="shoprank.feedback")
    worst = 0.0
    accepted = []
    for i in range(1, 31):
        t0 = time.perf_counter()
        accepted.append(log.log(SEARCHES, [search(f"r{i}", t, ["a"])]))
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 0.05  # never waits for the slow writer
    assert accepted == [True] * 10 + [False] * 20
    s = log.stats()
    assert (s["logged"], s["dropped"], s["buffered"], s["written"]) == (11, 20, 10, 0)
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert 1 <= len(warnings) <= 1 + 20 // 5  # the first drop, then at most once per warn_every drops
    log.gate.set()
    s = log.close()
    assert (s["written"], s["dropped"], s["buffered"], s["lost"]) == (11, 20, 0, 0)
    ids = pl.concat([pl.read_parquet(p) for p in parts(tmp_path, SEARCHES)])["request_id"].to_list()
    assert sorted(ids) == sorted(f"r{i}" for i in range(11))
    assert not log.log(SEARCHES, [search("late", t, ["a"])])  # closed: refused and counted
    assert log.stats()["dropped"] == 21


def test_close_flushes_everything_partitioned_by_date(tmp_path: Path) -> None:
    log = ServedLog(tmp_path, max_rows=1000, flush_s=60, writer_id="w1")
    log.log(SEARCHES, [search("a", _us("2026-03-01"), ["x", "y"]), search("b", _us("2026-03-02"), ["z"])])
    log.log_feedback([event("x", _us("2026-03-01", 13), rid="a")])
    assert parts(tmp_path, SEARCHES) == []  # neither max_rows nor flush_s reached: still buffered
    s = log.close()
    assert (s["written"], s["files"], s["dropped"]) == (3, 3, 0)
    got = [p.relative_to(tmp_path).as_posix() for p in parts(tmp_path, SEARCHES) + parts(tmp_path, FEEDBACK)]
    assert sorted(got) == sorted([
        "searches/date=2026-03-01/part-w1-000002.parquet", "searches/date=2026-03-02/part-w1-000003.parquet",
        "feedback/date=2026-03-01/part-w1-000001.parquet",
    ])  # fmt: skip
    day1 = pl.read_parquet(tmp_path / "searches/date=2026-03-01/part-w1-000002.parquet")
    assert day1["items"].to_list() == [[{"item_id": "x", "position": 1, "score": 1.0},
                                        {"item_id": "y", "position": 2, "score": 0.5}]]  # fmt: skip
    assert day1["time"].dt.replace_time_zone("UTC").dt.timestamp("us").to_list() == [_us("2026-03-01")]
    fb = pl.read_parquet(parts(tmp_path, FEEDBACK)[0])
    assert fb.select("request_id", "item_id", "event_type", "user_hash").row(0) == ("a", "x", "click", "u1")


def test_flush_by_rows_and_time_and_files_are_atomic(tmp_path: Path) -> None:
    log = ServedLog(tmp_path, max_rows=2, flush_s=0.2)
    t = _us("2026-03-01")
    log.log(SEARCHES, [search("a", t, ["x"]), search("b", t, ["x"])])  # max_rows: written without waiting
    log.flush(10)
    assert log.stats()["written"] == 2
    log.log(SEARCHES, [search("c", t, ["x"])])  # one row: written by the timer
    deadline = time.monotonic() + 10
    while log.stats()["written"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.stats()["written"] == 3
    log.close()
    every = [p.name for p in (tmp_path / SEARCHES).rglob("*")]
    assert all(n.startswith("date=") or (n.startswith("part-") and n.endswith(".parquet")) for n in every)
    assert partition_dir(tmp_path, SEARCHES, t) == tmp_path / "searches" / "date=2026-03-01"


def test_unknown_stream_is_an_error(tmp_path: Path) -> None:
    log = ServedLog(tmp_path)
    with pytest.raises(ValueError, match="unknown stream"):
        log.log("clicks", [{}])
    log.close()


# -- the join (format served-log) -------------------------------------------------------------
def write_log(root: Path, searches: list[dict], events: list[Event]) -> None:
    log = ServedLog(root, flush_s=60)
    log.log(SEARCHES, searches)
    log.log_feedback(events)
    assert log.close()["written"] == len(searches) + len(events)


def test_join_positions_request_id_and_fallback(tmp_path: Path) -> None:
    t = _us("2026-03-01", 12)
    write_log(tmp_path, [
        search("s1", t, ["a", "b", "c"]),
        search("s2", t + 60_000_000, ["c", "a"]),  # same user+query a minute later: a at position 2
        search("s3", t, ["a", "d"], user="u2", query="rain coat"),
    ], [
        event("b", t + 5_000_000, rid="s1", eid="e1"),  # by request_id: position 2
        event("b", t + 6_000_000, rid="s1", eid="e1"),  # resent (same event_id): counted once
        event("a", t + 30_000_000, kind="add_to_cart"),  # no request_id: latest earlier search s1 -> position 1
        event("a", t + 90_000_000, kind="purchase", query="Snow  Boots"),  # after s2 -> position 2
        event("d", t + 1_000_000, user="u2", query="rain coat", rid="unknown-id"),  # unknown id: fallback s3
        event("c", t + 1_000_000, kind="impression", rid="s1"),  # the log's own impressions are used instead
    ])  # fmt: skip
    res = load(tmp_path, "served-log")
    ev = res["events"]
    impr = ev.filter(pl.col("event_type") == "impression")
    assert impr.height == 7
    assert sorted(impr.filter(pl.col("query") == "snow boots").select("item_id", "position").rows()) == [
        ("a", 1), ("a", 2), ("b", 2), ("c", 1), ("c", 3),
    ]  # fmt: skip
    acts = ev.filter(pl.col("event_type") != "impression").sort("timestamp")
    assert acts.select("event_type", "item_id", "position", "user_hash", "query").rows() == [
        ("click", "d", 2, "u2", "rain coat"),
        ("click", "b", 2, "u1", "snow boots"),
        ("add_to_cart", "a", 1, "u1", "snow boots"),
        ("purchase", "a", 2, "u1", "snow boots"),
    ]  # fmt: skip
    assert res.quarantine.height == 0
    assert any("counted once" in n for n in res.notes) and any("impression events" in n for n in res.notes)
    assert any("1 by request_id, 3 by user+query" in n for n in res.notes)


def test_feedback_on_unshown_items_is_counted_not_joined(tmp_path: Path) -> None:
    t = _us("2026-03-01", 12)
    write_log(tmp_path, [search("s1", t, ["a", "b"])], [
        event("z", t + 1_000_000, rid="s1"),  # the request did not show z
        event("a", t - 1_000_000),  # before any search of u1 for this query
        event("a", t + 1_000_000, user=None),  # anonymous, no request_id: nothing to match
        event("a", t + 2_000_000, rid="s1"),  # the one good click
    ])  # fmt: skip
    res = load(tmp_path, "served-log")
    acts = res["events"].filter(pl.col("event_type") == "click")
    assert acts.select("item_id", "position").rows() == [("a", 1)]
    assert res.quarantined_by_reason() == {NOT_SHOWN: 3}
    assert sorted(res.quarantine["row"].to_list()) == [1, 2, 3]


def test_bad_files_and_rows_are_reported_good_rows_kept(tmp_path: Path) -> None:
    t = _us("2026-03-01", 12)
    write_log(tmp_path, [search("s1", t, ["a"]), search("", t, ["b"]), search("s1", t, ["c"])], [])
    day = tmp_path / SEARCHES / "date=2026-03-01"
    (day / "part-broken-000001.parquet").write_bytes(b"PAR1 truncated")
    (day / ".part-x.parquet.tmp").write_bytes(b"half a file")  # a write in progress: never read
    res = load(tmp_path, "served-log")
    assert res["events"].select("item_id", "position").rows() == [("a", 1)]
    assert res.quarantined_by_reason() == {UNREADABLE_FILE: 1, "empty id": 1, "duplicate id": 1}
    assert res.rows_read == 3
    with pytest.raises(Exception, match="not a served-results log"):
        load(day, "served-log")


# -- the in-process pipeline logs as the server does ---------------------------------------------
def test_search_pipeline_logs_each_response(tmp_path: Path) -> None:
    from shoprank.hashing import hash_id
    from shoprank.model import load_model
    from shoprank.serving.config import ServingConfig
    from shoprank.serving.pipeline import SearchPipeline
    from shoprank.serving.protos import pb2

    from tests.serving_helpers import index_with_model, small_catalogue, text_of

    cat = small_catalogue(120)
    model, _ = load_model(None, encoder="tiny")
    index = index_with_model(model, cat, tmp_path / "index", "pretrained-tiny")
    cfg = ServingConfig(num_candidates=50, served_log_dir=str(tmp_path / "log"))
    pipe = SearchPipeline(index, encoder="tiny", config=cfg)
    resp = pipe.handle(pb2.SearchRequest(query=text_of(cat, 5), k=4, user_id="pat"), pb2)
    ranked = pipe.handle(pb2.RankRequest(query="boots", item_ids=cat["item_id"][:3].to_list()), pb2)
    assert pipe.served_log is not None and pipe.served_log.close()["written"] == 2
    rows = {r["request_id"]: r for r in pl.read_parquet(parts(tmp_path / "log", SEARCHES)).iter_rows(named=True)}
    assert set(rows) == {resp.request_id, ranked.request_id} and len(resp.request_id) == 32
    row = rows[resp.request_id]
    assert (row["kind"], row["user_hash"], row["query"], row["k"]) == ("search", hash_id("pat"), text_of(cat, 5), 4)
    assert [(i["item_id"], i["position"]) for i in row["items"]] == [(it.item_id, it.rank) for it in resp.items]
    assert rows[ranked.request_id]["kind"] == "rank" and rows[ranked.request_id]["user_hash"] is None
