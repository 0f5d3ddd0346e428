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
    return accumulate(None, params)


def _add_into(total: Grads | None, grads: Grads) -> Grads:
    """``total`` + ``grads`` per parameter, in place (a copy where ``total`` has no entry yet)."""
    out: Grads = [None] * len(grads) if total is None else total
    for n, g in enumerate(grads):
        if g is not None:
            out[n] = g.detach().clone() if out[n] is None else out[n].add_(g)
    return out


def accumulate(total: Grads | None, params: list[torch.nn.Parameter]) -> Grads:
    """Add each parameter's current gradient into the running ``total``: the plain sum without
    keeping every task's gradient."""
    return _add_into(total, [p.grad for p in params])


def summed(task_grads: list[Grads]) -> Grads:
    """The per-parameter sum of the tasks' gradients."""
    out: Grads | None = None
    for grads in task_grads:
        out = _add_into(out, grads)
    return out if out is not None else []


def _touches(g: torch.Tensor | None) -> bool:
    return g is not None and bool(torch.any(g != 0))


def shared_parameters(task_grads: list[Grads]) -> list[int]:
    """Indices of the parameters that at least two tasks have a non-zero gradient for."""
    n_params = len(task_grads[0])
    return [n for n in range(n_params) if sum(_touches(grads[n]) for grads in task_grads) >= 2]


def pcgrad(task_grads: list[Grads], rng: np.random.Generator) -> tuple[Grads, int]:
    """PCGrad over the shared parameters, plain sum elsewhere; also returns how many (i, j)
    projections were made (conflicting pairs met)."""
    shared = shared_parameters(task_grads) if len(task_grads) >= 2 else []
    if not shared:
        return summed(task_grads), 0
    in_shared = set(shared)
    # the plain sum of the parameters one task updates; the shared ones are filled in below
    out = summed([[None if n in in_shared else g for n, g in enumerate(grads)] for grads in task_grads])
    like = {n: next(grads[n] for grads in task_grads if grads[n] is not None) for n in shared}

    def flat(grads: Grads) -> torch.Tensor:
        parts = [grads[n] if grads[n] is not None else torch.zeros_like(like[n]) for n in shared]
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
    total = projected[0]
    for g in projected[1:]:
        total.add_(g)
    offset = 0
    for n in shared:
        size = like[n].numel()
        out[n] = total[offset : offset + size].view_as(like[n]).clone()
        offset += size
    return out, conflicts


class StepGradients:
    """The task gradients of one multi-task step, combined as ``grad_surgery`` says: the plain sum
    keeps one running total; PCGrad keeps every task's gradient until the step combines them."""

    def __init__(self, grad_surgery: str) -> None:
        self.pcgrad = grad_surgery == "pcgrad"
        self.total: Grads | None = None
        self.task_grads: list[Grads] = []

    def add(self, params: list[torch.nn.Parameter]) -> None:
        """Take in the parameters' current gradients: one task's (clipped) gradient."""
        if self.pcgrad:
            self.task_grads.append(snapshot(params))
        else:
            self.total = accumulate(self.total, params)

    def combined(self, seed: tuple[int, int]) -> tuple[Grads, int, int]:
        """(the step's gradient per parameter, conflicting pairs met, pairs compared): PCGrad's
        projection order comes from ``seed``, which must be the same on every DDP rank."""
        if self.pcgrad:
            n = len(self.task_grads)
            grads, conflicts = pcgrad(self.task_grads, np.random.default_rng(seed))
            return grads, conflicts, n * (n - 1)
        assert self.total is not None, "a step with no task gradient"
        return self.total, 0, 0
