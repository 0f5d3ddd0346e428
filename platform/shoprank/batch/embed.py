"""ItemEmbedder: a Ray Data ``map_batches`` callable that embeds catalogue rows.

Each row's ``pair`` item text (:func:`shoprank.model.text.item_texts`, by the checkpoint's recipe)
is embedded and returned with it (``text`` and ``embedding`` columns), so the index keeps exactly
what was embedded.

``encoder_runtime`` (torch | onnx | onnx-int8, :mod:`shoprank.model.runtime`) is what the encoder runs on.
Used with an actor pool so the model loads once per actor::

    ds.map_batches(ItemEmbedder, fn_constructor_kwargs={"checkpoint": ck}, batch_format="pyarrow",
                   batch_size=256, compute=ray.data.ActorPoolStrategy(size=2))
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shoprank.model.checkpoint import load_model
from shoprank.model.registry import TextKind
from shoprank.model.text import PAIR, Recipes, item_texts, recipes_of

TEXT_COLUMNS = ("title", "category_path", "description", "attributes")  # the catalogue columns item texts read


def batch_texts(batch: pa.Table, kind: TextKind = PAIR, recipes: Recipes | None = None) -> list[str]:
    """``kind`` item texts (by ``recipes``; None: the defaults) of every row of an Arrow batch with
    canonical catalogue columns."""
    return item_texts(batch, kind, recipes)


def embedding_column(emb: np.ndarray) -> pa.FixedSizeListArray:
    """[N, d] float32 -> Arrow fixed-size-list column (zero copy)."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])


def embeddings_of(table: pa.Table, column: str = "embedding") -> np.ndarray:
    """Arrow fixed-size-list (or list) column -> [N, d] float32."""
    col = table.column(column).combine_chunks()
    if isinstance(col.type, pa.FixedSizeListType):
        return col.values.to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size).astype(np.float32)
    return np.asarray(col.to_pylist(), dtype=np.float32)


class ItemEmbedder:
    """Loads the model once (checkpoint, or pretrained ``encoder``) and embeds each batch."""

    def __init__(
        self,
        checkpoint: str | None = None,
        encoder: str = "minilm",
        device: str | None = None,
        inner_batch_size: int = 64,
        encoder_runtime: str = "torch",
    ) -> None:
        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.manifest = load_model(checkpoint, encoder=encoder, device=device,
                                               encoder_runtime=encoder_runtime)  # fmt: skip
        self.recipes = recipes_of(self.manifest)  # the checkpoint's item text recipes
        self.inner_batch_size = inner_batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch_texts(batch, PAIR, self.recipes)
        emb = self.model.embed(texts, batch_size=self.inner_batch_size)
        return batch.append_column("text", pa.array(texts, type=pa.string())).append_column(
            "embedding", embedding_column(emb)
        )
