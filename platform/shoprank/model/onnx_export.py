"""ONNX export of the encoder (fp32 + int8), its quality parity gate, and attaching it to a model.

Layout: a checkpoint ``DIR`` gets ``DIR/onnx/{encoder.onnx, encoder-int8.onnx, manifest.json}``; a
pretrained-only model (no checkpoint), or a checkpoint directory that is not writable, exports
into ``$SHOPRANK_CACHE_DIR/onnx/<model version>-<weights hash>`` (default ``~/.cache/shoprank``).
The safetensors weights stay the source of truth: the ONNX manifest carries their
``weights_sha256`` and the files are rebuilt whenever it no longer matches. Every file is written
atomically (``shoprank.files``), the manifest last.

The graph is :class:`~shoprank.model.encoder.TextEncoder`'s forward (backbone, mean pooling, L2
norm) exported with the legacy TorchScript exporter (opset 17, dynamic batch and sequence axes),
traced with BERT's eager attention: ONNX Runtime's transformer optimiser recognises that pattern
(not SDPA's) and fuses it. ``onnx-int8`` is that graph fused (``onnxruntime.transformers``:
Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu), then
``onnxruntime.quantization.quantize_dynamic``: int8 weights per output channel, activations
quantised on the fly (:data:`INT8_OPTIONS`; per-tensor weights lose too much: mean cosine 0.96 on
MiniLM). Fusing first makes int8 1.25x faster on 2 cores (QAttention, one QKV matmul per layer;
bench/results/encoder_runtime.md); the fp32 graph stays unfused (fusing it gains nothing here).

The gate (:func:`export_onnx`) refuses a variant whose embeddings fall below mean cosine
:data:`MIN_COSINE` to the torch fp32 model on a fixed sample (:func:`sample_texts`; the min is
reported too), or, when the checkpoint's training sources are present, whose ``shoprank eval``
nDCG@10 / MAP@5 / accuracy on its own test split drops by more than :data:`MAX_METRIC_DROP`.
The report (in the ONNX manifest, and printed by ``shoprank export-onnx``) says which variants
passed, which is kept (the fastest passing one) and why.

Asking for a refused (or unbuildable) variant at load does not fail: :func:`attach_runtime` falls
back to the best passing variant (``onnx-int8``, then ``onnx``, then ``torch``) and logs a warning
naming the reason, so a serving replica always starts with a model that passed the gate.
Files missing or stale at load are built there with the cosine gate only (no eval data is read in
a replica); ``shoprank export-onnx`` runs the full gate ahead of time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from shoprank.files import atomic_path, atomic_write_json, sha256_file
from shoprank.model.runtime import ONNX_RUNTIMES, EncoderRuntime, OnnxEncoder, check_runtime, cuda_available

if TYPE_CHECKING:
    from shoprank.model.multitask import MultiTaskModel

FORMAT = "shoprank-onnx"
FORMAT_VERSION = 2  # 2: eager-attention export, int8 from the fused graph (v1 files are rebuilt)
ONNX_DIR = "onnx"
MANIFEST = "manifest.json"
FILES: dict[str, str] = {"onnx": "encoder.onnx", "onnx-int8": "encoder-int8.onnx"}
PREFERENCE: tuple[str, ...] = ("onnx-int8", "onnx", "torch")  # fastest first: the kept variant is the first passing
MIN_COSINE = 0.99  # mean cosine to torch fp32 on the sample
MAX_METRIC_DROP = 0.003  # per gated eval metric
GATED_METRICS = ("ndcg@10", "map@5", "accuracy")  # eval metric names (suffixes) the gate holds
OPSET = 17
SAMPLE_SIZE = 256
INT8_OPTIONS: dict[str, Any] = {"per_channel": True, "reduce_range": False}
CACHE_ENV = "SHOPRANK_CACHE_DIR"

log = logging.getLogger("shoprank.model")


# -- where the files live ------------------------------------------------------------------------
def weights_sha256(model: MultiTaskModel, manifest: dict[str, Any] | None) -> str:
    """The checkpoint's weights hash; for a pretrained-only model, a hash of its encoder's weights."""
    if manifest is not None:
        return str(manifest["weights_sha256"])
    h = hashlib.sha256()
    for name, t in sorted(model.encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/shoprank").expanduser()


def onnx_dir(model: MultiTaskModel, manifest: dict[str, Any] | None, checkpoint: str | Path | None) -> Path:
    """``CHECKPOINT/onnx`` when the checkpoint directory is writable, else a cache dir keyed by the model."""
    if checkpoint is not None and os.access(checkpoint, os.W_OK):
        return Path(checkpoint) / ONNX_DIR
    from shoprank.model.checkpoint import model_version

    version = model_version(manifest, model.config.encoder)
    return cache_root() / ONNX_DIR / f"{version}-{weights_sha256(model, manifest)[:12]}"


def read_onnx_manifest(directory: Path) -> dict[str, Any] | None:
    """The ONNX manifest in ``directory``, or None when missing or unreadable."""
    import json

    try:
        doc = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        return None
    return doc


def is_current(doc: dict[str, Any] | None, directory: Path, sha: str) -> bool:
    """Whether ``doc`` was built from weights ``sha`` and its files are intact."""
    if doc is None or doc.get("weights_sha256") != sha:
        return False
    for name, v in doc.get("variants", {}).items():
        path = directory / FILES[name]
        if v.get("file_sha256") and (not path.is_file() or sha256_file(path) != v["file_sha256"]):
            return False
    return True


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One exporter per directory at a time (replicas of one node starting together)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- building the graphs ----------------------------------------------------------------------------
def export_fp32(model: MultiTaskModel, path: Path) -> None:
    """The encoder's forward (pooling and normalisation included) as an fp32 ONNX graph."""
    enc = model.encoder
    was_training, device = enc.training, model.device
    config = enc.backbone.config
    attention = getattr(config, "_attn_implementation", None)
    config._attn_implementation = "eager"  # the pattern the int8 path's attention fusion matches
    enc.eval().cpu()
    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on data-dependent Python branches (none here)
            torch.onnx.export(
                enc, (ids, mask), str(tmp), dynamo=False, opset_version=OPSET, do_constant_folding=True,
                input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "embedding": {0: "batch"}},
            )  # fmt: skip
    finally:
        config._attn_implementation = attention
        enc.to(device).train(was_training)


