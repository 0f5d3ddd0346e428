"""The Ray Serve application for online search (``import_path: shoprank.serve_app:build_app``).

    gRPC ingress (SearchIngress) -> QueryIntent -> CandidateRetriever -> MultiTaskRanker

Each deployment wraps one component of ``shoprank.serving.pipeline``, so the served path and
the in-process ``SearchPipeline`` run the same code.
"""

from shoprank.serve_app.app import GRPC_SERVICER_FUNCTIONS, AppArgs, build_app

__all__ = ["GRPC_SERVICER_FUNCTIONS", "AppArgs", "build_app"]
