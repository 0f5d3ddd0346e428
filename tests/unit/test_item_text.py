"""One item text per kind, everywhere (issue 24, item 4): training, eval, the index job, the served
BM25 and campaign scoring read the same text (the checkpoint's recipe) and so embed the same vectors.
The campaign's season accuracy on a checkpoint's test items equals eval's. No Ray: the index job's
per-batch callable (``ItemEmbedder``) and the campaign's (``CampaignScorer``) are called directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from shoprank.batch.embed import ItemEmbedder, embeddings_of
from shoprank.campaign.scoring import CampaignScorer
from shoprank.campaign.source import read_shard
from shoprank.campaign.spec import parse_spec
from shoprank.data.schemas import CATALOGUE
from shoprank.eval.runner import catalogue_items
from shoprank.eval.tasks import task_metrics
from shoprank.model import ModelConfig, MultiTaskModel, load_checkpoint, save_checkpoint
from shoprank.model.registry import REGISTRY
from shoprank.model.text import (
    DEFAULT_RECIPES,
    ITEM,
    MANIFEST_KEY,
    PAIR,
    TextRecipe,
    item_text,
    item_texts,
    recipes_of,
    recipes_to_json,
)
from shoprank.retrieval.artefact import ITEM_COLUMNS, TEXT_COLUMN, load_artefact, write_artefact
from shoprank.serving.items import ItemTable
from shoprank.tasks.config import DataConfig, SplitConfig, TaskConfig
from shoprank.tasks.examples import BUILDERS, build_task_data

DESCRIPTION = "A long navy wool coat, fully lined, with a detachable hood.   " + "Warm and dry. " * 20
ROW = {
    "item_id": "SKU1", "title": " Alpine Wool Coat ", "description": DESCRIPTION,
    "category_path": "Apparel > Outerwear > Coats",
    "attributes": json.dumps({"colour": "Navy", "gender": "Men", "season": "Winter", "articleType": "Coats",
                              "year": 2019, "usage": None}),
    "price": 120.0, "rating": 4.5, "season": "winter", "in_stock": True, "popularity": 10.0,
}  # fmt: skip
# A checkpoint's own recipes (not the defaults), so a path that used its own constants would show.
RECIPES = {
    PAIR: TextRecipe(("title", "category_path", "description"), description_chars=28),
    ITEM: TextRecipe(("title", "description", "attributes"), description_chars=11,
                     exclude_attributes=("season", "articletype", "category", "year"), strip=" |"),
}  # fmt: skip
PAIR_TEXT = "Alpine Wool Coat | Apparel > Outerwear > Coats | A long navy wool coat, fully"
ITEM_TEXT = "Alpine Wool Coat | A long navy | Navy Men"
SPEC = {"name": "t", "months": [12, 1, 2], "themes": ["warm winter coats"]}


def catalogue(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=CATALOGUE)


def shard_of(cat: pl.DataFrame, tmp: Path):  # noqa: ANN201
    """The catalogue as the campaign job reads it (validated, one shard)."""
    cat.write_parquet(tmp / "c.parquet")
    return read_shard(str(tmp / "c.parquet"), "parquet", 0, 0, cat.height, {}, str(tmp / "q"))


def test_registry_declares_each_heads_text_kind() -> None:
    kinds = {name: s.text_kind for name, s in REGISTRY.items()}
    assert kinds == {"intent": None, "retrieval": "pair", "relevance": "pair", "click": "pair",
                     "category": "item", "season": "item", "demand": "pair"}  # fmt: skip


def test_default_recipes_are_todays_texts() -> None:
    """The defaults reproduce the texts training has always used (golden results depend on them)."""
    bare = {**ROW, "item_id": "SKU2", "title": "Sun Hat", "description": None, "category_path": None, "attributes": ""}
    cat = catalogue([ROW, bare, {**ROW, "item_id": "SKU3", "title": "", "attributes": "not json"}])
    desc = DESCRIPTION.strip()[:200]
    assert item_texts(cat, PAIR) == [
        f"Alpine Wool Coat | Apparel > Outerwear > Coats | {desc}", "Sun Hat",
        f"Apparel > Outerwear > Coats | {desc}",
    ]  # fmt: skip
    assert item_texts(cat, ITEM) == [f"Alpine Wool Coat | {desc} | Navy Men 2019", "Sun Hat", desc.strip(" |")]
    assert item_text(" Alpine Wool Coat ", DESCRIPTION, ROW["category_path"]) == item_texts(cat, PAIR)[0]
    # an Arrow table and plain columns give the same texts as the frame
    assert item_texts(cat.to_arrow(), ITEM) == item_texts(cat.to_dict(as_series=False), ITEM) == item_texts(cat, ITEM)
    assert recipes_of(None) == DEFAULT_RECIPES
    assert recipes_of({MANIFEST_KEY: recipes_to_json(RECIPES)}) == RECIPES
    with pytest.raises(ValueError, match="unknown"):
        TextRecipe(("title", "colour"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with trained pair and season heads, saved with RECIPES."""
    model = MultiTaskModel(ModelConfig(encoder="tiny"), {"season": ["winter", "summer", "all"]})
    d = tmp_path_factory.mktemp("ck") / "ck"
    return save_checkpoint(model, d, trained_tasks=["relevance", "click", "season", "demand"], item_text=RECIPES)


