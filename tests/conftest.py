"""Shared fixtures: one real local Ray per test session, and the shared data directory.

Two tiers: ``tests/unit`` (no Ray; ``make test-fast``, about a minute) and ``tests/ray`` (real
Ray, Serve, gRPC, Triton). A unit test asking for ``ray_local`` fails: it belongs in tests/ray.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store_fixtures import store, store_server  # noqa: F401 - a real store server per session

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHOPRANK_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A user-id salt for the whole session (serving refuses to build without one; see docs/privacy.md):
# set before Ray starts, so every worker hashes with it too.
os.environ.setdefault("SHOPRANK_ID_SALT", "shoprank-tests-salt")


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
    from shoprank.ray_runtime import init_ray

    os.environ["RAY_AUTH_MODE"] = "disabled"  # local tests only
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "240")  # a loaded 2-core machine starts slowly
    temp_dir = tmp_path_factory.mktemp("ray")
    # serve=True: Serve's proxy runs with the request-path settings `shoprank serve` uses
    init_ray(num_cpus=4, serve=True, _temp_dir=str(temp_dir))
    yield
    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # noqa: BLE001 - best effort at teardown
        pass
    ray.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test under tests/unit that needs ``ray_local`` (directly or through a fixture) is an error."""
    unit = REPO / "tests" / "unit"
    wrong = [i.nodeid for i in items if "ray_local" in getattr(i, "fixturenames", ()) and unit in i.path.parents]
    if wrong:
        raise pytest.UsageError("tests/unit must not start Ray; move to tests/ray: " + ", ".join(wrong))
