"""Replica resources on a real local Ray: the model deployments take a GPU only when the cluster has one."""

from __future__ import annotations

from shoprank.serving import protos
from shoprank.serving.config import ServingConfig

pb2 = protos.pb2
CFG = ServingConfig(max_k=50, max_query_chars=40)


def test_model_deployments_take_a_gpu_only_when_the_cluster_has_one(ray_local) -> None:
    import ray
    from shoprank.serve_app.app import auto_gpus

    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    assert auto_gpus(None) == (0.5 if has_gpu else 0.0)
    assert auto_gpus(0.0) == 0.0 and auto_gpus(1.0) == 1.0  # an explicit count always wins
