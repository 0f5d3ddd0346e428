"""A versioned index artefact: one directory, written atomically, read without pickle.

Layout::

    DIR/
      manifest.json     format, index_version, model_version, num_items, dim, categories,
                        hnsw parameters, SHA-256 of every file (the commit point: written last)
      embeddings.npy    float32 [num_items, dim], unit rows (read with allow_pickle=False)
      items.parquet     item_id, title, category_path, price, rating, season, in_stock, popularity,
                        and ``text``: the ``pair`` item text that was embedded (the manifest's
                        ``item_text`` holds its recipe; older artefacts lack both: readers rebuild
                        the text from the columns above with the default recipe), and ``lexical_text``:
                        the text the lexical index holds (only in an artefact with one)
      hnsw.bin          hnswlib index over the embeddings (only when hnsw_threshold <= num_items < compressed_threshold)
      ivfpq.faiss       faiss IVF-PQ over the embeddings (only when num_items >= compressed_threshold;
                        :mod:`shoprank.retrieval.compressed`: the rows are re-scored from embeddings.npy)
      lexical/          the BM25 index over each item's lexical text (bm25s: CSC score arrays as .npy, vocabulary and
                        parameters as JSON; :mod:`shoprank.retrieval.lexical`): built by the index job, or by
                        ``write_artefact(..., lexical=True)``, or from items that carry ``lexical_text``;
                        a sharded artefact keeps one row slice of it in each ``shard-NNN/lexical/`` instead
      shard-000/ ...    a sharded artefact (``shards`` > 1): each sub-directory holds the ANN structure of one
                        contiguous row range (hnsw.bin / ivfpq.faiss, or nothing when exact); the manifest's
                        ``shards`` lists each range, kind and file SHA-256s (:mod:`shoprank.retrieval.shards`).
                        The rows and items stay in the parent: the ranker reads them as before, and a shard
                        replica maps only its own range.

The whole directory is written under a temporary name next to ``DIR`` and swapped into place
(``shoprank.files.staged_dir``), so a reader never sees a half-written artefact and an existing
``DIR`` is replaced only after the new one is complete (atomically on Linux).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shoprank.data.schemas import CATEGORY_SEP
from shoprank.errors import DataError
from shoprank.files import sha256_file, staged_dir
from shoprank.model.checkpoint import read_json_document
from shoprank.retrieval.compressed import DEFAULT_COMPRESSED_THRESHOLD, IVFPQ_FILE, IVFPQParams
from shoprank.retrieval.lexical import LEXICAL_COLUMN, lexical_texts, load_lexical, write_lexical

FORMAT = "shoprank-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npy"
ITEMS = "items.parquet"
HNSW = "hnsw.bin"
ITEM_COLUMNS = ("item_id", "title", "category_path", "price", "rating", "season", "in_stock", "popularity")
TEXT_COLUMN = "text"  # optional items column: the embedded item text (shoprank.model.text)
DEFAULT_HNSW_THRESHOLD = 50_000


def top_categories(category_paths: list[str | None], max_classes: int = 64) -> list[str]:
    """Distinct top-level categories (the zero-shot intent classes), most frequent first."""
    counts: dict[str, int] = {}
    for c in category_paths:
        if c:
            top = c.split(CATEGORY_SEP)[0].strip()
            if top:
                counts[top] = counts.get(top, 0) + 1
    return [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:max_classes]


def normalise_items(items: pl.DataFrame) -> pl.DataFrame:
    """The index's item table: canonical columns (missing ones filled), in ITEM_COLUMNS order, then
    the embedded ``text`` when given."""
    defaults: dict[str, pl.Expr] = {
        "title": pl.lit("", pl.Utf8),
        "category_path": pl.lit("", pl.Utf8),
        "price": pl.lit(None, pl.Float64),
        "rating": pl.lit(None, pl.Float64),
        "season": pl.lit(None, pl.Utf8),
        "in_stock": pl.lit(True, pl.Boolean),
        "popularity": pl.lit(0.0, pl.Float64),
    }
    if "item_id" not in items.columns:
        raise DataError("catalogue has no item_id column")
    cols = []
    for name in ITEM_COLUMNS:
        if name in items.columns:
            cols.append(pl.col(name))
        else:
            cols.append(defaults[name].alias(name))
    out = items.select(cols).with_columns(
        pl.col("item_id").cast(pl.Utf8),
        pl.col("title").cast(pl.Utf8).fill_null(""),
        pl.col("category_path").cast(pl.Utf8).fill_null(""),
        pl.col("price").cast(pl.Float64),
        pl.col("rating").cast(pl.Float64),
        pl.col("season").cast(pl.Utf8),
        pl.col("in_stock").cast(pl.Boolean).fill_null(True),
        pl.col("popularity").cast(pl.Float64).fill_null(0.0),
    )
    for extra in (TEXT_COLUMN, LEXICAL_COLUMN):
        if extra in items.columns:
            out = out.with_columns(items[extra].cast(pl.Utf8).alias(extra))
    return out


def make_index_version(embeddings: np.ndarray, item_ids: list[str], model_version: str, chunk: int = 100_000) -> str:
    """``idx-<UTC timestamp>-<content hash>``: sortable by time, unique per content (the rows hashed as fp32,
    a chunk at a time, so a memory-mapped set is never all in memory)."""
    h = hashlib.sha256()
    h.update(model_version.encode())
    h.update("\x1f".join(item_ids).encode())
    for a in range(0, embeddings.shape[0], chunk):
        h.update(np.ascontiguousarray(embeddings[a : a + chunk], dtype=np.float32).tobytes())
    return f"idx-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{h.hexdigest()[:10]}"


def write_artefact(
    out_dir: str | Path, items: pl.DataFrame, embeddings: np.ndarray, *, model_version: str, **options: Any
) -> Path:
    """Write a complete artefact to ``out_dir`` atomically and return its path. ``options``: the build
    options of :func:`finish_artefact` (``encoder``, ``hnsw_threshold``, ``compressed_threshold``, ``ivfpq``,
    ``shards`` > 1 for a sharded artefact, each shard's structure built by its own Ray task when Ray is up, ...)."""
    out_dir = Path(out_dir)
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    with staged_dir(out_dir) as tmp:
        np.save(tmp / EMBEDDINGS, emb, allow_pickle=False)
        finish_artefact(tmp, items, model_version=model_version, **options)
    return out_dir


def finish_artefact(
    tmp: Path,
    items: pl.DataFrame,
    *,
    model_version: str,
    encoder: str = "minilm",
    hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD,
    hnsw_m: int = 32,
    hnsw_ef_construction: int = 200,
    num_threads: int = -1,
    extra: dict[str, Any] | None = None,
    index_version: str | None = None,
    compressed_threshold: int = DEFAULT_COMPRESSED_THRESHOLD,
    ivfpq: IVFPQParams | None = None,
    shards: int = 1,
    trained: Any = None,
    lexical: bool | None = None,
) -> dict[str, Any]:
    """Complete a staged artefact directory that already holds ``embeddings.npy`` (unit rows, fp32, or fp16
    for a compressed-only set too big to write in fp32): the item table, the ANN structure(s), the lexical
    index (``lexical``: over :func:`~shoprank.retrieval.lexical.lexical_texts` of ``items``, read before the
    columns are cut to the canonical ones, and kept as items column ``lexical_text``; None: when ``items`` carry
    that column, i.e. re-writing a hybrid artefact's items keeps its lexical index; the index job passes True)
    and, last, the manifest. ``trained``: an empty trained IVF-PQ to reuse (else one is trained on a sample)."""
    from shoprank.retrieval.shards import build_structures, shard_bounds

    if lexical is None:
        lexical = LEXICAL_COLUMN in items.columns
    texts = lexical_texts(items) if lexical else None
    items = normalise_items(items.drop(LEXICAL_COLUMN, strict=False))
    if texts is not None:
        items = items.with_columns(pl.Series(LEXICAL_COLUMN, texts, dtype=pl.Utf8))
    emb = np.load(tmp / EMBEDDINGS, mmap_mode="r", allow_pickle=False)
    if emb.ndim != 2 or emb.shape[0] != items.height:
        raise DataError(f"embeddings shape {emb.shape} does not match {items.height} items")
    if items["item_id"].n_unique() != items.height:
        raise DataError("catalogue item_id values are not unique")
    if shards < 1 or shards > max(1, emb.shape[0]):
        raise DataError(f"shards must be between 1 and the number of items ({emb.shape[0]}), not {shards}")
    ids = items["item_id"].to_list()
    version = index_version or make_index_version(emb, ids, model_version)
    items.write_parquet(tmp / ITEMS)
    hnsw = {"M": hnsw_m, "ef_construction": hnsw_ef_construction, "num_threads": num_threads}
    bounds = shard_bounds(emb.shape[0], shards)
    built = build_structures(
        tmp, bounds, hnsw_threshold=hnsw_threshold, compressed_threshold=compressed_threshold, hnsw=hnsw,
        ivfpq=ivfpq or IVFPQParams(), trained=trained, sharded=shards > 1,
    )  # fmt: skip
    single = built[0] if shards == 1 else None
    files = {name: sha256_file(tmp / name) for name in (EMBEDDINGS, ITEMS, HNSW, IVFPQ_FILE) if (tmp / name).exists()}
    lexical_entry = write_lexical(tmp, texts, bounds if shards > 1 else None) if texts is not None else None
    if lexical_entry is not None:
        files.update(lexical_entry.pop("files", {}))
        for entry, shard_files in zip(built, lexical_entry.pop("shard_files", []), strict=False):
            entry["files"].update(shard_files)  # a shard's slice, checked with its shard
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "index_version": version,
        "model_version": model_version,
        "encoder": encoder,
        "num_items": int(emb.shape[0]),
        "dim": int(emb.shape[1]),
        "embeddings_dtype": str(emb.dtype),
        "categories": top_categories(items["category_path"].to_list()),
        "hnsw": {"space": "ip", "M": hnsw_m, "ef_construction": hnsw_ef_construction}
        if single and single["kind"] == "hnsw"
        else None,
        "hnsw_threshold": hnsw_threshold,
        "ann": {"kind": single["kind"], **single.get("params", {})} if single else {"kind": "sharded"},
        "compressed_threshold": compressed_threshold,
        "shards": built if shards > 1 else None,
        "lexical": lexical_entry,
        "files": files,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    for p in tmp.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return manifest


def read_index_manifest(index_dir: str | Path) -> dict[str, Any]:
    """Parse and check an artefact's manifest; DataError naming the problem otherwise."""
    index_dir = Path(index_dir)
    return read_json_document(
        index_dir / MANIFEST, FORMAT, FORMAT_VERSION, DataError, "index manifest",
        f"{index_dir}: not a shoprank index (no {MANIFEST}); build one with `shoprank index build`",
    )  # fmt: skip


@dataclass
class IndexArtefact:
    """A loaded artefact (or one shard of one): manifest, embeddings (memory-mapped), item table and the
    optional ANN structure (HNSW, or a CompressedIndex). A shard's rows start at ``offset`` in the parent."""

    path: Path
    manifest: dict[str, Any]
    embeddings: np.ndarray
    items: pl.DataFrame
    hnsw: Any = None
    compressed: Any = None
    offset: int = 0
    shard: int | None = None
    lexical: Any = None  # a LexicalIndex over the same rows (shoprank.retrieval.lexical), None: vector only
    _item_pos: dict[str, int] | None = field(default=None, repr=False)

    @property
    def index_version(self) -> str:
        return str(self.manifest["index_version"])

    @property
    def model_version(self) -> str:
        return str(self.manifest["model_version"])

    @property
    def num_items(self) -> int:
        return int(self.embeddings.shape[0])

    def positions(self, item_ids: list[str]) -> tuple[np.ndarray, list[str]]:
        """Row positions of known ids (in the given order) and the list of unknown ids."""
        if self._item_pos is None:
            self._item_pos = {iid: i for i, iid in enumerate(self.items["item_id"].to_list())}
        pos, unknown = [], []
        for iid in item_ids:
            p = self._item_pos.get(iid)
            if p is None:
                unknown.append(iid)
            else:
                pos.append(p)
        return np.asarray(pos, dtype=np.int64), unknown


def load_artefact(
    index_dir: str | Path,
    *,
    verify: bool = False,
    load_hnsw: bool = True,
    mmap: bool = True,
    shard: int | None = None,
    load_lexical_index: bool = True,
) -> IndexArtefact:
    """Load an artefact (embeddings memory-mapped; ``verify`` re-checks every file's SHA-256). ``shard``: only
    that shard of a sharded artefact (its row range of the rows and items, and its ANN and lexical structures).
    The lexical index (when the artefact has one and ``load_lexical_index``) comes as ``lexical``."""
    index_dir = Path(index_dir)
    manifest = read_index_manifest(index_dir)
    shards = manifest.get("shards") or None
    if shard is not None and (not shards or not 0 <= shard < len(shards)):
        raise DataError(f"{index_dir}: no shard {shard} (the artefact has {len(shards or [])} shards)")
    if verify:
        files = dict(manifest.get("files", {}))
        if shard is not None:
            files.update({f"{shards[shard]['name']}/{k}": v for k, v in shards[shard]["files"].items()})
        for name, digest in files.items():
            if sha256_file(index_dir / name) != digest:
                raise DataError(f"{index_dir / name}: checksum does not match the manifest (corrupt or replaced)")
    try:
        emb = np.load(index_dir / EMBEDDINGS, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as e:
        raise DataError(f"{index_dir / EMBEDDINGS}: cannot read embeddings ({e})") from e
    if shard is not None:
        from shoprank.retrieval.shards import load_structure

        entry = shards[shard]
        lo, hi = int(entry["lo"]), int(entry["hi"])
        items = pl.scan_parquet(index_dir / ITEMS).slice(lo, hi - lo).collect()
        rows = emb[lo:hi]
        hnsw, compressed = load_structure(index_dir / entry["name"], entry, rows) if load_hnsw else (None, None)
        lex = load_lexical(index_dir, manifest, shard) if load_lexical_index else None
        return IndexArtefact(index_dir, manifest, rows, items, hnsw, compressed, lo, shard, lexical=lex)
    items = pl.read_parquet(index_dir / ITEMS)
    if emb.shape[0] != items.height:
        raise DataError(f"{index_dir}: {emb.shape[0]} embeddings but {items.height} items")
    hnsw = compressed = None
    if load_hnsw and manifest.get("hnsw") and (index_dir / HNSW).is_file():
        from shoprank.retrieval.index import load_hnsw as _load_hnsw

        hnsw = _load_hnsw(index_dir / HNSW, int(manifest["dim"]), int(manifest["num_items"]))
    if load_hnsw and (manifest.get("ann") or {}).get("kind") == "ivfpq" and (index_dir / IVFPQ_FILE).is_file():
        from shoprank.retrieval.shards import load_structure

        hnsw, compressed = load_structure(index_dir, {"kind": "ivfpq", "params": manifest["ann"]}, emb)
    lex = load_lexical(index_dir, manifest) if load_lexical_index else None
    return IndexArtefact(index_dir, manifest, emb, items, hnsw, compressed, lexical=lex)