def fuse_transformer(fp32: Path, path: Path, num_heads: int, hidden_size: int) -> None:
    """The fp32 graph with ONNX Runtime's BERT fusions (attention, layer norms, GELU) applied."""
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(fp32), model_type="bert", num_heads=num_heads, hidden_size=hidden_size)
    with atomic_path(path) as tmp:
        fused.save_model_to_file(str(tmp))


def quantize_int8(fp32: Path, path: Path, options: dict[str, Any] | None = None) -> None:
    """Dynamic int8 quantisation of a (fused) fp32 graph (weights int8, activations quantised at run time)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    opts = {**INT8_OPTIONS, **(options or {})}
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # contrib ops (fused) defeat shape inference's types
    quiet = logging.Filter("shoprank")  # drops the quantiser's root-logger advice on pre-processing
    logging.getLogger().addFilter(quiet)
    with atomic_path(path) as tmp, contextlib.ExitStack() as stack:
        stack.callback(logging.getLogger().removeFilter, quiet)
        quantize_dynamic(
            str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=bool(opts["per_channel"]),
            reduce_range=bool(opts["reduce_range"]), nodes_to_exclude=list(opts.get("nodes_to_exclude", [])),
            extra_options=extra,
        )  # fmt: skip


# -- the gate -----------------------------------------------------------------------------------------
def sample_texts(n: int = SAMPLE_SIZE) -> list[str]:
    """A fixed, built-in sample: the synthetic catalogue's item texts and titles (query-like)."""
    from shoprank.data.synth import generate
    from shoprank.model.text import PAIR, item_texts

    cat = generate(n, seed=0)["catalogue"]
    texts = item_texts(cat, PAIR)
    titles = cat["title"].to_list()
    half = n // 2
    return texts[:half] + titles[half:n]


