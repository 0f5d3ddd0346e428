"""Serve config entries for ``serve run`` / ``serve deploy`` (``serve_config.yaml``).

The application itself is ``shoprank.serve_app`` (installed package):
gRPC ingress (SearchIngress) -> QueryIntent -> CandidateRetriever -> MultiTaskRanker.
"""
