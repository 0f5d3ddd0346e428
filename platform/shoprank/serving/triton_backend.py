"""The ``triton`` ranker backend: MultiTaskRanker's heads served by NVIDIA Triton.

Selected with ``serving.ranker_backend: triton`` and ``ranker_backend_options`` such as
``{url: "127.0.0.1:8001", expected_version: "...", failover: "inprocess", timeout_s: 0.25}``.
Raw outputs come back from Triton (``shoprank.triton.client``) and become scores exactly as
in-process ones do (``shoprank.model.scoring.scores_from_raw``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shoprank.model.features import month_features
from shoprank.model.multitask import MultiTaskModel
from shoprank.model.scoring import PairScores, scores_from_raw


class TritonBackend:
    """Scores (query, item) pairs through Triton, failing over per ``failover``."""

    name = "triton"

    def __init__(
        self,
        model: MultiTaskModel,
        url: str,
        *,
        model_name: str | None = None,
        expected_version: str | None = None,
        failover: str = "inprocess",
        timeout_s: float = 0.5,
        retries: int = 1,
        **client_options: Any,
    ) -> None:
        from shoprank.triton.client import DEFAULT_MODEL_NAME, TritonRankerClient

        self.model = model
        self.client = TritonRankerClient(
            url,
            model_name=model_name or DEFAULT_MODEL_NAME,
            expected_version=expected_version,
            failover=failover,  # type: ignore[arg-type]
            fallback_model=model if failover == "inprocess" else None,
            timeout_s=timeout_s,
            retries=retries,
            **client_options,
        )

    def score(
        self,
        q: np.ndarray,
        items: np.ndarray,
        item_num: np.ndarray,
        month: np.ndarray,
        lexical: np.ndarray | None = None,
    ) -> PairScores:
        n = items.shape[0]
        sim = (items @ q) if q.ndim == 1 else (items * q).sum(-1)
        raw = self.client.pair_outputs(q, items, item_num, month_features(month, n)) if n else {}
        return scores_from_raw(self.model, raw, np.clip(sim, -1.0, 1.0).astype(np.float32), lexical)
