"""Errors of the Triton ranker backend, each naming what to do about it.

The gRPC layer maps :class:`TritonUnavailableError` to ``UNAVAILABLE`` and
:class:`TritonVersionMismatchError` to ``FAILED_PRECONDITION`` (the serving stack is
misconfigured: Triton serves another model than the index/ranker expect).
"""

from __future__ import annotations

from shoprank.errors import ShoprankError


class TritonUnavailableError(ShoprankError):
    """Triton is down, unreachable or too slow (after retries), and failover is "unavailable"."""

    grpc_status = "UNAVAILABLE"


class TritonVersionMismatchError(ShoprankError):
    """Triton serves a ranker whose model_version differs from the expected one."""

    grpc_status = "FAILED_PRECONDITION"

    def __init__(self, expected: str, served: str, where: str) -> None:
        self.expected = expected
        self.served = served
        super().__init__(
            f"Triton model version mismatch at {where}: Triton serves {served!r} but the index/model "
            f"expects {expected!r}; re-export the ranker (python -m shoprank.triton.export) and reload Triton"
        )


class TritonEnvError(ShoprankError):
    """The isolated Triton environment cannot be built or the server cannot start."""
