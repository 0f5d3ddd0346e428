"""The thin entries work from any directory: ``deployments/serve_config.yaml`` and ``jobs/*.py``.

One subprocess with cwd ``/`` and no PYTHONPATH (no Ray started) does what ``serve run`` and
``ray job submit`` would do first: parse the Serve config with Ray's own schema, import its
``import_path`` and gRPC servicer functions, validate its ``args``, and, for each ``jobs/<name>.py``,
import every ``shoprank`` name it imports and run the job's ``main`` with ``--help``.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
SERVE_CONFIG = REPO / "deployments" / "serve_config.yaml"

PROBE = r"""
import contextlib, importlib, io, json, sys
import yaml
from ray._common.utils import import_attr
from ray.serve.schema import ServeDeploySchema

serve_config, jobs = sys.argv[1], json.loads(sys.argv[2])
out = {}
cfg = ServeDeploySchema.model_validate(yaml.safe_load(open(serve_config)))
out["servicers"] = {f: callable(import_attr(f)) for f in cfg.grpc_options.grpc_servicer_functions}
out["apps"] = {}
for app in cfg.applications:
    builder = import_attr(app.import_path)
    module = app.import_path.partition(":")[0]
    args = import_attr(f"{module}:AppArgs").model_validate(app.args)
    from shoprank.serving.config import ServingConfig

    ServingConfig.model_validate(args.serving)
    builder_name = f"{builder.__module__}.{builder.__qualname__}"
    out["apps"][app.name] = {"builder": builder_name, "file": sys.modules[module].__file__}
out["jobs"] = {}
for job, names in jobs.items():
    found = {f"{m}.{n}": hasattr(importlib.import_module(m), n) for m, n in names}
    main = next((getattr(importlib.import_module(m), n) for m, n in names if n == "main"), None)
    help_rc = None
    if main is not None:
        sys.argv = [f"jobs/{job}.py", "--help"]
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main()
            except SystemExit as e:
                help_rc = e.code
    out["jobs"][job] = {"found": found, "help_rc": help_rc}
print("PROBE " + json.dumps(out))
"""


def _shoprank_imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` for every ``from shoprank... import name`` anywhere in ``path``."""
    pairs = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("shoprank"):
            pairs += [(node.module, alias.name) for alias in node.names]
    return pairs


def test_serve_config_and_job_entries_import_from_any_directory() -> None:
    jobs = {p.stem: _shoprank_imports(p) for p in sorted((REPO / "jobs").glob("*.py")) if p.stem != "__init__"}
    assert jobs and all(jobs.values()), f"every jobs/ entry imports its logic from shoprank: {jobs}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(SERVE_CONFIG), json.dumps(jobs)],
        cwd="/", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, f"probe failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}"
    out = json.loads(lines[-1].removeprefix("PROBE "))

    assert out["servicers"] and all(out["servicers"].values()), out["servicers"]
    assert out["apps"], "the serve config has no applications"
    for name, app in out["apps"].items():
        assert app["builder"].startswith("shoprank.serve_app."), (name, app)
        assert not Path(app["file"]).resolve().is_relative_to(REPO / "deployments"), (name, app)
    for job, res in out["jobs"].items():
        assert all(res["found"].values()), (job, res)
        if any(n == "main" for _, n in jobs[job]):
            assert res["help_rc"] == 0, f"jobs/{job}.py: main --help exited {res['help_rc']}"
