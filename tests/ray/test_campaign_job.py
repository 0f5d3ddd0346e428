"""Campaign jobs on a real local Ray: synthetic and fashion catalogues, kill and resume, the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl
import pytest
from shoprank.campaign import parse_spec, run_campaign
from shoprank.campaign.ranking import RANKED_COLUMNS

from tests.campaign_data import fashion_catalogue, synthetic_catalogue

THEMES = ["warm winter clothing", "christmas gifts for kids"]
RESULT_FILES = ("summary.json", "report.md", "plots/score_distributions.png", "plots/demand_by_month.png")


def _spec(out: Path, **kw):  # noqa: ANN202
    data = {"name": "t", "months": [12, 1, 2], "themes": THEMES, "segments": {"by": "category"}, "top_n": 7}
    return parse_spec({**data, **kw, "output": str(out)})


def _result_bytes(out: Path) -> dict[str, bytes]:
    files = sorted((out / "ranked").rglob("*.parquet")) + sorted((out / "_work" / "shards").iterdir())
    files += [out / f for f in RESULT_FILES] + sorted((out / "quarantine").glob("*.parquet"))
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 synthetic canonical rows plus 3 malformed ones, as CSV."""
    d = tmp_path_factory.mktemp("catalogue")
    df = synthetic_catalogue(200).with_columns(pl.all().cast(pl.Utf8))
    bad = pl.DataFrame(
        {
            "item_id": ["BAD1", "BAD2", None],
            "title": ["price is text", "", "no id"],
            "price": ["cheap", "3.0", "4.0"],
        }
    )
    pl.concat([df.slice(0, 50), bad, df.slice(50)], how="diagonal").write_csv(d / "catalogue.csv")
    return d / "catalogue.csv"


