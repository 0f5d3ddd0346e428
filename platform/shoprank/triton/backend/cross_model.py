"""Triton Python-backend model: the shoprank cross-encoder (NumPy forward, no torch, no pickle).

Copied as ``model.py`` into the cross-encoder's model version directory. Inputs (INT64, rows are
the batch dimension, the sequence length varies): INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS
[N, L]. Outputs: one FP32 [N, 1] raw logit per head and MODEL_VERSION (BYTES) [N, 1]. The
inputs allow ragged batches, so Triton's dynamic batcher hands requests of different lengths to
one ``execute``; they are right-padded to the longest and run in one forward pass (padding is
masked, so a pair's score does not depend on its neighbours).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import triton_python_backend_utils as pb_utils


def _sibling(name: str) -> ModuleType:
    """``name``.py of this directory, imported by its path and registered under its name (Triton loads this
    file by path, and the Triton environment has no shoprank to import it from)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_sibling("numpy_ranker")  # numpy_cross imports its GELU and file hash from it
_cross = _sibling("numpy_cross")
INPUTS, NumpyCrossEncoder = _cross.INPUTS, _cross.NumpyCrossEncoder


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        self.model = NumpyCrossEncoder.load(version_dir)
        cfg = json.loads(args["model_config"])
        declared = cfg.get("parameters", {}).get("model_version", {}).get("string_value")
        if declared != self.model.model_version:
            raise pb_utils.TritonModelException(
                f"config.pbtxt model_version {declared!r} != cross.json {self.model.model_version!r}"
            )
        self.version = self.model.model_version.encode()

    def _inputs(self, request) -> list[np.ndarray]:  # noqa: ANN001 - pb_utils.InferenceRequest
        arrays = []
        for name in INPUTS:
            t = pb_utils.get_input_tensor_by_name(request, name)
            if t is None:
                raise ValueError(f"missing input {name}")
            arrays.append(t.as_numpy().astype(np.int64, copy=False))
        shape = arrays[0].shape
        if len(shape) != 2 or any(a.shape != shape for a in arrays):
            raise ValueError(f"INPUT_IDS, ATTENTION_MASK and TOKEN_TYPE_IDS must be [N, L] alike, got "
                             f"{[list(a.shape) for a in arrays]}")  # fmt: skip
        return arrays

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        parsed: list[tuple[int, list[np.ndarray]]] = []
        for k, request in enumerate(requests):
            try:
                parsed.append((k, self._inputs(request)))
            except Exception as e:  # noqa: BLE001 - reported to that request's caller
                responses[k] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e)))
        if parsed:
            width = max(p[1][0].shape[1] for p in parsed)
            stacked = [
                np.concatenate([np.pad(p[1][j], ((0, 0), (0, width - p[1][j].shape[1]))) for p in parsed])
                for j in range(len(INPUTS))
            ]
            out = self.model.outputs(*stacked)
            start = 0
            for k, arrays in parsed:
                n = arrays[0].shape[0]
                tensors = [pb_utils.Tensor(t, np.ascontiguousarray(v[start : start + n]).reshape(n, 1))
                           for t, v in out.items()]  # fmt: skip
                tensors.append(pb_utils.Tensor("MODEL_VERSION", np.full((n, 1), self.version, dtype=np.object_)))
                responses[k] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += n
        return responses

    def finalize(self) -> None:
        self.model = None
