"""Submitting shoprank entrypoints as Ray jobs and following them: the one path for train, tune
and campaign (``--submit URL``).

Submission retries while the job server answers with a server error (HTTP 5xx, e.g. "no
available agent" right after ``ray start``) or cannot be reached, for up to ``retry_s``
seconds (tenacity); following streams the job's logs with ``JobSubmissionClient.tail_job_logs``.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from shoprank.errors import ShoprankError
from shoprank.ray_runtime import RUNTIME_ENV_VARS

EXCLUDES = [".venv", ".git", "out", "runs", "**/__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache"]
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_STATUS_RE = re.compile(r"status code (\d{3})")  # how JobSubmissionClient reports an HTTP error


def auth_headers() -> dict[str, str]:
    """The Ray auth token as a bearer header (``RAY_AUTH_TOKEN``, else the file at
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, where ``ray start`` keeps it), if there is one.

    Clusters started with token authentication (Ray's default) refuse job requests without it,
    and Ray's client only sends it when ``RAY_AUTH_MODE=token`` is set in the caller's shell.
    """
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        token = path.read_text().strip() if path.is_file() else ""
    return {"Authorization": f"Bearer {token}"} if token else {}


def job_client(url: str):  # noqa: ANN201 - ray.job_submission.JobSubmissionClient
    """A job client for ``url`` (``HOST:PORT`` or a URL), with the auth token; one-line errors."""
    from ray.job_submission import JobSubmissionClient

    if not url.startswith(("http://", "https://", "ray://")) and url != "auto":
        url = f"http://{url}"
    try:
        return JobSubmissionClient(url, headers=auth_headers())
    except Exception as e:  # connection refused, bad URL, missing or wrong auth token
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ShoprankError(f"--submit {url}: cannot use the Ray job server ({reason})") from None


def job_runtime_env(working_dir: Path | None = None) -> dict[str, Any]:
    """The runtime env of every submitted job: the current directory as the working dir (so the
    relative paths of its command line resolve as they do here), this installed ``shoprank``
    package as a py_module (the cluster runs the submitter's code, whatever it has installed),
    and the one runtime env's variables (``shoprank.ray_runtime``)."""
    import shoprank

    return {
        "working_dir": str(working_dir or Path.cwd()),
        "py_modules": [str(Path(shoprank.__file__).resolve().parent)],
        "excludes": EXCLUDES,
        "env_vars": dict(RUNTIME_ENV_VARS),
    }


def transient(e: BaseException) -> bool:
    """Worth retrying: the job server is unreachable or answered with a server error (5xx)."""
    import requests

    if isinstance(e, requests.exceptions.ConnectionError):
        return True
    m = _STATUS_RE.search(str(e)) if isinstance(e, RuntimeError) else None
    return bool(m) and 500 <= int(m.group(1)) < 600


def submit(
    url: str,
    entrypoint: str,
    *,
    metadata: dict[str, str] | None = None,
    retry_s: float = 60.0,
    working_dir: Path | None = None,
):  # noqa: ANN201 - (JobSubmissionClient, job id)
    """``ray job submit --working-dir . -- ENTRYPOINT``, retrying a server that is still starting;
    returns (client, job id)."""
    import tenacity

    client = job_client(url)
    runtime_env = job_runtime_env(working_dir)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient),
        stop=tenacity.stop_after_delay(retry_s),
        wait=tenacity.wait_exponential(multiplier=0.5, max=5),
        reraise=True,
    )
    try:
        job_id = retrying(client.submit_job, entrypoint=entrypoint, runtime_env=runtime_env, metadata=metadata)
    except (RuntimeError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ShoprankError(f"--submit {url}: job submission failed ({reason})") from None
    print(f"submitted {job_id}: {entrypoint}", flush=True)
    return client, job_id


def submit_job(url: str, entrypoint: str, *, wait: bool = True, **kwargs: Any) -> int:
    """:func:`submit`; with ``wait`` follow the job and return 0 if it succeeded, else 1; without, 0."""
    client, job_id = submit(url, entrypoint, **kwargs)
    return follow_job(client, job_id) if wait else 0


def follow_job(client, job_id: str, out=None) -> int:  # noqa: ANN001 - JobSubmissionClient, text stream
    """Stream a job's logs until it ends (``tail_job_logs``); print its final status; 0 on success."""
    out = out or sys.stdout

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    try:
        asyncio.run(tail())
    except RuntimeError as e:  # the log stream broke off: keep waiting for the status
        print(f"(log stream closed: {str(e).strip().splitlines()[0] if str(e).strip() else e!r})", file=out)
    status = status_name(client.get_job_status(job_id))
    while status not in TERMINAL:  # the log stream closes as the job ends; its status may lag a moment
        time.sleep(0.5)
        status = status_name(client.get_job_status(job_id))
    print(f"job {job_id}: {status}", file=out, flush=True)
    return 0 if status == "SUCCEEDED" else 1


def status_name(status: object) -> str:
    """``SUCCEEDED``, ``FAILED``, ... for a JobStatus (or its string form)."""
    return str(getattr(status, "value", status)).rsplit(".", 1)[-1]
