"""MultiTaskModel: shared encoder, item/query classifiers and a pairwise ranker.

Tasks (each switchable in ``ModelConfig.tasks``; the list and their kinds are
``shoprank.model.registry``'s): classification tasks (intent on the query embedding, category
and season on the item embedding) get a linear head; retrieval is in-batch contrastive on
(query, item) cosine with a learned temperature; the pairwise tasks (relevance, click,
demand on (item, month)) get a tower each.

The pairwise tasks share one input ``[q, i, q*i, |q-i|, item numerics, month]`` and sit on a
shared bottom MLP or an MMoE (experts + one softmax gate per task). Relevance adds a linear
term on a basis of lexical match features of the query and the item title
(``shoprank.model.lexical``).
A classification task can add a class-name prototype term (``ClassPrototypes``): the
similarity of the text to each class name's embedding, which carries classes with few
training examples; it is off (scale 0) until the head refit fits its scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from shoprank.model.encoder import EncoderName, TextEncoder, pad_ids
from shoprank.model.features import NUM_ITEM_FEATURES, NUM_MONTH_FEATURES
from shoprank.model.lexical import NUM_LEXICAL_BASIS, lexical_basis
from shoprank.model.registry import CLASS_TASKS, LEXICAL_TASKS, PAIR_TASKS, TASKS, unknown_tasks

if TYPE_CHECKING:
    from shoprank.model.runtime import OnnxEncoder


class ClassPrototypes(nn.Module):
    """Unit embeddings of a task's class names [C, d] and the scale of their cosine term."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("vectors", torch.zeros(num_classes, dim))
        self.register_buffer("scale", torch.zeros(()))

    @property
    def active(self) -> bool:
        return bool(self.scale.item() > 0)


class ModelConfig(BaseModel):
    """Architecture of the multi-task model (validated; unknown fields are rejected)."""

    model_config = ConfigDict(extra="forbid")

    encoder: EncoderName = "minilm"
    max_length: int = Field(48, ge=8, le=256)
    tasks: list[str] = Field(default_factory=lambda: list(TASKS))
    architecture: Literal["shared_bottom", "mmoe"] = "shared_bottom"
    hidden: int = Field(128, ge=8, le=4096)
    num_experts: int = Field(4, ge=1, le=32)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    freeze_layers: int = Field(0, ge=0, le=12)
    seed: int = 0

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        unknown = unknown_tasks(v)
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
        if not v:
            raise ValueError("at least one task is required")
        return [t for t in TASKS if t in v]


def _mlp(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Dropout(dropout))


class SharedBottom(nn.Module):
    """One MLP shared by every pairwise task."""

    def __init__(self, d_in: int, hidden: int, tasks: list[str], dropout: float) -> None:
        super().__init__()
        self.bottom = nn.Sequential(_mlp(d_in, hidden, dropout), _mlp(hidden, hidden, dropout))
        self.tasks = tasks

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.bottom(x)
        return {t: h for t in self.tasks}


class MMoE(nn.Module):
    """Multi-gate mixture of experts (Ma et al. 2018): experts shared, one gate per task."""

    def __init__(self, d_in: int, hidden: int, tasks: list[str], num_experts: int, dropout: float) -> None:
        super().__init__()
        self.experts = nn.ModuleList(
            nn.Sequential(_mlp(d_in, hidden, dropout), _mlp(hidden, hidden, dropout)) for _ in range(num_experts)
        )
        self.gates = nn.ModuleDict({t: nn.Linear(d_in, num_experts) for t in tasks})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        expert_out = torch.stack([e(x) for e in self.experts], dim=1)  # [B, E, H]
        return {t: (torch.softmax(gate(x), dim=-1).unsqueeze(-1) * expert_out).sum(1) for t, gate in self.gates.items()}


