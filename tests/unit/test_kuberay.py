"""The KubeRay manifests (deployments/k8s/manifests/) against KubeRay's own CRD schemas, and against
their sources: deployments/serve_config.yaml and deployments/k8s/values.yaml (no Ray, no cluster).

The CRDs are KubeRay's, kept in ../shared/k8s/crds (see ../shared/k8s/README.md); the schema tests
skip, saying so, only when that folder is absent. Validation is strict, like ``kubectl apply``'s
default field validation: a field the schema does not list is an error, not silently pruned.
"""

from __future__ import annotations

import argparse
import copy
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from shoprank.k8s.manifests import load_values, serve_config_v2
from shoprank.k8s.render import render, stale

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO.parent / "shared" / "k8s" / "crds"
SERVE_CONFIG = REPO / "deployments" / "serve_config.yaml"
VALUES = REPO / "deployments" / "k8s" / "values.yaml"
MANIFESTS = REPO / "deployments" / "k8s" / "manifests"
CRD_FILES = {"RayService": "ray.io_rayservices.yaml", "RayJob": "ray.io_rayjobs.yaml"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SECRET_ENVS = ("SHOPRANK_ID_SALT", "SHOPRANK_TOKEN")


def _manifest_files() -> list[Path]:
    return sorted(MANIFESTS.glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def serve_config() -> dict[str, Any]:
    return yaml.safe_load(SERVE_CONFIG.read_text())


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return {p.name: _load(p) for p in _manifest_files()}


@pytest.fixture(scope="module")
def crds() -> Path:
    if not CRDS.is_dir():
        pytest.skip(f"needs KubeRay's CRDs in {CRDS} (../shared/k8s/crds); not present on this machine")
    return CRDS


def strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused wherever the schema lists the fields (what
    ``kubectl apply --validate=strict`` does), except where it preserves unknown fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _schema(crds: Path, kind: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((crds / CRD_FILES[kind]).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert v["served"] and v["storage"], f"{kind} {version} is not KubeRay's served storage version"
    return strict(v["schema"]["openAPIV3Schema"])


def _validate(doc: dict[str, Any], crds: Path) -> None:
    group, version = doc["apiVersion"].split("/")
    assert group == "ray.io"
    jsonschema.validate(doc, _schema(crds, doc["kind"], version))
    name = doc["metadata"]["name"]
    assert DNS_LABEL.match(name) and len(name) <= 63, name
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}


def _containers(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group name, container) for every Ray container: the head's and every worker group's."""
    spec = doc["spec"]
    cluster = spec["rayClusterConfig"] if doc["kind"] == "RayService" else spec["rayClusterSpec"]
    for c in cluster["headGroupSpec"]["template"]["spec"]["containers"]:
        yield "head", c
    for g in cluster["workerGroupSpecs"]:
        for c in g["template"]["spec"]["containers"]:
            yield g["groupName"], c


def test_checked_in_manifests_are_what_render_writes(tmp_path: Path) -> None:
    """One source of truth: the manifests are exactly what the generator makes from the two sources."""
    texts = render(SERVE_CONFIG, VALUES)
    assert set(texts) == {p.name for p in _manifest_files()}
    assert stale(MANIFESTS, texts) == [], "stale manifests: run `python -m shoprank.k8s render`"
    # and the check notices a difference
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "rayservice.yaml").write_text(texts["rayservice.yaml"].replace("port: 9000", "port: 9001", 1))
    assert stale(tmp_path, texts) == ["rayservice.yaml"]


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: p.name)
def test_manifest_validates_against_kuberay_crd(path: Path, crds: Path) -> None:
    _validate(_load(path), crds)


def test_the_schema_check_has_teeth(docs: dict[str, dict[str, Any]], crds: Path) -> None:
    """A misspelt field, a wrong type or a missing required field is refused."""
    svc = docs["rayservice.yaml"]
    bad = copy.deepcopy(svc)
    bad["spec"]["serveConfigV3"] = bad["spec"].pop("serveConfigV2")
    with pytest.raises(jsonschema.ValidationError):
        _validate(bad, crds)
    bad = copy.deepcopy(svc)
    bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["readinessProbe"][
        "grpc"
    ] = {"prot": 9000}
    with pytest.raises(jsonschema.ValidationError):
        _validate(bad, crds)
    bad = copy.deepcopy(svc)
    bad["spec"]["serveConfigV2"] = yaml.safe_load(bad["spec"]["serveConfigV2"])  # must be a YAML string
    with pytest.raises(jsonschema.ValidationError):
        _validate(bad, crds)
    bad = copy.deepcopy(docs["rayjob-train.yaml"])
    del bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"]
    with pytest.raises(jsonschema.ValidationError):
        _validate(bad, crds)


def test_serve_config_v2_is_the_serve_config(docs: dict[str, dict[str, Any]], serve_config: dict[str, Any]) -> None:
    """serveConfigV2 is serve_config.yaml with the values' serve_args, and nothing else changed; it is
    a valid Serve config and valid app args."""
    from ray.serve.schema import ServeDeploySchema
    from shoprank.serve_app.app import AppArgs

    values = load_values(VALUES)
    got = yaml.safe_load(docs["rayservice.yaml"]["spec"]["serveConfigV2"])
    assert got == serve_config_v2(serve_config, values)
    # the same, spelt out: only the overridden args differ from serve_config.yaml
    (app,) = got["applications"]
    (src,) = serve_config["applications"]
    assert values.serve_args and {k: app["args"][k] for k in values.serve_args} == values.serve_args
    rest = {k: v for k, v in app["args"].items() if k not in values.serve_args}
    assert rest == {k: v for k, v in src["args"].items() if k not in values.serve_args}
    assert {k: v for k, v in app.items() if k != "args"} == {k: v for k, v in src.items() if k != "args"}
    assert {k: v for k, v in got.items() if k != "applications"} == {
        k: v for k, v in serve_config.items() if k != "applications"
    }
    schema = ServeDeploySchema.model_validate(got)
    AppArgs.model_validate(schema.applications[0].args)
    for key in ("index_dir", "checkpoint"):  # on the volumes the serving pods mount
        mounts = [v.mount for v in values.volumes.values() if v.serve]
        assert any(str(app["args"][key]).startswith(m + "/") for m in mounts), key


def test_readiness_probe_is_grpc_health_on_the_serve_grpc_port(
    docs: dict[str, dict[str, Any]], serve_config: dict[str, Any]
) -> None:
    port = serve_config["grpc_options"]["port"]
    assert "shoprank.serving.protos.add_health_service" in serve_config["grpc_options"]["grpc_servicer_functions"]
    svc = docs["rayservice.yaml"]
    workers = [c for group, c in _containers(svc) if group != "head"]
    assert workers
    for c in workers:
        probe = c["readinessProbe"]
        assert set(probe) - {"initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold"} == {"grpc"}
        assert probe["grpc"]["port"] == port  # kubelet's gRPC probe calls grpc.health.v1.Health/Check
        assert {"name": "serve", "containerPort": port} in c["ports"]
    # the head keeps KubeRay's probes (the app is deployed once the head is Ready), so it takes no traffic
    assert svc["spec"]["excludeHeadPodFromServeSvc"] is True
    # KubeRay's serve Service carries only the port named "serve" (the head container's): the gRPC API
    (head,) = [c for group, c in _containers(svc) if group == "head"]
    assert {"name": "serve", "containerPort": port} in head["ports"]
    assert svc["spec"]["serveService"]["spec"]["ports"] == [{"name": "serve", "port": port}]


def test_every_ray_container_has_the_serve_env_and_secret_refs(
    docs: dict[str, dict[str, Any]], serve_config: dict[str, Any]
) -> None:
    from shoprank.ray_runtime import SERVE_PERF_ENV
    from shoprank.request_limits import serve_limit_env

    values = load_values(VALUES)
    (app,) = serve_config["applications"]
    token_env = app["args"]["token_env"]
    assert token_env == "SHOPRANK_TOKEN"
    wanted = {**SERVE_PERF_ENV, **serve_limit_env(values.max_request_bytes)}
    assert set(wanted) >= {"RAY_SERVE_USE_GRPC_BY_DEFAULT", "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"}
    seen = 0
    for name, doc in docs.items():
        for group, c in _containers(doc):
            env = {e["name"]: e for e in c["env"]}
            assert len(env) == len(c["env"]), (name, group, "duplicate env names")
            for key, value in wanted.items():
                assert env.get(key) == {"name": key, "value": value}, (name, group, key)
            secrets = {"SHOPRANK_ID_SALT": values.id_salt_secret}
            if doc["kind"] == "RayService":
                secrets[token_env] = values.token_secret
            else:
                assert token_env not in env, (name, group, "jobs do not need the API token")
            for var, ref in secrets.items():
                assert env[var] == {"name": var, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
            for e in c["env"]:  # nothing secret as a literal value
                if e["name"] in SECRET_ENVS or re.search(r"(^|_)(SALT|TOKEN|PASSWORD|SECRET|KEY)(_|$)", e["name"]):
                    assert "value" not in e and "secretKeyRef" in e["valueFrom"], (name, group, e["name"])
            seen += 1
    assert seen >= 2 * len(docs)  # a head and at least one worker each


def _job_parsers() -> dict[str, Callable[[], argparse.ArgumentParser]]:
    """Each jobs/ module's argument parser (the one its main uses)."""
    from shoprank.cli.campaign import add_job_arguments
    from shoprank.cli.serve import add_index_arguments
    from shoprank.train.driver import build_arg_parser as train_parser
    from shoprank.tune.driver import build_arg_parser as tune_parser

    def with_args(add: Callable[[argparse.ArgumentParser], None]) -> Callable[[], argparse.ArgumentParser]:
        def make() -> argparse.ArgumentParser:
            p = argparse.ArgumentParser(exit_on_error=False)
            add(p)
            return p

        return make

    return {
        "train": train_parser,
        "tune": tune_parser,
        "score_catalogue": with_args(add_job_arguments),
        "build_index": with_args(add_index_arguments),
    }


def test_rayjobs_run_existing_jobs_modules_with_their_options(docs: dict[str, dict[str, Any]]) -> None:
    jobs = {n: d for n, d in docs.items() if d["kind"] == "RayJob"}
    assert set(jobs) == {f"rayjob-{n}.yaml" for n in ("train", "tune", "campaign", "build-index")}
    parsers = _job_parsers()
    modules = set()
    for name, doc in jobs.items():
        argv = shlex.split(doc["spec"]["entrypoint"])
        assert argv[:2] == ["python", "-m"] and argv[2].startswith("jobs."), (name, argv)
        module = argv[2].removeprefix("jobs.")
        assert (REPO / "jobs" / f"{module}.py").is_file(), (name, module)
        modules.add(module)
        parsers[module]().parse_args(argv[3:])  # the job's own options (exits on an unknown one)
        for arg in argv[3:]:  # repo files named relative to the working dir exist
            if arg.endswith((".yaml", ".yml")) and not arg.startswith("/"):
                assert (REPO / arg).is_file(), (name, arg)
        assert doc["spec"]["shutdownAfterJobFinishes"] is True
    assert modules == {"train", "tune", "score_catalogue", "build_index"}
