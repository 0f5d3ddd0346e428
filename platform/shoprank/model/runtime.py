"""Encoder runtimes: eager PyTorch, or an ONNX Runtime session over the exported encoder graph.

``EncoderRuntime`` is the one switch every inference path reads (serving's query encoder,
campaign scoring, index builds): ``torch`` (the model's own encoder), ``onnx`` (the fp32 graph)
or ``onnx-int8`` (dynamically quantised weights). Training always runs torch.

:class:`OnnxEncoder` has :class:`~shoprank.model.encoder.TextEncoder`'s contract: a tokenised
batch (``input_ids``, ``attention_mask``) in, unit float32 embeddings ``[batch, dim]`` out (the
graph includes the mean pooling and the L2 normalisation). Its intra-op threads follow
``torch.get_num_threads()``, which Ray sets from the actor's CPU allotment (``OMP_NUM_THREADS``).

On a GPU with ONNX Runtime's ``CUDAExecutionProvider`` the fp32 graph is converted to fp16
(``onnxruntime.transformers.float16``, fp32 inputs/outputs kept) and run there; int8 dynamic
quantisation is a CPU format, so ``onnx-int8`` on such a machine runs that fp16 graph instead.
This path cannot be exercised on the CPU-only machines the tests run on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, get_args

import numpy as np

EncoderRuntime = Literal["torch", "onnx", "onnx-int8"]
RUNTIMES: tuple[str, ...] = get_args(EncoderRuntime)
ONNX_RUNTIMES: tuple[str, ...] = tuple(r for r in RUNTIMES if r != "torch")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

log = logging.getLogger("shoprank.model")


def check_runtime(name: str) -> EncoderRuntime:
    """``name`` if it is a known runtime; ValueError naming the choices otherwise."""
    if name not in RUNTIMES:
        raise ValueError(f"unknown encoder runtime {name!r}; choose from {list(RUNTIMES)}")
    return name  # type: ignore[return-value]


def default_threads() -> int:
    """Intra-op threads: torch's count (Ray sets it from the actor's num_cpus via OMP_NUM_THREADS)."""
    import torch

    return max(1, int(torch.get_num_threads()))


def cuda_available() -> bool:
    """Whether ONNX Runtime can run on a GPU here (the provider is built in and torch sees a GPU)."""
    import onnxruntime as ort
    import torch

    return CUDA in ort.get_available_providers() and torch.cuda.is_available()


class OnnxEncoder:
    """An ONNX Runtime session over an exported encoder graph: tokenised batch -> unit embeddings."""

    def __init__(self, path: str | Path, runtime: EncoderRuntime, threads: int | None = None,
                 device: str = "cpu") -> None:  # fmt: skip
        import onnxruntime as ort

        self.path = Path(path)
        self.runtime = runtime
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.device = "cuda" if device.startswith("cuda") and cuda_available() else "cpu"
        if self.device == "cuda":
            self.session = ort.InferenceSession(_fp16_bytes(self.path), opts, providers=[CUDA, CPU])
        else:
            self.session = ort.InferenceSession(str(self.path), opts, providers=[CPU])
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Embeddings [batch, dim], float32, unit length."""
        feeds = {
            "input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64),
        }
        (out,) = self.session.run(["embedding"], feeds)
        return np.asarray(out, dtype=np.float32)


def _fp16_bytes(fp32_path: Path) -> bytes:
    """The fp32 graph converted to fp16 (fp32 inputs and outputs kept), serialised for a CUDA session."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    return model.SerializeToString()
