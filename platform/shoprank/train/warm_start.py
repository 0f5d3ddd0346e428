"""Warm start: a fresh model takes a fine-tuned checkpoint's weights before training starts.

Used by ``run_training`` when ``TrainConfig.init_from`` is set (every sweep trial, baseline and a
picked point retrained by ``shoprank train`` then start from the same weights). Only the weights
are taken: optimizer moments, epoch counters and learned loss weights start fresh. The
checkpoint must have the same architecture and the same label maps (the same data config); what
may differ is what does not change a tensor's shape (``freeze_layers``, ``dropout``, ``seed``).
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from shoprank.errors import CheckpointError
from shoprank.model.checkpoint import OPTIONAL_TERMS, checked_weights, read_manifest
from shoprank.model.multitask import MultiTaskModel

# ModelConfig fields that do not change the parameters' names or shapes.
FREE_FIELDS = ("freeze_layers", "dropout", "seed")


def check_compatible(model: MultiTaskModel, manifest: dict, source: str) -> None:
    """CheckpointError naming the first field (or label map) in which the checkpoint differs."""
    ours = model.config.model_dump()
    theirs = manifest.get("model_config") or {}
    for key, value in ours.items():
        if key not in FREE_FIELDS and theirs.get(key) != value:
            raise CheckpointError(
                f"init_from {source}: model.{key} is {theirs.get(key)!r} there but {value!r} here; "
                "warm start needs the same architecture"
            )
    maps = manifest.get("label_maps") or {}
    for task, labels in model.label_maps.items():
        if task in model.classifiers and maps.get(task) != labels:
            raise CheckpointError(
                f"init_from {source}: the {task} classes differ from this run's (trained on other data?)"
            )


def load_init_weights(model: MultiTaskModel, checkpoint: str | Path) -> list[str]:
    """Copy ``checkpoint``'s weights into ``model`` (checked against its manifest's checksum); returns the
    tasks the checkpoint had trained (their heads arrive trained, whether or not this run samples them)."""
    directory = Path(checkpoint)
    manifest = read_manifest(directory)
    check_compatible(model, manifest, str(directory))
    state = load_file(str(checked_weights(directory, manifest)))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise CheckpointError(f"init_from {directory}: weights do not fit this model ({e})") from e
    missing = [k for k in missing if not k.startswith(OPTIONAL_TERMS)]
    if missing or unexpected:
        raise CheckpointError(f"init_from {directory}: missing keys {missing}, unexpected keys {unexpected}")
    return list(manifest.get("trained_tasks") or [])
