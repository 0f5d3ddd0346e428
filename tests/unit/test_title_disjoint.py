"""Title-disjoint item splits, the split named on every eval row, attribute dropout, catalogues
without attributes and descriptions in the pair text (issue 23, items 4 and 5). No Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from shoprank.campaign.scoring import CampaignScorer
from shoprank.campaign.source import read_shard
from shoprank.campaign.spec import parse_spec
from shoprank.data.loaders import load
from shoprank.data.schemas import CATALOGUE
from shoprank.data.splits import split_by_title, title_key
from shoprank.eval.task_report import UNSEEN_TITLES, Caches, row, task_rows
from shoprank.eval.tasks import class_logits
from shoprank.model import ModelConfig, MultiTaskModel, save_checkpoint
from shoprank.model.embeddings import EmbeddingCache
from shoprank.model.registry import spec
from shoprank.model.text import DEFAULT_RECIPES, ITEM, MAX_DESCRIPTION_CHARS, PAIR, item_texts, without_attributes
from shoprank.tasks.config import DataConfig
from shoprank.tasks.examples import build_task_data, catalogue_view, split_kind

SEASONS = ("winter", "summer", "fall", "spring")
COLOURS = ("Navy", "Red", "Olive", "Black", "White")


def fashion_like(n_titles: int = 400, copies: int = 3) -> pl.DataFrame:
    """A catalogue where each title occurs ``copies`` times, spelt differently (case, spaces, punctuation)."""
    rows = []
    for t in range(n_titles):
        title = f"Brand{t % 37} Men's Slim-Fit Shirt {t}"
        spellings = [title, title.upper(), title.replace(" ", "  ").replace("-", " ")]
        for c in range(copies):
            colour = COLOURS[(t + c) % len(COLOURS)]
            rows.append({
                "item_id": f"{t}-{c}", "title": spellings[c % len(spellings)], "description": "",
                "category_path": f"Apparel > Topwear > {('Shirts', 'Tshirts', 'Tops')[t % 3]}",
                "attributes": json.dumps({"baseColour": colour, "gender": "Men", "usage": "Casual"}),
                "price": None, "rating": None, "season": SEASONS[t % 4], "in_stock": True, "popularity": 0.0,
            })  # fmt: skip
    return pl.DataFrame(rows, schema=CATALOGUE)


def data_config(item_split: str, dropout: float = 0.0) -> DataConfig:
    return DataConfig.model_validate({
        "sources": {"shop": {"format": "synthetic"}},
        "tasks": {"season": {"sources": ["shop"]}, "category": {"sources": ["shop"]}},
        "split": {"item_split": item_split, "val_fraction": 0.15, "test_fraction": 0.15},
        "item_text": {"attribute_dropout": dropout},
    })  # fmt: skip


def titles_by_split(df: pl.DataFrame, cat: pl.DataFrame) -> dict[str, set[str]]:
    keyed = cat.select(pl.concat_str([pl.lit("shop:"), "item_id"]).alias("item_id"), title_key(pl.col("title")))
    df = df.join(keyed, on="item_id")
    return {s: set(df.filter(pl.col("split") == s)["title"].to_list()) for s in ("train", "val", "test")}


def test_title_split_puts_no_normalised_title_on_two_sides() -> None:
    cat = fashion_like()
    assert cat.select(title_key(pl.col("title"))).n_unique() == 400  # three spellings, one key
    data = build_task_data(data_config("title"), {"shop": {"catalogue": cat}})
    for task in ("season", "category"):
        by = titles_by_split(data.examples[task], cat)
        assert min(len(v) for v in by.values()) > 20
        assert not (by["train"] & by["test"]) and not (by["train"] & by["val"]) and not (by["val"] & by["test"])
        assert split_kind(task, data.split(task, "test")) == "title"
    # the random item split of the same catalogue shares titles across its sides
    random = build_task_data(data_config("item"), {"shop": {"catalogue": cat}})
    by = titles_by_split(random.examples["season"], cat)
    assert len(by["train"] & by["test"]) > 10
    assert split_kind("season", random.split("season", "test")) == "item"
    # the split helper on a plain frame
    parts = split_by_title(cat, seed=1)
    keys = {k: set(v.select(title_key(pl.col("title")))["title"].to_list()) for k, v in parts.items()}
    assert sum(v.height for v in parts.values()) == cat.height
    assert not (keys["train"] & keys["test"]) and not (keys["train"] & keys["valid"])


def test_split_defaults_title_and_old_manifests_read_as_item() -> None:
    cfg = data_config("title")
    bare = {"sources": cfg.model_dump()["sources"], "tasks": {"season": {"sources": ["shop"]}}}
    assert DataConfig.model_validate(bare).split.item_split == "title"  # the honest split by default
    old = cfg.model_dump(mode="json")
    del old["split"]["item_split"]
    assert DataConfig.of(old).split.item_split == "item"  # trained before the title split: by item id
    assert DataConfig.of(cfg.model_dump(mode="json")).split.item_split == "title"


def test_attribute_dropout_changes_training_text_at_its_rate() -> None:
    cat = fashion_like(n_titles=800, copies=2)
    plain = build_task_data(data_config("title"), {"shop": {"catalogue": cat}})
    dropped = build_task_data(data_config("title", 0.3), {"shop": {"catalogue": cat}})
    bare = dict(zip(cat["item_id"].to_list(), item_texts(cat, ITEM, without_attributes(DEFAULT_RECIPES[ITEM])),
                    strict=True))  # fmt: skip
    for task in ("season", "category"):
        a, b = plain.examples[task], dropped.examples[task]
        assert a.select("item_id", "split", "label").equals(b.select("item_id", "split", "label"))
        changed = a["item"] != b["item"]
        train = (a["split"] == "train").to_numpy()
        assert not changed.to_numpy()[~train].any()  # val and test keep the full text
        rate = changed.to_numpy()[train].mean()
        assert 0.25 < rate < 0.35, rate
        for item_id, text in b.filter(changed).select("item_id", "item").iter_rows():
            assert text == bare[item_id.removeprefix("shop:")] and "|" not in text  # the title alone here


@pytest.fixture(scope="module")
def season_model() -> MultiTaskModel:
    model = MultiTaskModel(ModelConfig(encoder="tiny", hidden=16, max_length=16, tasks=["season"]),
                           {"season": list(SEASONS)})  # fmt: skip
    model.trained_tasks = {"season"}
    return model


def test_eval_rows_name_their_split_and_item_views(season_model: MultiTaskModel) -> None:
    cat = fashion_like()
    for item_split in ("item", "title"):
        data = build_task_data(data_config(item_split), {"shop": {"catalogue": cat}})
        data_map = data.label_maps["season"]
        season_model.label_maps["season"] = data_map
        test, train = data.split("season", "test"), data.split("season", "train")
        rows = task_rows(season_model, None, spec("season"), "shop", test, train, Caches(EmbeddingCache(season_model)))
        by_metric = {r["metric"]: r for r in rows}
        assert all(r["split"] for r in rows)
        assert by_metric["accuracy"]["split"] == by_metric["accuracy_titles_only"]["split"] == item_split
        if item_split == "item":
            assert by_metric["accuracy_unseen_titles"]["split"] == UNSEEN_TITLES
        else:
            assert "accuracy_unseen_titles" not in by_metric  # every test title is unseen already
        titles = test.with_columns(pl.col("item").str.split(" | ").list.first())
        want = float(np.mean(class_logits(season_model, "season", titles).argmax(1) == test["label"].to_numpy()))
        assert by_metric["accuracy_titles_only"]["model"] == pytest.approx(want)
    # rows built elsewhere (click ranking in shoprank eval) get their task's split
    assert row("click", "bestbuy", "map@5", model=0.5)["split"] == "time"
    assert row("relevance", "homedepot", "ndcg@10", model=0.5)["split"] == "query"


def test_catalogue_without_attribute_columns_loads_and_scores(season_model: MultiTaskModel, tmp_path: Path) -> None:
    season_model.label_maps["season"] = list(SEASONS)
    path = tmp_path / "bare.csv"
    path.write_text("item_id,title\nA1,Alpine Wool Coat\nA2,Linen Beach Shorts\nA3,Rain Jacket\n")
    cat = load(path, "canonical")["catalogue"]
    assert cat.height == 3 and cat["attributes"].to_list() == ["{}"] * 3
    view = catalogue_view(cat, ITEM)
    assert view["item"].to_list() == ["Alpine Wool Coat", "Linen Beach Shorts", "Rain Jacket"]
    logits = class_logits(season_model, "season", view)
    assert logits.shape == (3, len(SEASONS)) and np.isfinite(logits).all()
    # the campaign job's path scores it too
    ck = save_checkpoint(season_model, tmp_path / "ck", trained_tasks=["season"])
    shard = read_shard(str(path), "csv", 0, 0, 3, {}, str(tmp_path / "q"))
    scorer = CampaignScorer(parse_spec({"name": "t", "months": [12, 1, 2], "themes": ["warm winter coats"]}
                                       ).model_dump(mode="json"), checkpoint=str(ck))  # fmt: skip
    assert [p in SEASONS for p in scorer.season_predictions(shard)] == [True] * 3


def test_description_flows_into_the_pair_text(tmp_path: Path) -> None:
    desc = "Heavy gauge steel angle for framing and decks. " * 8
    path = tmp_path / "relevance.csv"
    pl.DataFrame({
        "id": [1, 2, 3], "product_uid": ["100", "100", "200"],
        "product_title": ["Steel Angle", "Steel Angle", "Shower Head"],
        "product_description": [desc, desc, ""], "search_term": ["angle bracket", "l bracket", "rain shower"],
        "relevance": [3.0, 2.5, 2.0],
    }).write_csv(path)  # fmt: skip
    frames = load(path, "homedepot").frames
    cfg = DataConfig.model_validate({"sources": {"hd": {"format": "homedepot", "path": str(path)}},
                                     "tasks": {"relevance": {"sources": ["hd"]}}})  # fmt: skip
    items = dict(build_task_data(cfg, {"hd": frames}).examples["relevance"].select("item_id", "item").iter_rows())
    assert items["hd:100"] == "Steel Angle | " + desc.strip()[:MAX_DESCRIPTION_CHARS]
    assert items["hd:200"] == "Shower Head"  # the title alone without one
    # a catalogue file with the Home Depot column names
    cat_path = tmp_path / "catalogue.csv"
    cat_path.write_text(f"product_uid,product_title,product_description\n100,Steel Angle,{desc.strip()}\n")
    cat = load(cat_path, "canonical")["catalogue"]
    assert item_texts(cat, PAIR) == ["Steel Angle | " + desc.strip()[:MAX_DESCRIPTION_CHARS]]


def test_eval_markdown_names_each_rows_split(tmp_path: Path) -> None:
    from shoprank.eval.report import write_report

    rows = [row("season", "shop", "accuracy", "title", model=0.8), row("click", "bb", "map@5", model=0.5)]
    md = write_report({"table": rows}, tmp_path)["md"].read_text()
    assert "| task | source | metric | split | model |" in md
    assert "| season | shop | accuracy | title | 0.8000 |" in md and "| click | bb | map@5 | time | 0.5000 |" in md
    assert "- `title`: items whose normalised title no training item has" in md
