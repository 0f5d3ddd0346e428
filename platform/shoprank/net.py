"""Network helpers for local servers (Serve's proxies, Triton, tests)."""

from __future__ import annotations

import socket


def free_port(host: str = "") -> int:
    """A TCP port that is free right now on ``host`` (default: every interface of this machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
