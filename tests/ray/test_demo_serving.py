"""The serving stage of ``shoprank demo`` (tiny encoder, small catalogue): index, serve, search over gRPC,
a click fed back and stored, and the served-results log read back as training events."""

from __future__ import annotations

from pathlib import Path

from tests.serving_helpers import small_catalogue


def test_demo_serving_searches_feeds_back_and_logs(ray_local, tmp_path: Path) -> None:  # noqa: ARG001
    from shoprank.serve_app.demo import run_demo_serving

    small_catalogue().write_parquet(tmp_path / "catalogue.parquet")
    queries = [("snow boots", {}), ("garden hose", {"month": 6})]
    summary = run_demo_serving(tmp_path, tmp_path / "out", encoder="tiny", k=5, queries=queries)
    assert [q["query"] for q in summary["queries"]] == ["snow boots", "garden hose"]
    assert all(len(q["top"]) == 5 for q in summary["queries"])
    assert summary["feedback_accepted"] == 1
    # every shown item of both searches, and the click joined to the search that showed it
    assert summary["served_log"] == {"impression": 10, "click": 1}
