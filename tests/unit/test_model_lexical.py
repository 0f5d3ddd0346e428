"""Lexical match features and the relevance head's lexical term: hand-computed features, the
refit that fits the term, checkpoints with and without it, and serving that uses it."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file, save_file
from shoprank.files import sha256_file
from shoprank.model import ModelConfig, MultiTaskModel, load_checkpoint, save_checkpoint
from shoprank.model.checkpoint import expected_model_version
from shoprank.model.lexical import FEATURE_NAMES, NUM_LEXICAL_FEATURES, lexical_features
from shoprank.model.scoring import score_pairs
from shoprank.serving.config import ServingConfig
from shoprank.serving.pipeline import SearchPipeline
from shoprank.serving.validation import Query
from shoprank.train.refit import refit_regression_towers

from tests.serving_helpers import index_with_model, small_catalogue


def _named(row: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, row.tolist(), strict=True))


def test_features_hand_computed() -> None:
    assert len(FEATURE_NAMES) == NUM_LEXICAL_FEATURES
    full, none, half = lexical_features(
        "cordless drills 18 volt", ["DeWalt 18 Volt Cordless Drill Kit", "Garden Hose Reel", "Cordless Hedge Trimmer"]
    )
    f = _named(full)
    # drills -> "drill" (plural stripped); every term, the last one and the number are in the title
    assert f["query_terms_in_title"] == 1.0 and f["all_query_terms_in_title"] == 1.0
    assert f["last_query_term_in_title"] == 1.0 and f["query_numbers_in_title"] == 1.0
    assert f["query_length"] == pytest.approx(4 / 8) and 0 < f["trigram_jaccard"] < f["trigram_coverage"] <= 1
    g = _named(none)
    assert g["query_terms_in_title"] == 0.0 and g["query_numbers_in_title"] == 0.0 and g["trigram_jaccard"] < 0.1
    h = _named(half)  # "cordl" (stem of cordless) matches, drills/18/volt do not
    assert h["query_terms_in_title"] == pytest.approx(1 / 4) and h["last_query_term_in_title"] == 0.0
    # row-aligned pairs, a query without numbers, and mismatched lengths
    pairs = lexical_features(["red dress", "lamp"], ["Red Summer Dress", "Desk Lamp"])
    assert pairs.shape == (2, NUM_LEXICAL_FEATURES) and pairs.dtype == np.float32
    assert _named(pairs[1])["query_numbers_in_title"] == 0.5
    assert lexical_features("x", []).shape == (0, NUM_LEXICAL_FEATURES)
    with pytest.raises(ValueError, match="2 queries for 1 titles"):
        lexical_features(["a", "b"], ["a"])


WORDS = ["drill", "hose", "lamp", "rug", "saw", "paint", "ladder", "faucet", "mower", "shelf", "fan", "bulb"]


def _relevance_frame(n: int, seed: int) -> pl.DataFrame:
    """Label = share of the query's two words in the title: learnable from the lexical features."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        q = rng.choice(WORDS, 2, replace=False)
        shared = int(rng.integers(0, 3))
        others = [w for w in WORDS if w not in q]
        title = " ".join([*q[:shared], *rng.choice(others, 3 - shared, replace=False)])
        rows.append({"query": " ".join(q), "item": f"{title} | Tools", "label": shared / 2})
    df = pl.DataFrame(rows)
    return df.with_columns(
        pl.lit(10.0).alias("price"), pl.lit(4.0).alias("rating"), pl.lit(1.0).alias("popularity"),
        pl.lit(0).alias("month"),
    )  # fmt: skip


def _match_lift(model: MultiTaskModel) -> float:
    """Lexical term of a pair whose title holds every query term minus one that holds none."""
    full, none = torch.full((2, NUM_LEXICAL_FEATURES), 0.5)
    for name in ("query_terms_in_title", "query_prefixes_in_title", "all_query_terms_in_title"):
        full[FEATURE_NAMES.index(name)], none[FEATURE_NAMES.index(name)] = 1.0, 0.0
    with torch.no_grad():
        term = model.lexical_term("relevance", torch.stack([full, none]))
    return float(term[0] - term[1])


@pytest.fixture(scope="module")
def refitted() -> tuple[MultiTaskModel, dict]:
    model = MultiTaskModel(ModelConfig(encoder="tiny", hidden=16, max_length=16, tasks=["relevance"]))
    model.trained_tasks = {"relevance"}
    assert not model.uses_lexical  # the term starts at zero
    report = refit_regression_towers(
        model, {"relevance": _relevance_frame(400, 0)}, {"relevance": _relevance_frame(150, 1)}, log=None
    )
    return model, report["relevance"]


def test_refit_fits_the_lexical_term(refitted) -> None:
    model, rep = refitted
    assert rep["kept"] == 1.0 and rep["val_rmse_after"] < 0.5 * rep["val_rmse_before"], rep
    assert model.uses_lexical
    assert _match_lift(model) > 0
    # the same pairs score higher with the lexical features when the title holds the query
    emb = model.embed(["drill hose", "drill hose | Tools", "lamp rug saw | Tools"])
    num = np.zeros((2, 3), np.float32)
    lex = lexical_features("drill hose", ["drill hose", "lamp rug saw"])
    with_lex = score_pairs(model, emb[0], emb[1:], num, 0, lex).scores["relevance"]
    without = score_pairs(model, emb[0], emb[1:], num, 0).scores["relevance"]
    assert with_lex[0] - with_lex[1] > without[0] - without[1]