@pytest.fixture(scope="module")
def full_run(ray_local: None, catalogue: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    out = tmp_path_factory.mktemp("full") / "out"
    spec = _spec(out, filters={"price_max": 120})
    result = run_campaign(spec, catalogue, encoder="tiny", shard_size=40, num_actors=2, progress=False)
    return out, result


def test_synthetic_campaign(full_run) -> None:  # noqa: ANN001
    out, result = full_run
    assert result.complete and result.rows == 203 and result.shards_total == 6
    assert result.quarantined == 3 and result.filtered > 0
    assert result.scored + result.filtered + result.quarantined == 203
    assert result.zero_shot == ["click", "demand", "season_fit", "theme_relevance"]
    ranked = pl.read_parquet(out / "ranked" / "**" / "*.parquet", hive_partitioning=True)
    assert list(ranked.columns) == list(RANKED_COLUMNS)
    assert set(ranked.get_column("segment")) == {"Apparel", "Home"}
    for (_seg,), part in ranked.partition_by("segment", as_dict=True).items():
        assert part.get_column("rank").to_list() == list(range(1, 8))
        scores = part.get_column("score").to_list()
        assert scores == sorted(scores, reverse=True)
    assert ranked.get_column("item_id").str.starts_with("SKU").all()
    assert (ranked.get_column("price") <= 120).all()
    q = pl.read_parquet(out / "quarantine" / "*.parquet")
    assert sorted(q.get_column("_reason").to_list()) == ["bad price", "missing item_id", "missing title"]
    report = (out / "report.md").read_text()
    assert "zero-shot scores" in report and "theme_relevance" in report and "| 203 |" in report
    assert "bad price" in report
    for f in RESULT_FILES:
        assert (out / f).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quarantine_reasons"] == {"bad price": 1, "missing item_id": 1, "missing title": 1}


def test_kill_and_resume_is_byte_identical(full_run, catalogue: Path, tmp_path: Path) -> None:  # noqa: ANN001
    ref_out, _ = full_run
    out = tmp_path / "out"
    spec = _spec(out, filters={"price_max": 120})
    scored: list[int] = []

    def kill_after_two(k: int) -> bool:  # the run stops as a killed job would, after two committed shards
        scored.append(k)
        return len(scored) >= 2

    killed = run_campaign(spec, catalogue, encoder="tiny", shard_size=40, num_actors=2, on_shard=kill_after_two,
                          progress=False)  # fmt: skip
    assert not killed.complete and killed.shards_computed == 2 and not (out / "ranked").exists()
    done = sorted(p.name for p in (out / "_work" / "shards").glob("stats-*.json"))
    assert len(done) == 2
    resumed = run_campaign(spec, catalogue, encoder="tiny", shard_size=40, num_actors=2, progress=False)
    assert resumed.complete and resumed.shards_skipped == 2 and resumed.shards_computed == 4
    assert _result_bytes(out) == _result_bytes(ref_out)
    # a second rerun is idempotent: nothing to score, same bytes
    again = run_campaign(spec, catalogue, encoder="tiny", shard_size=40, num_actors=1, progress=False)
    assert again.shards_computed == 0 and again.shards_skipped == 6
    assert _result_bytes(out) == _result_bytes(ref_out)


@pytest.mark.shared_data
def test_fashion_winter_campaign_ranks_winter_first(ray_local: None, shared_data: Path, tmp_path: Path) -> None:
    """Real MiniLM, real Myntra season labels: cold-season collections rank above summer ones."""
    styles = shared_data / "fashion" / "styles.csv"
    if not styles.exists():
        pytest.skip(f"needs {styles}")
    df = fashion_catalogue(styles, 240)
    df.write_parquet(tmp_path / "fashion.parquet")
    out = tmp_path / "out"
    spec = parse_spec({"name": "fashion-winter", "months": [12, 1, 2], "themes": ["warm winter clothing"],
                       "top_n": 1000, "output": str(out)})  # fmt: skip
    result = run_campaign(spec, tmp_path / "fashion.parquet", shard_size=120, num_actors=1, progress=False)
    assert result.complete and result.scored == df.height
    ranked = pl.read_parquet(out / "ranked" / "**" / "*.parquet").join(df.select("item_id", "season"), on="item_id")
    mean_rank = dict(ranked.group_by("season").agg(pl.col("rank").mean()).iter_rows())
    assert mean_rank["cold"] < mean_rank["summer"] - 0.1 * df.height, mean_rank
    top = ranked.sort("rank").head(df.height // 4)
    cold_share_top = (top.get_column("season") == "cold").mean()
    cold_share_all = (df.get_column("season") == "cold").mean()
    assert cold_share_top > cold_share_all, (cold_share_top, cold_share_all)


def test_price_filter_on_catalogue_without_prices_fails_up_front(ray_local: None, tmp_path: Path) -> None:
    from shoprank.errors import ConfigError

    no_prices = synthetic_catalogue(30).drop("price")
    no_prices.write_parquet(tmp_path / "no_prices.parquet")
    spec = _spec(tmp_path / "out", filters={"price_max": 100})
    with pytest.raises(ConfigError, match=r"filters\.price_max: .* has no prices"):
        run_campaign(spec, tmp_path / "no_prices.parquet", encoder="tiny", shard_size=10, num_actors=1, progress=False)
    assert not (tmp_path / "out" / "ranked").exists() and not (tmp_path / "out" / "_work" / "shards").exists()
    # The same catalogue without the price filter scores every row.
    result = run_campaign(_spec(tmp_path / "out"), tmp_path / "no_prices.parquet", encoder="tiny", shard_size=10,
                          num_actors=1, progress=False)  # fmt: skip
    assert result.complete and result.scored == 30 and result.filtered == 0


def test_cli_run(ray_local: None, catalogue: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shoprank.cli import campaign as cli

    parser = argparse.ArgumentParser(prog="shoprank")
    cli.register(parser.add_subparsers(dest="command"))
    spec = tmp_path / "c.yaml"
    spec.write_text(f"name: cli\nseason: winter\nthemes: [gifts]\ntop_n: 3\noutput: {tmp_path / 'o'}\n")
    args = parser.parse_args(
        ["campaign", "run", "--campaign", str(spec), "--catalogue", str(catalogue), "--format", "csv",
         "--encoder", "tiny", "--shard-size", "100", "--actors", "1", "--quiet"]
    )  # fmt: skip
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["complete"] and summary["quarantined"] == 3 and summary["segments"] == 1
    ranked = pl.read_parquet(tmp_path / "o" / "ranked" / "segment=all" / "part-0.parquet")
    assert ranked.get_column("rank").to_list() == [1, 2, 3]


def test_demo_campaign_on_synth(ray_local: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shoprank.campaign.demo import run_demo_campaign
    from shoprank.data.synth import generate

    generate(240, seed=1)["catalogue"].write_parquet(tmp_path / "catalogue.parquet")
    report = run_demo_campaign(tmp_path / "catalogue.parquet", tmp_path / "demo", encoder="tiny", shard_size=120,
                               num_actors=1, progress=False)  # fmt: skip
    assert report == tmp_path / "demo" / "report.md" and report.exists()
    printed = capsys.readouterr().out
    assert "report:" in printed and "zero-shot scores: click, demand, season_fit, theme_relevance" in printed
    ranked = pl.read_parquet(tmp_path / "demo" / "ranked" / "**" / "*.parquet", hive_partitioning=True)
    assert ranked.height > 0 and ranked.get_column("rank").min() == 1
