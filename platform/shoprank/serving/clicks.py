"""The served click blend: ``shoprank eval --clicks``' learned blend, on the online store's counts.

:class:`ServedClicks` re-ranks a ranked batch with :mod:`shoprank.clicks.features` — the code
``ClickBlend`` uses offline — reading every job's counts from the store in ONE pipelined round trip
(:meth:`shoprank.store.reader.StoreClickSource.lookup`). Per job:

- the model's ranking is eval's: the ranking head's scores (:func:`shoprank.model.registry.ranking_head`:
  click, then relevance) for the request's month over the retrieved candidates (the request's own
  ``blend_weights`` blend when it sends some), cut to its top :data:`~shoprank.clicks.features.CANDIDATES`
  (eval's ``rank_catalogue`` depth; ``num_candidates`` must be at least that);
- BM25 runs over the item text the index embedded (its ``items.text``: the checkpoint's ``pair``
  recipe, the text eval's BM25 reads; an older index without it gets the text rebuilt from its
  columns, without description), built once per index version (:class:`ClickItems`);
- candidates are eval's (click-sourced, model, popular), less items the index does not hold, and
  for a Rank request or a filtered Search only the items it sent or retrieved. Each candidate's
  features do not depend on the others, so dropping some leaves the others' order as eval's;
- each listed item's score (``ScoredItem.score`` = ``scores["click_blend"]``) is the blend's click
  probability in 0..1: the softmax of its logits over those candidates (:func:`choice_probs`).

Where eval and serving can still differ: eval's model ranking is over the whole catalogue,
serving's over what retrieval returned (equal when retrieval's top ``num_candidates`` hold the
head's top 100, e.g. ``num_candidates`` >= the catalogue's size), and scores equal to float
rounding can order near-ties differently.

Blend weights: the checkpoint's (its manifest's ``click_blend``, else its ``click_blend.json``, which
``shoprank.eval.runner.evaluate_clicks(write_blend=True)`` writes; fitted with that model's ranks)
win over ``ServingConfig.click_blend_weights``; with neither, or no store, the model blend alone.

Degrade, never fail: any store error or a read slower than ``store_timeout_s`` raises
:class:`~shoprank.store.errors.StoreUnavailable`; the batch is then answered from the model alone
and flagged ``degraded``. The reader's connection pool reconnects on the next batch, so features
come back when the store does, without a restart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shoprank.clicks.bm25 import BM25
from shoprank.clicks.features import (
    CANDIDATES,
    CLICK_BLEND_FILE,
    BlendWeights,
    ClickFeatureSource,
    ClickRequest,
    QueryClicks,
    click_features,
)
from shoprank.errors import ConfigError
from shoprank.model.text import PAIR, item_texts, recipes_of
from shoprank.retrieval.artefact import TEXT_COLUMN
from shoprank.serving.config import ServingConfig
from shoprank.store.errors import StoreUnavailable

log = logging.getLogger("shoprank.serving")
MANIFEST_KEY = "click_blend"  # where a checkpoint's manifest holds fitted weights (BlendWeights.to_dict())


class ClickItems:
    """Per index version: BM25 over the ``pair`` item text and item id -> row (built on first use).

    The text is the one the index embedded (its items' ``text`` column), the text eval's BM25
    reads for the same catalogue (``shoprank.eval.runner.catalogue_items``). An older artefact
    without the column gets it rebuilt from its columns by the artefact manifest's recipe (the
    default when it has none); such an index keeps no description, so its BM25 reads less.
    """

    def __init__(self, items: pl.DataFrame, manifest: Mapping[str, Any] | None = None) -> None:
        self._items = items
        self._manifest = manifest

    @property
    def stored(self) -> bool:
        """Whether the index holds the embedded text (else it is rebuilt)."""
        return TEXT_COLUMN in self._items.columns and self._items[TEXT_COLUMN].null_count() == 0

    def texts(self) -> list[str]:
        """Each item's ``pair`` text, in the index's row order."""
        if self.stored:
            return self._items[TEXT_COLUMN].to_list()
        return item_texts(self._items, PAIR, recipes_of(self._manifest))

    @cached_property
    def built(self) -> tuple[BM25, dict[str, int]]:
        ids = self._items["item_id"].cast(pl.Utf8).to_list()
        return BM25(self.texts()), {i: n for n, i in enumerate(ids)}


def signals_of(view: QueryClicks, use_user: bool = True) -> list[str]:
    """Which behavioural signals the request's counts held (what the response reports)."""
    out = []
    if view.known:
        out.append("query_clicks")
    elif view.neighbours:
        out.append("neighbour_queries")
    if any(w for w in view.words):
        out.append("word_clicks")
    if any(view.popular.values()):
        out.append("popularity")
    if use_user and (view.user_query or view.user_any):
        out.append("user_history")
    return out


@dataclass
class ClickPick:
    """One job's click-blended list: (item id, click probability: :func:`choice_probs`) best first,
    and the signals used."""

    items: list[tuple[str, float]] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)


