"""The search components: intent -> retrieve -> rank -> blend.

The three components hold all of the stage logic, each a batched stage of the one flow
(:mod:`shoprank.serving.flow`; what each takes and gives is in :mod:`shoprank.serving.stages`):

- :class:`SearchPipeline` runs the flow in one process on the components themselves (the
  bench's in-process baseline, and anything that wants search without Serve);
- the Ray Serve deployments in ``shoprank.serve_app`` each wrap one component
  (``QueryIntent`` -> :class:`QueryEncoder`, ``CandidateRetriever`` -> :class:`Retriever`,
  ``MultiTaskRanker`` -> :class:`Ranker`) and the ingress runs the same flow through their handles.

The ranker's forward pass goes through a pluggable :class:`ScoringBackend` (``"inprocess"``
here; a Triton backend can register itself with :func:`register_backend`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shoprank.clicks.features import ClickRequest, QueryClicks
from shoprank.feedback.served_log import open_served_log
from shoprank.model.checkpoint import expected_model_version, model_version
from shoprank.model.lexical import lexical_features
from shoprank.model.multitask import MultiTaskModel
from shoprank.model.prototypes import SERVING_TEMPERATURE, ZeroShotClasses
from shoprank.model.registry import ranking_head
from shoprank.model.scoring import PairScores, class_probs, score_pairs
from shoprank.retrieval.artefact import IndexArtefact, load_artefact
from shoprank.serving.blend import blend, top_k
from shoprank.serving.clicks import ClickPick, ServedClicks, served_clicks
from shoprank.serving.config import ServingConfig
from shoprank.serving.flow import Stages, run_flow, run_sync
from shoprank.serving.items import ItemTable, blended_items, ranked_item
from shoprank.serving.rerank import rerank_stage
from shoprank.serving.retrieve import Retriever
from shoprank.serving.stages import (
    EncodedQuery,
    IntentResult,
    RankedList,
    RankJob,
    SearchResult,
)
from shoprank.serving.validation import InvalidRequest, Query, shown

log = logging.getLogger("shoprank.serving")
# per ranked job: its response scores, final blend, order by the blend, and the click blend's model basis
Ranked = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray | None]


def pick_device(device: str | None = None) -> str:
    """``cuda`` when a GPU is visible (and not overridden), else ``cpu``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_serving_model(
    checkpoint: str | Path | None, encoder: str = "minilm", device: str | None = None, encoder_runtime: str = "torch"
) -> tuple[MultiTaskModel, dict[str, Any] | None, str]:
    """(model, manifest or None, model_version) on the chosen device, its ``embed`` on ``encoder_runtime``."""
    from shoprank.model.checkpoint import load_model

    device = pick_device(device)
    model, manifest = load_model(checkpoint, encoder=encoder, device=device, encoder_runtime=encoder_runtime)
    return model, manifest, model_version(manifest, model.config.encoder)


# -- intent -------------------------------------------------------------------------------
class QueryEncoder:
    """Encodes queries (one batched forward pass) and detects their intent.

    With a trained ``intent`` head the label comes from it; otherwise it is zero-shot: the
    softmax of cosine similarity to the catalogue's top-level category names (embedded on the model's runtime)."""

    def __init__(self, model: MultiTaskModel, model_version: str, categories: list[str]) -> None:
        self.model = model
        self.model_version = model_version
        self.trained = model.is_trained("intent")
        self.classes = list(model.label_maps.get("intent", [])) if self.trained else list(categories)
        zs = not self.trained and bool(self.classes)
        self._zero_shot = ZeroShotClasses(model, self.classes, SERVING_TEMPERATURE, dtype=np.float32) if zs else None

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.embed(list(texts), batch_size=max(1, len(texts)))

    def intents(self, emb: np.ndarray) -> list[IntentResult]:
        if self.trained:
            out = class_probs(self.model, "intent", emb)
            assert out is not None
            probs, names = out
        elif self._zero_shot is not None:
            probs, names = self._zero_shot.probs(emb), self.classes
        else:
            return [IntentResult("", 0.0, True) for _ in range(emb.shape[0])]
        best = probs.argmax(axis=1)
        return [IntentResult(names[b], float(probs[r, b]), not self.trained) for r, b in enumerate(best)]

    def __call__(self, texts: list[str]) -> list[EncodedQuery]:
        """The encode stage: one batched forward pass for all ``texts``."""
        t0 = time.perf_counter()
        emb = self.encode(texts)
        intents = self.intents(emb)
        ms = (time.perf_counter() - t0) * 1e3
        return [EncodedQuery(emb[i], intents[i], ms) for i in range(len(texts))]


# -- retrieval: shoprank.serving.retrieve (re-exported here) -------------------------------


