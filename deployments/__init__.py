"""Ray Serve deployments for online search (see app.py for the graph and serve_config.yaml).

    gRPC ingress (SearchIngress) -> QueryIntent -> CandidateRetriever -> MultiTaskRanker

Each deployment wraps one component of shoprank.serving.pipeline, so the served path and the
in-process SearchPipeline run the same code.
"""
