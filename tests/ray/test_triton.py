"""The Triton ranker backend against a REAL Triton Inference Server (nvidia-pytriton's 2.51).

One Triton per module (isolated venv built once by ``python -m shoprank.triton.server
--setup-only``; cached under ~/.cache/shoprank/triton-env or $SHOPRANK_TRITON_ENV).
"""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from shoprank.model.multitask import ModelConfig, MultiTaskModel
from shoprank.net import free_port
from shoprank.triton.backend.numpy_ranker import NumpyRanker
from shoprank.triton.client import TritonRankerClient
from shoprank.triton.errors import TritonEnvError, TritonUnavailableError, TritonVersionMismatchError
from shoprank.triton.export import DEFAULT_MODEL_NAME, export_ranker, read_repository_version
from shoprank.triton.server import TritonServer, ensure_env

D = 32  # the tiny encoder's width


def tiny_model(architecture: str = "shared_bottom", seed: int = 0) -> MultiTaskModel:
    cfg = ModelConfig(
        encoder="tiny", tasks=["relevance", "click", "demand"], architecture=architecture, hidden=16, seed=seed
    )
    return MultiTaskModel(cfg).eval()


def inputs(n: int, rows: bool = False, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, D) if rows else D).astype(np.float32)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    i = rng.normal(size=(n, D)).astype(np.float32)
    i /= np.linalg.norm(i, axis=-1, keepdims=True)
    return q, i, rng.random((n, 3)).astype(np.float32), rng.uniform(-1, 1, (n, 2)).astype(np.float32)


def reference(model: MultiTaskModel, q, i, num, month) -> dict[str, np.ndarray]:  # noqa: ANN001
    with torch.inference_mode():
        raw = model.pair_outputs(*(torch.from_numpy(a) for a in (q, i, num, month)))
    return {k: v.numpy() for k, v in raw.items()}


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], tol: float = 1e-5) -> None:
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        assert np.abs(got[k] - want[k]).max() <= tol, (k, float(np.abs(got[k] - want[k]).max()))


@pytest.fixture(scope="module")
def triton_env():
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(
            f"nvidia-pytriton ships Triton for Linux x86_64/aarch64 only, not {sys.platform}/{platform.machine()}"
        )
    try:
        return ensure_env()
    except TritonEnvError as e:
        text = str(e)
        if "No matching distribution" in text or "is not a supported wheel" in text:
            pytest.skip(f"the nvidia-pytriton wheel cannot be installed on this platform: {text[-300:]}")
        raise


@pytest.fixture(scope="module")
def models() -> dict[str, MultiTaskModel]:
    return {"shoprank_ranker": tiny_model("shared_bottom", 0), "shoprank_ranker_mmoe": tiny_model("mmoe", 1)}


@pytest.fixture(scope="module")
def cross_dir(tmp_path_factory) -> Path:  # noqa: ANN001
    """A tiny cross-encoder saved as ``shoprank train-cross`` saves one (with its pair text recipe)."""
    from shoprank.model.cross_encoder import CrossEncoder, CrossEncoderConfig, save_cross_encoder
    from shoprank.model.text import DEFAULT_RECIPES, MANIFEST_KEY, recipes_to_json

    model = CrossEncoder(CrossEncoderConfig(encoder="tiny", max_length=32), seed=5)
    path = tmp_path_factory.mktemp("cross") / "model"
    return save_cross_encoder(model, path, {MANIFEST_KEY: recipes_to_json(DEFAULT_RECIPES)})


@pytest.fixture(scope="module")
def triton(triton_env, models, cross_dir, tmp_path_factory):  # noqa: ANN001
    """One server, three models: shared-bottom with Triton's dynamic batcher, MMoE without, and the
    cross-encoder (always dynamically batched)."""
    from shoprank.model.cross_encoder import load_cross_encoder
    from shoprank.triton.export import export_cross_encoder

    repo = tmp_path_factory.mktemp("triton-repo")
    for name, model in models.items():
        batch = 0 if name.endswith("mmoe") else 4096
        export_ranker(model, repo, version=f"{name}-v1", model_name=name, max_batch_size=batch)
    cross, manifest = load_cross_encoder(cross_dir)
    export_cross_encoder(cross, repo, manifest=manifest, max_batch_size=64)
    server = TritonServer(repo, log_file=repo.parent / "triton.log", ready_timeout_s=60)
    with server:
        yield server


