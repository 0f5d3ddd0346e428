"""CampaignScorer without Ray: zero-shot with the pretrained (tiny) encoder, trained heads with a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from shoprank.campaign.scoring import MONTH_COLUMNS, SCORE_COLUMNS, CampaignScorer, segment_values
from shoprank.campaign.source import read_shard
from shoprank.campaign.spec import parse_spec
from shoprank.model import ModelConfig, MultiTaskModel, save_checkpoint

from tests.campaign_data import synthetic_catalogue

SPEC = {
    "name": "t",
    "months": [12, 1, 2],
    "themes": ["warm winter clothing", "christmas gifts for kids"],
    "segments": {"by": "category", "level": 2},
}


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    d = tmp_path_factory.mktemp("cat")
    synthetic_catalogue(40).write_parquet(d / "c.parquet")
    return read_shard(str(d / "c.parquet"), "parquet", 0, 0, 40, {"price_max": 100}, str(d / "q"))


def _check(out, n: int) -> pl.DataFrame:  # noqa: ANN001
    df = pl.from_arrow(out)
    assert df.height == n
    ok = df.filter(pl.col("_status") == "ok")
    assert ok.height > 0 and df.filter(pl.col("_status") == "filtered").height > 0
    for c in SCORE_COLUMNS:
        v = ok.get_column(c).to_numpy()
        assert np.isfinite(v).all() and (v >= 0).all() and (v <= 1).all(), c
    months = ok.select(MONTH_COLUMNS).to_numpy()
    assert np.isfinite(months).all()
    assert df.filter(pl.col("_status") != "ok").get_column("score").is_null().all()
    return ok


def test_zero_shot_scores(shard) -> None:  # noqa: ANN001
    scorer = CampaignScorer(parse_spec(SPEC).model_dump(mode="json"), encoder="tiny", inner_batch_size=16)
    assert scorer.zero_shot == {"theme_relevance", "season_fit", "demand", "click"}
    ok = _check(scorer(shard), 40)
    # zero-shot demand is a seasonal prior: each item's monthly shares sum to 1
    assert np.allclose(ok.select(MONTH_COLUMNS).to_numpy().sum(1), 1.0, atol=1e-4)
    assert set(ok.get_column("segment")) <= {"Apparel > Outerwear", "Apparel > Summer", "Home > Gifts"}
    # scoring is independent of how rows are batched (resume relies on it)
    again = pl.from_arrow(scorer(shard.slice(0, 20))).vstack(pl.from_arrow(scorer(shard.slice(20))))
    assert again.equals(pl.from_arrow(scorer(shard)))


def test_trained_heads_from_checkpoint(shard, tmp_path: Path) -> None:  # noqa: ANN001
    labels = {"season": ["spring", "summer", "fall", "winter", "all"], "intent": ["coats", "gifts"]}
    model = MultiTaskModel(ModelConfig(encoder="tiny"), labels)
    save_checkpoint(model, tmp_path / "ck", trained_tasks=["relevance", "click", "season", "demand", "intent"])
    spec = {**SPEC, "segments": {"by": "intent"}}
    scorer = CampaignScorer(parse_spec(spec).model_dump(mode="json"), checkpoint=str(tmp_path / "ck"))
    assert scorer.zero_shot == set()
    ok = _check(scorer(shard), 40)
    assert set(ok.get_column("segment")) <= {"coats", "gifts"}


def test_intent_segments_need_values_without_trained_head() -> None:
    spec = parse_spec({**SPEC, "segments": {"by": "intent"}}).model_dump(mode="json")
    with pytest.raises(ValueError, match="segments.values"):
        CampaignScorer(spec, encoder="tiny")


def test_segment_kinds() -> None:
    import pyarrow as pa

    t = pa.table(
        {
            "category_path": ["A > B > C", None],
            "season": ["Winter", None],
            "attributes": ['{"locale": "de_DE"}', "{}"],
        }
    )
    assert segment_values(t, parse_spec({**SPEC, "segments": {"by": "category"}})) == ["A", "unknown"]
    assert segment_values(t, parse_spec({**SPEC, "segments": {"by": "season"}})) == ["winter", "unknown"]
    assert segment_values(t, parse_spec({**SPEC, "segments": {"by": "locale"}})) == ["de_DE", "unknown"]
    assert segment_values(t, parse_spec({k: v for k, v in SPEC.items() if k != "segments"})) == ["all", "all"]