# -- ranking ------------------------------------------------------------------------------
class ScoringBackend(Protocol):
    """Scores row-aligned (query, item) pairs with every head in one forward pass."""

    name: str

    def score(
        self,
        q: np.ndarray,
        items: np.ndarray,
        item_num: np.ndarray,
        month: np.ndarray,
        lexical: np.ndarray | None = None,
    ) -> PairScores: ...


class InProcessBackend:
    """The model's heads in this process (GPU when the model sits on one)."""

    name = "inprocess"

    def __init__(self, model: MultiTaskModel, **_: Any) -> None:
        self.model = model

    def score(
        self,
        q: np.ndarray,
        items: np.ndarray,
        item_num: np.ndarray,
        month: np.ndarray,
        lexical: np.ndarray | None = None,
    ) -> PairScores:
        return score_pairs(self.model, q, items, item_num, month, lexical)


def _triton_backend(**kwargs: Any) -> ScoringBackend:
    from shoprank.serving.triton_backend import TritonBackend  # imports tritonclient only when chosen

    return TritonBackend(**kwargs)


_BACKENDS: dict[str, Callable[..., ScoringBackend]] = {"inprocess": InProcessBackend, "triton": _triton_backend}


def register_backend(name: str, factory: Callable[..., ScoringBackend]) -> None:
    """Make a ranker backend selectable by name (``ServingConfig.ranker_backend``)."""
    _BACKENDS[name] = factory


def make_backend(name: str, model: MultiTaskModel, **kwargs: Any) -> ScoringBackend:
    if name not in _BACKENDS:
        raise ValueError(f"unknown ranker backend {name!r}; available: {sorted(_BACKENDS)}")
    return _BACKENDS[name](model=model, **kwargs)


