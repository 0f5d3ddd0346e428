"""Zero-shot classes: the one implementation of "softmax of cosine to each class text".

An untrained classification head falls back to prototypes: each class is described by a text
(its name, or a description), embedded once by the encoder; a text's class probabilities are
the softmax of its cosine to each prototype over a temperature. Callers and their temperature
(each keeps the one it always had, so its outputs are unchanged):

- serving, ``shoprank.serving.pipeline.QueryEncoder`` (zero-shot intent over the catalogue's
  top-level categories): ``SERVING_TEMPERATURE`` = 0.05, computed in float32;
- campaign scoring, ``shoprank.campaign.scoring.CampaignScorer`` (zero-shot season over
  ``SEASON_DESCRIPTIONS``): ``CAMPAIGN_TEMPERATURE`` = 0.05, computed in float64; its intent
  segments use :meth:`ZeroShotClasses.predict` (arg-max of cosine, no temperature);
- evaluation, ``shoprank.eval.tasks`` (the zero-shot intent baseline): :meth:`predict` only.

The trained prototype *term* of a classification head (``MultiTaskModel.prototypes``, fitted by
the head refit) embeds class names with :func:`class_name_text` too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from shoprank.model.multitask import MultiTaskModel

SERVING_TEMPERATURE = 0.05
CAMPAIGN_TEMPERATURE = 0.05


def class_name_text(label: str) -> str:
    """The text a class name is embedded as: the leaf of a ``a > b > c`` path."""
    return label.split(">")[-1].strip()


def softmax_cosine(
    emb: np.ndarray, prototypes: np.ndarray, temperature: float, dtype: type[np.floating] = np.float64
) -> np.ndarray:
    """[N, C] softmax over classes of ``emb @ prototypes.T / temperature``, computed in ``dtype``."""
    logits = (emb @ prototypes.T).astype(dtype, copy=False) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


class ZeroShotClasses:
    """Classes described by texts; their embeddings are computed once, on first use, and kept
    here (the explicit cache: nothing is stored on the model)."""

    def __init__(
        self,
        model: MultiTaskModel,
        class_texts: list[str],
        temperature: float,
        *,
        dtype: type[np.floating] = np.float64,
    ) -> None:
        self.model = model
        self.class_texts = list(class_texts)
        self.temperature = temperature
        self.dtype = dtype
        self._prototypes: np.ndarray | None = None

    @property
    def prototypes(self) -> np.ndarray:
        """[C, d] unit embeddings of the class texts."""
        if self._prototypes is None:
            self._prototypes = self.model.embed(self.class_texts)
        return self._prototypes

    def probs(self, emb: np.ndarray) -> np.ndarray:
        """[N, C] class probabilities of embeddings [N, d]."""
        return softmax_cosine(emb, self.prototypes, self.temperature, self.dtype)

    def predict(self, emb: np.ndarray) -> np.ndarray:
        """[N] index of the most similar class (the arg-max of cosine; no temperature involved)."""
        return (emb @ self.prototypes.T).argmax(axis=1)
