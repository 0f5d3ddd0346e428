"""``shoprank k8s render``: KubeRay manifests from deployments/serve_config.yaml (:mod:`shoprank.k8s`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from shoprank.k8s.render import add_render_arguments, run

    p = sub.add_parser("k8s", help="KubeRay manifests (RayService, RayJobs) from the Serve config")
    s = p.add_subparsers(dest="k8s_command", required=True, metavar="ACTION")
    r = s.add_parser("render", help="write deployments/k8s/manifests/*.yaml (--check: compare, exit 1 if stale)")
    add_render_arguments(r)
    r.set_defaults(func=run)
