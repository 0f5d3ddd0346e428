"""Serve's own processes, for operators' and benchmarks' checks (memory, liveness)."""

from __future__ import annotations


def proxy_pids() -> list[int]:
    """The process ids of the live Serve proxy actors in the connected Ray cluster (one per node)."""
    import ray._private.state as state

    return sorted(
        int(a["Pid"])
        for a in state.actors().values()
        if a.get("ActorClassName") == "ProxyActor" and a.get("State") == "ALIVE" and a.get("Pid")
    )
