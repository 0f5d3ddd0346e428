"""Privacy defaults over a real ``shoprank serve`` (its own local Ray, Serve and gRPC; issue 21 item 5).

With ``--tls-cert/--tls-key`` the plaintext port is for loopback callers only: Serve 2.60 binds it on
every interface (``[::]``, hard-coded; this test reads the bound address from the OS to show it), so the
proxy refuses plaintext calls from any other address with PERMISSION_DENIED, while TLS answers from
anywhere. The token comes from ``--token-file`` and never shows in the process's command line; and
without a user-id salt ``shoprank serve`` refuses to start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from shoprank.model.checkpoint import load_model
from shoprank.net import free_port
from shoprank.serving.auth import self_signed_cert
from shoprank.serving.client import SearchClient, SearchError

from tests.serving_helpers import index_with_model, small_catalogue, text_of

READY = "shoprank serving app"
TOKEN = "privacy-test-token"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SHOPRANK_TOKEN")}
    env.update(RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1", RAY_raylet_start_wait_time_s="240", **extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _non_loopback_ipv4() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return None


def _listeners(port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections(kind="tcp") if c.status == "LISTEN" and c.laddr.port == port}


@pytest.fixture(scope="module")
def tls_serve(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("privacy")
    cat = small_catalogue()
    model, _ = load_model(None, encoder="tiny")
    index = index_with_model(model, cat, tmp / "index", "pretrained-tiny")
    cert, key = self_signed_cert(str(tmp / "tls"))
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    tls_port, plain_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "shoprank", "serve", "--index", str(index), "--encoder", "tiny",
           "--num-cpus", "2", "--port", str(tls_port), "--plaintext-port", str(plain_port), "--tls-cert", cert,
           "--tls-key", key, "--token-file", str(token_file), "--store-dir", str(tmp / "store"),
           "--name", "privacy"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=tmp)
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if READY in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 420
    while not ready.wait(1) and proc.poll() is None and time.monotonic() < deadline:
        pass
    try:
        if not ready.is_set():
            pytest.fail("shoprank serve did not come up:\n" + "".join(lines[-40:]))
        yield {"proc": proc, "cat": cat, "cert": cert, "tls": tls_port, "plain": plain_port, "token": token_file,
               "lines": lines}  # fmt: skip
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


def _client(target: str, **kw) -> SearchClient:
    return SearchClient(target, application="privacy", timeout=20, **kw)


def test_plaintext_port_refuses_non_loopback_callers(tls_serve) -> None:
    plain, tls, cat = tls_serve["plain"], tls_serve["tls"], tls_serve["cat"]
    # Serve binds the plaintext port on every interface: the OS shows the wildcard address.
    assert _listeners(plain) & {"::", "0.0.0.0"}, _listeners(plain)
    assert "plaintext" in "".join(tls_serve["lines"]) and "loopback callers only" in "".join(tls_serve["lines"])
    with _client(f"127.0.0.1:{plain}", token_file=str(tls_serve["token"])) as c:  # loopback: served
        assert c.health() == "SERVING"
        assert c.search(text_of(cat, 3), k=3).items[0].item_id == cat["item_id"][3]
    ip = _non_loopback_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call from (the bound address is checked)")
    with _client(f"{ip}:{plain}", token_file=str(tls_serve["token"])) as c:
        for call in (lambda: c.health(), lambda: c.search(text_of(cat, 3), k=3)):
            with pytest.raises(SearchError) as e:
                call()
            assert e.value.code == "PERMISSION_DENIED" and f"TLS on port {tls}" in e.value.message
    # TLS from the same non-loopback address is served
    with _client(f"{ip}:{tls}", ca_file=tls_serve["cert"], server_name="localhost",
                 token_file=str(tls_serve["token"])) as c:  # fmt: skip
        assert c.health() == "SERVING"
        assert c.search(text_of(cat, 7), k=3).items[0].item_id == cat["item_id"][7]


def test_token_from_a_file_not_the_command_line(tls_serve) -> None:
    cmdline = " ".join(psutil.Process(tls_serve["proc"].pid).cmdline())
    assert "--token-file" in cmdline and TOKEN not in cmdline
    cat = tls_serve["cat"]
    with _client(f"localhost:{tls_serve['tls']}", ca_file=tls_serve["cert"]) as c:
        with pytest.raises(SearchError) as e:
            c.search(text_of(cat, 1), k=3)
        assert e.value.code == "UNAUTHENTICATED"
    with _client(f"localhost:{tls_serve['tls']}", ca_file=tls_serve["cert"], token=TOKEN) as c:
        assert len(c.search(text_of(cat, 1), k=3).items) == 3


def test_serve_refuses_to_start_without_a_salt(tmp_path: Path) -> None:
    env = _env()
    for var in ("SHOPRANK_ID_SALT", "SHOPRANK_ID_SALT_FILE", "SHOPRANK_INSECURE_DEFAULT_SALT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "shoprank", "serve", "--encoder", "tiny", "--num-cpus", "1"]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "no user-id salt configured" in done.stderr and "SHOPRANK_ID_SALT_FILE" in done.stderr
    assert "local Ray" not in done.stdout and time.monotonic() - t0 < 60  # refused before Ray started
