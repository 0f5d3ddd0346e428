"""The lexical half of hybrid retrieval: a BM25 index (``bm25s``) over each item's text, and RRF fusion.

Item text (:func:`lexical_texts`): the fields of :data:`LEXICAL_FIELDS` a catalogue has (title, brand,
category path, description / product_description, attribute values; each cut to
:data:`MAX_FIELD_CHARS`), the title alone when it has none of the others. Tokens (:func:`tokenize`): lower-case
alphanumeric runs, English stop words dropped, a light plural stemmer, and a code written with separators
(``RB-2040``, ``DW80K.5050``) also as one token (``rb2040``), so model numbers match however they are typed.

Storage: ``bm25s`` writes its score matrix (CSC: ``data``/``indices``/``indptr`` ``.npy``, saved and read with
``allow_pickle=False``) and its vocabulary and parameters as JSON into ``lexical/`` of the artefact (or of each
shard's directory); the artefact manifest lists every file with its SHA-256 like the others. A sharded artefact's
shards hold row slices of ONE index built over all rows, so every shard scores with the global IDF and document
lengths and the merged per-shard top-N is exactly the unsharded top-N.

Fusion (:func:`rrf_fuse`): reciprocal-rank fusion, ``score(d) = sum over lists of 1 / (k + rank_d)`` (k = 60).
BM25 scores and cosines live on different, query-dependent scales; RRF needs only ranks, so it needs neither
calibration nor labels and is robust to one side returning junk (a rank far down adds almost nothing).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shoprank.files import sha256_file
from shoprank.model.text import parse_attributes

LEXICAL_DIR = "lexical"
LEXICAL_COLUMN = "lexical_text"  # items column: the indexed text (re-writing an artefact's items keeps the index)
LEXICAL_FIELDS = ("title", "brand", "category_path", "description", "product_description", "attributes")
MAX_FIELD_CHARS = 1000
TOKENIZER = "shoprank-bm25-v1"  # names the tokenizer below; a change must change this name
BM25_PARAMS = {"method": "lucene", "k1": 1.5, "b": 0.75}
DEFAULT_RRF_K = 60
_WORD = re.compile(r"[a-z0-9]+(?:[-/.][a-z0-9]+)*")
_PART = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    """bm25s's English stop words (imported on first use: bm25s pulls in scipy)."""
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def stem(word: str) -> str:
    """Harman's S-stemmer (plurals only): ``drills`` -> ``drill``, ``batteries`` -> ``battery``."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """BM25 tokens of one text (see the module docstring)."""
    out: list[str] = []
    stop = stopwords()
    for m in _WORD.finditer(text.lower()):
        word = m.group()
        parts = _PART.findall(word)
        out.extend(stem(p) for p in parts if p not in stop)
        if len(parts) > 1 and any(c.isdigit() for c in word) and any(c.isalpha() for c in word):
            out.append("".join(parts))  # a model number typed with separators, as one token too
    return out


def lexical_fields(columns: Sequence[str]) -> list[str]:
    """The :data:`LEXICAL_FIELDS` a frame with ``columns`` has (``title`` always first)."""
    return [f for f in LEXICAL_FIELDS if f in columns or f == "title"]


def attribute_words(raw: Any) -> str:
    """The text values of a JSON attribute object (brand, colour, type, ...): numbers, flags, lists and ids
    (prices, counts, category codes) are left out, they match no query and only lengthen the document."""
    return " ".join(v for v in parse_attributes(raw).values() if isinstance(v, str) and any(c.isalpha() for c in v))


def lexical_texts(items: pl.DataFrame) -> list[str]:
    """Each item's lexical text: its :data:`LEXICAL_COLUMN` when the frame has one (an artefact's own items),
    else its :func:`lexical_fields` joined with spaces (titles alone when it has no other)."""
    if LEXICAL_COLUMN in items.columns:
        return [t or "" for t in items[LEXICAL_COLUMN].cast(pl.Utf8).to_list()]
    cols = []
    for f in lexical_fields(items.columns):
        if f not in items.columns:
            cols.append([""] * items.height)
            continue
        values = items[f].to_list()
        if f == "attributes":
            values = [attribute_words(v) for v in values]
        cols.append([("" if v is None else str(v))[:MAX_FIELD_CHARS] for v in values])
    return [" ".join(v for v in row if v) for row in zip(*cols, strict=True)] if cols else [""] * items.height


# -- building -------------------------------------------------------------------------------
def build_bm25(texts: Sequence[str]) -> Any:
    """A ``bm25s.BM25`` index over ``texts`` (row i = document i)."""
    import bm25s

    bm = bm25s.BM25(**BM25_PARAMS)
    bm.index([tokenize(t) for t in texts], show_progress=False)
    return bm


def slice_rows(bm: Any, lo: int, hi: int) -> Any:
    """Documents ``[lo, hi)`` of ``bm`` as their own index with the same vocabulary and the same (global) scores."""
    import bm25s

    data, indices, indptr = (np.asarray(bm.scores[k]) for k in ("data", "indices", "indptr"))
    col = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    keep = (indices >= lo) & (indices < hi)
    counts = np.bincount(col[keep], minlength=len(indptr) - 1)
    part = bm25s.BM25(**BM25_PARAMS)
    part.scores = {
        "data": data[keep],
        "indices": (indices[keep] - lo).astype(indices.dtype),
        "indptr": np.concatenate([[0], np.cumsum(counts)]).astype(indptr.dtype),
        "num_docs": hi - lo,
    }
    part.vocab_dict = bm.vocab_dict
    part.nonoccurrence_array = None  # lucene BM25 has none (BM25L/BM25+ would; not used here)
    part.unique_token_ids_set = set(bm.vocab_dict.values())
    return part


def save_bm25(bm: Any, out: Path) -> dict[str, str]:
    """Write ``bm`` into directory ``out`` (numpy arrays without pickle, JSON); ``{name: sha256}`` of its files."""
    bm.save(str(out), allow_pickle=False, show_progress=False)
    return {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()}


def write_lexical(root: Path, texts: Sequence[str], bounds: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Build the index over ``texts`` into ``root/lexical`` (``bounds``: a sharded artefact's row ranges, one slice
    into each ``root/shard-NNN/lexical``). Returns the manifest's ``lexical`` entry; ``files`` maps each file path
    relative to its artefact (or shard) directory to its SHA-256, per shard a list in shard order."""
    from shoprank.retrieval.shards import shard_name

    bm = build_bm25(texts)
    entry: dict[str, Any] = {"tokenizer": TOKENIZER, "bm25": dict(BM25_PARAMS), "num_items": len(texts),
                             "vocabulary": len(bm.vocab_dict)}  # fmt: skip
    if bounds is None:
        entry["files"] = {f"{LEXICAL_DIR}/{k}": v for k, v in save_bm25(bm, root / LEXICAL_DIR).items()}
        return entry
    entry["shard_files"] = []
    for s, (lo, hi) in enumerate(bounds):
        written = save_bm25(slice_rows(bm, lo, hi), root / shard_name(s) / LEXICAL_DIR)
        entry["shard_files"].append({f"{LEXICAL_DIR}/{k}": v for k, v in written.items()})
    return entry