# -- export + NumPy forward (no server) ------------------------------------------------------
@pytest.mark.parametrize("architecture", ["shared_bottom", "mmoe"])
def test_numpy_ranker_matches_torch(tmp_path: Path, architecture: str) -> None:
    model = tiny_model(architecture)
    path = export_ranker(model, tmp_path, version="t-1")
    ranker = NumpyRanker.load(path / "1")
    for rows in (False, True):
        args = inputs(40, rows=rows)
        assert_close(ranker.pair_outputs(*args), reference(model, *args))


def test_export_layout_version_and_no_pickle(tmp_path: Path) -> None:
    model = tiny_model()
    path = export_ranker(model, tmp_path, manifest=None)
    assert read_repository_version(tmp_path) == "pretrained-minilm"
    manifest = {"model_config": {"encoder": "tiny"}, "weights_sha256": "ab" * 32}
    export_ranker(model, tmp_path, manifest=manifest)  # re-export replaces the model dir
    assert read_repository_version(tmp_path) == "tiny-" + "ab" * 6
    files = sorted(p.name for p in path.rglob("*") if p.is_file())
    assert files == ["config.pbtxt", "model.py", "numpy_ranker.py", "ranker.json", "ranker.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp dirs left behind"
    with pytest.raises(ValueError, match="no pairwise tasks"):
        export_ranker(MultiTaskModel(ModelConfig(encoder="tiny", tasks=["retrieval"])), tmp_path / "x")


def test_corrupt_weights_refused(tmp_path: Path) -> None:
    path = export_ranker(tiny_model(), tmp_path, version="t")
    w = path / "1" / "ranker.safetensors"
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ValueError, match="checksum"):
        NumpyRanker.load(path / "1")


# -- the real server --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["shoprank_ranker", "shoprank_ranker_mmoe"])
def test_triton_scores_match_inprocess(triton: TritonServer, models, name: str) -> None:  # noqa: ANN001
    model = models[name]
    with TritonRankerClient(triton.grpc_url, model_name=name, expected_version=f"{name}-v1", max_rows=64) as client:
        for n, rows in ((1, False), (50, False), (200, True)):  # 200 rows -> 4 concurrent chunks
            args = inputs(n, rows=rows, seed=n)
            result = client.infer(*args)
            assert result.source == "triton" and result.model_version == f"{name}-v1"
            assert_close(result.outputs, reference(model, *args))
        empty = client.pair_outputs(*inputs(0))
        assert set(empty) == set(model.pair_tasks) and all(v.shape == (0,) for v in empty.values())
        assert client.stats.failovers == 0 and client.stats.triton_errors == 0


def test_async_concurrent_calls_match(triton: TritonServer, models) -> None:  # noqa: ANN001
    model = models[DEFAULT_MODEL_NAME]
    cases = [inputs(30, seed=s) for s in range(16)]

    async def run() -> list[dict[str, np.ndarray]]:
        return await asyncio.gather(*(client.pair_outputs_async(*c) for c in cases))

    import tritonclient.grpc as grpcclient

    def counts() -> tuple[int, int]:
        stats = grpcclient.InferenceServerClient(triton.grpc_url).get_inference_statistics(DEFAULT_MODEL_NAME)
        m = stats.model_stats[0]
        return m.inference_stats.success.count, m.execution_count

    before = counts()
    with TritonRankerClient(triton.grpc_url, expected_version=f"{DEFAULT_MODEL_NAME}-v1") as client:
        for got, case in zip(asyncio.run(run()), cases, strict=True):
            assert_close(got, reference(model, *case))
    after = counts()
    requests, executions = after[0] - before[0], after[1] - before[1]
    assert requests == 16 and executions < requests, f"dynamic batcher: {requests} requests in {executions} passes"


def test_bad_shapes_rejected(triton: TritonServer) -> None:
    with TritonRankerClient(triton.grpc_url) as client:
        q, i, num, month = inputs(5)
        with pytest.raises(ValueError, match="item_num"):
            client.pair_outputs(q, i, num[:, :2], month)
        with pytest.raises(ValueError, match="q must be"):
            client.pair_outputs(np.zeros(D + 1, np.float32), i, num, month)


def test_version_mismatch_detected(triton: TritonServer) -> None:
    with TritonRankerClient(triton.grpc_url, expected_version="some-other-model", failover="unavailable") as client:
        with pytest.raises(TritonVersionMismatchError, match="shoprank_ranker-v1.*some-other-model"):
            client.check_version()
        with pytest.raises(TritonVersionMismatchError):
            client.pair_outputs(*inputs(3))
    with TritonRankerClient(triton.grpc_url, expected_version=f"{DEFAULT_MODEL_NAME}-v1") as client:
        assert client.check_version() == f"{DEFAULT_MODEL_NAME}-v1"


