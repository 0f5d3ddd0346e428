"""KubeRay manifests as plain dicts, built from the Serve config and ``deployments/k8s/values.yaml``.

- :func:`serve_config_v2`: the RayService's ``serveConfigV2``: ``deployments/serve_config.yaml``
  as it is, with the values' ``serve_args`` set in each application's ``args`` (paths on the
  volumes, GPU pinning); nothing else changes, so the Serve config stays the one source of truth.
- :func:`rayservice` / :func:`rayjob`: one Ray cluster shape for both (:func:`cluster_spec`).
  Every Ray container gets the Serve proxy/replica env (``shoprank.ray_runtime.SERVE_PERF_ENV``),
  the request-size limits (``shoprank.request_limits.serve_limit_env``), the one runtime env's
  variables, and the user-id salt (and, on serving pods, the API token) from Kubernetes Secrets.
- Serving worker pods are Ready only when ``grpc.health.v1`` ``Check`` on the Serve gRPC port
  answers SERVING (a kubelet gRPC probe); the head keeps KubeRay's own probes (KubeRay deploys
  the Serve app only once the head is Ready) and is left out of the serve Service. That Service
  carries one port, the container port named ``serve`` (KubeRay's rule): here the gRPC port.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from shoprank.hashing import DEFAULT_SALT_ENV
from shoprank.ray_runtime import RUNTIME_ENV_VARS, SERVE_PERF_ENV
from shoprank.request_limits import DEFAULT_MAX_REQUEST_BYTES, serve_limit_env
from shoprank.yamlconfig import read_yaml, validate_mapping

API_VERSION = "ray.io/v1"
HEALTH_SERVICE = ""  # grpc.health.v1 service name the probe asks about: "" is the whole server
# two misses in a row (~10 s) take a pod out of the Service: one slow Check under load does not
READINESS = {"initialDelaySeconds": 10, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 2}
HEAD_PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": 10001}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretRef(_Strict):
    name: str
    key: str


class Volume(_Strict):
    claim: str
    mount: str
    serve: bool = False  # also mounted (read-only) on the serving cluster


class Pods(_Strict):
    cpu: str
    memory: str


class WorkerGroup(Pods):
    name: str
    min_replicas: int = Field(ge=0)
    max_replicas: int = Field(ge=1)
    gpu: int = 0
    resources: dict[str, int] = Field(default_factory=dict)  # Ray custom resources of each pod


class Job(_Strict):
    module: str  # jobs/<module>.py
    args: list[str] = Field(default_factory=list)


class Values(_Strict):
    """``deployments/k8s/values.yaml``."""

    name: str
    ray_version: str
    image: str
    image_pull_policy: str = "IfNotPresent"
    workdir: str
    max_request_bytes: int = Field(default=DEFAULT_MAX_REQUEST_BYTES, gt=0)  # serve_limit_env's limit
    id_salt_secret: SecretRef
    token_secret: SecretRef
    volumes: dict[str, Volume]
    serve_args: dict[str, Any] = Field(default_factory=dict)
    head: Pods
    serve_workers: list[WorkerGroup]
    job_workers: list[WorkerGroup]
    jobs: dict[str, Job]


def load_values(path: str | Path) -> Values:
    return validate_mapping(Values, read_yaml(path, "k8s values"), str(path))


def serve_config_v2(serve_config: dict[str, Any], values: Values) -> dict[str, Any]:
    """The Serve config with ``values.serve_args`` set in every application's args."""
    out = copy.deepcopy(serve_config)
    for app in out.get("applications", []):
        app["args"] = {**app.get("args", {}), **copy.deepcopy(values.serve_args)}
    return out


def grpc_port(serve_config: dict[str, Any]) -> int:
    return int(serve_config.get("grpc_options", {}).get("port", 9000))


def http_port(serve_config: dict[str, Any]) -> int:
    return int(serve_config.get("http_options", {}).get("port", 8000))


def token_env(serve_config: dict[str, Any]) -> str:
    """The env var the app reads its bearer token from (``args.token_env``, default SHOPRANK_TOKEN)."""
    (app,) = serve_config["applications"]
    return app.get("args", {}).get("token_env") or "SHOPRANK_TOKEN"


def ray_env(values: Values, token: str | None) -> list[dict[str, Any]]:
    """Every Ray container's env: Serve's request-path settings and size limits, the runtime env's
    variables, and the Secrets (the token only where ``token`` names its variable)."""
    plain = {**RUNTIME_ENV_VARS, **SERVE_PERF_ENV, **serve_limit_env(values.max_request_bytes)}
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items()]
    secrets = [(DEFAULT_SALT_ENV, values.id_salt_secret)] + ([(token, values.token_secret)] if token else [])
    for var, ref in secrets:
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def _container(
    values: Values, name: str, pods: Pods, *, gpu: int, env: list, ports: dict[str, int], serving: bool
) -> dict[str, Any]:
    volumes = {k: v for k, v in values.volumes.items() if v.serve or not serving}
    limits: dict[str, Any] = {"cpu": pods.cpu, "memory": pods.memory}
    if gpu:
        limits["nvidia.com/gpu"] = str(gpu)
    return {
        "name": name,
        "image": values.image,
        "imagePullPolicy": values.image_pull_policy,
        "workingDir": values.workdir,
        "env": copy.deepcopy(env),
        "ports": [{"name": n, "containerPort": p} for n, p in ports.items()],
        "resources": {"requests": dict(limits), "limits": dict(limits)},
        "volumeMounts": [
            {"name": k, "mountPath": v.mount, **({"readOnly": True} if serving else {})} for k, v in volumes.items()
        ],
    }


