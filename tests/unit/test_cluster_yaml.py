"""cluster.yaml against the Ray cluster launcher's own schema (offline), plus shoprank's layout rules."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_valid_against_ray_schema(config: dict, schema: dict) -> None:
    jsonschema.validate(config, schema)


def test_launcher_accepts_it(config: dict) -> None:
    """What `ray up` does before touching a cloud: fill the provider's defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(copy.deepcopy(config))
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"


def test_schema_rejects_a_broken_copy(config: dict, schema: dict) -> None:
    """The check has teeth: a typo'd field or a fractional custom resource is refused."""
    bad = copy.deepcopy(config)
    bad["available_node_types"]["gpu_ranker"]["resources"]["ranker_gpu"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = copy.deepcopy(config)
    bad["available_node_types"]["head"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_node_types_and_resources(config: dict) -> None:
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and "GPU" not in head["resources"], "head: CPU only, runs no work"
    gpu = [t for t in types.values() if t["resources"].get("ranker_gpu", 0) >= 1]
    assert len(gpu) == 1 and gpu[0]["resources"].get("GPU", 0) >= 1, "one GPU ranker node type with ranker_gpu"
    assert gpu[0]["resources"]["ranker_gpu"] == gpu[0]["resources"]["GPU"]
    batch = [t for t in types.values() if t["resources"].get("batch_cpu", 0) >= 1]
    assert len(batch) == 1 and "GPU" not in batch[0]["resources"], "one CPU batch node type"
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert sum(t.get("min_workers", 0) for t in workers) <= config["max_workers"]
    assert all(t.get("max_workers", 0) <= config["max_workers"] for t in workers)


def test_setup_installs_the_project(config: dict) -> None:
    assert "." in config["file_mounts"].values(), "the working tree is synced to the nodes"
    mount = next(k for k, v in config["file_mounts"].items() if v == ".")
    for commands in (
        config["setup_commands"],
        config["available_node_types"]["gpu_ranker"]["worker_setup_commands"],  # overrides the global list
    ):
        text = "\n".join(commands)
        assert "make setup" in text and mount.rstrip("/").split("/")[-1] in text
    assert "make triton-env" in "\n".join(config["available_node_types"]["gpu_ranker"]["worker_setup_commands"])
    assert any("--head" in c for c in config["head_start_ray_commands"])
    assert any("$RAY_HEAD_IP" in c for c in config["worker_start_ray_commands"])


def test_every_node_starts_ray_with_the_serve_request_path_settings(config: dict) -> None:
    from shoprank.ray_runtime import SERVE_PERF_ENV
    from shoprank.request_limits import DEFAULT_MAX_REQUEST_BYTES, serve_limit_env

    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[key] if "ray start" in c)
        for name, value in {**SERVE_PERF_ENV, **serve_limit_env(DEFAULT_MAX_REQUEST_BYTES)}.items():
            assert f"{name}={value}" in start, (key, name)


def test_alternative_providers_are_commented() -> None:
    text = CLUSTER_YAML.read_text()
    for provider in ("gcp", "azure", "local"):
        assert re.search(rf"^#\s+type: {provider}$", text, re.M), f"commented alternative provider {provider}"