def test_checkpoint_keeps_the_term_and_old_checkpoints_load_without_it(refitted, tmp_path) -> None:
    model, _ = refitted
    ck = save_checkpoint(model, tmp_path / "ck", trained_tasks=["relevance"])
    loaded, _ = load_checkpoint(ck)
    assert loaded.uses_lexical
    saved = model.lexical["relevance"].weight.detach()
    np.testing.assert_array_equal(loaded.lexical["relevance"].weight.detach(), saved)
    # a checkpoint written before the lexical term existed: the same weights minus its key
    state = {k: v for k, v in load_file(str(ck / "model.safetensors")).items() if not k.startswith("lexical.")}
    save_file(state, str(ck / "model.safetensors"))
    manifest = json.loads((ck / "manifest.json").read_text())
    manifest["weights_sha256"] = sha256_file(ck / "model.safetensors")
    (ck / "manifest.json").write_text(json.dumps(manifest))
    old, _ = load_checkpoint(ck)
    assert not old.uses_lexical
    # one written with another lexical feature basis (before the pairwise basis): the term is off
    state["lexical.relevance.weight"] = torch.ones(1, NUM_LEXICAL_FEATURES)
    save_file(state, str(ck / "model.safetensors"))
    manifest["weights_sha256"] = sha256_file(ck / "model.safetensors")
    (ck / "manifest.json").write_text(json.dumps(manifest))
    other, _ = load_checkpoint(ck)
    assert not other.uses_lexical and other.lexical["relevance"].weight.shape[1] > NUM_LEXICAL_FEATURES


def test_serving_ranks_with_the_lexical_term(refitted, tmp_path) -> None:
    model, _ = refitted
    ck = save_checkpoint(model, tmp_path / "ck", trained_tasks=["relevance"])
    cat = small_catalogue(60)
    version = expected_model_version(ck)
    loaded, _ = load_checkpoint(ck)
    index = index_with_model(loaded, cat, tmp_path / "index", version)
    pipe = SearchPipeline(index, ck, config=ServingConfig(num_candidates=60))
    target = cat["title"][17]
    res = pipe.search(Query(query=target, k=60, item_ids=cat["item_id"].to_list(), weights={"relevance": 1.0}))
    scores = {it["item_id"]: it["scores"]["relevance"] for it in res.items}
    # switching the term off changes the served relevance of the item whose title is the query
    plain = SearchPipeline(index, ck, config=ServingConfig(num_candidates=60))
    plain.ranker.model.lexical["relevance"].weight.data.zero_()
    res0 = plain.search(Query(query=target, k=60, item_ids=cat["item_id"].to_list(), weights={"relevance": 1.0}))
    scores0 = {it["item_id"]: it["scores"]["relevance"] for it in res0.items}
    tid = cat["item_id"][17]
    lift = scores[tid] - scores0[tid]
    others = [scores[i] - scores0[i] for i in scores if i != tid]
    assert lift > max(others), (lift, max(others))


def test_training_steps_learn_the_lexical_term() -> None:
    from shoprank.train.loop import frame_to_arrays, make_batch
    from shoprank.train.losses import MultiTaskObjective

    model = MultiTaskModel(ModelConfig(encoder="tiny", hidden=16, max_length=16, tasks=["relevance"]))
    arrays = frame_to_arrays(_relevance_frame(64, 2).with_columns(pl.lit("i").alias("item_id")))
    batch = make_batch(model, "relevance", arrays, np.arange(64), torch.device("cpu"))
    assert batch["lexical"].shape == (64, NUM_LEXICAL_FEATURES)
    objective = MultiTaskObjective(model, {"relevance": 1.0})
    opt = torch.optim.SGD(model.lexical.parameters(), lr=0.5)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss, raw = objective("relevance", batch)
        loss.backward()
        opt.step()
        losses.append(float(raw))
    assert model.uses_lexical and losses[-1] < losses[0]
    assert _match_lift(model) > 0


def test_lexical_basis_interpolates_each_feature_and_every_pair() -> None:
    from shoprank.model.lexical import BASIS_SCALE, KNOTS, NUM_LEXICAL_BASIS, lexical_basis

    x = torch.rand(50, NUM_LEXICAL_FEATURES, dtype=torch.float64)
    basis = lexical_basis(x) / BASIS_SCALE
    k = len(KNOTS)
    assert basis.shape == (50, NUM_LEXICAL_BASIS) and (basis >= 0).all()
    hats = basis[:, : NUM_LEXICAL_FEATURES * k].reshape(50, NUM_LEXICAL_FEATURES, k)
    torch.testing.assert_close(hats.sum(-1), torch.ones(50, NUM_LEXICAL_FEATURES, dtype=torch.float64))
    knots = KNOTS.double()
    torch.testing.assert_close(hats @ knots, x)  # a weight per hat = its knot reproduces the feature
    # the first pair block is features 0 and 1: weights knot_a * knot_b reproduce x0 * x1
    pair = basis[:, NUM_LEXICAL_FEATURES * k : NUM_LEXICAL_FEATURES * k + k * k]
    torch.testing.assert_close(pair @ torch.outer(knots, knots).flatten(), x[:, 0] * x[:, 1])
    # out-of-range values are clamped onto the end knots
    edge = lexical_basis(torch.tensor([[-1.0] + [2.0] * (NUM_LEXICAL_FEATURES - 1)])) / BASIS_SCALE
    torch.testing.assert_close(edge[0, [0, 2 * k - 1]], torch.ones(2))