def test_one_row_same_text_and_embedding_on_every_path(checkpoint: Path, tmp_path: Path) -> None:
    cat = catalogue([ROW])
    model, manifest = load_checkpoint(checkpoint)
    recipes = recipes_of(manifest)
    assert recipes == RECIPES  # stored with the checkpoint, read back
    # training (and eval, which rebuilds its test rows with the same builders)
    judgements = pl.DataFrame({"query": ["warm coat"], "item_id": ["SKU1"], "label": [3.0]})
    frames = {"catalogue": cat, "judgements": judgements}
    tc, sp = TaskConfig(sources=["s"]), SplitConfig()
    train_pair = BUILDERS["relevance"](frames, tc, sp, 0, recipes)["item"].to_list()
    train_retrieval = BUILDERS["retrieval"](frames, tc, sp, 0, recipes)["item"].to_list()
    train_item = BUILDERS["season"](frames, tc, sp, 0, recipes)["item"].to_list()
    train_category = BUILDERS["category"](frames, tc, sp, 0, recipes)["item"].to_list()
    assert train_pair == train_retrieval == [PAIR_TEXT]
    assert train_item == train_category == [ITEM_TEXT]
    # eval's catalogue items (click ranking, BM25)
    assert catalogue_items(cat, manifest)["item"].to_list() == [PAIR_TEXT]
    # the index job: what its Ray Data callable embeds, and what the artefact keeps
    embedded = ItemEmbedder(str(checkpoint))(cat.to_arrow())
    assert embedded.column("text").to_pylist() == [PAIR_TEXT]
    index_emb = embeddings_of(embedded)
    items = cat.with_columns(pl.Series(TEXT_COLUMN, embedded.column("text").to_pylist()))
    index = write_artefact(tmp_path / "index", items.select(*ITEM_COLUMNS, TEXT_COLUMN), index_emb,
                           model_version="t", extra={MANIFEST_KEY: recipes_to_json(recipes)})  # fmt: skip
    table = ItemTable(load_artefact(index))
    # the served ranker's BM25 reads the stored text
    assert table.clicks.stored and table.clicks.texts() == [PAIR_TEXT]
    # campaign scoring: the pair text for theme/click/demand, the item text for the season head
    scorer = CampaignScorer(parse_spec(SPEC).model_dump(mode="json"), checkpoint=str(checkpoint))
    texts = scorer.kind_texts(shard_of(cat, tmp_path))
    assert texts == {PAIR: [PAIR_TEXT], ITEM: [ITEM_TEXT]}
    embs = scorer.kind_embeddings(texts)
    # identical embeddings per kind
    want_pair, want_item = model.embed([PAIR_TEXT]), model.embed([ITEM_TEXT])
    np.testing.assert_allclose(index_emb, want_pair, atol=1e-6)
    np.testing.assert_allclose(table.embeddings, want_pair, atol=1e-6)
    np.testing.assert_allclose(embs[PAIR], want_pair, atol=1e-6)
    np.testing.assert_allclose(embs[ITEM], want_item, atol=1e-6)
    assert not np.allclose(want_pair, want_item, atol=1e-3)  # two texts, two vectors


