"""Checkpoints: ``model.safetensors`` + ``manifest.json``. Never pickles, never unpickles.

The manifest records the model config, label maps, which tasks were fine-tuned, data
fingerprints, metrics and the code version, plus the SHA-256 of the weights file so a
corrupt or swapped file is refused before it is read. It also records the item text recipes
the heads were trained on (``item_text``, :mod:`shoprank.model.text`); a loaded manifest always
holds them (today's defaults for a checkpoint older than them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from safetensors.torch import load_file, save_file

import shoprank
from shoprank.errors import CheckpointError
from shoprank.files import atomic_path, atomic_write_text, sha256_file
from shoprank.model.multitask import ModelConfig, MultiTaskModel
from shoprank.model.text import DEFAULT_RECIPES, Recipes, recipes_of, recipes_to_json
from shoprank.model.text import MANIFEST_KEY as ITEM_TEXT_KEY

C = TypeVar("C", bound=BaseModel)

FORMAT = "shoprank-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"
OPTIONAL_TERMS = ("lexical.", "prototypes.")  # state-dict prefixes a checkpoint may lack (term off)


def save_checkpoint(
    model: MultiTaskModel,
    directory: str | Path,
    *,
    trained_tasks: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    item_text: Recipes | None = None,
) -> Path:
    """Write weights then manifest (each atomically); the manifest is the commit point.

    ``item_text``: the recipes the heads were trained on (default: today's); an ``item_text`` in
    ``extra`` (a manifest carried over) wins."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    tasks = sorted(trained_tasks if trained_tasks is not None else model.trained_tasks)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model.config.model_dump(),
        "label_maps": model.label_maps,
        "trained_tasks": tasks,
        "weights_sha256": sha256_file(directory / WEIGHTS),
        "code_version": shoprank.__version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        ITEM_TEXT_KEY: recipes_to_json(item_text or DEFAULT_RECIPES),
        **(extra or {}),
    }
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    return directory


def read_json_document(
    path: Path, fmt: str, version: int, error: type[Exception], what: str, missing: str
) -> dict[str, Any]:
    """Parse a JSON manifest and check its ``format``/``format_version``; ``error`` names the problem."""
    if not path.is_file():
        raise error(missing)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: {what} is not valid JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise error(f"{path}: not a shoprank {what} (format != {fmt!r})")
    if doc.get("format_version") != version:
        raise error(f"{path}: unsupported format_version {doc.get('format_version')!r}")
    return doc


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Parse and check a checkpoint's manifest; raise CheckpointError naming the problem."""
    directory = Path(directory)
    return read_json_document(
        directory / MANIFEST, FORMAT, FORMAT_VERSION, CheckpointError, "checkpoint manifest",
        f"{directory}: not a shoprank checkpoint (no {MANIFEST})",
    )  # fmt: skip


def model_version(manifest: dict[str, Any] | None, encoder: str = "minilm") -> str:
    """A short, stable version name: weights hash prefix, or ``pretrained-<encoder>``."""
    if manifest is None:
        return f"pretrained-{encoder}"
    return f"{manifest['model_config'].get('encoder', 'model')}-{manifest['weights_sha256'][:12]}"


def checked_weights(directory: Path, manifest: dict[str, Any]) -> Path:
    """A saved model's safetensors file, once it exists and matches the manifest's ``weights_sha256``."""
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{directory}: missing {WEIGHTS}")
    if sha256_file(weights) != manifest.get("weights_sha256"):
        raise CheckpointError(f"{weights}: checksum does not match the manifest (corrupt or replaced)")
    return weights


def manifest_config(directory: Path, manifest: dict[str, Any], cls: type[C]) -> C:
    """The manifest's ``model_config`` as ``cls``; CheckpointError naming the manifest otherwise."""
    try:
        return cls.model_validate(manifest["model_config"])
    except (KeyError, ValidationError) as e:
        raise CheckpointError(f"{directory / MANIFEST}: bad model_config ({e})") from e


def expected_model_version(checkpoint: str | Path | None, encoder: str = "minilm") -> str:
    """The model version a checkpoint (or the pretrained encoder) serves, without loading weights."""
    return model_version(read_manifest(checkpoint) if checkpoint is not None else None, encoder)


def load_checkpoint(
    directory: str | Path, device: str = "cpu", *, encoder_runtime: str = "torch"
) -> tuple[MultiTaskModel, dict[str, Any]]:
    """Build the model from the manifest and load its safetensors weights (strictly, except that
    checkpoints older than the lexical or class-prototype terms load with them switched off).

    ``encoder_runtime`` (``torch`` | ``onnx`` | ``onnx-int8``): what ``model.embed`` runs on
    (:func:`shoprank.model.onnx_export.attach_runtime`: ONNX files exported next to the weights when
    missing or stale; a variant the parity gate refused falls back with a warning)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    weights = checked_weights(directory, manifest)
    config = manifest_config(directory, manifest, ModelConfig)
    model = MultiTaskModel(config, manifest.get("label_maps") or {})
    try:
        state = load_file(str(weights), device=device)
        # An optional term the checkpoint lacks, or holds in another shape (the older
        # plain-linear lexical term), is left out: it stays switched off.
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        other = [k for k, v in state.items() if k.startswith(OPTIONAL_TERMS) and shapes.get(k, v.shape) != v.shape]
        state = {k: v for k, v in state.items() if k not in other}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(OPTIONAL_TERMS)]
        if missing or unexpected:
            raise RuntimeError(f"missing keys {missing}, unexpected keys {unexpected}")
    except Exception as e:  # safetensors header errors, shape/key mismatches
        raise CheckpointError(f"{weights}: weights do not fit the manifest's model ({e})") from e
    model.trained_tasks = set(manifest.get("trained_tasks", []))
    model.to(device).eval()
    try:  # the item text recipes: the manifest's, today's defaults for a kind it lacks
        manifest[ITEM_TEXT_KEY] = recipes_to_json(recipes_of(manifest))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{directory / MANIFEST}: bad {ITEM_TEXT_KEY} ({e})") from e
    _attach(model, manifest, directory, encoder_runtime, device)
    return model, manifest


def _attach(model: MultiTaskModel, manifest: dict[str, Any] | None, checkpoint: Path | None, runtime: str,
            device: str) -> None:  # fmt: skip
    if runtime != "torch":
        from shoprank.model.onnx_export import attach_runtime
        from shoprank.model.runtime import check_runtime

        attach_runtime(model, manifest, checkpoint, check_runtime(runtime), device)


def load_model(
    checkpoint: str | Path | None = None,
    *,
    encoder: str = "minilm",
    device: str = "cpu",
    tasks: list[str] | None = None,
    encoder_runtime: str = "torch",
) -> tuple[MultiTaskModel, dict[str, Any] | None]:
    """A checkpoint's model, or (when ``checkpoint`` is None) the pretrained encoder alone.

    A pretrained-only model has no trained heads: scoring reports every head as zero-shot.
    ``encoder_runtime``: as :func:`load_checkpoint`'s (a pretrained model exports into the cache dir).
    """
    if checkpoint is not None:
        return load_checkpoint(checkpoint, device, encoder_runtime=encoder_runtime)
    config = ModelConfig(encoder=encoder, tasks=tasks or ["retrieval", "relevance", "click"])  # type: ignore[arg-type]
    model = MultiTaskModel(config, {})
    model.to(device).eval()
    _attach(model, None, None, encoder_runtime, device)
    return model, None
