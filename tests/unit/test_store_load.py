"""Bulk history: ``load_events`` is idempotent, counts repeated rows, and stores users only as salted hashes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from shoprank.hashing import hash_id
from shoprank.store.config import StoreConfig
from shoprank.store.events import parse_events
from shoprank.store.load import load_events
from shoprank.store.writer import StoreWriter

from tests.store_fixtures import dump

HEADER = "user,sku,category,query,click_time,query_time\n"
ROWS = [
    ("raw-user-alice", "9854804", "abcat0701002", "gears of war 3", "2011-09-14 12:46:28.66"),
    ("raw-user-bob", "2670133", "abcat0701002", "Call of Duty", "2011-09-15 08:01:02.5"),
    ("raw-user-alice", "2670133", "abcat0701002", "call of duty", "2011-09-16 10:00:00"),
    ("raw-user-carol", "1032361", "pcmcat", "skyrim", "2011-10-01 00:00:00"),
    ("raw-user-carol", "1032361", "pcmcat", "skyrim", "2011-10-01 00:00:00"),  # a genuine repeat: counts twice
    ("raw-user-dave", "", "pcmcat", "skyrim", "2011-10-02 00:00:00"),  # no sku: quarantined by the loader
]
RAW_USERS = {r[0] for r in ROWS}


def write_log(path: Path, rows=ROWS) -> Path:
    path.write_text(HEADER + "".join(f"{u},{s},{c},{q},{t},{t}\n" for u, s, c, q, t in rows))
    return path


def without_stats(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "sr:stats"}


def test_loading_the_same_file_twice_counts_once(store, tmp_path) -> None:  # noqa: F811
    log = write_log(tmp_path / "clicks.csv")
    first = load_events(log, "bestbuy-clicks", store)
    after_first = dump(store)
    second = load_events(log, "bestbuy-clicks", store)
    assert (first.rows_read, first.events, first.accepted, first.duplicates) == (6, 5, 5, 0)
    assert sum(first.skipped.values()) == 1 and next(iter(first.skipped)).startswith("quarantined: ")
    assert (second.accepted, second.duplicates) == (0, 5)
    assert without_stats(dump(store)) == without_stats(after_first)
    d = dump(store)
    assert d["sr:c:all:q:skyrim"] == {"1032361": "2"}  # the repeated row counted twice, once per load
    assert d["sr:c:all:q:callofduty"] == {"2670133": "2"}
    assert d["sr:stats"] == {"events": "5", "duplicates": "5", "type:click": "5"}
    # a longer log that starts with the loaded one adds only its new rows
    longer = write_log(tmp_path / "longer.csv", ROWS + [("raw-user-erin", "1032361", "pcmcat", "skyrim", "2011-10-03")])
    third = load_events(longer, "bestbuy-clicks", store)
    assert (third.accepted, third.duplicates) == (1, 5)
    assert dump(store)["sr:c:all:q:skyrim"] == {"1032361": "3"}


def test_canonical_events_load_with_every_type(store, tmp_path) -> None:  # noqa: F811
    frame = pl.DataFrame(
        {
            "user_hash": ["h1", None, "h2", "h2"],
            "query": ["ipad", "ipad", "ipad case", "ipad"],
            "item_id": ["a", "a", "b", "a"],
            "event_type": ["click", "impression", "purchase", "teleport"],
            "timestamp": ["2011-09-01 10:00:00"] * 4,
            "position": [1, 2, None, None],
        }
    )
    frame.write_parquet(tmp_path / "events.parquet")
    rep = load_events(tmp_path / "events.parquet", "canonical", store)
    assert (rep.events, rep.accepted) == (3, 3)
    assert rep.skipped == {"type: unknown event type 'teleport'": 1}
    d = dump(store)
    assert d["sr:u:h1:any"] == {"a"} and d["sr:n:impression:q:ipad"] == {"a": "1"}
    assert d["sr:n:purchase:q:ipadcase"] == {"b": "1"}
    assert load_events(tmp_path / "events.parquet", "canonical", store).accepted == 0


def test_raw_user_ids_never_reach_the_store(store, tmp_path, monkeypatch) -> None:  # noqa: F811
    """Bulk load and the Feedback path (with its event log): scan every key and value for a raw id."""
    monkeypatch.setenv("SHOPRANK_ID_SALT", "test-salt-24")
    load_events(write_log(tmp_path / "clicks.csv"), "bestbuy-clicks", store)
    live = [{"query": "skyrim", "item_id": "1032361", "type": 2, "user_id": "raw-user-frank", "request_id": "r1"}]
    StoreWriter(store).write(parse_events([SimpleNamespace(**e) for e in live], StoreConfig()))
    text = json.dumps({k: sorted(v) if isinstance(v, set) else v for k, v in dump(store).items()}, default=str)
    for raw in RAW_USERS | {"raw-user-frank"}:
        assert raw not in text
    assert f"sr:u:{hash_id('raw-user-alice', 'test-salt-24')}:any" in text  # keyed by the salted hash
    assert f"sr:u:{hash_id('raw-user-frank', 'test-salt-24')}:any" in text  # live and loaded agree
    assert hash_id("raw-user-alice", "test-salt-24") != hash_id("raw-user-alice", "another-salt")  # salt matters


@pytest.mark.shared_data
def test_the_shared_best_buy_log_loads_idempotently(store, shared_data) -> None:  # noqa: F811
    path = shared_data / "bestbuy" / "clicks.csv"
    if not path.exists():
        pytest.skip(f"{path} missing")
    first = load_events(path, "bestbuy-clicks", store)
    second = load_events(path, "bestbuy-clicks", store)
    assert first.accepted == first.events == 33_892 and second.accepted == 0 and second.duplicates == first.events
    print(f"\nload_events on the Best Buy log: {first.events_per_s:,.0f} events/s ({first.seconds:.1f}s)")