def test_triton_down_unavailable_fast(triton_env) -> None:  # noqa: ANN001
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    with TritonRankerClient(url, failover="unavailable", timeout_s=0.5, retries=2, backoff_s=0.01) as client:
        t0 = time.monotonic()
        with pytest.raises(TritonUnavailableError, match="unavailable") as info:
            client.pair_outputs(*inputs(4))
        assert info.value.grpc_status == "UNAVAILABLE"
        assert time.monotonic() - t0 < client.budget_s + 1.0
        t0 = time.monotonic()  # circuit open: the next call fails at once
        with pytest.raises(TritonUnavailableError, match="circuit open"):
            client.pair_outputs(*inputs(4))
        assert time.monotonic() - t0 < 0.2


def test_triton_down_fails_over_inprocess(triton_env) -> None:  # noqa: ANN001
    model = tiny_model()
    url = f"127.0.0.1:{free_port()}"
    with TritonRankerClient(url, failover="inprocess", fallback_model=model, timeout_s=0.5, retries=1) as client:
        args = inputs(20)
        result = client.infer(*args)
        assert result.source == "inprocess"
        assert_close(result.outputs, reference(model, *args), tol=0.0)
        got = asyncio.run(client.infer_async(*args))
        assert got.source == "inprocess" and client.stats.failovers == 2


def test_slow_then_back_then_new_version(triton_env, tmp_path: Path) -> None:  # noqa: ANN001
    """A hung Triton (SIGSTOP) fails over within the budget and is used again once back; a
    crashed one (SIGKILL) fails over too; then Triton is restarted in the foreground
    (``python -m shoprank.triton.server``) on the same port with another model version, which
    the next call reports; Ctrl-C stops that server cleanly."""
    model = tiny_model()
    export_ranker(model, tmp_path / "repo", version="v1")
    server = TritonServer(tmp_path / "repo", log_file=tmp_path / "triton.log", ready_timeout_s=60).start()
    proc = None
    try:
        client = TritonRankerClient(
            server.grpc_url, expected_version="v1", failover="inprocess", fallback_model=model,
            timeout_s=0.3, retries=1, backoff_s=0.01, cooldown_s=0.5,
        )  # fmt: skip
        args = inputs(10)
        assert client.infer(*args).source == "triton"
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            result = client.infer(*args)
            elapsed = time.monotonic() - t0
            assert result.source == "inprocess" and elapsed < client.budget_s + 0.5, elapsed
            assert_close(result.outputs, reference(model, *args))
        finally:
            os.killpg(server.proc.pid, signal.SIGCONT)
        time.sleep(0.6)  # past the cooldown
        assert client.infer(*args).source == "triton"
        grpc_port, http_port, shm_prefix = server.grpc_port, server.http_port, server.shm_prefix
        server.kill()  # Triton crashes: in-process scores at once, shared memory cleaned up
        time.sleep(0.6)
        t0 = time.monotonic()
        result = client.infer(*args)
        assert result.source == "inprocess" and time.monotonic() - t0 < client.budget_s + 0.5
        assert not list(Path("/dev/shm").glob(f"{shm_prefix}*"))

        export_ranker(tiny_model(seed=7), tmp_path / "repo", version="v2")
        cmd = [sys.executable, "-m", "shoprank.triton.server", "--repo", str(tmp_path / "repo")]
        cmd += ["--grpc-port", str(grpc_port), "--http-port", str(http_port), "--log-file", str(tmp_path / "fg.log")]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            lines.append(line)
            if "triton serving" in line or not line:
                break
        assert "triton serving" in lines[-1], "".join(lines)
        with pytest.raises(TritonVersionMismatchError, match="'v2'.*'v1'"):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # in-process until the client reaches the new Triton
                assert client.infer(*args).source == "inprocess"
                time.sleep(0.3)
        client.close()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "triton stopped" in out, out
    finally:
        server.stop()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # let it stop its Triton
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- the serving ranker's "triton" backend ---------------------------------------------------
def test_serving_ranker_triton_backend_matches_inprocess(triton, models) -> None:  # noqa: ANN001
    from shoprank.serving.pipeline import make_backend

    model = models["shoprank_ranker"]
    model.trained_tasks = {"relevance", "click", "demand"}
    q, i, num, _ = inputs(40, seed=7)
    month = np.full(40, 12)
    local = make_backend("inprocess", model).score(q, i, num, month)
    remote = make_backend(
        "triton",
        model,
        url=triton.grpc_url,
        model_name="shoprank_ranker",
        expected_version="shoprank_ranker-v1",
        failover="unavailable",
    ).score(q, i, num, month)
    assert set(remote.scores) == set(local.scores)
    assert remote.zero_shot == local.zero_shot
    for task, value in local.scores.items():
        np.testing.assert_allclose(remote.scores[task], value, atol=1e-5, err_msg=task)


