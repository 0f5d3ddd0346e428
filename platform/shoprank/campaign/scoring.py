"""CampaignScorer: the per-batch Ray Data callable that scores catalogue rows for a campaign.

Used on an actor pool so the model loads once per actor::

    ds.map_batches(CampaignScorer, fn_constructor_kwargs={"spec": spec.model_dump(mode="json")},
                   batch_format="pyarrow", batch_size=None, compute=ray.data.ActorPoolStrategy(size=2))

Per item it computes, each in 0..1:

- ``theme_relevance``: the best theme's relevance (trained relevance head via ``score_pairs``,
  else zero-shot cosine of item to theme embeddings); ``best_theme`` names that theme;
- ``season_fit``: probability mass on the campaign window's seasons (trained season head via
  ``class_probs``, else zero-shot similarity to season descriptions);
- ``demand``: share of the item's yearly demand falling in the campaign months (trained demand
  head via ``score_pairs`` with each month, else a seasonal prior built from the season
  probabilities);
- ``click``: click propensity (trained click head, best theme; else zero-shot: mean of theme
  similarity and a popularity prior where the catalogue knows popularity);
- ``score``: the blend-weighted sum of the four.

Each head reads the item text it was trained on (``TaskSpec.text_kind``, by the checkpoint's
recipes, :mod:`shoprank.model.text`): theme relevance, click and demand the ``pair`` text's
embedding (the one the index holds); a trained season head the ``item`` text's. The second text
is embedded only when a trained item-class head is used and the chunk's texts differ from the
pair texts (the zero-shot season fit reads the pair embedding), which roughly doubles the encoder
work of a checkpoint with a trained season head (about 1.9× on the reference fashion items,
bench/results/item_text_parity.md).

Encoding minibatches are cut at fixed offsets *within each shard* (``_row // inner_batch_size``),
so an item's scores never depend on how Ray Data happened to batch the rows: a resumed job
recomputes exactly the same numbers. Scores are rounded to 6 decimals before they are written.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from shoprank.batch.embed import ItemEmbedder, batch_texts
from shoprank.campaign.spec import CampaignSpec
from shoprank.data.calendar import MONTH_SEASON, SEASON_MONTHS, SEASONS
from shoprank.model.features import item_numeric_features
from shoprank.model.lexical import lexical_features
from shoprank.model.prototypes import CAMPAIGN_TEMPERATURE, ZeroShotClasses
from shoprank.model.registry import REGISTRY, TextKind
from shoprank.model.scoring import class_probs, score_pairs
from shoprank.model.text import PAIR, title_of

SEASON_DESCRIPTIONS: dict[str, str] = {
    "winter": "warm winter clothing, coats, jackets, sweaters, boots, snow",
    "spring": "spring clothing, light layers, rain, flowers",
    "summer": "light summer clothing, sandals, beach",
    "fall": "autumn clothing, layers, hoodies, back to school",
}
ALL_SEASON_FIT = 0.5  # an all-season item fits any window half-way
SCORE_COLUMNS = ("score", "theme_relevance", "season_fit", "demand", "click")
MONTH_COLUMNS = tuple(f"demand_m{m:02d}" for m in range(1, 13))
DECIMALS = 6


def popularity_prior(popularity: np.ndarray) -> np.ndarray:
    """0 for unknown/zero popularity, rising to 1: ``1 - 1/(1 + log1p(pop))``."""
    pop = np.nan_to_num(np.asarray(popularity, dtype=np.float64), nan=0.0).clip(min=0.0)
    return 1.0 - 1.0 / (1.0 + np.log1p(pop))


def season_month_matrix(labels: list[str]) -> np.ndarray:
    """[C, 12]: each season class spreads its mass evenly over its months; 'all' over the year."""
    mat = np.zeros((len(labels), 12), dtype=np.float64)
    for c, label in enumerate(labels):
        key = label.strip().lower().replace("autumn", "fall")
        if key in SEASON_MONTHS:
            for m in SEASON_MONTHS[key]:
                mat[c, m - 1] = 1.0 / len(SEASON_MONTHS[key])
        else:  # "all" or anything unknown: no seasonality
            mat[c, :] = 1.0 / 12.0
    return mat


def segment_values(batch: pa.Table, spec: CampaignSpec) -> list[str]:
    """The segment of every row for segment kinds that need no model (category, season, locale, column)."""
    n = batch.num_rows
    seg = spec.segments
    if seg is None:
        return ["all"] * n

    def col(name: str) -> list[Any]:
        return batch.column(name).to_pylist() if name in batch.column_names else [None] * n

    if seg.by == "category":
        out = []
        for path in col("category_path"):
            parts = [p.strip() for p in (path or "").split(">") if p.strip()]
            out.append(" > ".join(parts[: seg.level]) if parts else "unknown")
        return out
    if seg.by == "season":
        return [(s or "unknown").lower() for s in col("season")]
    if seg.by == "locale":
        if "locale" in batch.column_names:
            return [str(v) if v not in (None, "") else "unknown" for v in col("locale")]
        out = []
        for attrs in col("attributes"):
            try:
                value = json.loads(attrs or "{}").get("locale")
            except (json.JSONDecodeError, AttributeError):
                value = None
            out.append(str(value) if value else "unknown")
        return out
    if seg.by == "column":
        return [str(v) if v not in (None, "") else "unknown" for v in col(seg.column or "")]
    raise ValueError(f"segments.by={seg.by!r} needs the model")


class CampaignScorer(ItemEmbedder):
    """Loads the model once per actor, then scores every ``ok`` row of each Arrow batch."""

    def __init__(
        self,
        spec: dict[str, Any],
        checkpoint: str | None = None,
        encoder: str = "minilm",
        device: str | None = None,
        inner_batch_size: int = 64,
        num_threads: int | None = None,
        encoder_runtime: str = "torch",
    ) -> None:
        import torch

        if num_threads:  # before the model loads: an ONNX session takes torch's thread count
            torch.set_num_threads(num_threads)
        super().__init__(checkpoint=checkpoint, encoder=encoder, device=device, inner_batch_size=inner_batch_size,
                         encoder_runtime=encoder_runtime)  # fmt: skip
        self.spec = CampaignSpec.model_validate(spec)
        self.themes = self.spec.theme_texts()
        self.theme_emb = self.model.embed(self.themes)
        self.blend = self.spec.blend.normalised()
        self.window = np.array(self.spec.window)
        self.dim = self.theme_emb.shape[1]
        self.zero_shot = zero_shot_scores(self.model)
        # Season classes: trained head's label map, or the four zero-shot descriptions.
        self.season_zero_shot: ZeroShotClasses | None = None
        # the text the season fit reads: the trained head's kind, else (zero-shot) the pair text
        self.season_kind: TextKind = PAIR
        if "season_fit" in self.zero_shot:
            self.season_labels = list(SEASONS)
            descriptions = [SEASON_DESCRIPTIONS[s] for s in SEASONS]
            self.season_zero_shot = ZeroShotClasses(self.model, descriptions, CAMPAIGN_TEMPERATURE, dtype=np.float64)
        else:
            self.season_labels = list(self.model.label_maps["season"])
            self.season_kind = REGISTRY["season"].text_kind or PAIR
        weights = self.spec.season_weights()
        keys = [lbl.strip().lower().replace("autumn", "fall") for lbl in self.season_labels]
        self.season_target = np.array([weights.get(k, ALL_SEASON_FIT if k == "all" else 0.0) for k in keys])
        # For "all" classes the fit is a constant, not a window share.
        self.season_month = season_month_matrix(self.season_labels)
        seg = self.spec.segments
        self.intent_labels: list[str] | None = None
        self.intent_zero_shot: ZeroShotClasses | None = None
        if seg is not None and seg.by == "intent":
            if seg.values:
                self.intent_labels = list(seg.values)
                self.intent_zero_shot = ZeroShotClasses(self.model, self.intent_labels, CAMPAIGN_TEMPERATURE)
            elif self.model.is_trained("intent"):
                self.intent_labels = list(self.model.label_maps["intent"])
            else:
                raise ValueError("segments.values: required for by=intent when the model has no trained intent head")

    # -- item texts and embeddings ------------------------------------------------------------
    def kind_texts(self, batch: pa.Table) -> dict[TextKind, list[str]]:
        """The item texts scoring reads for a batch, by kind: the pair text, and the season head's."""
        out = {PAIR: batch_texts(batch, PAIR, self.recipes)}
        if self.season_kind != PAIR:
            out[self.season_kind] = batch_texts(batch, self.season_kind, self.recipes)
        return out

    def kind_embeddings(self, texts: dict[TextKind, list[str]]) -> dict[TextKind, np.ndarray]:
        """Embeddings of :meth:`kind_texts`' texts (one encoder pass per kind whose texts differ), in
        length-bucketed batches of ``inner_batch_size`` (``MultiTaskModel.embed``): a whole shard's texts at
        once pad far less than shard-order chunks (bench/results/score_catalogue_runtime.md)."""
        pair = texts[PAIR]
        out = {PAIR: self.model.embed(pair, batch_size=self.inner_batch_size)}
        for kind, ts in texts.items():
            if kind != PAIR:
                out[kind] = out[PAIR] if ts == pair else self.model.embed(ts, batch_size=self.inner_batch_size)
        return out

    def season_probs(self, emb: dict[TextKind, np.ndarray]) -> np.ndarray:
        """[n, len(season_labels)] season probabilities from :meth:`kind_embeddings`' output."""
        return self._season_probs(emb[self.season_kind])

    def season_predictions(self, batch: pa.Table, kind: TextKind | None = None) -> list[str]:
        """Each row's most likely season class from the text season_fit reads (:attr:`season_kind`), in
        ``inner_batch_size`` chunks; ``kind``: from that text's embedding instead (to compare texts)."""
        out: list[str] = []
        for s in range(0, batch.num_rows, self.inner_batch_size):
            texts = batch_texts(batch.slice(s, self.inner_batch_size), kind or self.season_kind, self.recipes)
            probs = self._season_probs(self.model.embed(texts, batch_size=max(1, len(texts))))
            out.extend(self.season_labels[i] for i in probs.argmax(axis=1))
        return out

    # -- per-chunk scoring -----------------------------------------------------------------
    def _season_probs(self, emb: np.ndarray) -> np.ndarray:
        if self.season_zero_shot is not None:
            return self.season_zero_shot.probs(emb)
        probs = class_probs(self.model, "season", emb)
        assert probs is not None
        return probs[0].astype(np.float64)

    def _intent(self, emb: np.ndarray) -> list[str]:
        assert self.intent_labels is not None
        if self.intent_zero_shot is not None:
            idx = self.intent_zero_shot.predict(emb)
        else:
            probs = class_probs(self.model, "intent", emb)
            assert probs is not None
            idx = probs[0].argmax(axis=1)
        return [self.intent_labels[i] for i in idx]

    def score_chunk(
        self,
        texts: dict[TextKind, list[str]],
        item_num: np.ndarray,
        popularity: np.ndarray,
        embs: dict[TextKind, np.ndarray] | None = None,
    ) -> dict[str, Any]:
        """Every score for one minibatch of items (``texts``: :meth:`kind_texts`' for them; ``embs``: their
        :meth:`kind_embeddings`, computed here when not given)."""
        embs = embs if embs is not None else self.kind_embeddings(texts)
        emb = embs[PAIR]
        n = emb.shape[0]
        rel = np.zeros((len(self.themes), n))
        clk = np.zeros((len(self.themes), n))
        sim = np.zeros((len(self.themes), n))
        titles = [title_of(t) for t in texts[PAIR]] if self.model.uses_lexical else None
        for t in range(len(self.themes)):
            lexical = lexical_features(self.themes[t], titles) if titles is not None else None
            ps = score_pairs(self.model, self.theme_emb[t], emb, item_num, 0, lexical)
            rel[t] = ps.scores["relevance"]
            clk[t] = ps.scores["click"]
            sim[t] = ps.scores["similarity"]
        best = rel.argmax(axis=0)
        cols = np.arange(n)
        theme_rel = rel[best, cols]
        if "click" in self.zero_shot:
            prior = popularity_prior(popularity)
            known = np.nan_to_num(popularity, nan=0.0) > 0
            theme_sim = sim.max(axis=0).clip(0.0, 1.0)
            click = np.where(known, 0.5 * theme_sim + 0.5 * prior, theme_sim)
        else:
            click = clk[best, cols]
        sp = self.season_probs(embs)
        season_fit = (sp * self.season_target[None, :]).sum(axis=1).clip(0.0, 1.0)
        if "demand" in self.zero_shot:
            monthly = sp @ self.season_month  # [n, 12], each row sums to 1
        else:
            zeros = np.zeros(self.dim, dtype=np.float32)
            monthly = np.stack(
                [score_pairs(self.model, zeros, emb, item_num, m).scores["demand"] for m in range(1, 13)], axis=1
            ).astype(np.float64)
        demand = monthly[:, self.window - 1].sum(axis=1).clip(0.0, 1.0)
        b = self.blend
        score = b["theme"] * theme_rel + b["season"] * season_fit + b["demand"] * demand + b["click"] * click
        out: dict[str, Any] = {
            "score": score,
            "theme_relevance": theme_rel,
            "season_fit": season_fit,
            "demand": demand,
            "click": click,
            "best_theme": [self.themes[i] for i in best],
            "monthly": monthly,
        }
        if self.intent_labels is not None:
            out["segment"] = self._intent(emb)
        return out

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        status = batch.column("_status").to_pylist()
        shard = batch.column("_shard").to_numpy()
        row = batch.column("_row").to_numpy()
        ok_idx = [i for i in range(n) if status[i] == "ok"]
        scores = {c: np.full(n, np.nan) for c in SCORE_COLUMNS}
        monthly = np.full((n, 12), np.nan)
        best_theme: list[str | None] = [None] * n
        seg_model: list[str | None] = [None] * n
        if ok_idx:
            ok = batch.take(pa.array(ok_idx, type=pa.int64()))
            texts = self.kind_texts(ok)
            num = item_numeric_features(
                ok.column("price").to_numpy(zero_copy_only=False),
                ok.column("rating").to_numpy(zero_copy_only=False),
                ok.column("popularity").to_numpy(zero_copy_only=False),
            )
            pop = ok.column("popularity").to_numpy(zero_copy_only=False).astype(np.float64)
            # Every ok row encoded at once (a call is one shard: the runner and the floor read shard by shard),
            # then scored in shard-aligned chunks.
            embs = self.kind_embeddings(texts)
            keys = [(int(shard[i]), int(row[i]) // self.inner_batch_size) for i in ok_idx]
            groups: dict[tuple[int, int], list[int]] = {}
            for j, key in enumerate(keys):
                groups.setdefault(key, []).append(j)
            for js in groups.values():
                chunk = {k: [v[j] for j in js] for k, v in texts.items()}
                res = self.score_chunk(chunk, num[js], pop[js], {k: e[js] for k, e in embs.items()})
                for j, k in enumerate(js):
                    i = ok_idx[k]
                    for c in SCORE_COLUMNS:
                        scores[c][i] = res[c][j]
                    monthly[i] = res["monthly"][j]
                    best_theme[i] = res["best_theme"][j]
                    if "segment" in res:
                        seg_model[i] = res["segment"][j]
        if self.intent_labels is not None:
            segments = seg_model
        else:
            segments = segment_values(batch, self.spec)
        keep = ["_shard", "_row", "_status", "item_id", "title", "category_path", "price"]
        out = batch.select([c for c in keep if c in batch.column_names])
        out = out.append_column("segment", pa.array(segments, type=pa.string()))
        for c in SCORE_COLUMNS:
            out = out.append_column(c, pa.array(np.round(scores[c], DECIMALS), type=pa.float64(), from_pandas=True))
        out = out.append_column("best_theme", pa.array(best_theme, type=pa.string()))
        monthly = np.round(monthly, DECIMALS)
        for m, c in enumerate(MONTH_COLUMNS):
            out = out.append_column(c, pa.array(monthly[:, m], type=pa.float64(), from_pandas=True))
        return out


def zero_shot_scores(model: Any) -> set[str]:
    """Which campaign scores fall back to zero-shot for this model (none for a fully trained one)."""
    zs: set[str] = set()
    if not model.is_trained("relevance"):
        zs.add("theme_relevance")
    if not (model.is_trained("season") and model.label_maps.get("season")):
        zs.add("season_fit")
    if not model.is_trained("demand"):
        zs.add("demand")
    if not model.is_trained("click"):
        zs.add("click")
    return zs


__all__ = [
    "MONTH_COLUMNS",
    "MONTH_SEASON",
    "SCORE_COLUMNS",
    "SEASON_DESCRIPTIONS",
    "CampaignScorer",
    "popularity_prior",
    "segment_values",
    "zero_shot_scores",
]


class ShardScorer(CampaignScorer):
    """Reads and scores whole shards: each input row is a shard descriptor (shard, start, length).

    Reading inside the scoring actor means nothing is read ahead of the scorers, so memory
    stays flat however many shards the catalogue has.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        source_path: str,
        source_format: str,
        quarantine_dir: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec, **kwargs)
        self.source_path = source_path
        self.source_format = source_format
        self.quarantine_dir = quarantine_dir
        self.filters = self.spec.filters.model_dump()

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:  # type: ignore[override]
        from shoprank.campaign.source import read_shard

        tables = [
            CampaignScorer.__call__(
                self,
                read_shard(
                    self.source_path,
                    self.source_format,
                    int(shard),
                    int(start),
                    int(length),
                    self.filters,
                    self.quarantine_dir,
                ),
            )
            for shard, start, length in zip(batch["shard"], batch["start"], batch["length"], strict=True)
        ]
        return pa.concat_tables(tables)
