"""Per-task losses, learned uncertainty weighting, and the DDP-wrappable objective module.

``MultiTaskObjective.forward(task, batch)`` runs one task's forward pass and returns its
weighted loss, so DistributedDataParallel wraps one module whose ``forward`` is the whole
step (DDP only synchronises gradients for calls that go through ``forward``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from shoprank.model.multitask import MultiTaskModel

REGRESSION_TASKS = ("relevance", "demand")


def retrieval_loss(q: torch.Tensor, i: torch.Tensor, logit_scale: torch.Tensor, item_keys: list[str]) -> torch.Tensor:
    """Symmetric in-batch softmax (InfoNCE) with a learned temperature.

    Duplicate items in a batch are not counted as negatives of each other's queries.
    """
    scale = logit_scale.clamp(max=4.6052).exp()  # temperature at most 100
    logits = scale * (q @ i.T)
    n = logits.shape[0]
    keys = list(item_keys)
    same = torch.tensor([[keys[a] == keys[b] and a != b for b in range(n)] for a in range(n)], device=logits.device)
    logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(n, device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class UncertaintyWeighting(nn.Module):
    """Kendall, Gal & Cipolla (2018): learn s_t = log σ_t² per task.

    Regression: 0.5·exp(-s)·L + 0.5·s. Classification / ranking: exp(-s)·L + 0.5·s.
    """

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in tasks})

    def forward(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        s = self.log_vars[task]
        if task in REGRESSION_TASKS:
            return 0.5 * torch.exp(-s) * loss + 0.5 * s
        return torch.exp(-s) * loss + 0.5 * s

    def sigmas(self) -> dict[str, float]:
        return {t: float(torch.exp(0.5 * p.detach())) for t, p in self.log_vars.items()}


class MultiTaskObjective(nn.Module):
    """The model plus the task weighting; ``forward(task, batch)`` -> (weighted loss, raw loss)."""

    def __init__(
        self,
        model: MultiTaskModel,
        weights: dict[str, float],
        weighting: Literal["fixed", "uncertainty"] = "fixed",
        encoder_grads: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.weights = dict(weights)
        self.encoder_grads = dict(encoder_grads or {})
        self.weighting = weighting
        self.uncertainty = UncertaintyWeighting(sorted(weights)) if weighting == "uncertainty" else None

    def _encode(self, task: str, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The shared encoder, with ``encoder_grad`` of this task's gradient flowing back into it."""
        g = self.encoder_grads.get(task, 1.0)
        if g <= 0.0:
            with torch.no_grad():
                return self.model.encoder(ids, mask)
        x = self.model.encoder(ids, mask)
        return x if g >= 1.0 else g * x + (1.0 - g) * x.detach()

    def task_loss(self, task: str, batch: dict) -> torch.Tensor:
        m = self.model
        label = batch["label"]
        if task == "intent":
            q = self._encode(task, batch["q_ids"], batch["q_mask"])
            return F.cross_entropy(m.class_logits(task, q), label.long())
        if task in ("category", "season"):
            i = self._encode(task, batch["i_ids"], batch["i_mask"])
            return F.cross_entropy(m.class_logits(task, i), label.long())
        if task == "retrieval":
            q = self._encode(task, batch["q_ids"], batch["q_mask"])
            i = self._encode(task, batch["i_ids"], batch["i_mask"])
            return retrieval_loss(q, i, m.logit_scale, batch["item_keys"])
        i = self._encode(task, batch["i_ids"], batch["i_mask"])
        if task == "demand":
            q = torch.zeros_like(i)
        else:
            q = self._encode(task, batch["q_ids"], batch["q_mask"])
        out = m.pair_outputs(q, i, batch["num"], batch["month"])[task]
        if "lexical" in batch:
            out = out + m.lexical_term(task, batch["lexical"])
        if task == "click":
            return F.binary_cross_entropy_with_logits(out, label)
        return F.mse_loss(out, label)

    def forward(self, task: str, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.task_loss(task, batch)
        w = self.weights.get(task, 1.0)
        if self.uncertainty is not None:
            return w * self.uncertainty(task, raw), raw.detach()
        return w * raw, raw.detach()
