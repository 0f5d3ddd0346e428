"""Shared fixtures: one real local Ray per test session, and the shared data directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHOPRANK_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with a message saying what is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the real data sets in {SHARED_DATA} (../shared/data); not present on this machine")
    return SHARED_DATA


def shared_file(shared_data: Path, rel: str) -> Path:
    """One file under ../shared/data, or a skip naming the file."""
    path = shared_data / rel
    if not path.exists():
        pytest.skip(f"needs {path}; not present on this machine")
    return path


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real local Ray, started once per session, with its temp dir inside pytest's tmp."""
    import ray
    from shoprank.serve_app.server import apply_serve_perf_env

    os.environ["RAY_AUTH_MODE"] = "disabled"  # local tests only
    apply_serve_perf_env()  # Serve's proxy runs with the request-path settings `shoprank serve` uses
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "240")  # a loaded 2-core machine starts slowly
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    temp_dir = tmp_path_factory.mktemp("ray")
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _temp_dir=str(temp_dir),
        log_to_driver=False,
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}},
    )
    yield
    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # noqa: BLE001 - best effort at teardown
        pass
    ray.shutdown()
