"""Export the pairwise ranker of a MultiTaskModel (mixer + towers) to a Triton model repository.

Layout written (the encoder is NOT exported: Triton receives embeddings)::

    REPO/shoprank_ranker/config.pbtxt          Python backend, FP32 I/O, dynamic batching, model_version
    REPO/shoprank_ranker/1/model.py            Triton entry point (NumPy forward)
    REPO/shoprank_ranker/1/numpy_ranker.py     the forward pass itself
    REPO/shoprank_ranker/1/ranker.safetensors  mixer.* and towers.* weights (float32)
    REPO/shoprank_ranker/1/ranker.json         architecture, tasks, dims, model_version, weights sha256

No pickle anywhere: weights are safetensors, configuration is JSON and protobuf text.
``model_version`` is ``shoprank.model.checkpoint.model_version(manifest)`` (or
``pretrained-minilm``), so a client can detect Triton serving another model than the index.

    python -m shoprank.triton.export --out REPO [--checkpoint DIR | --encoder tiny]
    python -m shoprank.triton.export --out REPO --cross-encoder runs/cross/model

:func:`export_cross_encoder` writes the cross-encoder (issue 23's second phase) the same way, as
``REPO/shoprank_cross``: ``cross.safetensors`` (backbone + heads) + ``cross.json``, the NumPy BERT
forward (``numpy_cross.py``) and its ``model.py``; INT64 token ids in (ragged, dynamically batched),
one raw logit per head out.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from shoprank.files import sha256_file, staged_dir
from shoprank.model.checkpoint import model_version as checkpoint_model_version
from shoprank.model.cross_encoder import CrossEncoder, cross_version
from shoprank.model.features import NUM_ITEM_FEATURES, NUM_MONTH_FEATURES
from shoprank.model.multitask import MultiTaskModel
from shoprank.triton import CROSS_MODEL_NAME, DEFAULT_MODEL_NAME
from shoprank.triton.backend import numpy_cross, numpy_ranker

BACKEND_DIR = Path(numpy_ranker.__file__).resolve().parent
BACKEND_FILES = ("model.py", "numpy_ranker.py")
CROSS_BACKEND_FILES = {"cross_model.py": "model.py", "numpy_cross.py": "numpy_cross.py",
                       "numpy_ranker.py": "numpy_ranker.py"}  # fmt: skip
BERT_KEYS = ("num_hidden_layers", "num_attention_heads", "hidden_size", "layer_norm_eps", "hidden_act",
             "position_embedding_type", "max_position_embeddings", "type_vocab_size")  # fmt: skip
_VERSION_RE = re.compile(r'key:\s*"model_version"\s*value:\s*\{\s*string_value:\s*"([^"]*)"')


def _config_pbtxt(
    name: str,
    inputs: list[tuple[str, str, str]],
    outputs: list[tuple[str, str]],
    version: str,
    instances: int,
    max_batch_size: int,
    queue_delay_us: int,
    shoprank_format: str,
    ragged: bool = False,
) -> str:
    """Protobuf-text model config: ``inputs`` as (name, TYPE_*, dims), ``outputs`` as (name, dims),
    plus MODEL_VERSION. With ``max_batch_size`` > 0 Triton's dynamic batcher hands concurrent
    requests to one ``execute`` (one forward pass); ``ragged`` lets it group requests whose
    non-batch dims differ (the cross-encoder's sequence length)."""
    flag = " allow_ragged_batch: true" if ragged else ""
    ins = ",\n".join(f'  {{ name: "{n}" data_type: {t} dims: [ {d} ]{flag} }}' for n, t, d in inputs)
    outs = [f'  {{ name: "{n}" data_type: TYPE_FP32 dims: {d} }}' for n, d in outputs]
    outs.append('  { name: "MODEL_VERSION" data_type: TYPE_STRING dims: [ 1 ] }')
    outs_s = ",\n".join(outs)
    batching = f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}\n" if max_batch_size > 0 else ""
    return (
        f'name: "{name}"\n'
        'backend: "python"\n'
        f"max_batch_size: {max_batch_size}\n"
        f"input [\n{ins}\n]\n"
        f"output [\n{outs_s}\n]\n"
        f"{batching}"
        f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
        f'parameters: {{ key: "model_version" value: {{ string_value: "{version}" }} }}\n'
        f'parameters: {{ key: "shoprank_format" value: {{ string_value: "{shoprank_format}" }} }}\n'
    )