class MultiTaskModel(nn.Module):
    """Encoder + task heads. Label maps give the class names of the classification tasks."""

    def __init__(self, config: ModelConfig, label_maps: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.config = config
        self.label_maps: dict[str, list[str]] = dict(label_maps or {})
        self.trained_tasks: set[str] = set()  # filled from a checkpoint's manifest
        self.runtime: OnnxEncoder | None = None  # an ONNX encoder session embed() uses (torch when None)
        torch.manual_seed(config.seed)
        self.encoder = TextEncoder(config.encoder, config.max_length, config.seed)
        self.encoder.freeze_lower_layers(config.freeze_layers)
        d = self.encoder.dim
        self.classifiers = nn.ModuleDict()
        for task in CLASS_TASKS:
            if task in config.tasks and self.label_maps.get(task):
                self.classifiers[task] = nn.Linear(d, len(self.label_maps[task]))
        self.prototypes = nn.ModuleDict({t: ClassPrototypes(c.out_features, d) for t, c in self.classifiers.items()})
        if "retrieval" in config.tasks:
            self.logit_scale = nn.Parameter(torch.tensor(float(np.log(20.0))))
        pair_tasks = [t for t in PAIR_TASKS if t in config.tasks]
        self.pair_tasks = pair_tasks
        if pair_tasks:
            d_in = 4 * d + NUM_ITEM_FEATURES + NUM_MONTH_FEATURES
            if config.architecture == "mmoe":
                self.mixer: nn.Module = MMoE(d_in, config.hidden, pair_tasks, config.num_experts, config.dropout)
            else:
                self.mixer = SharedBottom(d_in, config.hidden, pair_tasks, config.dropout)
            self.towers = nn.ModuleDict({t: nn.Linear(config.hidden, 1) for t in pair_tasks})
        self.lexical = nn.ModuleDict(
            {t: nn.Linear(NUM_LEXICAL_BASIS, 1, bias=False) for t in LEXICAL_TASKS if t in pair_tasks}
        )
        for layer in self.lexical.values():
            nn.init.zeros_(layer.weight)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- encoding -------------------------------------------------------------------------
    def encode_batch(self, texts: list[str]) -> torch.Tensor:
        """Embeddings with gradients (training)."""
        return self.encoder(**self.encoder.tokenize(texts, self.device))

    @property
    def encoder_runtime(self) -> str:
        """The runtime :meth:`embed` uses: ``torch``, or the attached ONNX session's (``onnx``/``onnx-int8``)."""
        return self.runtime.runtime if self.runtime is not None else "torch"

    @torch.inference_mode()
    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 embeddings [N, dim] for inference (no gradients).

        Texts are batched by token length (each batch pads to its own longest text), through the
        attached ONNX runtime when there is one (``shoprank.model.onnx_export.attach_runtime``),
        else the torch encoder. Training never attaches one (it calls :meth:`encode_batch`)."""
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        ids = self.encoder.token_ids(list(texts))
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.empty((len(ids), self.encoder.dim), dtype=np.float32)
        was_training = self.training
        if was_training:  # eval()/train() walk every submodule (~2 ms for MiniLM): only when needed
            self.eval()
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            input_ids, mask = pad_ids([ids[r] for r in rows])
            if self.runtime is not None:
                out[rows] = self.runtime(input_ids, mask)
            else:
                dev = self.device
                emb = self.encoder(torch.from_numpy(input_ids).to(dev), torch.from_numpy(mask).to(dev))
                out[rows] = emb.float().cpu().numpy()
        if was_training:
            self.train()
        return out

    # -- heads ----------------------------------------------------------------------------
    def class_logits(self, task: str, emb: torch.Tensor) -> torch.Tensor:
        """Logits of a classification task (``intent`` on queries, ``category``/``season`` on items);
        with the prototype term on, log-softmax of the head plus scale x cosine to each class name."""
        logits = self.classifiers[task](emb)
        proto = self.prototypes[task] if task in self.prototypes else None
        if proto is None or not proto.active:
            return logits
        return torch.log_softmax(logits, dim=-1) + proto.scale * (emb @ proto.vectors.T.to(emb.dtype))

    def pair_outputs(
        self, q: torch.Tensor, i: torch.Tensor, item_num: torch.Tensor, month: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Raw pairwise outputs [B] per task: relevance value, click logit, demand value.

        ``q`` may be [B, d] or [d] (broadcast to every item); pass zeros for item-only tasks.
        """
        if q.dim() == 1:
            q = q.unsqueeze(0).expand_as(i)
        x = torch.cat([q, i, q * i, (q - i).abs(), item_num, month], dim=-1)
        hidden = self.mixer(x)
        return {t: self.towers[t](hidden[t]).squeeze(-1) for t in self.pair_tasks}

    @property
    def uses_lexical(self) -> bool:
        """Whether any task has a non-zero lexical term (callers skip computing the features if not)."""
        return any(bool(layer.weight.detach().abs().sum() > 0) for layer in self.lexical.values())

    def lexical_term(self, task: str, features: torch.Tensor) -> torch.Tensor:
        """[N] lexical term of ``task`` from [N, NUM_LEXICAL_FEATURES] match features."""
        return self.lexical[task](lexical_basis(features)).squeeze(-1)

    @torch.no_grad()
    def add_lexical(self, raw: dict[str, np.ndarray], lexical: np.ndarray | None) -> dict[str, np.ndarray]:
        """Raw pair outputs plus each task's lexical term; ``lexical`` is [N, NUM_LEXICAL_FEATURES]."""
        if lexical is None or not self.lexical:
            return raw
        out = dict(raw)
        features = torch.as_tensor(np.asarray(lexical, dtype=np.float32), device=self.device)
        for task in self.lexical:
            if task in out:
                out[task] = out[task] + self.lexical_term(task, features).float().cpu().numpy()
        return out

    def has_head(self, task: str) -> bool:
        """Whether the model has this task's head at all (trained or not)."""
        if task in CLASS_TASKS:
            return task in self.classifiers
        return task in self.config.tasks

    def is_trained(self, task: str) -> bool:
        """Whether this head was fine-tuned (false for a pretrained-only model)."""
        return task in self.trained_tasks and self.has_head(task)
