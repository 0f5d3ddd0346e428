"""Campaign specs: the shipped examples load; bad specs are rejected with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest
from shoprank.campaign.spec import load_spec, parse_spec
from shoprank.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
GOOD = {"name": "w", "months": [12, 1, 2], "themes": ["warm winter clothing"]}


def test_shipped_specs_load() -> None:
    winter = load_spec(REPO / "campaigns" / "winter-2026.yaml")
    assert winter.window == [12, 1, 2] and winter.top_n == 200 and winter.segments.by == "category"
    assert winter.filters.price_max == 100 and winter.blend.normalised()["theme"] == pytest.approx(0.5)
    fashion = load_spec(REPO / "campaigns" / "winter-fashion.yaml")
    assert fashion.window == winter.window and fashion.themes == winter.themes and fashion.filters.price_max is None
    demo = load_spec(REPO / "campaigns" / "demo.yaml")
    assert demo.window == [12, 1, 2]  # season: winter
    assert "hot chocolate" in demo.theme_texts()


def test_defaults_and_season_weights() -> None:
    spec = parse_spec({"name": "x", "months": [11, 12, 1], "themes": ["gifts"]})
    assert spec.season_weights()["winter"] == pytest.approx(2 / 3)
    assert spec.season_weights()["fall"] == pytest.approx(1 / 3)
    assert spec.segments is None and spec.top_n == 100


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"months": [12, 13]}, "months"),
        ({"months": []}, "months"),
        ({"months": None}, "months"),  # neither months nor season
        ({"season": "winter"}, "months"),  # both months and season
        ({"season": "monsoon", "months": None}, "season"),
        ({"themes": []}, "themes"),
        ({"themes": ["ok", " "]}, "themes"),
        ({"name": "bad name!"}, "name"),
        ({"name": None}, "name"),
        ({"blend": {"theme": -1}}, "blend.theme"),
        ({"blend": {"theme": 1, "colour": 1}}, "blend.colour"),
        ({"blend": {"theme": 0, "season": 0, "demand": 0, "click": 0}}, "blend"),
        ({"segments": {"by": "brand"}}, "segments.by"),
        ({"segments": {"by": "column"}}, "segments"),
        ({"filters": {"price_min": 50, "price_max": 10}}, "filters"),
        ({"filters": {"price_max": -5}}, "filters.price_max"),
        ({"filters": {"in_stok": True}}, "filters.in_stok"),
        ({"top_n": 0}, "top_n"),
        ({"top_n": "many"}, "top_n"),
        ({"output": ""}, "output"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_spec_names_field(change: dict, field: str) -> None:
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ConfigError) as e:
        parse_spec(data, "spec.yaml")
    assert f"{field}:" in str(e.value), str(e.value)


def test_bad_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_spec(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_spec(tmp_path / "missing.yaml")


def test_demo_spec_matches_yaml() -> None:
    from shoprank.campaign.demo import DEMO_SPEC

    assert parse_spec(DEMO_SPEC) == load_spec(REPO / "campaigns" / "demo.yaml")