def _ranker_pbtxt(
    name: str, dim: int, tasks: list[str], version: str, instances: int, max_batch_size: int, queue_delay_us: int
) -> str:
    """The ranker's config: rows are the batch dimension when batched, so every input is per row
    (QUERY repeated per candidate) and outputs are [N, 1]; unbatched, [N, d] / [N]."""
    row = "" if max_batch_size > 0 else "-1, "
    inputs = [("QUERY", dim), ("ITEM", dim), ("ITEM_NUM", NUM_ITEM_FEATURES), ("MONTH", NUM_MONTH_FEATURES)]
    out_dims = "[ 1 ]" if max_batch_size > 0 else "[ -1 ]"
    return _config_pbtxt(
        name, [(n, "TYPE_FP32", f"{row}{d}") for n, d in inputs], [(t, out_dims) for t in tasks], version,
        instances, max_batch_size, queue_delay_us, f"{numpy_ranker.FORMAT}/{numpy_ranker.FORMAT_VERSION}",
    )  # fmt: skip


def _checked_version(version: str) -> str:
    if '"' in version or "\n" in version:
        raise ValueError(f"bad model_version {version!r}")
    return version


def export_ranker(
    model: MultiTaskModel,
    repo: str | Path,
    *,
    manifest: dict[str, Any] | None = None,
    version: str | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    instances: int = 1,
    max_batch_size: int = 4096,
    queue_delay_us: int = 200,
) -> Path:
    """Write ``model``'s ranker to ``repo/model_name`` (replacing it atomically); return that dir.

    ``version`` defaults to ``model_version(manifest)`` (``pretrained-minilm`` without one).
    ``max_batch_size`` > 0 turns on Triton's dynamic batcher (rows of concurrent requests
    are scored in one pass, up to that many rows); 0 serves each request on its own.
    """
    if not model.pair_tasks:
        raise ValueError("model has no pairwise tasks (relevance/click/demand): nothing for Triton to serve")
    version = _checked_version(version or checkpoint_model_version(manifest))
    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().float().cpu().contiguous()
        for k, v in model.state_dict().items()
        if k.startswith(("mixer.", "towers."))
    }
    cfg = model.config
    with staged_dir(repo / model_name) as tmp:
        vdir = tmp / "1"
        vdir.mkdir()
        save_file(state, str(vdir / numpy_ranker.WEIGHTS), metadata={"model_version": version})
        ranker_cfg = {
            "format": numpy_ranker.FORMAT,
            "format_version": numpy_ranker.FORMAT_VERSION,
            "model_version": version,
            "architecture": cfg.architecture,
            "pair_tasks": list(model.pair_tasks),
            "dim": int(model.encoder.dim),
            "hidden": cfg.hidden,
            "num_experts": cfg.num_experts,
            "max_batch_size": max_batch_size,
            "trained_tasks": sorted(model.trained_tasks),
            "weights_sha256": sha256_file(vdir / numpy_ranker.WEIGHTS),
        }
        (vdir / numpy_ranker.CONFIG).write_text(json.dumps(ranker_cfg, indent=2, sort_keys=True))
        for f in BACKEND_FILES:
            shutil.copyfile(BACKEND_DIR / f, vdir / f)
        (tmp / "config.pbtxt").write_text(
            _ranker_pbtxt(
                model_name,
                int(model.encoder.dim),
                list(model.pair_tasks),
                version,
                instances,
                max_batch_size,
                queue_delay_us,
            )
        )
    return repo / model_name


