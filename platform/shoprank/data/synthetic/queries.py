"""Synthetic queries aimed at item types, their candidate items with graded labels, and the shown lists."""

from __future__ import annotations

import numpy as np
import polars as pl

from shoprank.data.schemas import CATEGORY_SEP, SCHEMAS, SEASONS
from shoprank.data.sources.common import stable_query_id
from shoprank.data.synthetic.catalogue import ItemCore, item_ids, seeded_rng
from shoprank.data.synthetic.vocabulary import COLOURS, SEASON_WORDS, Taxonomy


def queries_and_judgements(
    tax: Taxonomy, core: ItemCore, seed: int, n_queries: int
) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, np.ndarray]:
    """Queries aimed at a type (sometimes with a season word or colour), candidates and graded labels.

    Returns (queries, judgements, shown items [n_queries, 10], their labels [n_queries, 10]).
    """
    rng = seeded_rng(seed, 2)
    n_items = len(core)
    order = np.argsort(core.type_id, kind="stable")
    counts = np.bincount(core.type_id, minlength=tax.n_types)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    present = np.flatnonzero(counts > 0)
    weights = counts[present].astype(float) ** 0.7
    target = present[rng.choice(len(present), size=n_queries, p=weights / weights.sum())]
    q_season = np.where(rng.random(n_queries) < 0.4, tax.season[target], -1)
    q_colour = np.where(rng.random(n_queries) < 0.25, rng.integers(0, len(COLOURS), n_queries), -1)
    texts, intents, qids = [], [], []
    jq, ji, jl = [], [], []
    shown = np.zeros((n_queries, 10), dtype=np.int64)
    shown_labels = np.zeros((n_queries, 10), dtype=np.int8)
    cat_of_item = tax.category_id[core.type_id]
    seen: set[str] = set()
    keep: list[int] = []
    for q in range(n_queries):
        t = target[q]
        words = []
        if q_season[q] >= 0:
            words.append(SEASON_WORDS[SEASONS[q_season[q]]][rng.integers(0, 8)])
        if q_colour[q] >= 0:
            words.append(COLOURS[q_colour[q]])
        words.append(tax.type_name[t].lower())
        if rng.random() < 0.15:
            words.append("for " + rng.choice(["men", "women", "kids", "home", "camping", "gift"]))
        text = " ".join(words)
        if text in seen:  # one id per distinct text, so a query split never leaks a text
            continue
        seen.add(text)
        keep.append(q)
        qid = stable_query_id(text)
        qids.append(qid)
        texts.append(text)
        intents.append(tax.department[t] + CATEGORY_SEP + tax.category[t])
        # Candidates: items of the type, of the category, and random others.
        same_type = order[starts[t] : starts[t] + counts[t]]
        pick_t = rng.choice(same_type, size=min(12, len(same_type)), replace=False)
        cat_types = np.flatnonzero(tax.category_id == tax.category_id[t])
        sib = cat_types[cat_types != t]
        sib = sib[counts[sib] > 0]
        pick_c = np.array(
            [order[starts[s] + rng.integers(0, counts[s])] for s in rng.choice(sib, size=min(6, len(sib)))]
            if len(sib)
            else [],
            dtype=np.int64,
        )
        pick_r = rng.integers(0, n_items, 6)
        cands = np.unique(np.concatenate([pick_t, pick_c, pick_r]))
        same_t = core.type_id[cands] == t
        same_c = cat_of_item[cands] == tax.category_id[t]
        attr_ok = np.ones(len(cands), dtype=bool)
        if q_season[q] >= 0:
            attr_ok &= core.season[cands] == q_season[q]
        if q_colour[q] >= 0:
            attr_ok &= core.colour[cands] == q_colour[q]
        has_attr = q_season[q] >= 0 or q_colour[q] >= 0
        label = np.where(same_t & attr_ok & has_attr, 3, np.where(same_t, 2, np.where(same_c, 1, 0)))
        if not has_attr:
            label = np.where(same_t & (core.popularity[cands] > 20), 3, label)
        jq.extend([len(qids) - 1] * len(cands))
        ji.extend(cands.tolist())
        jl.extend(label.tolist())
        # The list a (noisy) production ranker showed: top 10 by label + noise.
        score = label + rng.normal(0, 0.9, len(cands))
        top = cands[np.argsort(-score, kind="stable")][:10]
        top_l = label[np.argsort(-score, kind="stable")][:10]
        if len(top) < 10:
            extra = rng.integers(0, n_items, 10 - len(top))
            top = np.concatenate([top, extra])
            top_l = np.concatenate([top_l, np.zeros(len(extra), dtype=label.dtype)])
        shown[q] = top
        shown_labels[q] = top_l
    shown, shown_labels = shown[keep], shown_labels[keep]
    queries = pl.DataFrame({"query_id": qids, "text": texts, "intent": intents}, schema=SCHEMAS["queries"])
    jq_arr = np.array(jq)
    judgements = pl.DataFrame(
        {
            "query_id": np.array(qids, dtype=object)[jq_arr].astype(str),
            "query": np.array(texts, dtype=object)[jq_arr].astype(str),
            "item_id": item_ids(np.array(ji)),
            "label": np.array(jl, dtype=np.float64),
        },
        schema=SCHEMAS["judgements"],
    )
    return queries, judgements, shown, shown_labels
