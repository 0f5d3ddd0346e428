"""Compressed ANN search for catalogues past one replica's memory: faiss IVF-PQ + exact re-scoring.

Why IVF-PQ rather than HNSW over scalar-quantised (SQ8) vectors:

- **RAM per item.** IVF-PQ keeps ``m`` bytes of PQ code + an 8-byte id per item (``m = dim/8``: 48 B
  for MiniLM's 384 dims, ~56 B/item with the id) plus the coarse centroids (``nlist x dim`` fp32) and
  the PQ codebooks (``256 x dim`` fp32), fixed costs of a few MB. HNSW-SQ8 keeps ``dim`` bytes of
  code (384 B) *plus* its graph (``2M`` links of 4 B at level 0: ~0.25 KB/item for M=32): ~12x more.
- **Build time.** HNSW inserts items one by one (10M x 384 on 2 cores takes hours); IVF-PQ trains
  k-means and the PQ codebooks on a sample (seconds to a minute) and then only assigns and encodes
  every row (a matrix product per chunk: minutes for 10M on 2 cores), and the rows split across
  shards without any cross-shard structure.
- **Filters.** faiss applies an ``IDSelectorBitmap`` inside the list scan, so a filter never needs
  over-fetching; very selective filters go to exact search on the subset (``VectorIndex``).

Exact re-scoring: PQ distances are approximate, so the index fetches a shortlist of
``max(rerank_min, rerank_factor * n)`` ids and re-scores it exactly against the full-precision
rows, which stay **on disk** (``np.load(mmap_mode="r")``): RAM holds the codes and centroids, the
page cache only the rows actually touched. The artefact keeps those rows in fp32 (its
``embeddings.npy``, the file the ranker reads for its pair features too: one file, not two); the
index takes any float memmap, and the scale bench uses fp16 rows (half the disk and page cache; the
re-scored order differs from fp32 only on near-ties, ~1e-3 in score).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

IVFPQ_FILE = "ivfpq.faiss"
DEFAULT_COMPRESSED_THRESHOLD = 2_000_000  # items (per shard) at or above which the index is IVF-PQ


@dataclass(frozen=True)
class IVFPQParams:
    """IVF-PQ shape and search settings; ``nlist``/``m`` of 0 pick a size from the data."""

    nlist: int = 0  # coarse lists; 0: sqrt(N) rounded down to a power of two, 16..65536 (10M: 2048)
    m: int = 0  # PQ sub-quantisers (bytes per code with 8 bits); 0: dim // 8
    nbits: int = 8
    nprobe: int = 32
    rerank_factor: int = 8  # shortlist = max(rerank_min, rerank_factor * n), re-scored exactly
    rerank_min: int = 512
    train_size: int = 0  # training sample rows; 0: min(N, max(40 * nlist, 50_000))

    def resolved(self, num_items: int, dim: int) -> IVFPQParams:
        nlist = self.nlist or int(min(65536, max(16, 2 ** math.floor(math.log2(max(1.0, math.sqrt(num_items)))))))
        m = self.m or _pq_m(dim)
        train = self.train_size or int(min(num_items, max(40 * nlist, 50_000)))
        return IVFPQParams(nlist, m, self.nbits, self.nprobe, self.rerank_factor, self.rerank_min, train)

    def to_dict(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in self.__dataclass_fields__}


def _pq_m(dim: int) -> int:
    """Largest divisor of ``dim`` not above ``dim // 8`` (8 dims per 1-byte code)."""
    for m in range(max(1, dim // 8), 0, -1):
        if dim % m == 0:
            return m
    return 1


def sample_rows(emb: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """``size`` rows drawn without replacement (sorted, so a memmap reads them in order), as fp32."""
    n = emb.shape[0]
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))
    return np.ascontiguousarray(emb[idx], dtype=np.float32)


def train_ivfpq(emb: np.ndarray, params: IVFPQParams, seed: int = 0) -> Any:
    """An empty, trained faiss IVF-PQ (inner product) for unit rows like ``emb`` (sampled, never all read)."""
    import faiss

    p = params.resolved(emb.shape[0], emb.shape[1])
    # past 1024 lists the coarse quantiser is a small HNSW over the centroids: assigning 10M rows to
    # 4096 lists by brute force is most of a build, through the graph it is ~10x fewer products
    coarse = f"IVF{p.nlist}_HNSW32" if p.nlist >= 1024 else f"IVF{p.nlist}"
    index = faiss.index_factory(int(emb.shape[1]), f"{coarse},PQ{p.m}x{p.nbits}", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.do_polysemous_training = False  # the factory's default: a slow annealing pass we never use
    ivf.cp.seed = seed
    index.train(sample_rows(emb, p.train_size, seed))
    index.nprobe = p.nprobe
    return index


def fill_ivfpq(trained: Any, emb: np.ndarray, chunk: int = 200_000) -> Any:
    """A copy of ``trained`` holding every row of ``emb`` (ids = row positions), added in fp32 chunks."""
    import faiss

    index = faiss.clone_index(trained)
    for a in range(0, emb.shape[0], chunk):
        index.add(np.ascontiguousarray(emb[a : a + chunk], dtype=np.float32))
    return index


def serialize(index: Any) -> np.ndarray:
    import faiss

    return faiss.serialize_index(index)


def deserialize(blob: np.ndarray) -> Any:
    import faiss

    return faiss.deserialize_index(blob)


def write_ivfpq(index: Any, path: str | Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def read_ivfpq(path: str | Path) -> Any:
    import faiss

    return faiss.read_index(str(path))


def ivfpq_ram_bytes(index: Any) -> int:
    """Bytes the index holds in RAM: codes + ids per item, plus coarse centroids and PQ codebooks."""
    import faiss

    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    per_item = ivf.code_size + 8  # PQ code + int64 id in the inverted lists
    fixed = ivf.nlist * ivf.d * 4 + ivf.pq.M * ivf.pq.ksub * ivf.pq.dsub * 4
    return int(ivf.ntotal * per_item + fixed)


class CompressedIndex:
    """IVF-PQ shortlist + exact re-scoring against the (memory-mapped) full-precision rows."""

    def __init__(self, index: Any, rows: np.ndarray, params: IVFPQParams | None = None) -> None:
        import faiss

        if index.ntotal != rows.shape[0]:
            raise ValueError(f"IVF-PQ holds {index.ntotal} items but the rows are {rows.shape[0]}")
        self.index = index
        self.ivf = faiss.extract_index_ivf(index)
        self.rows = rows  # [N, dim] memmap (fp32 or fp16): only the shortlisted rows are read
        self.params = params or IVFPQParams()
        self.n = int(rows.shape[0])

    def tune(self, nprobe: int = 0, rerank_factor: int = 0) -> None:
        """Override the artefact's search settings (0 keeps each)."""
        self.params = replace(self.params, nprobe=nprobe or self.params.nprobe,
                              rerank_factor=rerank_factor or self.params.rerank_factor)  # fmt: skip

    def ram_bytes(self) -> int:
        return ivfpq_ram_bytes(self.index)

    def shortlist_size(self, n: int) -> int:
        return int(min(self.n, max(self.params.rerank_min, self.params.rerank_factor * n)))

    def search(
        self, queries: np.ndarray, n: int, mask: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: (positions, exact scores) of the best ``n`` (passing ``mask`` when given), best first."""
        import faiss

        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = self.shortlist_size(n)
        params = faiss.SearchParametersIVF()
        params.nprobe = self.params.nprobe
        bits = None
        if mask is not None:
            bits = np.packbits(mask.astype(bool), bitorder="little")
            params.sel = faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bits))
        _, ids = self.index.search(q, k, params=params)
        del bits  # (kept alive through the search above)
        return [self.rescore(q[b], ids[b], n) for b in range(q.shape[0])]

    def rescore(self, q: np.ndarray, ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of ``q`` with the rows ``ids`` (-1s dropped); top ``n``, best first."""
        cand = np.unique(ids[ids >= 0])  # sorted: the memmap reads in file order
        if cand.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = np.asarray(self.rows[cand], dtype=np.float32) @ q
        top = np.argsort(-scores, kind="stable")[:n]
        return cand[top].astype(np.int64), scores[top].astype(np.float32)
