"""KubeRay manifests for shoprank, generated from ``deployments/serve_config.yaml`` (the Serve app)
and ``deployments/k8s/values.yaml`` (image, volumes, Secrets, pod sizes, job arguments).

    python -m shoprank.k8s render            # writes deployments/k8s/manifests/*.yaml
    python -m shoprank.k8s render --check    # exit 1 when a checked-in manifest is stale

:mod:`shoprank.k8s.manifests` builds them; :mod:`shoprank.k8s.render` writes them. See docs/kubernetes.md.
"""
