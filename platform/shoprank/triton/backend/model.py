"""Triton Python-backend model: the shoprank pairwise ranker (NumPy forward, no torch, no pickle).

Inputs (FP32): QUERY [1 or N, d], ITEM [N, d], ITEM_NUM [N, 3], MONTH [N, 2].
Outputs: one FP32 per pair task and MODEL_VERSION (BYTES), so that every response names the
model that computed it: [N] and [1] without batching; [N, 1] and [N, 1] with Triton's dynamic
batcher (max_batch_size > 0: rows are the batch dimension, QUERY is sent per row). Requests
handed over together (the dynamic batcher's batch) are run in one forward pass.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))
from numpy_ranker import NumpyRanker  # noqa: E402

INPUTS = ("QUERY", "ITEM", "ITEM_NUM", "MONTH")


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        self.ranker = NumpyRanker.load(version_dir)
        cfg = json.loads(args["model_config"])
        declared = cfg.get("parameters", {}).get("model_version", {}).get("string_value")
        if declared != self.ranker.model_version:
            raise pb_utils.TritonModelException(
                f"config.pbtxt model_version {declared!r} != ranker.json {self.ranker.model_version!r}"
            )
        self.batched = int(cfg.get("max_batch_size", 0)) > 0
        self.version = self.ranker.model_version.encode()

    def _inputs(self, request) -> list[np.ndarray]:  # noqa: ANN001 - pb_utils.InferenceRequest
        arrays = []
        for name in INPUTS:
            t = pb_utils.get_input_tensor_by_name(request, name)
            if t is None:
                raise ValueError(f"missing input {name}")
            arrays.append(t.as_numpy())
        q, i, num, month = arrays
        n, d = i.shape[0], self.ranker.dim
        if i.ndim != 2 or i.shape[1] != d:
            raise ValueError(f"ITEM must be [N, {d}], got {list(i.shape)}")
        if q.ndim != 2 or q.shape[1] != d or q.shape[0] not in (1, n):
            raise ValueError(f"QUERY must be [1, {d}] or [N, {d}] with N={n}, got {list(q.shape)}")
        if num.shape != (n, 3) or month.shape != (n, 2):
            raise ValueError(f"ITEM_NUM must be [N, 3] and MONTH [N, 2], got {list(num.shape)}, {list(month.shape)}")
        if q.shape[0] == 1:
            q = np.broadcast_to(q, i.shape)
        return [q, i, num, month]

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        parsed: list[tuple[int, list[np.ndarray]]] = []
        for k, request in enumerate(requests):
            try:
                parsed.append((k, self._inputs(request)))
            except Exception as e:  # noqa: BLE001 - reported to that request's caller
                responses[k] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e)))
        if parsed:
            stacked = [np.concatenate([p[1][j] for p in parsed]) for j in range(4)]
            out = self.ranker.pair_outputs(*stacked)
            start = 0
            for k, arrays in parsed:
                n = arrays[1].shape[0]
                shape = (n, 1) if self.batched else (n,)
                tensors = [
                    pb_utils.Tensor(t, np.ascontiguousarray(v[start : start + n]).reshape(shape))
                    for t, v in out.items()
                ]
                version = np.full((n, 1) if self.batched else (1,), self.version, dtype=np.object_)
                tensors.append(pb_utils.Tensor("MODEL_VERSION", version))
                responses[k] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += n
        return responses

    def finalize(self) -> None:
        self.ranker = None