def test_older_checkpoint_and_index_fall_back_to_todays_text(checkpoint: Path, tmp_path: Path) -> None:
    ck = tmp_path / "old"
    ck.mkdir()
    for name in ("model.safetensors", "manifest.json"):
        (ck / name).write_bytes((checkpoint / name).read_bytes())
    manifest = json.loads((ck / "manifest.json").read_text())
    del manifest[MANIFEST_KEY]
    (ck / "manifest.json").write_text(json.dumps(manifest))
    _, loaded = load_checkpoint(ck)
    assert loaded[MANIFEST_KEY] == recipes_to_json(DEFAULT_RECIPES)
    # a new checkpoint records the defaults when given nothing
    model = MultiTaskModel(ModelConfig(encoder="tiny"), {})
    fresh = json.loads((save_checkpoint(model, tmp_path / "new") / "manifest.json").read_text())
    assert fresh[MANIFEST_KEY] == recipes_to_json(DEFAULT_RECIPES)
    # an index without the text column: rebuilt from its columns (it keeps no description)
    cat = catalogue([ROW])
    emb = np.ones((1, 8), dtype=np.float32) / np.sqrt(8)
    table = ItemTable(load_artefact(write_artefact(tmp_path / "index", cat, emb, model_version="t")))
    assert TEXT_COLUMN not in table.artefact.items.columns and not table.clicks.stored
    assert table.clicks.texts() == ["Alpine Wool Coat | Apparel > Outerwear > Coats"]


def test_campaign_season_accuracy_equals_evals(tmp_path: Path) -> None:
    """A season head trained on the item text: campaign scoring's predictions on the checkpoint's
    test items are eval's (accuracy within 0.01), and differ from what the pair text gives."""
    import torch
    from shoprank.train.refit import refit_heads

    cfg = DataConfig.model_validate({
        "sources": {"synth": {"format": "synthetic", "n_items": 600, "seed": 0}},
        "tasks": {"season": {"sources": ["synth"]}},
        "split": {"val_fraction": 0.2, "test_fraction": 0.3},
    })  # fmt: skip
    data = build_task_data(cfg)
    model = MultiTaskModel(ModelConfig(encoder="tiny", hidden=32, tasks=["season"]), data.label_maps)
    model.trained_tasks = {"season"}
    refit_heads(model, {"season": data.split("season", "train")}, {"season": data.split("season", "val")},
                steps=300, lr=0.1, log=None)  # fmt: skip
    ck = save_checkpoint(model, tmp_path / "ck", trained_tasks=["season"], item_text=data.recipes)
    loaded, _ = load_checkpoint(ck)
    test = data.split("season", "test")
    eval_acc = task_metrics(loaded, "season", test)["accuracy"]
    labels = data.label_maps["season"]
    truth = dict(zip(test["item_id"].str.replace("^synth:", "").to_list(),
                     [labels[int(i)] for i in test["label"].to_list()], strict=True))  # fmt: skip
    cat = data.frames["synth"]["catalogue"].filter(pl.col("item_id").is_in(list(truth)))
    shard = shard_of(cat, tmp_path)
    ids = shard.column("item_id").to_pylist()
    scorer = CampaignScorer(parse_spec(SPEC).model_dump(mode="json"), checkpoint=str(ck), inner_batch_size=32)
    assert scorer.season_kind == ITEM
    campaign = scorer.season_predictions(shard)
    old = scorer.season_predictions(shard, kind=PAIR)  # what campaign scoring fed the head before
    campaign_acc = float(np.mean([p == truth[i] for p, i in zip(campaign, ids, strict=True)]))
    old_acc = float(np.mean([p == truth[i] for p, i in zip(old, ids, strict=True)]))
    assert len(ids) == test.height > 100
    assert abs(campaign_acc - eval_acc) <= 0.01, (campaign_acc, eval_acc, old_acc)
    # per item, too: the campaign's class is eval's argmax
    logits = loaded.class_logits("season", torch.as_tensor(loaded.embed(item_texts(cat, ITEM))))
    eval_pred = dict(zip(cat["item_id"].to_list(), [labels[i] for i in logits.argmax(1).tolist()], strict=True))
    assert np.mean([p == eval_pred[i] for p, i in zip(campaign, ids, strict=True)]) >= 0.99
    assert old != campaign  # the pair text reads differently: the test can tell the texts apart
