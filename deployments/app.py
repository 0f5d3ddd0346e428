"""Thin entry: ``deployments.app:build_app`` is ``shoprank.serve_app:build_app`` (kept for old configs)."""

from shoprank.serve_app import GRPC_SERVICER_FUNCTIONS, AppArgs, build_app

__all__ = ["GRPC_SERVICER_FUNCTIONS", "AppArgs", "build_app"]
