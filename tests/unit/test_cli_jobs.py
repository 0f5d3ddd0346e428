"""Job submission: the Ray auth token is sent, an unusable job server is one clear error, which
errors are retried, and (on a real `ray start --head` job server) submit, follow and status."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from shoprank.cli.jobs import auth_headers, job_client, transient
from shoprank.errors import ShoprankError
from shoprank.net import free_port


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
    with pytest.raises(ShoprankError, match=rf"--submit http://{address}: cannot use the Ray job server") as e:
        job_client(address)
    assert "\n" not in str(e.value)


def test_transient_errors_are_server_errors_and_connection_failures() -> None:
    """What JobSubmissionClient raises: 5xx (e.g. no job agent yet after `ray start`) is retried,
    a bad request is not."""
    agent = "Request failed with status code 500: No available agent to submit job, please try again later.."
    assert transient(RuntimeError(agent))
    assert transient(RuntimeError("Request failed with status code 503: busy."))
    assert transient(requests.exceptions.ConnectionError("refused"))
    assert not transient(RuntimeError("Request failed with status code 400: Traceback ... ValueError."))
    assert not transient(RuntimeError("Request failed with status code 401: Unauthorized."))
    assert not transient(ValueError("status code 500"))