class Ranker:
    """Scores candidates of many requests with every head in one batched forward pass, then blends."""

    def __init__(
        self,
        model: MultiTaskModel,
        model_version: str,
        backend: str = "inprocess",
        clicks: ServedClicks | None = None,
        **backend_kwargs: Any,
    ):
        self.model = model
        self.clicks = clicks  # the learned click blend over the online store; None: the model blend alone
        # the model ranking the click blend reads (as eval's): this head's, unless a request sends blend_weights
        self.rank_head = ranking_head({t for t in model.trained_tasks if model.is_trained(t)})
        self.model_version = model_version
        self.backend = make_backend(backend, model, **backend_kwargs)
        self._tables: OrderedDict[str, ItemTable] = OrderedDict()
        self.current_version = ""

    def add_artefact(self, artefact: IndexArtefact, current: bool = True) -> None:
        self._tables[artefact.index_version] = ItemTable(artefact)
        self._tables.move_to_end(artefact.index_version)
        while len(self._tables) > 2:  # the serving version and the one rolling out or in
            self._tables.popitem(last=False)
        if current:
            self.current_version = artefact.index_version

    def _table(self, job: RankJob) -> ItemTable:
        version = job.index_version or self.current_version
        if version not in self._tables:
            if not job.index_dir:
                raise InvalidRequest(f"index version {version!r} is not loaded in the ranker")
            self.add_artefact(load_artefact(job.index_dir), current=False)
            if version not in self._tables:
                raise RuntimeError(
                    f"{job.index_dir} holds {self._tables and next(reversed(self._tables))}, not {version}"
                )
        return self._tables[version]

    def rank_batch(self, jobs: list[RankJob]) -> list[RankedList]:
        """Rank every job's candidates; one forward pass for the whole batch (the click blend's store
        read runs meanwhile)."""
        t0 = time.perf_counter()
        reads = self.clicks.prefetch([ClickRequest(j.query, j.user_hash) for j in jobs]) if self.clicks else None
        out: list[RankedList] = [RankedList() for _ in jobs]
        qs, its, nums, months, lex, spans = [], [], [], [], [], []
        use_lexical = self.model.uses_lexical
        tables: list[ItemTable | None] = []
        positions: list[np.ndarray] = []
        start = 0
        for j, job in enumerate(jobs):
            try:
                table = self._table(job)
                if job.item_ids is not None:
                    pos, unknown = table.artefact.positions(job.item_ids)
                    if unknown:
                        some = ", ".join(shown(u) for u in unknown[:5])  # each quoted short: a bounded message
                        raise InvalidRequest(
                            f"item_ids: {len(unknown)} unknown id(s) in index {table.artefact.index_version}: {some}"
                        )
                else:
                    pos = np.asarray(job.positions, dtype=np.int64)
            except InvalidRequest as e:
                out[j].error = str(e)
                tables.append(None)
                positions.append(np.zeros(0, np.int64))
                spans.append((start, start))
                continue
            tables.append(table)
            positions.append(pos)
            n = len(pos)
            qs.append(np.broadcast_to(np.asarray(job.q_emb, np.float32), (n, table.embeddings.shape[1])))
            its.append(table.embeddings[pos])
            nums.append(table.numeric[pos])
            months.append(np.full(n, job.month, dtype=np.int64))
            if use_lexical:
                lex.append(lexical_features(job.query, [table.titles[p] for p in pos]))
            spans.append((start, start + n))
            start += n
        if start:
            scored = self.backend.score(
                np.concatenate(qs),
                np.concatenate(its),
                np.concatenate(nums),
                np.concatenate(months),
                np.concatenate(lex) if use_lexical else None,
            )
            zero_shot = sorted(scored.zero_shot)
        else:
            scored, zero_shot = PairScores({}), []
        live = sum(1 for t in tables if t is not None)
        elapsed = (time.perf_counter() - t0) * 1000.0  # rank_forward: the forward pass, as before the click blend
        ranked: dict[int, Ranked] = {}
        for j, job in enumerate(jobs):
            table = tables[j]
            if table is None:
                continue
            a, b = spans[j]
            scores = {name: np.asarray(v[a:b], dtype=np.float32) for name, v in scored.scores.items()}
            scores["season_fit"] = table.season_fit(positions[j], job.month)
            scores["popularity"] = table.popularity[positions[j]]
            final = blend(scores, job.weights)
            # the click blend's model ranking: the head's scores; zero-shot, the raw cosine (as eval's, no clip ties)
            cos = scored.cosine if self.rank_head == "similarity" else None
            basis = scores.get(self.rank_head) if cos is None else np.asarray(cos[a:b], dtype=np.float32)
            ranked[j] = (scores, final, top_k(final, 0 if self.clicks else job.k), basis)
        picks, why = self._click_picks(jobs, tables, positions, ranked, reads)
        for j, job in enumerate(jobs):
            res = out[j]
            res.model_version, res.batch_size, res.rank_ms = self.model_version, live, elapsed
            table = tables[j]
            if table is None:
                continue
            res.degraded, res.degraded_reason = bool(why), why
            scores, final, order, _ = ranked[j]
            pos = positions[j]
            res.index_version = table.artefact.index_version
            res.num_candidates = len(pos)
            res.zero_shot = zero_shot
            if picks is not None:
                res.signals = picks[j].signals
                res.items = blended_items(table, pos, scores, picks[j])
                continue
            for r, o in enumerate(order[: job.k] if job.k > 0 else order):
                row = {n: float(v[o]) for n, v in scores.items()}
                res.items.append(ranked_item(table, int(pos[o]), float(final[o]), row, r))
        return out

    __call__ = rank_batch  # the rank stage

    def _click_picks(
        self,
        jobs: list[RankJob],
        tables: list[ItemTable | None],
        positions: list[np.ndarray],
        ranked: dict[int, Ranked],
        reads: Future[list[QueryClicks]] | None,
    ) -> tuple[dict[int, ClickPick] | None, str]:
        """The click blend's lists for the live jobs (``reads``: their store read, started with the
        batch), or (None, why it degraded)."""
        if self.clicks is None or reads is None or not ranked:
            return None, ""
        live = sorted(ranked)
        ids = {j: [t.ids[int(p)] for p in positions[j]] for j in live if (t := tables[j]) is not None}
        orders = {}
        for j in live:
            _, _, order, basis = ranked[j]
            orders[j] = order if basis is None or jobs[j].custom_weights else top_k(basis, 0)
        def views() -> list[QueryClicks]:  # the live jobs' part of the batch's store read
            got = reads.result()
            return [got[j] for j in live]

        picks, why = self.clicks.try_pick(
            [ClickRequest(jobs[j].query, jobs[j].user_hash) for j in live],
            [t.clicks for j in live if (t := tables[j]) is not None],
            [[ids[j][o] for o in orders[j]] for j in live],
            [jobs[j].k for j in live],
            [set(ids[j]) if jobs[j].item_ids is not None or jobs[j].filtered else None for j in live],
            views=views,
        )
        return (None, why) if picks is None else (dict(zip(live, picks, strict=True)), "")


# -- the whole pipeline in one process ----------------------------------------------------
def to_response(res: SearchResult, pb2: Any) -> Any:
    """SearchResult -> shoprank.v1.SearchResponse (shared by the ingress and in-process callers)."""
    resp = pb2.SearchResponse(
        model_version=res.model_version,
        index_version=res.index_version,
        batch_size=res.batch_size,
        num_candidates=res.num_candidates,
        intent=pb2.Intent(label=res.intent.label, confidence=res.intent.confidence, zero_shot=res.intent.zero_shot),
    )
    resp.zero_shot_tasks.extend(res.zero_shot)
    resp.signals.extend(res.signals)
    resp.degraded, resp.degraded_reason = res.degraded, res.degraded_reason
    resp.timings_ms.update(res.timings_ms)
    resp.blend_weights.update(res.weights)
    for it in res.items:
        resp.items.add(**it)
    return resp


