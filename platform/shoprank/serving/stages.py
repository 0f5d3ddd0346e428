"""What each search stage takes and gives (typed, the Merlin-operator idea).

The flow (:mod:`shoprank.serving.flow`) runs three batched stages, each a callable from a list of
inputs to one output per input, in the same order:

========== ======================= =======================  ==========================================
stage      takes                   gives                    implemented by
========== ======================= =======================  ==========================================
encode     ``str`` (query text)    :class:`EncodedQuery`    ``QueryEncoder`` / ``QueryIntent``
retrieve   :class:`RetrieveJob`    :class:`Retrieved`       ``Retriever`` / ``CandidateRetriever``
rank       :class:`RankJob`        :class:`RankedList`      ``Ranker`` / ``MultiTaskRanker``
========== ======================= =======================  ==========================================

and turns each validated query into a :class:`SearchResult` (or an ``InvalidRequest``).
Everything here is plain data, so it crosses Ray Serve handles unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shoprank.retrieval.index import FilterSpec


@dataclass
class IntentResult:
    label: str
    confidence: float
    zero_shot: bool


@dataclass
class EncodedQuery:
    """encode gives, per query text: its embedding [d], its intent and the batch's encode time."""

    embedding: np.ndarray
    intent: IntentResult
    encode_ms: float = 0.0


@dataclass
class RetrieveJob:
    """retrieve takes: a query embedding, its filter (None: none) and how many candidates."""

    embedding: np.ndarray
    filters: FilterSpec | None
    n: int
    query: str = ""  # hybrid retrieval: the query text for the lexical (BM25) side


@dataclass
class Retrieved:
    """retrieve gives: candidate row positions (best first) in one index version, and the search time."""

    positions: np.ndarray
    index_version: str
    index_dir: str
    search_ms: float = 0.0


@dataclass
class RankJob:
    """rank takes one request's work: positions (Search) or ids (Rank) in one index version."""

    q_emb: np.ndarray
    k: int
    weights: dict[str, float]
    month: int = 0
    query: str = ""  # the query text, for the relevance head's lexical match features
    index_dir: str = ""
    index_version: str = ""  # "" (Rank requests): the ranker's current version
    positions: np.ndarray | None = None
    item_ids: list[str] | None = None
    user_hash: str | None = None  # the salted user hash, for the click blend's user history
    filtered: bool = False  # the request has filters: the click blend keeps to the retrieved candidates
    custom_weights: bool = False  # the request chose ``weights``: the click blend reads them, not the ranking head


@dataclass
class RankedList:
    """rank gives: the blended top-k (``error`` set when the request cannot be ranked as sent)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    zero_shot: list[str] = field(default_factory=list)
    model_version: str = ""
    index_version: str = ""
    batch_size: int = 1
    num_candidates: int = 0
    rank_ms: float = 0.0
    error: str | None = None
    signals: list[str] = field(default_factory=list)  # behavioural signals the click blend used
    degraded: bool = False  # the click blend is on but the store failed: the model alone ranked
    degraded_reason: str = ""
    rerank_ms: float = 0.0  # cross-encoder phase (issue 23): its batch's time; 0: not reranked


# -- cross-encoder phase (issue 23; shoprank.serving.rerank)
@dataclass
class RerankJob:
    """rerank takes one ranked list, the query text the cross-encoder reads with each item, how many of
    the top items it re-scores (``top_n``) and how many the answer keeps (``k``; 0: all)."""

    query: str
    ranked: RankedList
    top_n: int
    k: int = 0
    index_dir: str = ""  # the rank job's index ("" for Rank requests): where the items' stored texts are
# -- end cross-encoder phase


@dataclass
class SearchResult:
    """Everything a SearchResponse carries, as plain Python (see ``pipeline.to_response``)."""

    items: list[dict[str, Any]]
    intent: IntentResult
    model_version: str
    index_version: str
    timings_ms: dict[str, float]
    batch_size: int
    zero_shot: list[str]
    weights: dict[str, float]
    num_candidates: int
    signals: list[str] = field(default_factory=list)
    degraded: bool = False
    degraded_reason: str = ""
