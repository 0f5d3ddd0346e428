"""``shoprank replay`` against a real server equals ``shoprank eval --clicks``, list for list.

A Best Buy-format click log (tests/unit/test_click_features.py's synthetic one) over a 30-sku
catalogue and a tiny checkpoint with a click head (random weights, marked trained: the ranking head
reads the month). ``shoprank eval --clicks --write-blend`` scores the log's test period and writes the
fitted blend into the checkpoint; the history (eval's own split) goes into a real store with
``events load``; the checkpoint and an index of the catalogue are served by Ray Serve with the store;
then the test period is replayed over real gRPC: Search per click in time order, each click fed back.
Every served top 5 must be eval's list for the same click, and the CLI's MAP@5 eval's MAP@5, exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest
import redis
import torch
from shoprank.data.sources.bestbuy import load_bestbuy_clicks, write_bestbuy_clicks
from shoprank.eval.runner import catalogue_items, click_log_split, evaluate_clicks
from shoprank.model import ModelConfig, MultiTaskModel, load_model, save_checkpoint
from shoprank.model.checkpoint import expected_model_version
from shoprank.serving.client import SearchClient
from shoprank.serving.replay import read_clicks, replay
from shoprank.store.load import load_events
from shoprank.store.server import LocalStore
from shoprank.tasks.config import SplitConfig

from tests.serving_helpers import TEST_REPLICA_CPUS, index_with_model
from tests.unit.test_click_features import _write_csv, synthetic_log
from tests.unit.test_served_clicks import bestbuy_catalogue

APP = "shoprank"


@pytest.fixture(scope="module")
def world(ray_local, tmp_path_factory):
    from shoprank.serve_app import server

    tmp = tmp_path_factory.mktemp("replay")
    log_csv = _write_csv(tmp / "clicks.csv", synthetic_log(n=1200, seed=3))
    events = load_bestbuy_clicks(log_csv, raw_users=True).frames["events"]
    cat = bestbuy_catalogue(events)
    cat.write_parquet(tmp / "catalogue.parquet")
    torch.manual_seed(0)
    model = MultiTaskModel(ModelConfig(encoder="tiny", tasks=["click"]), {})
    model.trained_tasks = {"click"}
    ck = save_checkpoint(model, tmp / "ck")
    evaluated = evaluate_clicks(ck, log_csv, tmp / "catalogue.parquet", write_blend=True, keep_lists=True)
    assert evaluated["system"] == "learned_blend" and (ck / "click_blend.json").is_file()
    # eval's own split of the log (the checkpoint has no train config: the default fractions)
    _, history, test = click_log_split(events, catalogue_items(cat), SplitConfig())
    order = test.with_row_index("__row").sort("timestamp", maintain_order=True)["__row"].to_list()
    write_bestbuy_clicks(history, tmp / "history.csv")
    write_bestbuy_clicks(test[order], tmp / "test.csv")
    loaded, _ = load_model(ck)
    index = index_with_model(loaded, cat, tmp / "index", expected_model_version(ck))
    store = LocalStore(tmp / "store").start()
    port = server.start_serve(reuse_running=True)  # the session's Serve
    server.deploy(
        {"index_dir": str(index), "checkpoint": str(ck), "store_url": store.url,
         "serving": {"num_candidates": 100, "store_timeout_s": 2.0, "request_timeout_s": 120}, **TEST_REPLICA_CPUS},
        name=APP,
    )  # fmt: skip
    yield {"tmp": tmp, "port": port, "store": store, "eval": evaluated, "order": order, "n": test.height}
    from ray import serve

    serve.delete(APP)
    store.stop()


def reload_history(world) -> None:
    redis.Redis.from_url(world["store"].url).flushall()
    load_events(world["tmp"] / "history.csv", "bestbuy-clicks", world["store"].url)


def test_replay_serves_evals_lists_exactly(world) -> None:
    reload_history(world)
    rows, counts = read_clicks(world["tmp"] / "test.csv")
    assert counts["kept"] == len(rows) == world["n"] and counts["quarantined"] == 0
    with SearchClient(f"localhost:{world['port']}", timeout=60) as client:
        report = replay(client, rows, k=5)
        assert not report.errors and not any(report.degraded_at)
        assert report.feedback_accepted == len(rows) and report.feedback_duplicates == 0
        wanted = [world["eval"]["lists"][r] for r in world["order"]]
        assert report.lists == wanted
        assert report.to_dict()["map@5"] == world["eval"]["map@5"]
        assert report.signals["query_clicks"] > 0 and report.signals["user_history"] > 0
        # the same clicks again carry the same event ids: acknowledged, not counted twice
        again = replay(client, rows[:10], k=5)
        assert again.feedback_duplicates == 10 and again.feedback_accepted == 0


def test_replay_cli_prints_one_json_line_with_evals_map(world) -> None:
    reload_history(world)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "shoprank", "replay", "--clicks", str(world["tmp"] / "test.csv"),
         "--target", f"localhost:{world['port']}", "--timeout", "60", "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    got = json.loads(lines[0])
    assert got["map@5"] == world["eval"]["map@5"] and got["requests"] == world["n"]
    assert got["errors"] == {} and got["feedback"]["accepted"] == world["n"]
    assert 0 < got["latency_ms"]["p50"] <= got["latency_ms"]["p99"]
    assert 0 < got["recall@5"] <= 1 and got["log"]["kept"] == world["n"]


def test_replay_of_a_missing_log_is_one_line_and_exit_2(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shoprank", "replay", "--clicks", str(tmp_path / "nope.csv"), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "nope.csv" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_write_bestbuy_clicks_loads_back_the_same_rows(tmp_path) -> None:
    events = load_bestbuy_clicks(_write_csv(tmp_path / "log.csv", synthetic_log(n=200, seed=5)), raw_users=True)
    ev = events.frames["events"]
    back = load_bestbuy_clicks(write_bestbuy_clicks(ev, tmp_path / "copy.csv"), raw_users=True).frames["events"]
    cols = ["user_id", "user_hash", "query", "item_id", "timestamp"]
    assert back.select(cols).equals(ev.select(cols)) and pl.Series(ev["user_id"]).null_count() > 0
