"""deployments/grafana/dashboard.json charts exactly the app's custom metrics (shoprank.serve_app.metrics)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shoprank.serve_app.metrics import DEFINITIONS, SERIES

DASHBOARD = Path(__file__).resolve().parents[2] / "deployments" / "grafana" / "dashboard.json"
SERIES_RE = re.compile(r"\bray_shoprank_[a-z0-9_]+")
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


def _exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def _charted() -> set[str]:
    """The metric series the panels query (a histogram's _bucket/_sum/_count named by its series)."""
    histograms = {SERIES[n] for n, d in DEFINITIONS.items() if d[0] == "histogram"}
    out = set()
    for expr in _exprs():
        for name in SERIES_RE.findall(expr):
            base = next((name[: -len(s)] for s in HISTOGRAM_PARTS if name.endswith(s)), name)
            out.add(base if base in histograms else name)
    return out


def test_every_metric_is_charted_and_every_charted_series_is_a_metric() -> None:
    assert _charted() == set(SERIES.values())


def test_series_names_follow_rays_export() -> None:
    assert set(SERIES) == set(DEFINITIONS)
    for name, (kind, *_rest) in DEFINITIONS.items():
        assert SERIES[name] == (f"ray_{name}_total" if kind == "counter" else f"ray_{name}")


def test_panels_are_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "application"}
    for p in dash["panels"]:
        assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:  # every query is scoped to the chosen Serve application(s)
            assert 'application=~"$application"' in t["expr"], (p["title"], t["expr"])
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
        hist = [n for n in SERIES_RE.findall(" ".join(t["expr"] for t in p["targets"])) if n.endswith("_bucket")]
        assert all("histogram_quantile" in t["expr"] for t in p["targets"]) or not hist, p["title"]