def _pod_volumes(values: Values, serving: bool) -> list[dict[str, Any]]:
    return [
        {"name": k, "persistentVolumeClaim": {"claimName": v.claim, **({"readOnly": True} if serving else {})}}
        for k, v in values.volumes.items()
        if v.serve or not serving
    ]


def cluster_spec(values: Values, serve_config: dict[str, Any], *, serving: bool) -> dict[str, Any]:
    """A RayCluster spec: a 0-CPU head and autoscaling worker groups (serving or job groups)."""
    env = ray_env(values, token_env(serve_config) if serving else None)
    # KubeRay's serve Service exposes one port, the head container's port named "serve": the gRPC API
    serve_ports = {"serve": grpc_port(serve_config), "http": http_port(serve_config)} if serving else {}
    head = _container(values, "ray-head", values.head, gpu=0, env=env, ports={**HEAD_PORTS, **serve_ports},
                      serving=serving)  # fmt: skip
    groups = []
    for g in values.serve_workers if serving else values.job_workers:
        c = _container(values, "ray-worker", g, gpu=g.gpu, env=env, ports=serve_ports, serving=serving)
        if serving:
            c["readinessProbe"] = {"grpc": {"port": grpc_port(serve_config), "service": HEALTH_SERVICE}, **READINESS}
        group: dict[str, Any] = {
            "groupName": g.name,
            "replicas": g.min_replicas,
            "minReplicas": g.min_replicas,
            "maxReplicas": g.max_replicas,
            "rayStartParams": {},
            "template": {"spec": {"containers": [c], "volumes": _pod_volumes(values, serving)}},
        }
        if g.resources:
            group["resources"] = {k: str(v) for k, v in g.resources.items()}
        groups.append(group)
    return {
        "rayVersion": values.ray_version,
        "enableInTreeAutoscaling": True,
        "authOptions": {"mode": "token"},  # KubeRay makes the Ray token Secret and wires it everywhere
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": {"spec": {"containers": [head], "volumes": _pod_volumes(values, serving)}},
        },
        "workerGroupSpecs": groups,
    }


def _metadata(values: Values, name: str, component: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": values.name, "app.kubernetes.io/component": component}
    return {"name": name, "labels": labels}


def rayservice(serve_config: dict[str, Any], values: Values) -> dict[str, Any]:
    """The RayService: the serving cluster plus ``serveConfigV2`` (as a YAML string)."""
    ports = [{"name": "serve", "port": grpc_port(serve_config)}]  # KubeRay keeps only the port named "serve"
    return {
        "apiVersion": API_VERSION,
        "kind": "RayService",
        "metadata": _metadata(values, values.name, "serving"),
        "spec": {
            "serveConfigV2": yaml_text(serve_config_v2(serve_config, values)),
            "excludeHeadPodFromServeSvc": True,  # only worker pods that pass the gRPC probe take traffic
            "serveService": {"metadata": {"name": f"{values.name}-serve"}, "spec": {"ports": ports}},
            "rayClusterConfig": cluster_spec(values, serve_config, serving=True),
        },
    }


def entrypoint(job: Job) -> str:
    return shlex.join(["python", "-m", f"jobs.{job.module}", *job.args])


def rayjob(name: str, job: Job, serve_config: dict[str, Any], values: Values) -> dict[str, Any]:
    """A RayJob: its own cluster (job worker groups), torn down when the job ends."""
    return {
        "apiVersion": API_VERSION,
        "kind": "RayJob",
        "metadata": _metadata(values, f"{values.name}-{name}", name),
        "spec": {
            "entrypoint": entrypoint(job),
            "runtimeEnvYAML": yaml_text({"env_vars": dict(RUNTIME_ENV_VARS)}),
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 600,
            "backoffLimit": 0,
            "rayClusterSpec": cluster_spec(values, serve_config, serving=False),
        },
    }


def manifests(serve_config: dict[str, Any], values: Values) -> dict[str, dict[str, Any]]:
    """File name -> manifest: ``rayservice.yaml`` and ``rayjob-<name>.yaml`` per job."""
    out = {"rayservice.yaml": rayservice(serve_config, values)}
    out.update({f"rayjob-{name}.yaml": rayjob(name, job, serve_config, values) for name, job in values.jobs.items()})
    return out


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (serveConfigV2 stays readable in the manifest)."""


def _str(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)


_Dumper.add_representer(str, _str)


def yaml_text(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=120, default_flow_style=False)
