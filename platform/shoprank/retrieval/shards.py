"""Sharded index artefacts: the rows split into S contiguous ranges, one ANN structure per range.

A sharded artefact is a normal artefact directory (rows, items, manifest: the ranker and the intent
stage read it unchanged) plus ``shard-000/`` .. ``shard-{S-1}/``, each holding the structure of its
row range (``hnsw.bin``, ``ivfpq.faiss``, or nothing when the range is small enough for exact search).
The manifest's ``shards`` lists each shard's ``name``, ``lo``/``hi`` rows, ``kind``, search
``params`` and file SHA-256s; one ``index_version`` names the whole set.

Building: the IVF-PQ quantiser is trained once on a sample of all rows and shared by every shard
(so the shards' codes are exactly the unsharded index's, split by row), then one Ray task per shard
(when Ray is initialised; in-process otherwise) adds its rows / builds its HNSW and writes its
directory. Searching: each shard answers for its own range (filters applied per shard) and the
caller merges by exact score (:func:`merge_topk`): with exact or re-scored shards the merged top-k
is the unsharded one's (a re-scored shard's shortlist is a superset of its part of the global one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shoprank.files import sha256_file
from shoprank.retrieval.compressed import (
    IVFPQ_FILE,
    CompressedIndex,
    IVFPQParams,
    deserialize,
    fill_ivfpq,
    read_ivfpq,
    serialize,
    train_ivfpq,
    write_ivfpq,
)

EMBEDDINGS = "embeddings.npy"
HNSW = "hnsw.bin"


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous ``[lo, hi)`` row ranges covering ``n`` rows, sizes differing by at most one."""
    edges = [n * s // shards for s in range(shards + 1)]
    return [(edges[s], edges[s + 1]) for s in range(shards)]


def shard_name(s: int) -> str:
    return f"shard-{s:03d}"


def structure_kind(rows: int, hnsw_threshold: int, compressed_threshold: int) -> str:
    """``ivfpq`` at or past ``compressed_threshold`` rows, ``hnsw`` past ``hnsw_threshold``, else ``exact``."""
    if rows >= compressed_threshold:
        return "ivfpq"
    return "hnsw" if rows >= hnsw_threshold else "exact"


def build_one(
    root: str, name: str, lo: int, hi: int, kind: str, hnsw: dict[str, Any], params: dict[str, int], blob: Any
) -> dict[str, Any]:
    """Build one row range's structure into ``root/name`` (``name`` "" : ``root`` itself); its manifest entry."""
    from shoprank.retrieval.index import build_hnsw

    out = Path(root) / name if name else Path(root)
    out.mkdir(exist_ok=True)
    rows = np.load(Path(root) / EMBEDDINGS, mmap_mode="r", allow_pickle=False)[lo:hi]
    written: list[str] = []
    if kind == "hnsw":
        index = build_hnsw(np.asarray(rows, dtype=np.float32), m=hnsw["M"], ef_construction=hnsw["ef_construction"],
                           num_threads=hnsw.get("num_threads", -1))  # fmt: skip
        index.save_index(str(out / HNSW))
        written.append(HNSW)
    elif kind == "ivfpq":
        write_ivfpq(fill_ivfpq(deserialize(blob), rows), out / IVFPQ_FILE)
        written.append(IVFPQ_FILE)
    entry: dict[str, Any] = {"name": name, "lo": lo, "hi": hi, "kind": kind}
    entry["params"] = params if kind == "ivfpq" else {}
    entry["files"] = {f: sha256_file(out / f) for f in written}
    return entry


def build_structures(
    root: Path,
    bounds: list[tuple[int, int]],
    *,
    hnsw_threshold: int,
    compressed_threshold: int,
    hnsw: dict[str, Any],
    ivfpq: IVFPQParams,
    trained: Any = None,
    sharded: bool = False,
) -> list[dict[str, Any]]:
    """Build every range's structure under ``root`` (which holds ``embeddings.npy``): one Ray task per shard
    when Ray is initialised and there is more than one; their manifest entries, in shard order."""
    import ray

    emb = np.load(root / EMBEDDINGS, mmap_mode="r", allow_pickle=False)
    kinds = [structure_kind(hi - lo, hnsw_threshold, compressed_threshold) for lo, hi in bounds]
    params: dict[str, int] = {}
    blob = None
    if "ivfpq" in kinds:
        resolved = ivfpq.resolved(emb.shape[0], emb.shape[1])
        params = resolved.to_dict()
        blob = serialize(trained if trained is not None else train_ivfpq(emb, resolved))
    names = [shard_name(s) if sharded else "" for s in range(len(bounds))]
    jobs = list(zip(names, bounds, kinds, strict=True))
    if sharded and ray.is_initialized():
        task = ray.remote(num_cpus=1)(build_one)
        shared = ray.put(blob)
        return ray.get([task.remote(str(root), n, lo, hi, k, {**hnsw, "num_threads": 1}, params, shared)
                        for n, (lo, hi), k in jobs])  # fmt: skip
    return [build_one(str(root), n, lo, hi, k, hnsw, params, blob) for n, (lo, hi), k in jobs]


def load_structure(directory: Path, entry: dict[str, Any], rows: np.ndarray) -> tuple[Any, Any]:
    """(hnsw, compressed) of one range: at most one is set; ``rows`` are the range's (memory-mapped) rows."""
    kind = entry.get("kind")
    if kind == "hnsw" and (directory / HNSW).is_file():
        from shoprank.retrieval.index import load_hnsw

        return load_hnsw(directory / HNSW, int(rows.shape[1]), int(rows.shape[0])), None
    if kind == "ivfpq":
        params = IVFPQParams(**{k: int(v) for k, v in (entry.get("params") or {}).items()
                                if k in IVFPQParams.__dataclass_fields__})  # fmt: skip
        return None, CompressedIndex(read_ivfpq(directory / IVFPQ_FILE), rows, params)
    return None, None


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard (global positions, scores) lists into the best ``n`` (ties: lower position first)."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    pos = np.concatenate([p[0] for p in parts]).astype(np.int64)
    sc = np.concatenate([p[1] for p in parts]).astype(np.float32)
    order = np.lexsort((pos, -sc))[:n]
    return pos[order], sc[order]


def merge_fused(
    parts: list[list[tuple[np.ndarray, np.ndarray]]], n: int, lexical_n: int, rrf_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """One query's per-shard ranked lists (each shard: [ANN (positions, cosines)] or, hybrid, [ANN, BM25]) merged
    into the top ``n``: each side merged across shards by score (:func:`merge_topk`; BM25 to ``lexical_n``), then,
    when there is a BM25 side, the two fused by reciprocal-rank fusion (scores: the fused ones)."""
    vec = merge_topk([p[0] for p in parts], n)
    lexical = [p[1] for p in parts if len(p) > 1]
    if not lexical:
        return vec
    from shoprank.retrieval.lexical import rrf_fuse

    return rrf_fuse([vec[0], merge_topk(lexical, lexical_n)[0]], n, rrf_k)
