"""Job submission against a real Ray head's job server: submit, follow, status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from shoprank.cli import main
from shoprank.cli.jobs import job_client, submit, submit_job
from shoprank.net import free_port


@pytest.fixture(scope="module")
def job_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Ray head with its job server (`ray start --head --block`), stopped by its own pid."""
    tmp = tmp_path_factory.mktemp("rayhead")
    dash = free_port("127.0.0.1")
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    cmd = [str(venv_bin / "ray"), "start", "--head", "--block", f"--port={free_port()}", "--num-cpus=1",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           f"--temp-dir={tmp}", "--disable-usage-stats",
           # its own agent ports: the session's Ray (ray_local) may hold the defaults on this machine
           f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
           f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]  # fmt: skip
    log = tmp / "head.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                job_client(url).list_jobs()
                break
            except Exception:  # noqa: BLE001 - still starting
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"ray start --head did not come up:\n{log.read_text()[-4000:]}")
                time.sleep(1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)  # --block stops the processes it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_submit_follow_and_status_on_a_real_job_server(
    job_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    (tmp_path / "hello.txt").write_text("from the working dir")
    ok = "python -c \"import shoprank; print(open('hello.txt').read(), shoprank.__name__)\""
    # The first submission may wait for the head's job agent (slow to start on a loaded machine).
    assert submit_job(job_server, ok, working_dir=tmp_path, retry_s=240) == 0
    out = capsys.readouterr().out
    assert "from the working dir shoprank" in out  # the logs were followed; cwd and py_modules shipped
    assert out.rstrip().splitlines()[-1].endswith(": SUCCEEDED")

    bad = "python -c \"import sys; print('failing now'); sys.exit(3)\""
    assert submit_job(job_server, bad, working_dir=tmp_path) == 1
    out = capsys.readouterr().out
    assert "failing now" in out and out.rstrip().splitlines()[-1].endswith(": FAILED")

    _, job_id = submit(job_server, "python -c \"print('queued')\"", metadata={"shoprank": "campaign"},
                       working_dir=tmp_path)  # fmt: skip
    capsys.readouterr()
    assert main(["campaign", "status", "--submit", job_server]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in listed] == [job_id]  # only the campaign job, not the other two
