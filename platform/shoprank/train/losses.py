"""Per-task losses, learned uncertainty weighting, and the DDP-wrappable objective module.

``MultiTaskObjective.forward(task, batch)`` runs one task's forward pass and returns its
weighted loss, so DistributedDataParallel wraps one module whose ``forward`` is the whole
step (DDP only synchronises gradients for calls that go through ``forward``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from shoprank.model.multitask import MultiTaskModel
from shoprank.model.registry import REGRESSION_TASKS, spec


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

    def side(self, task: str, batch: dict, side: str) -> torch.Tensor:
        """The encoded ``q`` (query) or ``i`` (item) side of a batch."""
        return self._encode(task, batch[f"{side}_ids"], batch[f"{side}_mask"])

    def pair_output(self, task: str, batch: dict) -> torch.Tensor:
        """A pair task's raw output [B] (with its lexical term when the batch carries features)."""
        m = self.model
        i = self.side(task, batch, "i")
        q = self.side(task, batch, "q") if spec(task).uses_query else torch.zeros_like(i)
        out = m.pair_outputs(q, i, batch["num"], batch["month"])[task]
        if "lexical" in batch:
            out = out + m.lexical_term(task, batch["lexical"])
        return out

    def task_loss(self, task: str, batch: dict) -> torch.Tensor:
        return LOSSES[spec(task).loss](self, task, batch)

    def forward(self, task: str, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.task_loss(task, batch)
        w = self.weights.get(task, 1.0)
        if self.uncertainty is not None:
            return w * self.uncertainty(task, raw), raw.detach()
        return w * raw, raw.detach()


def _cross_entropy(obj: MultiTaskObjective, task: str, batch: dict) -> torch.Tensor:
    emb = obj.side(task, batch, "q" if spec(task).sides == "query" else "i")
    return F.cross_entropy(obj.model.class_logits(task, emb), batch["label"].long())


def _info_nce(obj: MultiTaskObjective, task: str, batch: dict) -> torch.Tensor:
    q, i = obj.side(task, batch, "q"), obj.side(task, batch, "i")
    return retrieval_loss(q, i, obj.model.logit_scale, batch["item_keys"])


def _bce(obj: MultiTaskObjective, task: str, batch: dict) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(obj.pair_output(task, batch), batch["label"])


def _mse(obj: MultiTaskObjective, task: str, batch: dict) -> torch.Tensor:
    return F.mse_loss(obj.pair_output(task, batch), batch["label"])


# The loss each task's spec names (``TaskSpec.loss``).
LOSSES: dict[str, Callable[[MultiTaskObjective, str, dict], torch.Tensor]] = {
    "cross_entropy": _cross_entropy,
    "info_nce": _info_nce,
    "bce": _bce,
    "mse": _mse,
}
