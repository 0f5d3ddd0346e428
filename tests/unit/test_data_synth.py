"""Synthetic generator: determinism, schema, structure; streaming writer; splits."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from shoprank.data import synth
from shoprank.data.loaders import load
from shoprank.data.schemas import SCHEMAS, SEASONS
from shoprank.data.splits import split_by_query, split_by_time
from shoprank.data.validate import check_schema
from shoprank.errors import DataError

N = 3000


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    return synth.generate(N, seed=7)


def test_schema_and_sizes(frames: dict[str, pl.DataFrame]) -> None:
    assert set(frames) == set(SCHEMAS)
    for kind, df in frames.items():
        check_schema(df, kind)
        assert df.height > 0, kind
    cat = frames["catalogue"]
    assert cat.height == N and cat["item_id"].n_unique() == N
    assert cat["title"].str.strip_chars().str.len_chars().min() > 0
    assert set(cat["season"].unique().to_list()) == set(SEASONS)
    assert (cat["price"] > 0).all()
    assert cat["category_path"].str.split(" > ").list.len().eq(3).all()
    assert cat["category_path"].str.split(" > ").list.first().n_unique() == len(synth.TAXONOMY)
    assert cat["rating"].drop_nulls().is_between(1, 5).all()
    json.loads(cat["attributes"][0])


def test_same_seed_identical_different_seed_differs(frames: dict[str, pl.DataFrame]) -> None:
    again = synth.generate(N, seed=7)
    other = synth.generate(N, seed=8)
    for kind in SCHEMAS:
        assert frames[kind].equals(again[kind]), kind
        assert not frames[kind].equals(other[kind]), kind


def test_queries_judgements_clicks_structure(frames: dict[str, pl.DataFrame]) -> None:
    q, j, ev = frames["queries"], frames["judgements"], frames["events"]
    assert q["query_id"].n_unique() == q.height == q["text"].n_unique()
    assert q["intent"].null_count() == 0 and q["intent"].str.contains(" > ").all()
    assert set(j["label"].unique().to_list()) == {0.0, 1.0, 2.0, 3.0}
    assert set(j["item_id"].unique().to_list()) <= set(frames["catalogue"]["item_id"].to_list())
    assert set(ev["event_type"].unique().to_list()) == {"impression", "click", "purchase"}
    clicks = ev.filter(pl.col("event_type") == "click").group_by("position").len().sort("position")
    by_pos = dict(clicks.iter_rows())
    assert by_pos[1] > 2 * by_pos[5] > 0  # position bias
    # Clicked items are more relevant than merely shown ones.
    lab = j.select("query", "item_id", "label")
    ctr = ev.join(lab, on=["query", "item_id"], how="inner").group_by("event_type").agg(pl.col("label").mean())
    means = dict(ctr.iter_rows())
    assert means["click"] > means["impression"]


def test_transactions_follow_seasons(frames: dict[str, pl.DataFrame]) -> None:
    tx = frames["transactions"].join(frames["catalogue"].select("item_id", "season"), on="item_id")
    by = tx.group_by("season", pl.col("timestamp").dt.month().alias("m")).len()

    def share(season: str, months: list[int]) -> float:
        s = by.filter(pl.col("season") == season)
        return s.filter(pl.col("m").is_in(months))["len"].sum() / s["len"].sum()

    assert share("winter", [12, 1, 2]) > 0.5
    assert share("summer", [6, 7, 8]) > 0.5
    assert (frames["transactions"]["quantity"] < 0).any()  # returns
    assert frames["transactions"]["customer_hash"].null_count() > 0


def test_write_dataset_streams_and_reloads(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    manifest = synth.write_dataset(out, n_items=1500, seed=1, progress=False)
    assert manifest["rows"]["catalogue"] == 1500
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{k}.parquet" for k in SCHEMAS] + ["manifest.json"])
    r = load(out, "canonical")
    assert r.quarantine.height == 0
    mem = synth.generate(1500, seed=1)
    for kind in SCHEMAS:
        assert r[kind].equals(mem[kind]), kind


def test_chunked_catalogue_is_deterministic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(synth, "CHUNK", 400)
    a = synth.write_dataset(tmp_path / "a", n_items=1000, seed=2, progress=False)
    b = synth.write_dataset(tmp_path / "b", n_items=1000, seed=2, progress=False)
    assert a["rows"] == b["rows"]
    ca = pl.read_parquet(tmp_path / "a" / "catalogue.parquet")
    assert ca.height == 1000 and ca["item_id"].is_unique().all()
    assert ca.equals(pl.read_parquet(tmp_path / "b" / "catalogue.parquet"))


def test_split_by_query_no_overlap(frames: dict[str, pl.DataFrame]) -> None:
    j = frames["judgements"]
    parts = split_by_query(j, (0.8, 0.1, 0.1), seed=0)
    assert set(parts) == {"train", "valid", "test"}
    assert sum(p.height for p in parts.values()) == j.height
    ids = {k: set(p["query_id"].to_list()) for k, p in parts.items()}
    assert not ids["train"] & ids["valid"] and not ids["train"] & ids["test"] and not ids["valid"] & ids["test"]
    n_q = j["query_id"].n_unique()
    assert 0.7 * n_q < len(ids["train"]) < 0.9 * n_q
    again = split_by_query(j, (0.8, 0.1, 0.1), seed=0)
    assert all(again[k].equals(parts[k]) for k in parts)
    with pytest.raises(DataError):
        split_by_query(j, (0.5, 0.2))
    with pytest.raises(DataError):
        split_by_query(j, column="nope")


def test_split_by_time(frames: dict[str, pl.DataFrame]) -> None:
    ev = frames["events"]
    parts = split_by_time(ev, "timestamp", (0.8, 0.1, 0.1))
    assert sum(p.height for p in parts.values()) == ev.height
    assert parts["train"]["timestamp"].max() < parts["valid"]["timestamp"].min()
    assert parts["valid"]["timestamp"].max() < parts["test"]["timestamp"].min()
    assert abs(parts["train"].height / ev.height - 0.8) < 0.02
