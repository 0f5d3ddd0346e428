"""Combining task gradients: the plain sum and PCGrad, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shoprank.train.gradients import StepGradients, accumulate, pcgrad, shared_parameters, snapshot, summed


def _t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_sum_skips_untouched_parameters():
    a = [_t(1.0, 2.0), None]
    b = [_t(3.0, -1.0), _t(5.0)]
    out = summed([a, b])
    assert torch.equal(out[0], _t(4.0, 1.0)) and torch.equal(out[1], _t(5.0))
    assert torch.equal(a[0], _t(1.0, 2.0))  # inputs are not modified


def test_pcgrad_projects_conflicts_on_shared_parameters_only():
    # shared parameter: g1 = (1, 0), g2 = (-1, 1); g1.g2 = -1 < 0
    # g1' = g1 - (-1 / |g2|^2) g2 = (0.5, 0.5); g2' = g2 - (-1 / |g1|^2) g1 = (0, 1); sum (0.5, 1.5)
    # each task's head (one task touches it) is summed untouched
    head1, head2 = _t(7.0), _t(-3.0)
    g1 = [_t(1.0, 0.0), head1, None]
    g2 = [_t(-1.0, 1.0), None, head2]
    out, conflicts = pcgrad([g1, g2], np.random.default_rng(0))
    assert torch.allclose(out[0], _t(0.5, 1.5))
    assert torch.equal(out[1], head1) and torch.equal(out[2], head2)
    assert conflicts == 2
    assert shared_parameters([g1, g2]) == [0]


def test_pcgrad_is_the_sum_without_conflicts():
    g1 = [_t(1.0, 2.0)]
    g2 = [_t(0.5, 0.0)]
    out, conflicts = pcgrad([g1, g2], np.random.default_rng(0))
    assert conflicts == 0
    assert torch.allclose(out[0], summed([g1, g2])[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pcgrad_removes_conflict_with_each_other_task_for_two_tasks(seed):
    rng = np.random.default_rng(seed)
    g1 = [torch.tensor(rng.normal(size=5))]
    g2 = [-g1[0] + 0.3 * torch.tensor(rng.normal(size=5))]  # mostly opposed
    (out,), conflicts = pcgrad([g1, g2], np.random.default_rng(seed))
    assert conflicts == 2
    # with two tasks each projected gradient is orthogonal to the other's original: the combined
    # step does not increase either task's loss to first order
    assert float(out.dot(g1[0])) >= -1e-9 and float(out.dot(g2[0])) >= -1e-9


def test_snapshot_copies_gradients():
    p = torch.nn.Parameter(torch.zeros(2))
    q = torch.nn.Parameter(torch.zeros(1))
    (p * torch.tensor([1.0, 2.0])).sum().backward()
    snap = snapshot([p, q])
    p.grad.zero_()
    assert torch.equal(snap[0], torch.tensor([1.0, 2.0])) and snap[1] is None


def test_running_total_equals_the_sum_of_snapshots():
    p = torch.nn.Parameter(torch.zeros(2))
    q = torch.nn.Parameter(torch.zeros(1))
    total, snaps = None, []
    for w in (torch.tensor([1.0, 2.0]), torch.tensor([-3.0, 0.5])):
        p.grad = None
        (p * w).sum().backward()
        snaps.append(snapshot([p, q]))
        total = accumulate(total, [p, q])
    assert torch.equal(total[0], summed(snaps)[0]) and total[1] is None
    assert torch.equal(total[0], torch.tensor([-2.0, 2.5]))


@pytest.mark.parametrize("surgery", ["none", "pcgrad"])
def test_step_gradients_combine_a_step_as_configured(surgery):
    p = torch.nn.Parameter(torch.zeros(2))
    step = StepGradients(surgery)
    for w in (torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])):  # the two conflict (dot -1)
        p.grad = None
        (p * w).sum().backward()
        step.add([p])
    (g,), conflicts, pairs = step.combined((0, 0))
    if surgery == "none":
        assert torch.equal(g, torch.tensor([0.0, 1.0])) and (conflicts, pairs) == (0, 0)
    else:  # each projected off the other, then summed: [1, 0] + 0.5 [-1, 1] and [-1, 1] + [1, 0]
        assert torch.allclose(g, torch.tensor([0.5, 1.5])) and (conflicts, pairs) == (2, 2)
