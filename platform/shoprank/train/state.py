"""Resumable training state, written next to the model in every epoch's checkpoint:

- ``model.safetensors`` + ``manifest.json``: the model (``shoprank.model.save_checkpoint``),
  loadable on its own by ``shoprank.model.load_checkpoint``;
- ``train_state.safetensors``: optimizer moments and learned loss weights (tensors only);
- ``progress.json``: epoch counters, early-stopping state, history, optimizer hyper-parameters
  and the SHA-256 of ``train_state.safetensors``. Nothing is ever pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from shoprank.errors import CheckpointError
from shoprank.files import atomic_write_text, sha256_file
from shoprank.model.checkpoint import read_json_document, read_manifest
from shoprank.train.config import TrainConfig
from shoprank.train.losses import MultiTaskObjective

STATE_FORMAT = "shoprank-train-state"
STATE_VERSION = 1
TRAIN_STATE = "train_state.safetensors"
PROGRESS = "progress.json"


def save_train_state(directory: Path, optimizer: torch.optim.Optimizer, progress: dict[str, Any]) -> None:
    """Optimizer tensors to safetensors, everything else (and its checksum) to JSON."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    if not tensors:
        tensors["_empty"] = torch.zeros(1)
    save_file(tensors, str(directory / TRAIN_STATE))
    state = {
        "format": STATE_FORMAT,
        "format_version": STATE_VERSION,
        **progress,
        "optimizer": {"param_groups": sd["param_groups"], "scalars": scalars},
        "train_state_sha256": sha256_file(directory / TRAIN_STATE),
    }
    atomic_write_text(directory / PROGRESS, json.dumps(state, indent=2, sort_keys=True, default=float))


def read_train_state(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Check and read ``progress.json`` + ``train_state.safetensors``; CheckpointError if unusable."""
    directory = Path(directory)
    read_manifest(directory)  # the model half must be a valid shoprank checkpoint too
    progress = read_json_document(
        directory / PROGRESS, STATE_FORMAT, STATE_VERSION, CheckpointError, "training state",
        f"{directory}: no {PROGRESS}; a model-only checkpoint cannot resume training",
    )  # fmt: skip
    ts = directory / TRAIN_STATE
    if not ts.is_file() or sha256_file(ts) != progress.get("train_state_sha256"):
        raise CheckpointError(f"{ts}: missing or checksum mismatch (corrupt or replaced)")
    try:
        tensors = load_file(str(ts))
    except Exception as e:  # noqa: BLE001 - safetensors header errors
        raise CheckpointError(f"{ts}: unreadable ({e})") from e
    return progress, tensors


def checkpoint_epoch(directory: str | Path) -> int:
    """The epoch a training checkpoint was saved after (-1 if it has no readable progress)."""
    try:
        return int(json.loads((Path(directory) / PROGRESS).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def newest_checkpoint(candidates: list[str | Path | None]) -> str | Path | None:
    """The candidate saved after the latest epoch (the first on ties); None if there is none."""
    return max((c for c in candidates if c), key=checkpoint_epoch, default=None)


def restore_optimizer(
    optimizer: torch.optim.Optimizer, progress: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    opt = progress["optimizer"]
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key == "_empty":
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    for idx, sc in opt.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(sc)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": opt["param_groups"]})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"optimizer state does not fit this model ({e})") from e


def load_resume(
    directory: str | Path, objective: MultiTaskObjective, optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> dict[str, Any]:
    """Load model weights, optimizer state and progress from a training checkpoint."""
    from safetensors.torch import load_file as load_weights

    directory = Path(directory)
    progress, tensors = read_train_state(directory)
    manifest = read_manifest(directory)
    if manifest.get("model_config") != cfg.model.model_dump():
        raise CheckpointError(f"{directory}: checkpoint was trained with a different model config; use a new --out")
    weights = directory / "model.safetensors"
    if sha256_file(weights) != manifest.get("weights_sha256"):
        raise CheckpointError(f"{weights}: checksum does not match the manifest (corrupt or replaced)")
    try:
        objective.model.load_state_dict(load_weights(str(weights)), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights}: weights do not fit this model ({e})") from e
    if objective.uncertainty is not None:
        for t, p in objective.uncertainty.log_vars.items():
            key = f"log_var.{t}"
            if key in progress.get("log_vars", {}):
                p.data.fill_(float(progress["log_vars"][key]))
    restore_optimizer(optimizer, progress, tensors)
    return progress