# -- searching ------------------------------------------------------------------------------
class LexicalIndex:
    """BM25 top-N over one artefact's rows, or one shard's, or a whole sharded artefact's (its shards' slices,
    each at its row ``offset``): positions are local to the loaded rows, like :class:`VectorIndex`'s."""

    def __init__(self, parts: list[tuple[int, Any]], num_items: int) -> None:
        self.parts = parts
        self.n = num_items

    def scores(self, text: str) -> np.ndarray:
        """BM25 score of every row for ``text`` (0 where no token matches): the sum of the query tokens' posting
        scores (bm25s's precomputed per-token document scores; one ``bincount`` instead of its ``np.add.at``)."""
        out = np.zeros(self.n, dtype=np.float32)
        tokens = tokenize(text)
        for offset, bm in self.parts:
            ids = bm.get_tokens_ids(tokens)
            if not ids:
                continue
            data, indices, indptr = bm.scores["data"], bm.scores["indices"], bm.scores["indptr"]
            spans = [(int(indptr[t]), int(indptr[t + 1])) for t in ids]
            docs = np.concatenate([indices[a:b] for a, b in spans])
            weights = np.concatenate([data[a:b] for a, b in spans]).astype(np.float64)
            n = int(bm.scores["num_docs"])
            out[offset : offset + n] = np.bincount(docs, weights=weights, minlength=n)[:n]
        return out

    def search(
        self, texts: Sequence[str], n: int, masks: Sequence[np.ndarray | None] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: (positions, BM25 scores) of up to ``n`` matching rows passing its mask, best first
        (ties: lower position first)."""
        masks = masks if masks is not None else [None] * len(texts)
        out = []
        for text, mask in zip(texts, masks, strict=True):
            sc = self.scores(text)
            if mask is not None:
                sc = np.where(mask, sc, 0.0).astype(np.float32)
            hit = np.flatnonzero(sc > 0)
            if len(hit) > n:
                hit = hit[np.argpartition(-sc[hit], n - 1)[:n]]
            order = np.lexsort((hit, -sc[hit]))
            out.append((hit[order].astype(np.int64), sc[hit[order]]))
        return out


def load_bm25(directory: Path) -> Any:
    import bm25s

    return bm25s.BM25.load(str(directory), allow_pickle=False, mmap=True, show_progress=False)


def load_lexical(index_dir: Path, manifest: dict[str, Any], shard: int | None = None) -> LexicalIndex | None:
    """The artefact's lexical index (``shard``: that shard's slice; a sharded artefact loaded whole: every slice
    at its offset); None when the artefact has none (built before hybrid retrieval, or without it)."""
    from shoprank.retrieval.shards import shard_name

    entry = manifest.get("lexical")
    if not entry:
        return None
    shards = manifest.get("shards") or None
    if not shards:
        return LexicalIndex([(0, load_bm25(index_dir / LEXICAL_DIR))], int(manifest["num_items"]))
    chosen = range(len(shards)) if shard is None else [shard]
    base = 0 if shard is None else int(shards[shard]["lo"])
    parts = [(int(shards[s]["lo"]) - base, load_bm25(index_dir / shard_name(s) / LEXICAL_DIR)) for s in chosen]
    rows = sum(int(shards[s]["hi"]) - int(shards[s]["lo"]) for s in chosen)
    return LexicalIndex(parts, rows)


# -- fusion ---------------------------------------------------------------------------------
def rrf_fuse(lists: Sequence[np.ndarray], n: int, k: int = DEFAULT_RRF_K) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank fusion of best-first position lists: the top ``n`` positions by ``sum 1/(k + rank)``
    (rank from 1), with their fused scores. Ties: the better rank in the first list (the vector side), then
    the lower position."""
    lists = [np.asarray(p, dtype=np.int64) for p in lists]
    if not any(len(p) for p in lists):
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    pos = np.concatenate(lists)
    contrib = np.concatenate([1.0 / (k + np.arange(1, len(p) + 1)) for p in lists])
    uniq, inv = np.unique(pos, return_inverse=True)
    fused = np.bincount(inv, weights=contrib, minlength=len(uniq))
    first = np.full(len(uniq), np.iinfo(np.int64).max)
    if len(lists[0]):
        first[np.searchsorted(uniq, lists[0])] = np.arange(len(lists[0]))
    order = np.lexsort((uniq, first, -fused))[:n]
    return uniq[order], fused[order].astype(np.float32)
