"""Serve's own processes, for operators' and benchmarks' checks (memory, liveness, fault drills)."""

from __future__ import annotations


def _alive_pids(match) -> list[int]:  # noqa: ANN001 - a predicate on the actor's class name
    import ray._private.state as state

    return sorted(
        int(a["Pid"])
        for a in state.actors().values()
        if a.get("State") == "ALIVE" and a.get("Pid") and match(str(a.get("ActorClassName", "")))
    )


def proxy_pids() -> list[int]:
    """The process ids of the live Serve proxy actors in the connected Ray cluster (one per node)."""
    return _alive_pids(lambda name: name == "ProxyActor")


def replica_pids(app: str, deployment: str) -> list[int]:
    """The process ids of the live replicas of ``deployment`` in Serve application ``app``."""
    return _alive_pids(lambda name: name.endswith(f"{app}:{deployment}"))
