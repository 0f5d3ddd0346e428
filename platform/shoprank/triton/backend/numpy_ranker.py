"""The pairwise ranker (mixer + towers) in NumPy, for Triton's Python backend.

Self-contained on purpose: it is copied into the Triton model repository and runs in the
isolated Triton environment (numpy<2, scipy, safetensors), which has neither torch nor
shoprank. It mirrors ``MultiTaskModel.pair_outputs`` in eval mode (dropout off):

    x = [q, i, q*i, |q-i|, item_num, month]
    shared_bottom: h = GELU(L2(GELU(L1(x))))           same h for every task
    mmoe:          h_t = sum_e softmax(gate_t(x))_e * expert_e(x)
    out_t = tower_t(h_t)[:, 0]

Computed in float64 and returned as float32, so it matches torch's float32 forward to ~1e-6.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

try:  # exact erf as a ufunc; math.erf vectorised otherwise (slower, same values)
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover - the Triton env installs scipy
    _erf = np.vectorize(math.erf, otypes=[np.float64])

FORMAT = "shoprank-triton-ranker"
FORMAT_VERSION = 1
WEIGHTS = "ranker.safetensors"
CONFIG = "ranker.json"

_SQRT1_2 = 1.0 / math.sqrt(2.0)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as torch.nn.GELU() with approximate='none'."""
    return 0.5 * x * (1.0 + _erf(x * _SQRT1_2))


def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return x @ w.T + b


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file: the same as ``shoprank.files.sha256_file``, copied because this module
    runs in Triton's environment, which has no shoprank (see the module docstring)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checked(directory: str | Path, config_name: str, weights_name: str, verify: bool = True) -> tuple[dict, dict]:
    """A model directory's JSON config and safetensors weights (checksum verified against the config)."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    config = json.loads((directory / config_name).read_text())
    weights_path = directory / weights_name
    if verify and sha256_file(weights_path) != config.get("weights_sha256"):
        raise ValueError(f"{weights_path}: checksum does not match {config_name} (corrupt or replaced)")
    return config, load_file(str(weights_path))


class NumpyRanker:
    """Forward pass of the exported ranker; weights as float64 NumPy arrays."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"not a {FORMAT} v{FORMAT_VERSION} config: {config.get('format')!r}")
        self.config = config
        self.tasks: list[str] = list(config["pair_tasks"])
        self.architecture: str = config["architecture"]
        self.dim: int = int(config["dim"])
        self.model_version: str = str(config["model_version"])
        self.w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}

    @classmethod
    def load(cls, directory: str | Path, verify: bool = True) -> NumpyRanker:
        """Read ``ranker.json`` + ``ranker.safetensors`` (checksum verified) from a directory."""
        return cls(*load_checked(directory, CONFIG, WEIGHTS, verify))

    def _block(self, prefix: str, x: np.ndarray) -> np.ndarray:
        """Sequential(_mlp, _mlp) where _mlp = Linear, GELU, Dropout (identity at eval)."""
        h = gelu(_linear(x, self.w[f"{prefix}.0.0.weight"], self.w[f"{prefix}.0.0.bias"]))
        return gelu(_linear(h, self.w[f"{prefix}.1.0.weight"], self.w[f"{prefix}.1.0.bias"]))

    def pair_outputs(
        self, q: np.ndarray, i: np.ndarray, item_num: np.ndarray, month: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Raw outputs [N] float32 per task; ``q`` is [d], [1, d] (broadcast) or [N, d]."""
        i = np.asarray(i, dtype=np.float64)
        q = np.asarray(q, dtype=np.float64)
        if q.ndim == 1:
            q = q[None, :]
        if q.shape[0] == 1 and i.shape[0] != 1:
            q = np.broadcast_to(q, i.shape)
        x = np.concatenate(
            [q, i, q * i, np.abs(q - i), np.asarray(item_num, np.float64), np.asarray(month, np.float64)], axis=1
        )
        if self.architecture == "mmoe":
            experts = np.stack([self._block(f"mixer.experts.{e}", x) for e in range(self.config["num_experts"])], 1)
            hidden = {}
            for t in self.tasks:
                logits = _linear(x, self.w[f"mixer.gates.{t}.weight"], self.w[f"mixer.gates.{t}.bias"])
                logits -= logits.max(axis=1, keepdims=True)
                g = np.exp(logits)
                g /= g.sum(axis=1, keepdims=True)
                hidden[t] = (g[:, :, None] * experts).sum(1)
        else:
            h = self._block("mixer.bottom", x)
            hidden = {t: h for t in self.tasks}
        return {
            t: _linear(hidden[t], self.w[f"towers.{t}.weight"], self.w[f"towers.{t}.bias"])[:, 0].astype(np.float32)
            for t in self.tasks
        }
