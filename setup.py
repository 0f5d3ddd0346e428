"""Build step: generate the gRPC/protobuf code from ``protos/`` into the package.

``protos/shoprank/v1/*.proto`` (package ``shoprank.v1``) compile to ``platform/shoprank/v1/``,
i.e. the importable ``shoprank.v1`` subpackage, so protoc's own imports
(``from shoprank.v1 import search_pb2``) are right as generated. This runs on every
``pip install`` (editable or not) through ``build_py``; the output is gitignored. Everything
else about the package is declared in ``pyproject.toml``.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "protos"
OUT_ROOT = ROOT / "platform"
GENERATED_PACKAGE = "shoprank.v1"


def generate_protos() -> None:
    """Run grpc_tools.protoc on every .proto under protos/ (python, pyi and grpc stubs)."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p) for p in PROTO_ROOT.rglob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={OUT_ROOT}",
            f"--pyi_out={OUT_ROOT}", f"--grpc_python_out={OUT_ROOT}", *protos]  # fmt: skip
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos}")
    init = OUT_ROOT / "shoprank" / "v1" / "__init__.py"
    init.write_text('"""Generated from protos/shoprank/v1 at build time (setup.py); do not edit."""\n')


class BuildPyWithProtos(build_py):
    """``build_py`` that generates ``shoprank.v1`` first and packages it."""

    def run(self) -> None:
        generate_protos()
        if GENERATED_PACKAGE not in (self.packages or []):
            self.packages = [*(self.packages or []), GENERATED_PACKAGE]
            self.distribution.packages = [*(self.distribution.packages or []), GENERATED_PACKAGE]
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
