"""Lexical match features between a query and an item title: the ranker's exact-match signal.

Sentence embeddings blur exact matches (model numbers, brands, the head noun of the query);
graded relevance judgements reward them. These features are computed from the query and the
item's *title* only, which training, evaluation, serving (the index stores titles) and campaign
scoring all have. They enter the model through ``lexical_basis``: a piecewise-linear (hat)
basis of each feature plus the products of every two features' hats, so the relevance output's
linear term on it (``MultiTaskModel.lexical``) is an additive model with every pairwise
interaction (how much a full match is worth depends on the query's length, its numbers, ...).
That term is trained with the relevance tower and refitted with it at the head refit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

NUM_LEXICAL_FEATURES = 8
FEATURE_NAMES = (
    "query_terms_in_title",  # share of query terms (light stems) found in the title
    "query_prefixes_in_title",  # share of query terms whose first 3 letters start a title term
    "last_query_term_in_title",  # the last query term (usually the head noun) is in the title
    "all_query_terms_in_title",
    "trigram_jaccard",  # character trigrams, query vs title
    "trigram_coverage",  # share of the query's trigrams found in the title
    "query_numbers_in_title",  # share of the query's numbers in the title (0.5 when it has none)
    "query_length",  # terms, capped at 8, over 8
)
_TOKEN = re.compile(r"[a-z0-9]+")


class _Terms(NamedTuple):
    raw: tuple[str, ...]  # terms in order
    stems: tuple[str, ...]
    stem_set: frozenset[str]
    prefixes: frozenset[str]  # the first 1..3 letters of every stem
    grams: frozenset[str]  # character trigrams of the normalised text
    numbers: frozenset[str]


def _stem(term: str) -> str:
    return term[:5] if len(term) > 5 else term.rstrip("s")


@lru_cache(maxsize=16_384)  # titles recur across candidates and themes; a few tens of MB at most
def _terms(text: str) -> _Terms:
    raw = tuple(_TOKEN.findall(text.lower()))
    stems = tuple(_stem(t) for t in raw)
    padded = " " + " ".join(raw) + " "
    return _Terms(
        raw,
        stems,
        frozenset(stems),
        frozenset(s[:k] for s in stems for k in (1, 2, 3)),
        frozenset(padded[i : i + 3] for i in range(len(padded) - 2)),
        frozenset(t for t in raw if t.isdigit()),
    )


def _pair(q: _Terms, t: _Terms) -> list[float]:
    stems = q.stems or ("",)
    n = len(stems)
    in_title = sum(s in t.stem_set for s in stems) / n
    shared = len(q.grams & t.grams)
    return [
        in_title,
        sum(s[:3] in t.prefixes for s in stems) / n,
        float(stems[-1] in t.stem_set),
        float(in_title == 1.0),
        shared / max(1, len(q.grams) + len(t.grams) - shared),
        shared / max(1, len(q.grams)),
        len(q.numbers & t.numbers) / len(q.numbers) if q.numbers else 0.5,
        min(len(q.raw), 8) / 8,
    ]


def lexical_features(queries: str | Sequence[str], titles: Sequence[str]) -> np.ndarray:
    """[N, NUM_LEXICAL_FEATURES] float32 for one query against N titles, or N row-aligned pairs."""
    qs = [queries] * len(titles) if isinstance(queries, str) else list(queries)
    if len(qs) != len(titles):
        raise ValueError(f"lexical_features: {len(qs)} queries for {len(titles)} titles")
    if not titles:
        return np.zeros((0, NUM_LEXICAL_FEATURES), dtype=np.float32)
    return np.asarray(
        [_pair(_terms(q or ""), _terms(t or "")) for q, t in zip(qs, titles, strict=True)], dtype=np.float32
    )


KNOTS = torch.linspace(0.0, 1.0, 5)  # hat functions per feature (every feature lies in [0, 1])
_PAIRS = torch.combinations(torch.arange(NUM_LEXICAL_FEATURES), 2)  # [28, 2]
NUM_LEXICAL_BASIS = NUM_LEXICAL_FEATURES * len(KNOTS) + len(_PAIRS) * len(KNOTS) ** 2
# Each feature's hats (and each pair's products) sum to 1, so a row's basis sums to F + P = 36;
# scaled down, a training step moves the term about as much as on the raw features.
BASIS_SCALE = 1.0 / (NUM_LEXICAL_FEATURES + len(_PAIRS)) ** 0.5


def lexical_basis(features: torch.Tensor) -> torch.Tensor:
    """[N, NUM_LEXICAL_BASIS] from [N, NUM_LEXICAL_FEATURES]: every feature's hat functions, then
    the outer products of the hats of every two different features (bilinear interpolation),
    times ``BASIS_SCALE``."""
    knots = KNOTS.to(features.device, features.dtype)
    step = knots[1] - knots[0]
    hats = (1.0 - (features.clamp(0.0, 1.0).unsqueeze(-1) - knots).abs() / step).clamp(min=0.0)  # [N, F, K]
    pairs = hats[:, _PAIRS[:, 0], :, None] * hats[:, _PAIRS[:, 1], None, :]  # [N, P, K, K]
    return torch.cat([hats.flatten(1), pairs.flatten(1)], dim=1) * BASIS_SCALE