def export_cross_encoder(
    model: CrossEncoder,
    repo: str | Path,
    *,
    manifest: dict[str, Any] | None = None,
    version: str | None = None,
    model_name: str = CROSS_MODEL_NAME,
    instances: int = 1,
    max_batch_size: int = 256,
    queue_delay_us: int = 500,
) -> Path:
    """Write a cross-encoder (backbone + heads) to ``repo/model_name`` (replacing it atomically).

    ``version`` defaults to ``cross_version(manifest)`` (what ``shoprank.serving.rerank`` expects);
    one of the two is needed. Token ids go in (the caller tokenises), raw head logits come out.
    Always served with Triton's dynamic batcher, up to ``max_batch_size`` pairs per pass; its
    requests may differ in length (ragged inputs, padded together by the model).
    """
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1 (the cross-encoder is always dynamically batched)")
    if version is None:
        if manifest is None:
            raise ValueError("export_cross_encoder needs the cross-encoder's manifest or an explicit version")
        version = cross_version(manifest)
    version = _checked_version(version)
    bert = model.backbone.config
    if getattr(bert, "position_embedding_type", "absolute") != "absolute" or bert.hidden_act != "gelu":
        raise ValueError("the NumPy cross-encoder serves BERT with absolute positions and exact GELU only")
    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().float().cpu().contiguous()
        for k, v in model.state_dict().items()
        if k.startswith(("backbone.embeddings.", "backbone.encoder.", "heads.")) and v.is_floating_point()
    }
    with staged_dir(repo / model_name) as tmp:
        vdir = tmp / "1"
        vdir.mkdir()
        save_file(state, str(vdir / numpy_cross.WEIGHTS), metadata={"model_version": version})
        cross_cfg = {
            "format": numpy_cross.FORMAT,
            "format_version": numpy_cross.FORMAT_VERSION,
            "model_version": version,
            "tasks": list(model.config.tasks),
            "pooling": model.config.pooling,
            "max_length": model.config.max_length,
            "bert": {k: getattr(bert, k) for k in BERT_KEYS if hasattr(bert, k)},
            "max_batch_size": max_batch_size,
            "weights_sha256": sha256_file(vdir / numpy_cross.WEIGHTS),
        }
        (vdir / numpy_cross.CONFIG).write_text(json.dumps(cross_cfg, indent=2, sort_keys=True))
        for src, dst in CROSS_BACKEND_FILES.items():
            shutil.copyfile(BACKEND_DIR / src, vdir / dst)
        (tmp / "config.pbtxt").write_text(
            _config_pbtxt(
                model_name, [(n, "TYPE_INT64", "-1") for n in numpy_cross.INPUTS],
                [(t, "[ 1 ]") for t in model.config.tasks], version, instances, max_batch_size, queue_delay_us,
                f"{numpy_cross.FORMAT}/{numpy_cross.FORMAT_VERSION}", ragged=True,
            )
        )  # fmt: skip
    return repo / model_name


def read_repository_version(repo: str | Path, model_name: str = DEFAULT_MODEL_NAME) -> str:
    """The model_version recorded in a repository's config.pbtxt (what Triton will report)."""
    path = Path(repo) / model_name / "config.pbtxt"
    m = _VERSION_RE.search(path.read_text())
    if not m:
        raise ValueError(f"{path}: no model_version parameter")
    return m.group(1)


def main(argv: list[str] | None = None) -> int:
    from shoprank.model.checkpoint import load_model

    ap = argparse.ArgumentParser(prog="python -m shoprank.triton.export", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="Triton model repository directory")
    ap.add_argument("--checkpoint", help="shoprank checkpoint dir (default: pretrained encoder only)")
    ap.add_argument("--encoder", default="minilm", choices=["minilm", "tiny"])
    ap.add_argument("--cross-encoder", help="export this cross-encoder (a `shoprank train-cross` OUT/model) instead")
    ap.add_argument("--model-name", help=f"default {DEFAULT_MODEL_NAME} ({CROSS_MODEL_NAME} with --cross-encoder)")
    ap.add_argument("--instances", type=int, default=1, help="Triton model instances (CPU)")
    ap.add_argument(
        "--max-batch-size",
        type=int,
        help="rows per dynamic batch (default 4096; 256 with --cross-encoder; 0, ranker only: none)",
    )
    args = ap.parse_args(argv)
    if args.cross_encoder:
        from shoprank.model.cross_encoder import load_cross_encoder

        cross, cross_manifest = load_cross_encoder(args.cross_encoder)
        path = export_cross_encoder(
            cross, args.out, manifest=cross_manifest, model_name=args.model_name or CROSS_MODEL_NAME,
            instances=args.instances, max_batch_size=256 if args.max_batch_size is None else args.max_batch_size,
        )  # fmt: skip
        print(f"exported {cross_version(cross_manifest)} -> {path}")
        return 0
    model, manifest = load_model(args.checkpoint, encoder=args.encoder)
    path = export_ranker(
        model,
        args.out,
        manifest=manifest,
        model_name=args.model_name or DEFAULT_MODEL_NAME,
        instances=args.instances,
        max_batch_size=4096 if args.max_batch_size is None else args.max_batch_size,
    )
    print(f"exported {checkpoint_model_version(manifest)} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
