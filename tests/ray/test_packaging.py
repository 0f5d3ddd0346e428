"""A non-editable install works on its own: train, index + gRPC search, and a campaign, all from ``/``.

The project is copied (without generated code) and installed with pip, non-editable, into a fresh
venv whose dependencies come from the test's own environment through a ``.pth`` file (paths a
``.pth`` adds are not scanned for their own ``.pth`` files, so the source tree's editable finder
stays out). Every command then runs as that venv's ``shoprank`` console script with cwd ``/`` and
no PYTHONPATH: nothing can come from the source tree.

Ray tier: the commands start Ray in subprocesses (each with its own RAY_TMPDIR), so run this
under the shared lock: ``flock /tmp/shoprank-ray.lock .venv/bin/python -m pytest tests/.../test_packaging.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
STEP_TIMEOUT_S = 300


@dataclass(frozen=True)
class Install:
    """The fresh venv (``bin``, ``site``) and the scratch dirs the commands write to."""

    bin: Path
    site: Path
    work: Path
    ray_root: Path


def _env(ray_root: Path, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS", "VIRTUAL_ENV")}
    ray_tmp = ray_root / name  # short: Ray's socket paths must fit in 107 characters
    ray_tmp.mkdir()
    env.update(
        RAY_TMPDIR=str(ray_tmp), RAY_AUTH_MODE="disabled", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
        HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
    )  # fmt: skip
    return env


def _run(inst: Install, name: str, *args: str | Path) -> str:
    """Run ``shoprank ARGS`` of the installed venv from ``/``; return its stdout (fail with the log tail)."""
    proc = subprocess.run(
        [str(inst.bin / "shoprank"), *map(str, args)], cwd="/", env=_env(inst.ray_root, name),
        capture_output=True, text=True, timeout=STEP_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 0, f"shoprank {name} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"  # a copy: pip builds in-tree, and the build must generate shoprank.v1 itself
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "protos", src / "protos")
    shutil.copytree(
        REPO / "platform" / "shoprank", src / "platform" / "shoprank",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "v1"),
    )  # fmt: skip
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(
        subprocess.check_output(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    (site / "_shoprank_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    ray_root = Path(tempfile.mkdtemp(prefix="srpk", dir="/tmp"))
    inst = Install(bin=venv / "bin", site=site, work=root / "work", ray_root=ray_root)
    inst.work.mkdir()
    # --ignore-installed: never touch the shoprank distribution the .pth makes visible (the source
    # tree's editable install); pip and setuptools come from that environment too (no isolation).
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--ignore-installed", str(src)],
        cwd="/", env=_env(ray_root, "pip"), capture_output=True, text=True, timeout=STEP_TIMEOUT_S,
    )  # fmt: skip
    assert pip.returncode == 0, f"pip install failed:\n{(pip.stdout + pip.stderr)[-6000:]}"
    try:
        yield inst
    finally:
        shutil.rmtree(ray_root, ignore_errors=True)


@pytest.fixture(scope="module")
def trained(install: Install) -> dict[str, Path]:
    """``shoprank data synth`` + ``shoprank train`` on configs/tiny.yaml (1 epoch, 1 worker)."""
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    assert cfg["sources"] and all(s.get("format") == "synthetic" for s in cfg["sources"].values())
    cfg.update(epochs=1, num_workers=1)
    config = install.work / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    data = install.work / "data"
    _run(install, "synth", "data", "synth", "--out", data, "--items", "300", "--no-progress")
    out = install.work / "train"
    _run(install, "train", "train", "--config", config, "--out", out)
    model = out / "model"
    assert (model / "manifest.json").is_file() and (model / "model.safetensors").is_file()
    return {"catalogue": data / "catalogue.parquet", "model": model}


def test_install_is_the_built_package_not_the_source_tree(install: Install) -> None:
    probe = (
        "import json, shoprank, shoprank.v1.search_pb2 as pb, shoprank.serve_app as app, shoprank.train.driver as d;"
        "print(json.dumps([shoprank.__file__, pb.__file__, app.__file__, d.__file__]))"
    )
    out = subprocess.check_output(
        [str(install.bin / "python"), "-c", probe], cwd="/", env=_env(install.ray_root, "probe"), text=True
    )
    site = install.site.resolve()
    for f in map(Path, json.loads(out)):
        assert f.resolve().is_relative_to(site), f"{f} is not under the fresh venv's {site}"
        assert not f.resolve().is_relative_to(REPO), f
    pkg = site / "shoprank"
    assert (pkg / "v1" / "search_pb2.py").is_file() and (pkg / "v1" / "search_pb2_grpc.py").is_file()
    assert (pkg / "resources" / "demo.yaml").is_file()  # package data: the demo training config
    assert not list(site.glob("__editable__*")), "the install must not be editable"


def test_index_build_then_grpc_search_from_root(install: Install, trained: dict[str, Path]) -> None:
    from shoprank.net import free_port
    from shoprank.serving.client import SearchClient
    from shoprank.store.server import running_store

    index = install.work / "index"
    _run(install, "index", "index", "build", "--catalogue", trained["catalogue"], "--checkpoint", trained["model"],
         "--out", index)  # fmt: skip
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["num_items"] == 300

    port = free_port("127.0.0.1")
    store_dir = install.work / "store"
    log = install.work / "serve.log"
    cmd = [str(install.bin / "shoprank"), "serve", "--checkpoint", str(trained["model"]), "--index", str(index),
           "--port", str(port), "--num-cpus", "2", "--store-dir", str(store_dir)]  # fmt: skip
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd="/", env=_env(install.ray_root, "serve"), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while "serving app" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert "serving app" in log.read_text(), f"shoprank serve did not come up:\n{log.read_text()[-6000:]}"
        with SearchClient(f"127.0.0.1:{port}", timeout=30.0) as client:
            resp = client.search("winter boots", 5)
            ack = client.feedback([{"request_id": resp.request_id, "query": "winter boots",
                                    "item_id": resp.items[0].item_id, "type": "click", "position": 1}])  # fmt: skip
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # shoprank serve stops Serve and Ray on SIGINT
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert [it.rank for it in resp.items] == [1, 2, 3, 4, 5]
    assert all(it.item_id.startswith("SKU") for it in resp.items)
    assert resp.index_version == manifest["index_version"]
    assert resp.model_version == manifest["model_version"]
    assert proc.returncode == 0, log.read_text()[-6000:]
    assert resp.request_id and ack.accepted == 1  # the event API, with the local store serve started
    assert (store_dir / "appendonly.aof").exists() or any(store_dir.rglob("*.aof*"))
    assert running_store(store_dir) is None  # the store serve started is stopped with it


def test_campaign_run_from_root(install: Install, trained: dict[str, Path]) -> None:
    spec = yaml.safe_load((REPO / "campaigns" / "demo.yaml").read_text())
    spec["output"] = str(install.work / "campaign")  # the spec's relative path would land under /
    path = install.work / "demo.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = _run(install, "campaign", "campaign", "run", "--campaign", path, "--catalogue", trained["catalogue"],
               "--checkpoint", trained["model"], "--num-cpus", "2", "--quiet")  # fmt: skip
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["complete"] and summary["rows"] == 300
    assert summary["scored"] + summary["filtered"] + summary["quarantined"] == 300
    assert Path(summary["output"]) == (install.work / "campaign").resolve()
    assert (install.work / "campaign" / "report.md").is_file()
    assert list((install.work / "campaign" / "ranked").rglob("*.parquet"))