# -- the cross-encoder (issue 23's second phase) on Triton -------------------------------------------------
def test_triton_cross_encoder_reranks_like_inprocess(triton, cross_dir, triton_env) -> None:  # noqa: ANN001
    """serving.rerank_backend: triton scores every pair as in process (atol 1e-4) and reranks in the same
    order; a version mismatch and a Triton that is down give the ranker's Triton errors."""
    from shoprank.model.cross_encoder import cross_version, load_cross_encoder
    from shoprank.serve_app.metrics import triton_failovers
    from shoprank.serving.config import ServingConfig
    from shoprank.serving.rerank import load_reranker
    from shoprank.serving.stages import RankedList, RerankJob
    from shoprank.triton.client import TritonCrossClient

    titles = [
        "18v cordless drill kit",
        "garden hose 25 ft",
        "drill bit set",
        "hose reel",
        "impact driver",
        "cordless drill battery",
        "lawn sprinkler",
        "hammer drill 1/2 in",
        "soaker hose",
        "drill press",
    ]
    items = [{"item_id": f"i{r}", "title": t, "category_path": "tools" if r % 2 else "garden", "score": 1.0 - r / 10,
              "scores": {}, "rank": r + 1} for r, t in enumerate(titles)]  # fmt: skip
    jobs = [
        RerankJob(query=q, ranked=RankedList(items=items), top_n=8, k=10)
        for q in ("cordless drill", "garden hose", "a long query about drills for concrete walls")
    ]
    base = {"cross_encoder_dir": str(cross_dir), "rerank_top_n": 8}
    local = load_reranker(ServingConfig(**base))(jobs)
    served = ServingConfig(**base, rerank_backend="triton", rerank_backend_options={"url": triton.grpc_url})
    reranker = load_reranker(served)
    remote = reranker(jobs)
    assert reranker.backend == "triton"
    assert any([it["item_id"] for it in a.items[:8]] != [f"i{r}" for r in range(8)] for a in local)  # reordered
    for a, b in zip(local, remote, strict=True):
        assert [it["item_id"] for it in b.items] == [it["item_id"] for it in a.items]  # the same reranked order
        for x, y in zip(a.items[:8], b.items[:8], strict=True):
            for key in ("cross_relevance", "cross_click"):
                assert abs(x["scores"][key] - y["scores"][key]) <= 1e-4, (key, x["scores"][key], y["scores"][key])

    model, manifest = load_cross_encoder(cross_dir)
    batch = {k: v.numpy() for k, v in model.tokenize(["drill"] * 3, titles[:3]).items()}
    with TritonCrossClient(triton.grpc_url, expected_version=cross_version(manifest), max_rows=2) as client:
        result = client.infer(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # 2 chunks
        assert result.source == "triton" and result.model_version == cross_version(manifest)
        assert client.stats.triton_errors == 0 and set(result.outputs) == {"relevance", "click"}
    with TritonCrossClient(triton.grpc_url, expected_version="another-cross") as client:
        with pytest.raises(TritonVersionMismatchError, match="another-cross"):
            client.raw_outputs(batch)
    down = ServingConfig(
        **base,
        rerank_backend="triton",
        rerank_backend_options={"url": f"127.0.0.1:{free_port()}", "timeout_s": 0.3, "retries": 0},
    )
    with pytest.raises(TritonUnavailableError, match="cross-encoder.*unavailable") as info:
        load_reranker(down)(jobs[:1])
    assert info.value.grpc_status == "UNAVAILABLE"
    fallback = load_reranker(down.model_copy(update={"rerank_backend_options": {
        **down.rerank_backend_options, "failover": "inprocess"}}))  # fmt: skip
    assert [it["item_id"] for it in fallback(jobs[:1])[0].items] == [it["item_id"] for it in local[0].items]
    # the Serve stage holding this reranker reports the failover on shoprank_triton_failovers{stage="rerank"}
    assert fallback.client.stats.failovers == 1 and triton_failovers(SimpleNamespace(reranker=fallback)) == 1
