"""Item retrieval: versioned index artefacts and (exact or HNSW) top-k search with filters."""

from shoprank.retrieval.artefact import IndexArtefact, load_artefact, write_artefact
from shoprank.retrieval.index import FilterSpec, VectorIndex

__all__ = ["FilterSpec", "IndexArtefact", "VectorIndex", "load_artefact", "write_artefact"]