def cosine_parity(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Mean and min row cosine of two unit-embedding matrices."""
    cos = np.sum(reference * other, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1) + 1e-12
    )
    return {"mean": float(cos.mean()), "min": float(cos.min())}


def eval_sources_missing(manifest: dict[str, Any] | None) -> str | None:
    """Why the eval part of the gate cannot run for this checkpoint, or None when it can."""
    if manifest is None:
        return "pretrained-only model: no checkpoint, so no test split"
    train = manifest.get("train_config")
    if not train:
        return "the checkpoint's manifest has no train_config (its sources are unknown)"
    missing = []
    for name, src in (train.get("sources") or {}).items():
        paths = [p["path"] for p in src.get("parts") or []] + ([src["path"]] if src.get("path") else [])
        missing += [f"{name}: {p}" for p in paths if not Path(p).exists()]
    return f"training sources not available here ({'; '.join(missing)})" if missing else None


def gated(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics the gate holds (names ending in nDCG@10, MAP@5 or accuracy; NaN and non-numbers dropped)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if k.rsplit("/", 1)[-1] in GATED_METRICS and isinstance(v, int | float) and not math.isnan(v)
    }


def metric_deltas(base: dict[str, float], other: dict[str, float]) -> dict[str, float]:
    """Per gated metric: variant minus torch (negative is a drop)."""
    return {k: other[k] - base[k] for k in sorted(base) if k in other}


# -- export + gate ----------------------------------------------------------------------------------------
def export_onnx(
    model: MultiTaskModel,
    manifest: dict[str, Any] | None,
    checkpoint: str | Path | None = None,
    *,
    variants: tuple[str, ...] = ONNX_RUNTIMES,
    min_cosine: float = MIN_COSINE,
    max_drop: float = MAX_METRIC_DROP,
    evaluate: Callable[[str], dict[str, float]] | None = None,
    int8_options: dict[str, Any] | None = None,
    directory: Path | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Export ``variants`` of the (torch, fp32) ``model``'s encoder, gate them and write the manifest.

    Returns the ONNX manifest: per variant its file, cosine to torch fp32 (mean/min), eval deltas
    (with ``evaluate`` and the checkpoint's sources present), ``passed`` and ``reason``; ``kept``
    names the variant loads prefer and ``why``."""
    say = say or (lambda s: None)
    directory = directory or onnx_dir(model, manifest, checkpoint)
    with _locked(directory):
        doc = _build(model, manifest, directory, variants, min_cosine, max_drop, int8_options, say)
    if evaluate is not None:
        _gate_eval(doc, directory, checkpoint, manifest, max_drop, evaluate, say)
    return doc


def _build(model: MultiTaskModel, manifest: dict[str, Any] | None, directory: Path, variants: tuple[str, ...],
           min_cosine: float, max_drop: float, int8_options: dict[str, Any] | None,
           say: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """Export fp32 (always: int8 and the GPU path derive from it), quantise, run the cosine gate, write the manifest."""
    sha = weights_sha256(model, manifest)
    texts = sample_texts()
    was_runtime, model.runtime = model.runtime, None
    try:
        reference = model.embed(texts)
        t0 = time.perf_counter()
        export_fp32(model, directory / FILES["onnx"])
        report: dict[str, Any] = {}
        for name in (v for v in ONNX_RUNTIMES if v in variants):
            path = directory / FILES[name]
            if name == "onnx-int8":
                fused = directory / "encoder-fused.tmp.onnx"
                cfg = model.encoder.backbone.config
                fuse_transformer(directory / FILES["onnx"], fused, int(cfg.num_attention_heads), int(cfg.hidden_size))
                try:
                    quantize_int8(fused, path, int8_options)
                finally:
                    fused.unlink(missing_ok=True)
            model.runtime = OnnxEncoder(path, name)  # type: ignore[arg-type]
            cos = cosine_parity(reference, model.embed(texts))
            model.runtime = None
            passed = cos["mean"] >= min_cosine
            reason = (f"mean cosine {cos['mean']:.4f} >= {min_cosine}" if passed
                      else f"refused: mean cosine {cos['mean']:.4f} < {min_cosine} to torch fp32")  # fmt: skip
            report[name] = {"file": FILES[name], "file_sha256": sha256_file(path), "cosine": cos, "passed": passed,
                            "reason": reason, "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
            say(f"{name}: cosine mean {cos['mean']:.4f} min {cos['min']:.4f}: {reason}")
            t0 = time.perf_counter()
    finally:
        model.runtime = was_runtime
    doc = _manifest(sha, model, manifest, report, min_cosine, max_drop, texts, int8_options)
    doc["eval"] = {"run": False, "why": "not asked (shoprank export-onnx runs it)"}
    atomic_write_json(directory / MANIFEST, doc, indent=2, sort_keys=True)
    return doc


def _manifest(sha: str, model: MultiTaskModel, manifest: dict[str, Any] | None, report: dict[str, Any],
              min_cosine: float, max_drop: float, texts: list[str],
              int8_options: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    from shoprank.model.checkpoint import model_version

    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights_sha256": sha,
        "model_version": model_version(manifest, model.config.encoder),
        "dim": int(model.encoder.dim),
        "max_length": int(model.encoder.max_length),
        "opset": OPSET,
        "int8_options": {**INT8_OPTIONS, **(int8_options or {})},
        "gate": {"min_cosine": min_cosine, "max_metric_drop": max_drop, "metrics": list(GATED_METRICS),
                 "sample": f"{len(texts)} built-in synthetic catalogue texts (onnx_export.sample_texts)"},
        "variants": report,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    _keep(doc)
    return doc


def _keep(doc: dict[str, Any]) -> None:
    """Set ``kept``/``why``: the first passing variant in :data:`PREFERENCE` order."""
    variants = doc["variants"]
    kept = next((v for v in PREFERENCE if v == "torch" or variants.get(v, {}).get("passed")), "torch")
    refused = {v: r["reason"] for v, r in variants.items() if not r.get("passed")}
    doc["kept"] = kept
    why = f"{kept}: the fastest variant that passed the gate" if kept != "torch" else "torch: no ONNX variant passed"
    doc["why"] = why + (f"; refused {refused}" if refused else "")


def _gate_eval(doc: dict[str, Any], directory: Path, checkpoint: str | Path | None, manifest: dict[str, Any] | None,
               max_drop: float, evaluate: Callable[[str], dict[str, float]],
               say: Callable[[str], None]) -> None:  # fmt: skip
    """The eval half of the gate: each cosine-passing variant's metrics against torch's; rewrites the manifest."""
    why = eval_sources_missing(manifest) if checkpoint is not None else "pretrained-only model: no test split"
    if why is not None:
        doc["eval"] = {"run": False, "why": why}
        say(f"eval gate not run: {why}")
    else:
        say("eval gate: torch ...")
        base = gated(evaluate("torch"))
        doc["eval"] = {"run": True, "torch": base}
        for name, v in doc["variants"].items():
            if not v["passed"]:
                continue
            say(f"eval gate: {name} ...")
            deltas = metric_deltas(base, gated(evaluate(name)))
            v["eval_deltas"] = deltas
            worst = min(deltas.items(), key=lambda kv: kv[1], default=("", 0.0))
            if worst[1] < -max_drop:
                v["passed"] = False
                v["reason"] = f"refused: {worst[0]} drops by {-worst[1]:.4f} > {max_drop}"
            else:
                v["reason"] += f"; worst eval delta {worst[1]:+.4f} ({worst[0] or 'none'}) >= -{max_drop}"
            say(f"{name}: {v['reason']}")
    _keep(doc)
    atomic_write_json(directory / MANIFEST, doc, indent=2, sort_keys=True)


# -- loading ---------------------------------------------------------------------------------------------
def ensure_onnx(
    model: MultiTaskModel, manifest: dict[str, Any] | None, checkpoint: str | Path | None
) -> tuple[Path, dict[str, Any]]:
    """The ONNX directory and manifest for this model, exported (cosine gate) when missing or stale."""
    directory = onnx_dir(model, manifest, checkpoint)
    sha = weights_sha256(model, manifest)
    doc = read_onnx_manifest(directory)
    if is_current(doc, directory, sha):
        return directory, doc  # type: ignore[return-value]
    with _locked(directory):  # another process may have built it meanwhile
        doc = read_onnx_manifest(directory)
        if is_current(doc, directory, sha):
            return directory, doc  # type: ignore[return-value]
        log.warning("exporting the encoder to ONNX in %s (weights %s; cosine gate only)", directory, sha[:12])
        return directory, _build(model, manifest, directory, ONNX_RUNTIMES, MIN_COSINE, MAX_METRIC_DROP, None,
                                 lambda s: log.info("%s", s))  # fmt: skip


def choose_runtime(requested: EncoderRuntime, doc: dict[str, Any]) -> tuple[str, str]:
    """(runtime to use, why): ``requested`` when it passed the gate, else the best passing fallback."""
    order = PREFERENCE[PREFERENCE.index(requested) :]
    variants = doc.get("variants", {})
    for name in order:
        if name == "torch":
            break
        if variants.get(name, {}).get("passed"):
            return name, "passed the gate" if name == requested else f"{requested} was refused; fell back"
    reason = variants.get(requested, {}).get("reason", "not built")
    return "torch", f"{requested} unavailable ({reason}); fell back to torch"


def attach_runtime(
    model: MultiTaskModel,
    manifest: dict[str, Any] | None,
    checkpoint: str | Path | None,
    runtime: EncoderRuntime,
    device: str = "cpu",
) -> str:
    """Make ``model.embed`` run on ``runtime`` (exporting when needed); returns the runtime in use.

    A variant the gate refused falls back (``onnx-int8`` -> ``onnx`` -> ``torch``) with a warning.
    On a CUDA device with ONNX Runtime's CUDA provider, both ONNX runtimes run the fp32 graph as fp16."""
    check_runtime(runtime)
    model.runtime = None
    if runtime == "torch":
        return "torch"
    directory, doc = ensure_onnx(model, manifest, checkpoint)
    use, why = choose_runtime(runtime, doc)
    if use != runtime:
        log.warning("encoder runtime %s: %s (using %s)", runtime, why, use)
    if use == "torch":
        return "torch"
    gpu = device.startswith("cuda") and cuda_available()  # else the CPU session of the variant asked for
    model.runtime = OnnxEncoder(directory / FILES["onnx" if gpu else use], use, device=device)  # type: ignore[arg-type]
    return use
