"""Combining the task gradients of a multi-task step (``schedule: all``).

Each task's gradient is taken (and clipped) on its own; the step then applies their sum, or,
with ``grad_surgery: pcgrad``, their sum after projecting conflicts away (PCGrad, Yu et al.
2020, "Gradient Surgery for Multi-Task Learning"): where task i's gradient points against task
j's (negative dot product), the component of g_i along g_j is removed, for every j in a random
order. Only parameters that two or more tasks update take part; a head's gradient (one task's)
is summed as it is.
"""

from __future__ import annotations

import numpy as np
import torch

Grads = list[torch.Tensor | None]  # one entry per parameter, None where the task left it untouched


def snapshot(params: list[torch.nn.Parameter]) -> Grads:
    """A copy of each parameter's current gradient (the next backward cannot touch it)."""
    return [None if p.grad is None else p.grad.detach().clone() for p in params]


def accumulate(total: Grads | None, params: list[torch.nn.Parameter]) -> Grads:
    """Add each parameter's current gradient into the running ``total`` (a copy the first time,
    so the next backward cannot touch it): the plain sum without keeping every task's gradient."""
    out: Grads = [None] * len(params) if total is None else total
    for n, p in enumerate(params):
        if p.grad is not None:
            out[n] = p.grad.detach().clone() if out[n] is None else out[n].add_(p.grad)
    return out


def summed(task_grads: list[Grads]) -> Grads:
    """The per-parameter sum of the tasks' gradients."""
    out: Grads = [None] * len(task_grads[0])
    for grads in task_grads:
        for n, g in enumerate(grads):
            if g is not None:
                out[n] = g.clone() if out[n] is None else out[n].add_(g)
    return out


def _touches(g: torch.Tensor | None) -> bool:
    return g is not None and bool(torch.any(g != 0))


def shared_parameters(task_grads: list[Grads]) -> list[int]:
    """Indices of the parameters that at least two tasks have a non-zero gradient for."""
    n_params = len(task_grads[0])
    return [n for n in range(n_params) if sum(_touches(grads[n]) for grads in task_grads) >= 2]


def pcgrad(task_grads: list[Grads], rng: np.random.Generator) -> tuple[Grads, int]:
    """PCGrad over the shared parameters, plain sum elsewhere; also returns how many (i, j)
    projections were made (conflicting pairs met)."""
    out = summed(task_grads)
    shared = shared_parameters(task_grads)
    if len(task_grads) < 2 or not shared:
        return out, 0

    def flat(grads: Grads) -> torch.Tensor:
        parts = [grads[n] if grads[n] is not None else torch.zeros_like(out[n]) for n in shared]  # type: ignore[arg-type]
        return torch.cat([p.reshape(-1) for p in parts])

    original = [flat(grads) for grads in task_grads]
    norms_sq = [float(g.dot(g)) for g in original]
    projected = [g.clone() for g in original]
    conflicts = 0
    for i, g_i in enumerate(projected):
        for j in rng.permutation(len(original)):
            if j == i or norms_sq[j] == 0.0:
                continue
            dot = float(g_i.dot(original[j]))
            if dot < 0.0:
                g_i.sub_(original[j], alpha=dot / norms_sq[j])
                conflicts += 1
    total = torch.stack(projected).sum(dim=0)
    offset = 0
    for n in shared:
        size = out[n].numel()  # type: ignore[union-attr]
        out[n] = total[offset : offset + size].view_as(out[n]).clone()  # type: ignore[arg-type]
        offset += size
    return out, conflicts
