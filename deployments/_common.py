"""Helpers shared by the deployments."""

from __future__ import annotations

import os


def set_torch_threads(n: int | None) -> None:
    """Pin torch's intra-op threads in this replica (Ray otherwise sets OMP_NUM_THREADS from num_cpus)."""
    if n:
        import torch

        torch.set_num_threads(int(n))
        os.environ["OMP_NUM_THREADS"] = str(n)


class BatchStats:
    """Counts of batch sizes seen by a ``@serve.batch`` method (exposed for tests and metrics)."""

    def __init__(self) -> None:
        self.hist: dict[int, int] = {}

    def record(self, size: int) -> None:
        self.hist[size] = self.hist.get(size, 0) + 1

    def summary(self) -> dict[str, object]:
        total = sum(self.hist.values())
        reqs = sum(k * v for k, v in self.hist.items())
        return {
            "batches": total,
            "requests": reqs,
            "max_batch": max(self.hist, default=0),
            "mean_batch": reqs / total if total else 0.0,
            "hist": dict(sorted(self.hist.items())),
        }
