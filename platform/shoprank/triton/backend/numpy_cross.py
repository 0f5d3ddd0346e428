"""The cross-encoder (BERT backbone + pooling + task heads) in NumPy, for Triton's Python backend.

Copied into the Triton model repository beside ``numpy_ranker.py`` (whose exact GELU and checked
loading it reuses) and run in the isolated Triton environment (numpy<2, scipy, safetensors: no torch, no
transformers, no shoprank). Tokenising stays with the caller: Triton receives token ids. It mirrors
``shoprank.model.cross_encoder.CrossEncoder.forward`` in eval mode (dropout off) over a
``transformers`` ``BertModel`` with absolute positions::

    h = LN(word[ids] + pos[0..L) + type[token_type])
    per layer: a = LN(h + Wo·softmax(QKᵀ/√d + mask)·V);  h = LN(a + W2·GELU(W1·a))
    pooled = mean of h over the attention mask (or h[:, 0]);  out_t = head_t(pooled)

Computed in float32 (BLAS), so it matches torch's float32 forward to ~1e-5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

try:  # in the main environment (tests, export)
    from shoprank.triton.backend.numpy_ranker import gelu, load_checked
except ImportError:  # in the Triton model directory: model.py puts it on sys.path
    from numpy_ranker import gelu, load_checked  # type: ignore[no-redef]

FORMAT = "shoprank-triton-cross-encoder"
FORMAT_VERSION = 1
WEIGHTS = "cross.safetensors"
CONFIG = "cross.json"
INPUTS = ("INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS")


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class NumpyCrossEncoder:
    """Forward pass of the exported cross-encoder; weights as float32 NumPy arrays."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"not a {FORMAT} v{FORMAT_VERSION} config: {config.get('format')!r}")
        bert = config["bert"]
        if bert.get("hidden_act", "gelu") != "gelu" or bert.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"unsupported backbone (gelu + absolute positions only): {bert}")
        self.config = config
        self.tasks: list[str] = list(config["tasks"])
        self.pooling: str = config["pooling"]
        self.model_version: str = str(config["model_version"])
        self.layers = int(bert["num_hidden_layers"])
        self.heads = int(bert["num_attention_heads"])
        self.eps = float(bert.get("layer_norm_eps", 1e-12))
        # Linear weights transposed once ([in, out], contiguous): every dense layer is one 2-D BLAS matmul
        self.w = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32).T if k.endswith(".weight") and v.ndim == 2
                                          and "embeddings" not in k else v, dtype=np.float32)
                  for k, v in weights.items()}  # fmt: skip

    @classmethod
    def load(cls, directory: str | Path, verify: bool = True) -> NumpyCrossEncoder:
        """Read ``cross.json`` + ``cross.safetensors`` (checksum verified) from a directory."""
        return cls(*load_checked(directory, CONFIG, WEIGHTS, verify))

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        w = self.w[f"{name}.weight"]  # [in, out]
        return (x.reshape(-1, w.shape[0]) @ w + self.w[f"{name}.bias"]).reshape(*x.shape[:-1], w.shape[1])

    def _ln(self, x: np.ndarray, name: str) -> np.ndarray:
        return _layer_norm(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def outputs(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> dict:
        """Raw head outputs (logits) float32 [N] per task, for int [N, L] token ids, mask and types."""
        n, length = input_ids.shape
        e = "backbone.embeddings"
        h = self.w[f"{e}.word_embeddings.weight"][input_ids]
        h = h + self.w[f"{e}.position_embeddings.weight"][:length][None]
        h = h + self.w[f"{e}.token_type_embeddings.weight"][token_type_ids]
        h = self._ln(h, f"{e}.LayerNorm")
        mask = attention_mask.astype(np.float32)
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]  # [N, 1, 1, L], as transformers'
        d = h.shape[-1] // self.heads
        for k in range(self.layers):
            p = f"backbone.encoder.layer.{k}"

            def split(x: np.ndarray, *order: int) -> np.ndarray:
                return np.ascontiguousarray(x.reshape(n, length, self.heads, d).transpose(*order))

            q = split(self._dense(h, f"{p}.attention.self.query"), 0, 2, 1, 3)  # [N, H, L, d]
            kt = split(self._dense(h, f"{p}.attention.self.key"), 0, 2, 3, 1)  # [N, H, d, L]
            v = split(self._dense(h, f"{p}.attention.self.value"), 0, 2, 1, 3)
            s = q @ kt / np.float32(np.sqrt(d)) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(n, length, self.heads * d)
            a = self._ln(self._dense(ctx, f"{p}.attention.output.dense") + h, f"{p}.attention.output.LayerNorm")
            inner = gelu(self._dense(a, f"{p}.intermediate.dense")).astype(np.float32)
            h = self._ln(self._dense(inner, f"{p}.output.dense") + a, f"{p}.output.LayerNorm")
        if self.pooling == "cls":
            pooled = h[:, 0]
        else:
            pooled = (h * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return {t: self._dense(pooled, f"heads.{t}")[:, 0].astype(np.float32) for t in self.tasks}
