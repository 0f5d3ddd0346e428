"""Fuzz over real gRPC: 1,200 seeded random Search/Rank requests against one tiny app, every response checked.

The generator (:func:`make_case`) mixes well-formed parts (exact item texts, catalogue words, unicode
text, in-range k and months, catalogue categories and prices, blend weights in 0..max) with junk
(empty or over-long queries, k and months out of range, unknown or contradictory filters, unparsable
filter values, unknown/negative/NaN/infinite/huge blend weights, unknown, duplicate and blank Rank
ids). Each case knows whether it is clean (every part well-formed: it must be answered OK) or why it
is junk (it must be refused with ``INVALID_ARGUMENT``).

Every OK response is held to the contract (:func:`check_response`): ranks 1..n, len == min(k, what the
catalogue allows), finite scores, each per-task score in 0..1, score = sum of blend_weights x scores
(or = scores["click_blend"] on a click blend list), best first, filters honoured against the
catalogue, Rank answers only the ids asked, no id twice, item fields as the catalogue's. Every error:
INVALID_ARGUMENT (never UNKNOWN/INTERNAL) with a message of 1..999 characters.

The app retrieves ``num_candidates`` = the catalogue's size, so a filtered Search must return exactly
min(k, items passing the filter). ``tests/unit/test_score_ranges.py`` runs the same cases in process.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pytest
from shoprank.serving.config import BLENDABLE_SCORES, ServingConfig
from shoprank.serving.protos import pb2

from tests.serving_helpers import text_of

SEED = 20261129
N_REQUESTS = 1200
THREADS = 8
APP = "fuzz"
SERVING = {"num_candidates": 300, "max_k": 50, "request_timeout_s": 120}  # 300: the whole small catalogue
SCORE_TOL = 1e-6  # |score - sum(w * s)| per unit of sum(w): float32 rounding of one sum is ~6e-8
UNIT_SCORES = set(BLENDABLE_SCORES) | {"demand", "click_blend"}  # documented 0..1 (search.proto ScoredItem)

# text pieces: catalogue-ish words, hostile strings, and unicode from several scripts (no surrogates)
HOSTILE = ["'; DROP TABLE items; --", "%s%n%x", "../../etc/passwd", "<script>alert(1)</script>", "{{7*7}}",
           "\x00nul", "a\tb\nc", "NaN", "-1",
           "💥🔥 boots", "ｂｏｏｔｓ", "ﬁsh ﬂask", "İstanbul ǅ", "e\u0301\u0301"]  # fmt: skip
UNICODE_BLOCKS = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF),
                  (0x900, 0x97F), (0x3040, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0x1F300, 0x1F64F),
                  (0x300, 0x36F), (0x200B, 0x200F), (0xFE00, 0xFE0F), (0x10000, 0x1007F)]  # fmt: skip
CATEGORY_PREFIXES = ["Apparel", "apparel > footwear", "APPAREL > FOOTWEAR > BOOTS", "Home > Garden", "home",
                     "Electronics > Audio", "Toys", "  toys > outdoor  ", "Home > Kitchen > Cookware", ""]  # fmt: skip
UNKNOWN_FILTERS = ["colour", "brand", "Category", "price", "in-stock", "", "類別", "price_min "]
UNKNOWN_WEIGHTS = ["demand", "click_blend", "Relevance", "score", "", "🙂", "season"]
PRICE_JUNK = ["abc", "", "nan", "inf", "-inf", "1e400", "-5", "12,5", "0x10", "--1"]
STOCK_TOKENS = ["true", "1", "yes", "y", "TRUE", " no ", "false", "0", "n", "No"]


@dataclass
class Case:
    """One request, whether it must be answered (``junk`` empty) or refused (why), and what to check."""

    rpc: str  # "search" | "rank"
    request: Any
    junk: list[str] = field(default_factory=list)
    k: int = 0
    filters: dict[str, Any] = field(default_factory=dict)  # the effective filter (category, price_min/max, in_stock)
    ids: list[str] = field(default_factory=list)  # Rank: the ids asked
    weights: dict[str, float] | None = None  # the request's blend weights (None: the server's defaults)


def unicode_text(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        lo, hi = rng.choice(UNICODE_BLOCKS)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def make_query(rng: random.Random, cat: pl.DataFrame, cfg: ServingConfig, junk: list[str]) -> str:
    r = rng.random()
    if r < 0.30:
        q = text_of(cat, rng.randrange(cat.height))[: cfg.max_query_chars]
    elif r < 0.52:
        words = cat["title"][rng.randrange(cat.height)].split()[rng.randint(0, 2) :]
        q = " ".join(words[: rng.randint(1, 4)]) or "boots"
        q = q.upper() if rng.random() < 0.2 else q
    elif r < 0.76:
        q = rng.choice("aé中🙂ж") + unicode_text(rng, rng.randint(0, 40))
    elif r < 0.86:
        q = rng.choice(HOSTILE)
    elif r < 0.91:
        q = rng.choice(["", " ", "\t\n", "\u3000", "   \u2003 "])
    elif r < 0.95:
        q = "x" * (cfg.max_query_chars + rng.randint(1, 3000))
    else:
        q = "a" * cfg.max_query_chars  # at the limit: fine
    if not q.strip():
        junk.append("empty query")
    elif len(q) > cfg.max_query_chars:
        junk.append("query too long")
    return q


def make_k(rng: random.Random, cfg: ServingConfig, rank: bool, junk: list[str]) -> int:
    if rng.random() < 0.9:
        lo = 0 if rank else 1
        return rng.choice([lo, 1, 5, 10, cfg.max_k, rng.randint(lo, cfg.max_k)])
    k = rng.choice([-1, -(2**31), cfg.max_k + 1, cfg.max_k * 100, 2**31 - 1] + ([] if rank else [0]))
    junk.append(f"k={k}")
    return k


def make_month(rng: random.Random, junk: list[str]) -> int:
    if rng.random() < 0.94:
        return rng.randint(0, 12)
    m = rng.choice([-1, 13, 100, 2**31 - 1, -(2**31)])
    junk.append(f"month={m}")
    return m


def make_weights(rng: random.Random, cfg: ServingConfig, junk: list[str]) -> dict[str, float] | None:
    if rng.random() < 0.45:
        return None
    names = rng.sample(list(BLENDABLE_SCORES), rng.randint(1, len(BLENDABLE_SCORES)))
    w = {n: rng.choice([0.0, 1.0, cfg.max_blend_weight, 1e-6, round(rng.uniform(0, cfg.max_blend_weight), 3)])
         for n in names}  # fmt: skip
    r = rng.random()
    if r < 0.07:
        w[rng.choice(UNKNOWN_WEIGHTS)] = 1.0
        junk.append("unknown blend weight")
    elif r < 0.18:
        bad = rng.choice([-1.0, -1e-3, math.nan, math.inf, -math.inf, 1e30, 1e40, cfg.max_blend_weight * 1.5])
        w[rng.choice(names)] = bad
        junk.append(f"blend weight {bad}")
    elif not any(v > 0 for v in w.values()):
        junk.append("all blend weights 0")
    return w


def make_filters(rng: random.Random, junk: list[str]) -> tuple[Any, dict[str, Any]]:
    """(pb2.Filters or None, the effective filter as validation reads it)."""
    if rng.random() < 0.45:
        return None, {}
    f = pb2.Filters()
    eff: dict[str, Any] = {}
    typed: set[str] = set()
    if rng.random() < 0.45:
        c = rng.choice(CATEGORY_PREFIXES) if rng.random() < 0.8 else unicode_text(rng, rng.randint(1, 8))
        if rng.random() < 0.5:
            f.category = c
            if c:  # an empty string field is not sent
                typed.add("category")
        else:
            f.by_name["category"] = c
        if c.strip():
            eff["category"] = c.strip()
    prices: dict[str, float] = {}
    for name in ("price_min", "price_max"):
        if rng.random() < 0.35:
            r = rng.random()
            if r < 0.12:
                bad = rng.choice(PRICE_JUNK)
                f.by_name[name] = bad
                junk.append(f"{name}={bad!r}")
            elif r < 0.2:
                bad_v = rng.choice([-1.0, -0.01, math.nan, math.inf])
                setattr(f, name, bad_v)
                junk.append(f"{name}={bad_v}")
            else:
                v = round(rng.uniform(0, 350), 2)
                if rng.random() < 0.5:
                    setattr(f, name, v)
                    typed.add(name)
                else:
                    f.by_name[name] = rng.choice([str(v), f" {v} ", f"{v:e}"])
                prices[name] = v
    if "price_min" in prices and "price_max" in prices and prices["price_min"] > prices["price_max"]:
        junk.append("price_min > price_max")
    eff.update(prices)
    if rng.random() < 0.3:
        if rng.random() < 0.5:
            v = rng.random() < 0.5
            f.in_stock = v
            typed.add("in_stock")
        elif rng.random() < 0.85:
            tok = rng.choice(STOCK_TOKENS)
            f.by_name["in_stock"] = tok
            v = tok.strip().lower() in ("true", "1", "yes", "y")
        else:
            f.by_name["in_stock"] = rng.choice(["maybe", "", "2", "tru"])
            junk.append("in_stock unparsable")
            v = False
        if v:
            eff["in_stock"] = True
    if rng.random() < 0.07:
        f.by_name[rng.choice(UNKNOWN_FILTERS)] = "1"
        junk.append("unknown filter")
    if typed and rng.random() < 0.06:
        f.by_name[sorted(typed)[0]] = "1"
        junk.append("filter given twice")
    return f, eff


def make_ids(rng: random.Random, ids: list[str], cfg: ServingConfig, junk: list[str]) -> list[str]:
    max_id = getattr(cfg, "max_id_chars", 256)
    out = rng.sample(ids, rng.randint(1, 30))
    r = rng.random()
    if r < 0.08:
        out.insert(rng.randrange(len(out) + 1), rng.choice(["NOPE-1", "sku0000001", "SKU0000001 ", "ид-🙂"]))
        junk.append("unknown id")
    elif r < 0.12:
        out.insert(rng.randrange(len(out) + 1), "Z" * rng.randint(100, max_id))  # long, unknown
        junk.append("unknown long id")
    elif r < 0.18:
        out.append(rng.choice(out))
        junk.append("duplicate id")
    elif r < 0.21:
        out.insert(0, rng.choice(["", " ", "\t"]))
        junk.append("blank id")
    elif r < 0.23:
        out = []
        junk.append("no ids")
    elif r < 0.24:
        out = ids * (cfg.max_rank_items // len(ids) + 1)
        junk.append("too many ids")
    return out


def make_case(rng: random.Random, cat: pl.DataFrame, cfg: ServingConfig) -> Case:
    """One random Search (60%) or Rank request and its expectation."""
    junk: list[str] = []
    rank = rng.random() < 0.4
    query = make_query(rng, cat, cfg, junk)
    k = make_k(rng, cfg, rank, junk)
    ctx = pb2.Context(month=make_month(rng, junk), locale=rng.choice(["", "en-GB", "de-DE", "zh-Hant-TW"]),
                      campaign=rng.choice(["", "black-friday", "🎄"]))  # fmt: skip
    user = rng.choice(["", "", "user-1", "ユーザー", unicode_text(rng, 12)])
    weights = make_weights(rng, cfg, junk)
    if rank:
        ids = make_ids(rng, cat["item_id"].to_list(), cfg, junk)
        req = pb2.RankRequest(query=query, user_id=user, context=ctx, item_ids=ids, k=k, blend_weights=weights or {})
        return Case("rank", req, junk, k, {}, ids, weights)
    filters, eff = make_filters(rng, junk)
    req = pb2.SearchRequest(query=query, user_id=user, context=ctx, k=k, filters=filters, blend_weights=weights or {})
    return Case("search", req, junk, k, eff, [], weights)


def make_cases(cat: pl.DataFrame, cfg: ServingConfig, n: int, seed: int = SEED) -> list[Case]:
    rng = random.Random(seed)
    return [make_case(rng, cat, cfg) for _ in range(n)]


# -- the contract ------------------------------------------------------------------------------
def passes(row: dict[str, Any], f: dict[str, Any]) -> bool:
    """Whether a catalogue row passes the effective filter (retrieval's rules, from the proto's words)."""
    if "category" in f and not (row["category_path"] or "").lower().startswith(f["category"].lower()):
        return False
    price = row["price"]
    if "price_min" in f and (price is None or price < f["price_min"]):
        return False
    if "price_max" in f and (price is None or price > f["price_max"]):
        return False
    return not (f.get("in_stock") and not row["in_stock"])


def expected_weights(case: Case, cfg: ServingConfig) -> dict[str, float]:
    w = case.weights if case.weights else cfg.blend_weights
    return {n: float(np.float32(v)) for n, v in w.items()}


def check_response(case: Case, resp: Any, rows: dict[str, dict[str, Any]], cfg: ServingConfig) -> list[str]:
    """Every broken invariant of one OK response (empty: all hold)."""
    bad: list[str] = []
    items = list(resp.items)
    ids = [it.item_id for it in items]
    if [it.rank for it in items] != list(range(1, len(items) + 1)):
        bad.append(f"ranks {[it.rank for it in items]}")
    if len(set(ids)) != len(ids):
        bad.append("duplicate ids")
    if case.rpc == "rank":
        want_n = min(case.k or len(case.ids), len(case.ids))
        if not set(ids) <= set(case.ids):
            bad.append(f"ids not asked: {sorted(set(ids) - set(case.ids))[:3]}")
        if resp.num_candidates != len(case.ids):
            bad.append(f"num_candidates {resp.num_candidates} != {len(case.ids)}")
    else:
        want_n = min(case.k, sum(passes(r, case.filters) for r in rows.values()))
    if len(items) != want_n:
        bad.append(f"{len(items)} results, want {want_n} (k={case.k})")
    weights = dict(resp.blend_weights)
    if weights != pytest.approx(expected_weights(case, cfg), rel=1e-7):
        bad.append(f"blend_weights {weights} != {expected_weights(case, cfg)}")
    c = resp.intent.confidence
    if not (math.isfinite(c) and 0.0 <= c <= 1.0):
        bad.append(f"intent confidence {c}")
    for it in items:
        where = f"{it.item_id} (rank {it.rank})"
        if not math.isfinite(it.score):
            bad.append(f"{where}: score {it.score}")
        for name, s in it.scores.items():
            if not math.isfinite(s) or (name in UNIT_SCORES and not 0.0 <= s <= 1.0) or name not in UNIT_SCORES:
                bad.append(f"{where}: scores[{name!r}] = {s}")
        if "click_blend" in it.scores:
            if it.score != it.scores["click_blend"]:
                bad.append(f"{where}: click blend score {it.score} != {it.scores['click_blend']}")
        else:
            if not set(BLENDABLE_SCORES) <= set(it.scores):
                bad.append(f"{where}: scores {sorted(it.scores)} miss some of {BLENDABLE_SCORES}")
            want = sum(w * it.scores.get(n, 0.0) for n, w in weights.items())
            if abs(it.score - want) > SCORE_TOL * max(1.0, sum(weights.values())):
                bad.append(f"{where}: score {it.score!r} != sum(w * s) {want!r}")
        row = rows.get(it.item_id)
        if row is None:
            bad.append(f"{where}: not in the catalogue")
            continue
        price = float("nan") if row["price"] is None else row["price"]
        same_price = (math.isnan(price) and math.isnan(it.price)) or price == it.price
        if (it.category_path, it.in_stock, it.title) != (row["category_path"], row["in_stock"], row["title"]) or not (
            same_price
        ):
            bad.append(f"{where}: fields differ from the catalogue's")
        if case.rpc == "search" and not passes(row, case.filters):
            bad.append(f"{where}: fails the filter {case.filters}")
    scores = [it.score for it in items]
    if any(a < b for a, b in zip(scores, scores[1:], strict=False)):
        bad.append(f"not best first: {scores}")
    return bad


def check_error(code: str, message: str) -> list[str]:
    bad = [] if code == "INVALID_ARGUMENT" else [f"code {code}"]
    if not 0 < len(message) < 1000:
        bad.append(f"message of {len(message)} characters")
    return bad


def tally(cases: list[Case], outcomes: list[tuple[str, Any]], rows: dict, cfg: ServingConfig) -> tuple[Counter, list]:
    """(outcome counts, problems) of every case: clean must be OK and hold the contract; junk INVALID_ARGUMENT."""
    counts: Counter = Counter()
    problems: list[tuple[int, str, list[str]]] = []
    for n, (case, (code, got)) in enumerate(zip(cases, outcomes, strict=True)):
        counts[f"{case.rpc} {code}"] += 1
        if code == "OK":
            bad = check_response(case, got, rows, cfg)
            if case.junk:
                bad.append(f"junk answered OK: {case.junk}")
            counts["items"] += len(got.items)
            counts["similarity clipped to 0"] += sum(it.scores.get("similarity", 1.0) == 0.0 for it in got.items)
        else:
            bad = check_error(code, got)
            if not case.junk:
                bad.append(f"clean request refused: {got[:300]}")
        if bad:
            problems.append((n, case.rpc, bad))
    return counts, problems


def catalogue_rows(cat: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {r["item_id"]: r for r in cat.iter_rows(named=True)}


# -- over gRPC ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_app(ray_local, tmp_path_factory):
    from ray import serve

    from tests.serving_helpers import deploy_tiny, indexed_catalogue

    tmp = tmp_path_factory.mktemp("fuzz")
    cat, _ = indexed_catalogue(tmp)
    port = deploy_tiny(tmp / "index", APP, serving=SERVING)
    try:
        yield port, cat
    finally:
        serve.delete(APP)


def test_fuzzed_requests_hold_every_invariant(fuzz_app) -> None:
    import grpc
    from shoprank.serving.protos import pb2_grpc

    port, cat = fuzz_app
    cfg = ServingConfig.model_validate(SERVING)
    cases = make_cases(cat, cfg, N_REQUESTS)
    channel = grpc.insecure_channel(f"localhost:{port}")
    stub = pb2_grpc.SearchServiceStub(channel)
    meta = [("application", APP)]
    stub.Search(pb2.SearchRequest(query="warm up", k=1), metadata=meta, timeout=120)  # replicas loaded

    def call(case: Case) -> tuple[str, Any]:
        method = stub.Rank if case.rpc == "rank" else stub.Search
        try:
            return "OK", method(case.request, metadata=meta, timeout=60)
        except grpc.RpcError as e:
            return (e.code().name if e.code() is not None else "NONE"), e.details() or ""

    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            outcomes = list(pool.map(call, cases))
    finally:
        channel.close()
    elapsed = time.perf_counter() - t0
    counts, problems = tally(cases, outcomes, catalogue_rows(cat), cfg)
    print(f"{len(cases)} requests in {elapsed:.1f} s ({THREADS} threads):", dict(sorted(counts.items())))
    assert not problems, f"{len(problems)} of {len(cases)} requests broke the contract, first: {problems[:5]}"
    ok = sum(v for k, v in counts.items() if k.endswith(" OK"))
    assert ok >= 0.4 * len(cases) and len(cases) - ok >= 0.2 * len(cases), counts  # both sides exercised
    assert counts["search OK"] >= 200 and counts["rank OK"] >= 150, counts
    junk = Counter(j.split("=")[0] for c in cases for j in c.junk)
    assert len(junk) >= 15, junk  # most kinds of junk were sent