def check_versions(model_version: str, artefact: IndexArtefact, strict: bool = True) -> None:
    """The index must have been embedded by the serving model, or retrieval is meaningless."""
    if artefact.model_version != model_version:
        msg = (
            f"index {artefact.path} (version {artefact.index_version}) was built with model "
            f"{artefact.model_version}, but the serving model is {model_version}; rebuild the index"
        )
        if strict:
            from shoprank.errors import ConfigError

            raise ConfigError(msg)
        log.warning(msg)


class SearchPipeline:
    """intent -> retrieve -> rank -> blend in this process, on the same components Serve uses."""

    def __init__(
        self,
        index_dir: str | Path,
        checkpoint: str | Path | None = None,
        *,
        encoder: str = "minilm",
        device: str | None = None,
        config: ServingConfig | None = None,
        strict_versions: bool = True,
        store_url: str | None = None,
        store: dict[str, Any] | None = None,
    ) -> None:
        """``store_url`` (and ``store``: StoreConfig fields): the online store the click blend reads, used
        when the checkpoint or ``config`` has blend weights (see :mod:`shoprank.serving.clicks`)."""
        self.config = config or ServingConfig()
        model, manifest, version = load_serving_model(checkpoint, encoder, device, self.config.encoder_runtime)
        artefact = load_artefact(index_dir)
        check_versions(version, artefact, strict_versions)
        self.model_version = version
        self.encoder = QueryEncoder(model, version, artefact.manifest.get("categories", []))
        self.retriever = Retriever(artefact, self.config)
        clicks = served_clicks(store_url, manifest, self.config, store, checkpoint)
        self.ranker = Ranker(model, version, self.config.ranker_backend, clicks=clicks)
        self.ranker.add_artefact(artefact)
        self.rank_stage = rerank_stage(self.ranker, self.config, str(model.device))  # + the cross-encoder phase
        # the served-results log (None: off); handle() logs each response, close() writes the rest
        self.served_log = open_served_log(self.config.served_log_dir)

    def search_batch(self, queries: list[Query]) -> list[SearchResult | InvalidRequest]:
        """Search (or Rank, for queries with ``item_ids``) a batch of validated queries: one result per
        query, or the InvalidRequest that query alone failed with (the flow's error behaviour)."""
        stages = Stages(encode=self.encoder, retrieve=self.retriever, rank=self.rank_stage)
        return run_sync(run_flow(stages, queries, self.config.num_candidates))

    def search(self, query: Query) -> SearchResult:
        """One query; raises its InvalidRequest."""
        (res,) = self.search_batch([query])
        if isinstance(res, InvalidRequest):
            raise res
        return res

    def handle(self, request: Any, pb2: Any) -> Any:
        """A protobuf SearchRequest/RankRequest -> SearchResponse, exactly as the server does it."""
        from shoprank.serving.validation import validate_rank, validate_search

        t0 = time.perf_counter()
        is_rank = request.DESCRIPTOR.name == "RankRequest"
        q = validate_rank(request, self.config) if is_rank else validate_search(request, self.config)
        t1 = time.perf_counter()
        res = self.search(q)
        res.timings_ms["validate"] = (t1 - t0) * 1e3
        res.timings_ms["total"] = (time.perf_counter() - t0) * 1e3
        resp = to_response(res, pb2)
        resp.request_id = uuid.uuid4().hex  # as the ingress does
        if self.served_log is not None:
            self.served_log.log_result(resp.request_id, q, res, "rank" if is_rank else "search")
        return resp

    def close(self) -> None:
        """Write out the served-results log and close the store reader."""
        if self.served_log is not None:
            self.served_log.close()
        if self.ranker.clicks is not None:
            self.ranker.clicks.close()


def check_versions_manifest(
    checkpoint: str | Path | None,
    encoder: str,
    index_manifest: dict[str, Any],
    index_dir: str | Path,
    strict: bool = True,
) -> None:
    """Like :func:`check_versions`, from the index manifest alone (used before deploying)."""
    want = expected_model_version(checkpoint, encoder)
    got = index_manifest.get("model_version")
    if got != want:
        msg = (
            f"index {index_dir} (version {index_manifest.get('index_version')}) was built with model {got}, "
            f"but the serving model is {want}; rebuild the index with the same checkpoint"
        )
        if strict:
            from shoprank.errors import ConfigError

            raise ConfigError(msg)
        log.warning(msg)
