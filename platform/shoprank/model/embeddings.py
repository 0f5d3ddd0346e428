"""An explicit embedding cache: each distinct text embedded once under one fixed model.

Evaluation and the head refit embed the same texts many times (an item under category and
season, a query under several tasks); while the weights are fixed, an :class:`EmbeddingCache`
owned by the caller keeps every distinct text's vector. Create a new one whenever the weights
change; nothing is attached to the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from shoprank.model.multitask import MultiTaskModel


class EmbeddingCache:
    """Text -> unit embedding under ``model`` (whose weights must not change while it is used)."""

    def __init__(self, model: MultiTaskModel, batch_size: int = 128) -> None:
        self.model = model
        self.batch_size = batch_size
        self._vectors: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._vectors)

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Embeddings [N, d] of ``texts``, computing only the ones not seen before."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if todo:
            self._vectors.update(zip(todo, self.model.embed(todo, batch_size=self.batch_size), strict=True))
        if not texts:
            return np.zeros((0, self.model.encoder.dim), np.float32)
        return np.stack([self._vectors[t] for t in texts])


def embed_unique(
    model: MultiTaskModel, texts: list[str], cache: EmbeddingCache | None = None, batch_size: int = 128
) -> np.ndarray:
    """Embeddings [N, d] for ``texts``, each distinct text computed once (across calls too with ``cache``)."""
    if cache is not None:
        if cache.model is not model:
            raise ValueError("embedding cache belongs to another model")
        return cache(texts)
    uniq = list(dict.fromkeys(texts))
    emb = model.embed(uniq, batch_size=batch_size) if uniq else np.zeros((0, model.encoder.dim), np.float32)
    pos = {t: i for i, t in enumerate(uniq)}
    return emb[[pos[t] for t in texts]] if texts else emb
