"""Multi-node placement, batch spreading and Serve fail-over on a ray.cluster_utils.Cluster.

The cluster runs in a subprocess (tests/multinode_scenario.py) with its own RAY_TMPDIR, so it
never meets the session's ``ray_local`` Ray. The ranker it serves and batch-scores is a tiny
shoprank model exported for Triton; the expected scores come from ``MultiTaskModel`` in here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from shoprank.model.multitask import ModelConfig, MultiTaskModel
from shoprank.triton.export import export_ranker

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("multinode")
    model = MultiTaskModel(ModelConfig(encoder="tiny", tasks=["relevance", "click", "demand"], hidden=16)).eval()
    model_dir = export_ranker(model, work / "repo", version="multinode") / "1"
    rng = np.random.default_rng(0)
    d = model.encoder.dim
    queries = rng.normal(size=(4, d)).astype(np.float32)
    items = rng.normal(size=(12, d)).astype(np.float32)
    num = rng.random((12, 3)).astype(np.float32)
    month = rng.uniform(-1, 1, (12, 2)).astype(np.float32)
    with torch.inference_mode():
        outs = [model.pair_outputs(torch.from_numpy(q), *map(torch.from_numpy, (items, num, month))) for q in queries]
    tasks = list(model.pair_tasks)
    expected = np.stack([np.stack([o[t].numpy() for t in tasks]) for o in outs])  # [Q, T, N]
    data = work / "data.npz"
    np.savez(data, queries=queries, items=items, num=num, month=month, expected=expected, tasks=np.array(tasks))
    out = work / "report.json"
    ray_tmp = tempfile.mkdtemp(prefix="srmn", dir="/tmp")  # short: Ray's socket paths must fit 107 chars
    env = {
        **os.environ,
        "RAY_TMPDIR": ray_tmp,
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    }
    env.pop("RAY_ADDRESS", None)
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / "multinode_scenario.py"), str(model_dir), str(data), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=420,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    lines = (proc.stdout + proc.stderr).splitlines()
    log = "\n".join(line for line in lines if "logging_progress" not in line)[-6000:]
    assert proc.returncode == 0 and out.exists(), f"scenario failed ({proc.returncode}):\n{log}"
    report = json.loads(out.read_text())
    report["log"] = log
    return report


def test_ranker_actor_lands_on_gpu_node(scenario: dict) -> None:
    assert scenario["actor_node"] == scenario["nodes"]["gpu_a"], scenario["log"]


def test_batch_scoring_spreads_over_nodes(scenario: dict) -> None:
    batch = scenario["batch"]
    assert batch["rows"] == 4 * 12 and batch["wrong"] == 0
    assert len(batch["nodes"]) >= 2, batch
    assert set(batch["nodes"]) <= {scenario["nodes"]["head"], scenario["nodes"]["gpu_a"]}


def test_serve_survives_loss_of_the_ranker_node(scenario: dict) -> None:
    s, nodes = scenario["serve"], scenario["nodes"]
    seen = (
        f"events {scenario['events']}; nodes {nodes}; alive {scenario.get('alive_nodes')}; "
        f"Serve status {scenario.get('serve_status')}; serve {s}"
    )
    assert s["wrong"] == 0, "a request returned a wrong answer"
    assert s["before_kill_nodes"] == [nodes["gpu_a"]], f"the replica ran on the ranker (GPU) node: {seen}"
    assert nodes["gpu_b"] in s["after_kill_nodes"], f"no answer from the replica restarted on gpu_b: {seen}"
    assert set(s["after_kill_nodes"]) <= {nodes["gpu_a"], nodes["gpu_b"]}, seen  # never off the ranker nodes
    assert s["ok_on_gpu_b"] >= 10, f"requests did not continue on the restarted replica: {seen}"
    assert s["recovery_s"] is not None, seen  # within the scenario's 120 s wait
    # only requests caught in flight by the node's death may fail, and only while it recovers
    assert all(f["t"] >= s["t_kill"] - 1 for f in s["failed"]), s["failed"]
    assert len(s["failed"]) <= 20, s["failed"]
