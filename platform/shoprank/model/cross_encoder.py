"""Cross-encoder: MiniLM reading a query and an item text together, ``[CLS] query [SEP] item [SEP]``.

The second ranking phase (issue 23): the backbone attends across query and item tokens, so it
sees word-level matches a bi-encoder's two separate vectors cannot. One pooled vector (mean over
the pair's tokens, or the ``[CLS]`` vector) feeds one head per task:

- ``relevance``: graded relevance on the 0..1 scale of the bi-encoder's relevance task (a logit
  trained with soft binary cross-entropy; :meth:`CrossEncoder.score` returns its sigmoid);
- ``click``: a click logit (:meth:`CrossEncoder.score` returns the logit, as ``pair_raw`` does).

The backbone is the same one :mod:`shoprank.model.encoder` builds (pretrained MiniLM from the
installed package, hub off; or the tiny seeded one for tests). Saved as ``model.safetensors`` +
``manifest.json`` with the checkpoint module's conventions (weights hash checked before loading;
never pickled); the manifest's ``item_text`` holds the item-text recipes training used
(:func:`pair_recipe`), so serving renders the same texts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from torch import nn

import shoprank
from shoprank.errors import CheckpointError
from shoprank.files import atomic_path, atomic_write_text, sha256_file
from shoprank.model.checkpoint import MANIFEST, WEIGHTS, checked_weights, manifest_config, read_json_document
from shoprank.model.encoder import EncoderName, build_backbone, load_tokenizer
from shoprank.model.text import MANIFEST_KEY, PAIR, TextRecipe

FORMAT = "shoprank-cross-encoder"
FORMAT_VERSION = 1
CROSS_TASKS = ("relevance", "click")
PROB_TASKS = frozenset({"relevance"})  # scored as a sigmoid probability (0..1); the others as logits
RawFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # a tokenizer batch -> raw logits per task
# The pair text an older manifest (no ``item_text`` recipe) is served with: title | category path, what the
# served reranker read before the recipe was recorded (its training texts followed the then-default ``pair``
# recipe, which adds the description: such a model may read served texts unlike its training ones; retrain it).
LEGACY_SERVED_PAIR = TextRecipe(("title", "category_path"))


class CrossEncoderConfig(BaseModel):
    """The architecture: backbone, pair length, pooling and the task heads."""

    model_config = ConfigDict(extra="forbid")

    encoder: EncoderName = "minilm"
    max_length: int = Field(64, ge=8, le=512)
    pooling: Literal["mean", "cls"] = "mean"
    tasks: list[Literal["relevance", "click"]] = Field(default_factory=lambda: list(CROSS_TASKS), min_length=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class CrossEncoder(nn.Module):
    """A BERT backbone over (query, item) pairs with one scalar head per task."""

    def __init__(self, config: CrossEncoderConfig | None = None, seed: int = 0) -> None:
        super().__init__()
        self.config = config or CrossEncoderConfig()
        self.backbone = build_backbone(self.config.encoder, seed)
        dim = int(self.backbone.config.hidden_size)
        self.dropout = nn.Dropout(self.config.dropout)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.heads = nn.ModuleDict({t: nn.Linear(dim, 1) for t in self.config.tasks})

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, queries: list[str], texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids of each (query, item) pair, padded, truncated to ``max_length`` (longest side first)."""
        batch = load_tokenizer()(
            [str(q) for q in queries],
            [str(t) for t in texts],
            padding=True,
            truncation="longest_first",
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        keys = ("input_ids", "attention_mask", "token_type_ids")
        return {k: batch[k].to(self.device) for k in keys if k in batch}

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Raw head outputs (logits), each of shape [batch]."""
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = self.dropout(pooled)
        return {t: head(pooled).squeeze(-1) for t, head in self.heads.items()}

    @torch.inference_mode()
    def score(
        self, queries: list[str], texts: list[str], batch_size: int = 64, raw: RawFn | None = None
    ) -> dict[str, np.ndarray]:
        """Scores of every (query, item text) pair, per task: relevance in 0..1, click as a logit.

        Pairs are scored in batches of similar length (sorted by character length) to keep padding low.
        ``raw`` (a tokenizer batch as NumPy -> raw logits per task) scores each batch elsewhere, e.g.
        ``shoprank.triton.client.TritonCrossClient.raw_outputs``; None: this module, in process.
        """
        if len(queries) != len(texts):
            raise ValueError(f"{len(queries)} queries for {len(texts)} texts")
        was_training = self.training
        self.eval()
        n = len(queries)
        out = {t: np.zeros(n, dtype=np.float32) for t in self.config.tasks}
        order = np.argsort([len(str(q)) + len(str(t)) for q, t in zip(queries, texts, strict=True)], kind="stable")
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            batch = self.tokenize([queries[i] for i in idx], [texts[i] for i in idx])
            if raw is None:
                logits = {t: v.float().cpu().numpy() for t, v in self(**batch).items()}
            else:
                logits = raw({k: v.cpu().numpy() for k, v in batch.items()})
            for t in self.config.tasks:
                v = logits[t].astype(np.float32, copy=False)
                out[t][idx] = 1.0 / (1.0 + np.exp(-v)) if t in PROB_TASKS else v
        self.train(was_training)
        return out


# -- checkpoints --------------------------------------------------------------------------------
def save_cross_encoder(model: CrossEncoder, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Weights then manifest (each atomically; the manifest is the commit point)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model.config.model_dump(),
        "weights_sha256": sha256_file(directory / WEIGHTS),
        "code_version": shoprank.__version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=float))
    return directory


def read_cross_manifest(directory: str | Path) -> dict[str, Any]:
    """Parse and check a cross-encoder manifest; raise CheckpointError naming the problem."""
    directory = Path(directory)
    return read_json_document(
        directory / MANIFEST, FORMAT, FORMAT_VERSION, CheckpointError, "cross-encoder manifest",
        f"{directory}: not a shoprank cross-encoder (no {MANIFEST})",
    )  # fmt: skip


def load_cross_encoder(directory: str | Path, device: str = "cpu") -> tuple[CrossEncoder, dict[str, Any]]:
    """The saved cross-encoder (in eval mode) and its manifest; the weights' hash is checked first."""
    directory = Path(directory)
    manifest = read_cross_manifest(directory)
    weights = checked_weights(directory, manifest)
    config = manifest_config(directory, manifest, CrossEncoderConfig)
    model = CrossEncoder(config)
    try:
        model.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
    except Exception as e:  # safetensors header errors, shape/key mismatches
        raise CheckpointError(f"{weights}: weights do not fit the manifest's model ({e})") from e
    return model.to(device).eval(), manifest


def cross_version(manifest: dict[str, Any]) -> str:
    """A short, stable version name of a saved cross-encoder."""
    return f"cross-{manifest['model_config'].get('encoder', 'model')}-{manifest['weights_sha256'][:12]}"


def pair_recipe(manifest: dict[str, Any]) -> TextRecipe:
    """The ``pair`` item-text recipe the cross-encoder was trained with (its manifest's ``item_text``, which
    ``shoprank train-cross`` records); :data:`LEGACY_SERVED_PAIR` for a manifest from before it did."""
    stored = (manifest.get(MANIFEST_KEY) or {}).get(PAIR)
    return TextRecipe.from_dict(stored) if stored else LEGACY_SERVED_PAIR
