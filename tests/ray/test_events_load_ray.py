"""``shoprank events load --ray``: the Ray Data bulk load gives the single-process load's store, ids and all.

Two canonical events parquet files (with repeated identical rows, some across files, and malformed
rows) are loaded by the Ray Data job into a real store; every key and value then equals what the
single-process ``load_events`` writes for the same rows, bad rows are counted by reason, and loading
again either way counts nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import redis
from shoprank.store.load import load_events
from shoprank.store.load_ray import load_events_ray

from tests.store_fixtures import dump

LANDMARK = ""  # the field of a decayed counter hash that holds its landmark (shoprank.store.keys)


def state(url: str) -> dict[str, object]:
    """The store's content, decayed counters as each item's share of their hash: a decayed value
    depends on its hash's landmark (its first write, so on the order of writes), a share does not."""
    out = dump(url)
    for key, value in out.items():
        if isinstance(value, dict) and LANDMARK in value:
            vals = {k: float(v) for k, v in value.items() if k != LANDMARK}
            total = sum(vals.values())
            out[key] = {k: round(v / total, 9) for k, v in vals.items()}
    return out


def events_files(tmp: Path) -> tuple[Path, Path]:
    """Two parquet parts of one log, and the same rows as one file."""
    t0 = datetime(2011, 9, 1)
    rows = []
    for n in range(600):
        rows.append({"user_hash": f"u{n % 17}" if n % 5 else None, "query": f"game {n % 23}", "item_id": f"s{n % 41}",
                     "event_type": "click" if n % 7 else "purchase", "timestamp": str(t0 + timedelta(minutes=n // 3)),
                     "position": n % 5})  # fmt: skip
    rows += rows[100:110]  # identical rows again (across the two parts)
    rows.append({**rows[0], "timestamp": "not a time"})
    rows.append({**rows[1], "item_id": ""})
    df = pl.DataFrame(rows)
    folder = tmp / "parts"
    folder.mkdir()
    df.head(350).write_parquet(folder / "part-0.parquet")
    df.tail(df.height - 350).write_parquet(folder / "part-1.parquet")
    df.write_parquet(tmp / "events.parquet")
    return folder, tmp / "events.parquet"


def test_ray_load_writes_what_the_plain_load_writes(ray_local, store, tmp_path: Path) -> None:  # noqa: ARG001
    folder, whole = events_files(tmp_path)
    ray_report = load_events_ray(folder, store, shards=3, batch_size=50)
    assert ray_report.rows_read == 612 and ray_report.events == 610
    assert ray_report.accepted == 610 and ray_report.duplicates == 0
    assert sum(ray_report.skipped.values()) == 2 and len(ray_report.skipped) == 2  # bad time, empty id
    by_ray = state(store)
    again = load_events_ray(folder, store, shards=5)  # other shard count: the same ids
    assert again.accepted == 0 and again.duplicates == 610
    plain_after_ray = load_events(whole, "canonical", store)
    assert plain_after_ray.accepted == 0 and plain_after_ray.duplicates == 610
    after = state(store)
    stats = {k for k in after if k.endswith(":stats")}
    assert {k: v for k, v in after.items() if k not in stats} == {k: v for k, v in by_ray.items() if k not in stats}
    assert all(int(after[k]["duplicates"]) == 2 * 610 for k in stats)  # the reloads, counted as such
    redis.Redis.from_url(store).flushall()
    plain = load_events(whole, "canonical", store)
    assert plain.accepted == 610
    assert state(store) == by_ray  # every key: counters (decayed ones as shares), sets, ids, stats
