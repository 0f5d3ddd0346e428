"""A real Triton Inference Server (2.51, from the ``nvidia-pytriton`` wheel) in an isolated venv.

Triton's Python backend needs numpy<2, which the main environment cannot have, so Triton and
its Python backend run from their own virtual environment (default
``~/.cache/shoprank/triton-env``, or ``$SHOPRANK_TRITON_ENV``), built once and reused::

    python -m shoprank.triton.server --setup-only       # build/refresh the env (cached)
    python -m shoprank.triton.server --repo DIR         # run Triton in the foreground (Ctrl-C stops it)

In code::

    with TritonServer(repo) as server:            # free local ports, waits until the model is ready
        client = TritonRankerClient(server.grpc_url, ...)

The server listens on 127.0.0.1 only, logs to a file (``server.log_file``), and is stopped
with SIGTERM then SIGKILL of its whole process group (also at interpreter exit).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shoprank.net import free_port
from shoprank.triton import DEFAULT_MODEL_NAME
from shoprank.triton.errors import TritonEnvError

# What the isolated environment holds. numpy<2: Triton's Python backend is built against 1.x.
TRITON_ENV_REQUIREMENTS: tuple[str, ...] = (
    "nvidia-pytriton==0.7.0",
    "numpy==1.26.4",
    "scipy==1.17.1",
    "safetensors==0.8.0",
)
ENV_MARKER = ".shoprank-triton-env.json"
ENV_FORMAT = 1


def default_env_dir() -> Path:
    return Path(os.environ.get("SHOPRANK_TRITON_ENV", "~/.cache/shoprank/triton-env")).expanduser()


def base_python() -> str:
    """The interpreter that builds the env: $SHOPRANK_TRITON_PYTHON, else this venv's base Python."""
    explicit = os.environ.get("SHOPRANK_TRITON_PYTHON")
    if explicit:
        return explicit
    return getattr(sys, "_base_executable", None) or sys.executable


