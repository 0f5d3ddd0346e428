"""Inference helpers shared by serving, campaign scoring and evaluation.

Every function takes and returns NumPy arrays, runs one batched forward pass, and falls
back to zero-shot text similarity for any head the model was not fine-tuned on; the
returned ``zero_shot`` set says which scores those are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from shoprank.model.features import month_features
from shoprank.model.multitask import MultiTaskModel
from shoprank.model.registry import SIMILARITY_FALLBACK_TASKS, spec


@dataclass
class PairScores:
    """Per-task scores for N (query, item) pairs, each an array of shape [N] in 0..1.

    ``cosine`` is the raw query–item cosine in -1..1 behind ``similarity`` (which is it clipped to
    0..1): the zero-shot ranking orders by it, as eval's ``rank_catalogue`` does, so the clip never
    ties items with negative cosine. It is never a response score.
    """

    scores: dict[str, np.ndarray]
    zero_shot: set[str] = field(default_factory=set)
    cosine: np.ndarray | None = None


def _tensor(a: np.ndarray, model: MultiTaskModel) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=model.device)


@torch.inference_mode()
def score_pairs(
    model: MultiTaskModel,
    query_emb: np.ndarray,
    item_emb: np.ndarray,
    item_num: np.ndarray,
    month: int | np.ndarray = 0,
    lexical: np.ndarray | None = None,
) -> PairScores:
    """Score items against one query ([d]) or row-aligned queries ([N, d]).

    Returns ``similarity`` (cosine clipped to 0..1) always, and ``relevance``, ``click``, ``demand``
    where the model has those heads; untrained relevance/click heads fall back to that clipped cosine.
    ``lexical`` ([N, NUM_LEXICAL_FEATURES], from ``shoprank.model.lexical``) feeds the
    relevance head's lexical term; leave it out when ``model.uses_lexical`` is false.
    """
    model.eval()
    n = item_emb.shape[0]
    q = _tensor(query_emb, model)
    i = _tensor(item_emb, model)
    sim = (i @ q) if q.dim() == 1 else (i * q).sum(-1)
    raw: dict[str, np.ndarray] = {}
    if model.pair_tasks and n:
        out = model.pair_outputs(q, i, _tensor(item_num, model), _tensor(month_features(month, n), model))
        raw = {t: v.float().cpu().numpy() for t, v in out.items()}
    return scores_from_raw(model, raw, sim.clamp(-1.0, 1.0).cpu().numpy(), lexical)


def scores_from_raw(
    model: MultiTaskModel, raw: dict[str, np.ndarray], similarity: np.ndarray, lexical: np.ndarray | None = None
) -> PairScores:
    """Turn raw pairwise outputs (in-process or from Triton) into 0..1 scores, adding the
    lexical term (``MultiTaskModel.add_lexical``) when ``lexical`` features are given.

    ``similarity`` is the raw cosine (-1..1) clipped to 0..1 (negative cosine: 0); click gets a
    sigmoid, the other heads are clipped to 0..1; untrained heads are skipped, and relevance and
    click fall back to the clipped cosine (reported in ``zero_shot``). The raw cosine is kept as
    :attr:`PairScores.cosine` for ranking.
    """
    clipped = np.clip(similarity, 0.0, 1.0).astype(np.float32)
    out: dict[str, np.ndarray] = {"similarity": clipped}
    zero_shot: set[str] = set()
    for task, value in model.add_lexical(raw, lexical).items():
        if not model.is_trained(task):
            continue
        out[task] = 1.0 / (1.0 + np.exp(-value)) if spec(task).kind == "binary" else np.clip(value, 0.0, 1.0)
    for task in SIMILARITY_FALLBACK_TASKS:
        if task not in out:
            out[task] = clipped
            zero_shot.add(task)
    return PairScores(out, zero_shot, cosine=similarity)


@torch.inference_mode()
def class_probs(model: MultiTaskModel, task: str, emb: np.ndarray) -> tuple[np.ndarray, list[str]] | None:
    """Softmax probabilities [N, C] and class names of a trained classification head, else None."""
    if not model.is_trained(task):
        return None
    model.eval()
    logits = model.class_logits(task, _tensor(emb, model))
    return torch.softmax(logits, dim=-1).cpu().numpy(), list(model.label_maps[task])
