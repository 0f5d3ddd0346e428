"""Triton-served pairwise ranker: export, a real Triton Inference Server, and an async gRPC client.

- :mod:`shoprank.triton.export` writes the ranker part of a :class:`MultiTaskModel` (mixer +
  towers, not the encoder) to a Triton model repository: safetensors weights + a JSON config,
  served by a NumPy-only Python-backend ``model.py`` (no pickle anywhere).
- :mod:`shoprank.triton.server` builds the isolated Triton environment (its own venv with
  ``nvidia-pytriton``, numpy<2) and starts/stops ``tritonserver`` on free local ports.
- :mod:`shoprank.triton.client` is :class:`TritonRankerClient`: ``tritonclient.grpc.aio``,
  batched, per-call timeouts, retries with backoff, version check and failover;
  :class:`TritonCrossClient` is the same client for the cross-encoder (token ids in, logits out),
  which ``export_cross_encoder`` writes beside the ranker.

This package imports nothing heavy itself (no torch): ``python -m shoprank.triton.server``
starts fast.
"""

DEFAULT_MODEL_NAME = "shoprank_ranker"
CROSS_MODEL_NAME = "shoprank_cross"  # the cross-encoder (issue 23), export_cross_encoder / TritonCrossClient
