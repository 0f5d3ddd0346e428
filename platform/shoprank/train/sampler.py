"""Which tasks each step trains, and which rows each batch holds.

Both are pure functions of (seed, epoch[, rank]), so every DDP rank trains the same task at
the same step, and a run resumed at an epoch boundary draws exactly what it would have.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

SCHEDULES = ("proportional", "round_robin", "weighted", "all")


def task_probabilities(
    sizes: dict[str, int], schedule: str, sample_weights: dict[str, float] | None = None
) -> dict[str, float]:
    """Per-task sampling probabilities (round_robin and all report uniform)."""
    tasks = sorted(t for t, n in sizes.items() if n > 0)
    if not tasks:
        raise ValueError("no task has training examples")
    if schedule == "proportional":
        raw = np.array([sizes[t] for t in tasks], dtype=np.float64)
    elif schedule == "weighted":
        raw = np.array([(sample_weights or {}).get(t, 1.0) for t in tasks], dtype=np.float64)
    elif schedule in ("round_robin", "all"):
        raw = np.ones(len(tasks))
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {SCHEDULES}")
    p = raw / raw.sum()
    return dict(zip(tasks, p.tolist(), strict=True))


def task_schedule(
    sizes: dict[str, int],
    schedule: str,
    steps: int,
    seed: int,
    epoch: int,
    sample_weights: dict[str, float] | None = None,
) -> list[str]:
    """The task of every step in one epoch (identical on every rank)."""
    probs = task_probabilities(sizes, schedule, sample_weights)
    tasks = list(probs)
    if schedule == "round_robin":
        offset = (epoch * steps) % len(tasks)
        return [tasks[(offset + s) % len(tasks)] for s in range(steps)]
    rng = np.random.default_rng([seed, epoch, 7])
    idx = rng.choice(len(tasks), size=steps, p=np.array(list(probs.values())))
    return [tasks[i] for i in idx]


def step_tasks(
    sizes: dict[str, int],
    schedule: str,
    steps: int,
    seed: int,
    epoch: int,
    sample_weights: dict[str, float] | None = None,
) -> list[tuple[str, ...]]:
    """The tasks of every step in one epoch: one task per step, or with ``all`` every task
    (one batch each; the loop clips each task's gradient on its own and steps on their sum)."""
    if schedule == "all":
        tasks = tuple(task_probabilities(sizes, schedule))
        return [tasks] * steps
    return [(t,) for t in task_schedule(sizes, schedule, steps, seed, epoch, sample_weights)]


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, rank: int, salt: int) -> Iterator[np.ndarray]:
    """Endless shuffled batches of row indices (reshuffled on every pass)."""
    if n == 0:
        raise ValueError("cannot draw batches from an empty task")
    rng = np.random.default_rng([seed, epoch, rank, salt])
    size = min(batch_size, n)
    while True:
        perm = rng.permutation(n)
        for start in range(0, n - size + 1, size):
            yield perm[start : start + size]
