"""Job submission helpers: the Ray auth token is sent, and an unusable address is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from shoprank.cli.jobs import auth_headers, job_client
from shoprank.errors import ShoprankError
from shoprank.serve_app.server import free_port


def test_auth_token_from_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "auth_token"
    token_file.write_text("file-token\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert auth_headers() == {"Authorization": "Bearer env-token"}
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    assert auth_headers() == {"Authorization": "Bearer file-token"}
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token either
    assert auth_headers() == {}


def test_unreachable_job_server_is_one_line_error() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ShoprankError, match=rf"--address http://{address}: cannot use the Ray job server") as e:
        job_client(address)
    assert "\n" not in str(e.value)