@dataclass(frozen=True)
class TritonEnv:
    """Paths inside a ready Triton environment."""

    root: Path
    python: Path
    site_packages: Path
    libdir: str  # the interpreter's LIBDIR (libpython3.X.so), for LD_LIBRARY_PATH

    @property
    def dist(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def tritonserver(self) -> Path:
        return self.dist / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        return self.dist / "backends"

    @property
    def libs(self) -> Path:
        return self.site_packages / "nvidia_pytriton.libs"

    def process_env(self) -> dict[str, str]:
        """Environment for tritonserver: the env's Python first, nothing of the main venv leaking in."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        ld = [self.libdir, str(self.libs)] + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
        env["LD_LIBRARY_PATH"] = ":".join(ld)
        env["PATH"] = f"{self.root / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        env["PYTHONPATH"] = str(self.site_packages)
        env["PYTHONNOUSERSITE"] = "1"
        env["VIRTUAL_ENV"] = str(self.root)
        return env


def _marker(python_version: str) -> dict:
    return {"format": ENV_FORMAT, "requirements": list(TRITON_ENV_REQUIREMENTS), "python": python_version}


def _read_env(root: Path) -> TritonEnv | None:
    """The env at ``root`` if it is complete and was built for the current requirements."""
    try:
        data = json.loads((root / ENV_MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if {k: data.get(k) for k in ("format", "requirements")} != {
        "format": ENV_FORMAT,
        "requirements": list(TRITON_ENV_REQUIREMENTS),
    }:
        return None
    env = TritonEnv(root, root / "bin" / "python", Path(data["site_packages"]), data["libdir"])
    stub = env.backends / "python" / "triton_python_backend_stub"
    if not (env.python.exists() and env.tritonserver.exists() and stub.exists()):
        return None
    return env


def ensure_env(env_dir: str | Path | None = None, *, quiet: bool = True) -> TritonEnv:
    """Build the isolated Triton venv once (cached by a marker naming its requirements).

    Takes a file lock so that concurrent callers build it once. Raises TritonEnvError with the
    failing command's output when an install step fails.
    """
    root = Path(env_dir) if env_dir else default_env_dir()
    root = root.expanduser().resolve()
    env = _read_env(root)
    if env is not None:
        return env
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        env = _read_env(root)
        if env is not None:
            return env
        shutil.rmtree(root, ignore_errors=True)

        def run(cmd: list[str]) -> str:
            p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})
            if p.returncode != 0:
                raise TritonEnvError(f"{' '.join(cmd)} failed ({p.returncode}):\n{(p.stdout + p.stderr)[-4000:]}")
            return p.stdout

        py = base_python()
        run([py, "-m", "venv", str(root)])
        python = root / "bin" / "python"
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"] + (["-q"] if quiet else [])
        run(pip + list(TRITON_ENV_REQUIREMENTS))
        info = json.loads(
            run(
                [
                    str(python),
                    "-c",
                    "import json,sys,sysconfig;"
                    "print(json.dumps({'libdir': sysconfig.get_config_var('LIBDIR'),"
                    "'site': sysconfig.get_paths()['purelib'],"
                    "'ver': f'{sys.version_info[0]}.{sys.version_info[1]}'}))",
                ]
            )
        )
        site = Path(info["site"])
        env = TritonEnv(root, python, site, info["libdir"])
        stub = env.dist / "python_backend_stubs" / info["ver"] / "triton_python_backend_stub"
        if not stub.exists():
            raise TritonEnvError(f"nvidia-pytriton ships no Python backend stub for Python {info['ver']} ({stub})")
        dst = env.backends / "python" / "triton_python_backend_stub"
        shutil.copy2(stub, dst)
        os.chmod(dst, 0o755)
        marker = {**_marker(info["ver"]), "site_packages": str(site), "libdir": info["libdir"]}
        (root / ENV_MARKER).write_text(json.dumps(marker, indent=2))
        return env


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL it when its parent goes away."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_LIVE: set[TritonServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


class TritonServer:
    """One ``tritonserver`` process serving ``repo`` on free 127.0.0.1 ports."""

    def __init__(
        self,
        repo: str | Path,
        *,
        env_dir: str | Path | None = None,
        grpc_port: int | None = None,
        http_port: int | None = None,
        log_file: str | Path | None = None,
        ready_timeout_s: float = 90.0,
        model_name: str = DEFAULT_MODEL_NAME,
        verbose_log: bool = False,
        die_with_parent: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """``extra_env``: variables for tritonserver and its Python-backend stubs, e.g.
        ``{"OPENBLAS_NUM_THREADS": "1"}`` (NumPy's BLAS threads in each model instance)."""
        self.repo = Path(repo).resolve()
        self.env_dir = env_dir
        self.grpc_port = grpc_port or free_port("127.0.0.1")
        self.http_port = http_port or free_port("127.0.0.1")
        self.log_file = Path(log_file) if log_file else Path(tempfile.mkdtemp(prefix="shoprank-triton-")) / "triton.log"
        self.ready_timeout_s = ready_timeout_s
        self.model_name = model_name
        self.verbose_log = verbose_log
        # Linux PR_SET_PDEATHSIG: Triton is SIGKILLed if the thread that started it dies (even by
        # SIGKILL). On for the foreground CLI; off by default, since a library caller may start
        # it from a short-lived thread (atexit covers normal interpreter exits).
        self.die_with_parent = die_with_parent
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen | None = None
        self._log_fh = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def shm_prefix(self) -> str:
        """Name prefix of the Python backend's shared-memory regions (removed by stop())."""
        return f"shoprank{os.getpid()}-{self.grpc_port}-"

    def command(self, env: TritonEnv) -> list[str]:
        shm_prefix = self.shm_prefix
        return [
            str(env.tritonserver),
            f"--model-repository={self.repo}",
            f"--backend-directory={env.backends}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--allow-metrics=false",
            "--exit-timeout-secs=5",
            "--strict-readiness=true",
            "--disable-auto-complete-config",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            f"--log-verbose={1 if self.verbose_log else 0}",
        ]

    def start(self) -> TritonServer:
        """Start Triton and wait until the server and the model are ready (or raise, with the log tail)."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not (self.repo / self.model_name / "config.pbtxt").exists():
            raise TritonEnvError(
                f"{self.repo}: no {self.model_name}/config.pbtxt (run python -m shoprank.triton.export)"
            )
        env = ensure_env(self.env_dir)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(env),
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**env.process_env(), **self.extra_env},
            start_new_session=True,  # its own process group: stop() takes the Python stubs with it
            preexec_fn=_die_with_parent if self.die_with_parent and sys.platform == "linux" else None,
        )
        _LIVE.add(self)
        try:
            self.wait_ready(self.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _get(self, path: str, timeout: float = 1.0) -> int:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=timeout) as r:  # noqa: S310 - loopback
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except (urllib.error.URLError, OSError):
            return 0

    def is_ready(self) -> bool:
        return self._get("/v2/health/ready") == 200 and self._get(f"/v2/models/{self.model_name}/ready") == 200

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise TritonEnvError(
                    f"tritonserver exited ({code}) before ready; log {self.log_file}:\n{self.log_tail()}"
                )
            if self.is_ready():
                return
            time.sleep(0.2)
        raise TritonEnvError(f"tritonserver not ready after {timeout_s:.0f}s; log {self.log_file}:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, wait ``grace_s``, then SIGKILL it. Idempotent."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc is not None:  # stubs left behind in the group (the server is gone already)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if proc is not None:  # a killed stub leaves its shared-memory region behind
            for leftover in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def kill(self) -> None:
        """SIGKILL at once (tests: Triton "crashes")."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.stop()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shoprank.triton.server", description="Run Triton in the foreground.")
    ap.add_argument("--repo", help="Triton model repository (python -m shoprank.triton.export --out DIR)")
    ap.add_argument("--env-dir", help=f"isolated Triton venv (default {default_env_dir()})")
    ap.add_argument("--grpc-port", type=int, default=8001)
    ap.add_argument("--http-port", type=int, default=8000)
    ap.add_argument("--log-file", help="server log (default: a temp file, printed)")
    ap.add_argument("--setup-only", action="store_true", help="build the isolated env and exit")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    env = ensure_env(args.env_dir, quiet=False)
    print(f"triton env ready: {env.root} ({time.monotonic() - t0:.1f}s)", flush=True)
    if args.setup_only:
        return 0
    if not args.repo:
        ap.error("--repo is required unless --setup-only")
    server = TritonServer(
        args.repo,
        env_dir=args.env_dir,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        log_file=args.log_file,
        die_with_parent=True,  # a killed foreground process takes Triton with it
    )
    stop = {"now": False}

    def _on_signal(signum: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    server.start()
    print(
        f"triton serving {args.repo} on grpc {server.grpc_url}, http {server.http_url}; log {server.log_file}",
        flush=True,
    )
    try:
        while not stop["now"] and server.is_running():
            time.sleep(0.5)
    finally:
        code = None if server.proc is None else server.proc.poll()
        server.stop()
        print("triton stopped" if code is None else f"triton exited with {code}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
