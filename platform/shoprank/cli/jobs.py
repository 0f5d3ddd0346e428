"""Submitting shoprank entrypoints as Ray jobs (one implementation for train, tune, campaign)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from shoprank.errors import ShoprankError

RUNTIME_ENV_VARS = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
EXCLUDES = [".venv", ".git", "out", "runs", "**/__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache"]


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


def job_client(address: str):  # noqa: ANN201 - ray.job_submission.JobSubmissionClient
    """A job client for ``address`` (``HOST:PORT`` or a URL), with the auth token; one-line errors."""
    from ray.job_submission import JobSubmissionClient

    if not address.startswith(("http://", "https://", "ray://")) and address != "auto":
        address = f"http://{address}"
    try:
        return JobSubmissionClient(address, headers=auth_headers())
    except Exception as e:  # connection refused, bad URL, missing or wrong auth token
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ShoprankError(f"--address {address}: cannot use the Ray job server ({reason})") from None


def job_runtime_env(working_dir: Path | None = None) -> dict:
    """The runtime env of every submitted job: the current directory as the working dir (so the
    relative paths of its command line resolve as they do here) and this installed ``shoprank``
    package as a py_module (the cluster runs the submitter's code, whatever it has installed)."""
    import shoprank

    return {
        "working_dir": str(working_dir or Path.cwd()),
        "py_modules": [str(Path(shoprank.__file__).resolve().parent)],
        "excludes": EXCLUDES,
        "env_vars": RUNTIME_ENV_VARS,
    }


def submit_job(address: str, entrypoint: str, *, follow: bool = True, working_dir: Path | None = None) -> int:
    """``ray job submit --working-dir . -- ENTRYPOINT``; with ``follow`` stream logs and return its status."""
    client = job_client(address)
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=job_runtime_env(working_dir))
    print(f"submitted {job_id}: {entrypoint}")
    if not follow:
        return 0
    return wait_job(address, job_id)


def wait_job(address: str, job_id: str, poll_s: float = 2.0) -> int:
    """Print a job's new log lines until it ends; 0 if it succeeded."""
    from ray.job_submission import JobStatus

    client = job_client(address)
    shown = 0
    while True:
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            print(logs[shown:], end="", flush=True)
            shown = len(logs)
        status = client.get_job_status(job_id)
        if status in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            print(f"job {job_id}: {status.value}")
            return 0 if status == JobStatus.SUCCEEDED else 1
        time.sleep(poll_s)


def job_status(address: str, job_id: str | None = None) -> list[tuple[str, str, str]]:
    """(job id, status, entrypoint) for one job or all jobs on the cluster."""
    client = job_client(address)
    if job_id:
        info = client.get_job_info(job_id)
        return [(job_id, info.status.value, info.entrypoint)]
    return [(j.submission_id or j.job_id or "?", j.status.value, j.entrypoint) for j in client.list_jobs()]