def choice_probs(ranked: Sequence[tuple[str, float]], logits: np.ndarray) -> list[tuple[str, float]]:
    """The blend's top list with each logit as its probability in 0..1: the softmax over ``logits``
    (every candidate's), the listwise click-choice model ``ClickBlend`` fits. Monotone in the logit, so
    the list's order is the blend's."""
    if not ranked:
        return []
    z = np.asarray(logits, dtype=np.float64)
    lse = float(z.max() + np.log(np.exp(z - z.max()).sum()))
    return [(c, float(np.exp(min(s - lse, 0.0)))) for c, s in ranked]


def blend_weights(
    manifest: Mapping[str, Any] | None, configured: Mapping[str, Any] | None, checkpoint: str | Path | None = None
) -> BlendWeights | None:
    """The checkpoint's fitted weights (``manifest["click_blend"]``, else ``checkpoint/click_blend.json``
    as ``shoprank eval --clicks`` writes it), else the serving config's, else None."""
    fitted, where = (manifest or {}).get(MANIFEST_KEY), "checkpoint manifest click_blend"
    side = Path(checkpoint) / CLICK_BLEND_FILE if checkpoint else None
    if fitted is None and side is not None and side.is_file():
        fitted, where = json.loads(side.read_text()), str(side)
    if fitted is None:
        fitted, where = configured, "serving.click_blend_weights"
    if fitted is None:
        return None
    try:
        return BlendWeights.from_dict(fitted)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


class ServedClicks:
    """The learned click blend over a :class:`ClickFeatureSource` (the store's reader when served)."""

    def __init__(self, source: ClickFeatureSource, weights: BlendWeights, use_user: bool = True) -> None:
        self.source, self.weights, self.use_user = source, weights, use_user
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-read")

    def prefetch(self, requests: Sequence[ClickRequest]) -> Future[list[QueryClicks]]:
        """Start a batch's store read in the background, so it overlaps the model's forward pass
        (its result, or its StoreUnavailable, is :meth:`try_pick`'s ``views``)."""
        return self._reader.submit(self.source.lookup, list(requests))

    @classmethod
    def from_store(
        cls,
        url: str,
        weights: BlendWeights,
        timeout_s: float,
        num_candidates: int,
        store: Mapping[str, Any] | None = None,
    ) -> ServedClicks:
        from shoprank.store.config import StoreConfig
        from shoprank.store.reader import StoreClickSource

        if num_candidates < CANDIDATES:
            raise ConfigError(f"num_candidates {num_candidates} < {CANDIDATES}: the click blend ranks the model's top "
                              f"{CANDIDATES}, as shoprank eval --clicks does")  # fmt: skip
        return cls(StoreClickSource(url, StoreConfig.model_validate(store or {}), timeout_s=timeout_s), weights)

    def pick(
        self,
        requests: Sequence[ClickRequest],
        items: Sequence[ClickItems],
        ranked: Sequence[Sequence[str]],
        ks: Sequence[int],
        allowed: Sequence[set[str] | None],
        views: Sequence[QueryClicks] | None = None,
    ) -> list[ClickPick]:
        """Each request's top ``k`` by the blend; raises StoreUnavailable (one store round trip for all,
        unless ``views`` brings that read's result)."""
        views = self.source.lookup(requests) if views is None else views
        out = []
        for r, view, its, model_ranked, k, ok in zip(requests, views, items, ranked, ks, allowed, strict=True):
            bm25, index = its.built
            cands, rows = click_features(view, bm25, index, r.query, list(model_ranked[:CANDIDATES]), self.use_user)
            keep = [n for n, c in enumerate(cands) if c in index and (ok is None or c in ok)]
            kept = [cands[n] for n in keep]
            top = self.weights.ranked(kept, rows[keep], k if k > 0 else len(kept))
            out.append(ClickPick(choice_probs(top, self.weights.score(rows[keep])), signals_of(view, self.use_user)))
        return out

    def try_pick(
        self, *args: Any, views: Callable[[], Sequence[QueryClicks]] | None = None
    ) -> tuple[list[ClickPick] | None, str]:
        """:meth:`pick`, or (None, why) when the store failed: the caller serves the model alone.
        ``views``: gives the batch's read (from a :meth:`prefetch`) instead of reading here."""
        try:
            return self.pick(*args, views=None if views is None else views()), ""
        except StoreUnavailable as e:
            log.warning("click blend degraded to the model alone: %s", e)
            return None, str(e)

    def close(self) -> None:
        self._reader.shutdown(wait=True)
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


def served_clicks(
    store_url: str | None,
    manifest: dict[str, Any] | None,
    cfg: ServingConfig,
    store: dict[str, Any] | None = None,
    checkpoint: str | Path | None = None,
) -> ServedClicks | None:
    """The ranker's click blend: with a store and weights (the checkpoint's, else ``cfg``'s), else None."""
    weights = blend_weights(manifest, cfg.click_blend_weights, checkpoint)
    if store_url is None or weights is None:
        return None
    return ServedClicks.from_store(store_url, weights, cfg.store_timeout_s, cfg.num_candidates, store)
