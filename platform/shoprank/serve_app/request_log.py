"""The ingress's request log: one line per served or refused request, never lost at shutdown.

Serve buffers request-path log records in memory (``RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE``, see
:mod:`shoprank.ray_runtime`: flushing per line costs CPU on every request) and writes them out when
the buffer fills or an error is logged, so a quiet replica's lines could sit in memory for good and
vanish with the process. :class:`LogFlusher` writes the buffer out at least every ``interval_s``
seconds (a daemon thread) and once more when the replica shuts down (the ingress's ``__del__``).

Lines name the request id and the salted user hash, never the raw user id; a refused request's line
names its status code and a short prefix of the message.
"""

from __future__ import annotations

import logging
import logging.handlers
import threading

log = logging.getLogger("ray.serve")

MAX_LOGGED_MESSAGE = 200


def flush_serve_logs() -> None:
    """Write out every buffered record of Serve's logger in this process."""
    for handler in list(log.handlers) + list(logging.getLogger().handlers):
        try:
            handler.flush()
        except Exception:  # noqa: BLE001, S110 - a closed stream at shutdown: nothing to write
            pass


class LogFlusher:
    """A daemon thread calling :func:`flush_serve_logs` every ``interval_s`` seconds until :meth:`close`."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), name="log-flusher", daemon=True)
        self._thread.start()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            flush_serve_logs()

    def close(self) -> None:
        self._stop.set()
        flush_serve_logs()


def log_refused(method: str, request_id: str, code: str, message: str, user_hash: str | None) -> None:
    """One line for a request answered with an error status (validation, auth, deadline, store...)."""
    short = message if len(message) <= MAX_LOGGED_MESSAGE else message[:MAX_LOGGED_MESSAGE] + "..."
    log.info("%s REFUSED id=%s code=%s user=%s msg=%r", method, request_id, code, user_hash or "-", short)
