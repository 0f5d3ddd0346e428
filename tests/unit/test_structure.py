"""The package's shape, checked from the source (no imports, no Ray):

- no import cycle between subpackages of ``shoprank`` (``shoprank.X``), counting top-level,
  function-local and ``TYPE_CHECKING`` imports and ``importlib.import_module("shoprank...")``;
- no module over 500 lines unless its docstring gives the reason in a line containing
  ``over 500 lines because`` (e.g. "Over 500 lines because the loaders share one validation table.");
- no PYTHONPATH and no ``sys.path`` manipulation in the project's own code, except the Triton
  child environment (it runs inside Triton's Python, which does not have the package installed);
- README.md and docs/ link to files that exist and name ``shoprank`` modules and names that exist.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
PACKAGE_ROOT = REPO / "platform"
PACKAGE = "shoprank"
GENERATED = PACKAGE_ROOT / PACKAGE / "v1"  # protoc output, built at install time
PROJECT_DIRS = ("platform", "jobs", "deployments", "bench", "tests")
MAX_LINES = 500
LONG_MODULE_REASON = re.compile(r"over 500 lines because\s+\S", re.IGNORECASE)
# The Triton child environment may set its own: server.py starts Triton with the isolated
# triton-env's site-packages on PYTHONPATH, and the backend's model.py (loaded by Triton's
# Python, where shoprank is not installed) puts its own folder on sys.path.
SYS_PATH_ALLOWED = {"platform/shoprank/triton/server.py", "platform/shoprank/triton/backend/model.py"}
# This test checks for the word; test_packaging.py and test_entrypoints.py strip an inherited
# PYTHONPATH from their subprocesses so the installed package is exercised alone.
PYTHONPATH_CHECKERS = {"test_structure.py", "test_packaging.py", "test_entrypoints.py"}
CONFIG_SUFFIXES = {".py", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".sh", ".json"}


def _python_files(*dirs: str) -> Iterator[Path]:
    for d in dirs:
        for path in sorted((REPO / d).rglob("*.py")):
            if GENERATED in path.parents or "__pycache__" in path.parts or ".egg-info" in str(path):
                continue
            yield path


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = PACKAGE_ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file() or base == GENERATED


def _imported_modules(path: Path, code: str | None = None) -> Iterator[tuple[str, int]]:
    """Every module ``path`` (or ``code`` as if at ``path``) imports, anywhere in the file, with the line."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text() if code is None else code, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                yield (sub if _is_module(sub) else source), node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno


def _subpackage(module: str) -> str | None:
    """``shoprank.train.loop`` -> ``shoprank.train``; top-level modules are their own node."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return ".".join(parts[:2]) if len(parts) > 1 else PACKAGE


def subpackage_graph() -> dict[str, dict[str, list[str]]]:
    """``graph[a][b]``: the import sites (``file:line``) by which subpackage ``a`` imports ``b``."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in _python_files(f"platform/{PACKAGE}"):
        src = _subpackage(_module_name(path))
        for target, line in _imported_modules(path):
            dst = _subpackage(target)
            site = f"{path.relative_to(REPO)}:{line}"
            if src and dst and dst != src and site not in graph[src][dst]:
                graph[src][dst].append(site)
    return graph


def strongly_connected(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one node (each one holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _cycle_in(graph: dict[str, dict[str, list[str]]], component: list[str]) -> list[str]:
    """One concrete cycle through the component's first node (breadth-first: a shortest one)."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, {})):
            if w == start:
                return paths[v] + [start]
            if w in members and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"no cycle in component {component}")


def describe_cycles(graph: dict[str, dict[str, list[str]]]) -> str:
    lines = []
    for comp in strongly_connected(graph):
        cycle = _cycle_in(graph, comp)
        lines.append(f"cycle among {', '.join(comp)}: {' -> '.join(cycle)}")
        for a, b in zip(cycle, cycle[1:], strict=False):
            lines.append(f"  {a} -> {b}: {', '.join(graph[a][b][:4])}{' ...' if len(graph[a][b]) > 4 else ''}")
    return "\n".join(lines)


def test_import_graph_walker_sees_relative_local_and_dynamic_imports() -> None:
    """The walker itself: a cycle hidden in a function-local import is found."""
    graph = {"shoprank.a": {"shoprank.b": ["a.py:1"]}, "shoprank.b": {"shoprank.a": ["b.py:9"]}, "shoprank.c": {}}
    assert strongly_connected(graph) == [["shoprank.a", "shoprank.b"]]
    assert "shoprank.a -> shoprank.b -> shoprank.a" in describe_cycles(graph)
    code = (
        "from . import loop\nfrom ..eval import metrics\nimport shoprank.model.text\n"
        "def f():\n    from shoprank.serving.pipeline import x\n"
        "    importlib.import_module('shoprank.retrieval.index')\n"
    )
    path = PACKAGE_ROOT / PACKAGE / "train" / "_walker_probe.py"
    seen = {m for m, _ in _imported_modules(path, code)}
    assert {"shoprank.train.loop", "shoprank.eval.metrics", "shoprank.model.text"} <= seen
    assert {"shoprank.serving.pipeline", "shoprank.retrieval.index"} <= seen


def test_no_import_cycle_between_subpackages() -> None:
    graph = subpackage_graph()
    assert graph, "the walker found no imports at all"
    cycles = describe_cycles(graph)
    assert not cycles, f"import cycles between subpackages of {PACKAGE}:\n{cycles}"


def test_no_module_over_500_lines_without_a_reason() -> None:
    long = []
    for path in _python_files(*PROJECT_DIRS):
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            if not LONG_MODULE_REASON.search(doc):
                long.append(f"{path.relative_to(REPO)}: {n} lines")
    assert not long, (
        f"modules over {MAX_LINES} lines with no 'over {MAX_LINES} lines because ...' in their docstring:\n"
        + "\n".join(long)
    )


def _sys_path_edits(tree: ast.AST) -> Iterator[int]:
    """Lines that change ``sys.path`` (``sys.path.insert/append/...``, assignment, ``site.addsitedir``)."""
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "addsitedir":
                yield node.lineno
            target = node.func.value
        elif isinstance(node, ast.Assign | ast.AugAssign):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                target = t.value if isinstance(t, ast.Subscript) else t
                if ast.unparse(target) == "sys.path":
                    yield node.lineno
            continue
        if target is not None and ast.unparse(target) == "sys.path":
            yield node.lineno


def test_no_pythonpath_or_sys_path_in_project_code() -> None:
    found = []
    for d in PROJECT_DIRS:
        for path in sorted((REPO / d).rglob("*")):
            rel = str(path.relative_to(REPO))
            skip = "__pycache__" in path.parts or ".egg-info" in rel or GENERATED in path.parents
            if skip or not path.is_file() or path.suffix not in CONFIG_SUFFIXES:
                continue
            text = path.read_text(errors="replace")
            allowed = rel in SYS_PATH_ALLOWED or (rel.startswith("tests/") and path.name in PYTHONPATH_CHECKERS)
            if "PYTHONPATH" in text and not allowed:
                found += [f"{rel}:{i}: PYTHONPATH" for i, ln in enumerate(text.splitlines(), 1) if "PYTHONPATH" in ln]
            if path.suffix == ".py" and rel not in SYS_PATH_ALLOWED:
                found += [f"{rel}:{line}: sys.path" for line in _sys_path_edits(ast.parse(text, rel))]
    for top in ("Makefile", "cluster.yaml", "setup.py", "pyproject.toml"):
        text = (REPO / top).read_text()
        found += [f"{top}:{i}: PYTHONPATH" for i, ln in enumerate(text.splitlines(), 1) if "PYTHONPATH" in ln]
    assert not found, "PYTHONPATH / sys.path manipulation in the project's own code:\n" + "\n".join(found)


def test_sys_path_detector_sees_every_form() -> None:
    code = (
        "import sys, site\nsys.path.insert(0, 'x')\nsys.path.append('y')\nsys.path[:0] = ['z']\n"
        "sys.path = []\nsite.addsitedir('w')\nsys.path += ['v']\nprint(sys.path)\n"
    )
    assert sorted(set(_sys_path_edits(ast.parse(code)))) == [2, 3, 4, 5, 6, 7]


def _defines(path: Path, name: str) -> bool:
    """Whether module ``path`` defines or imports ``name`` at any level."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
            return True
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            return True
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
    return False


def _names_a_module_or_attribute(dotted: str) -> bool:
    """``shoprank.a.b[.attr]`` names a module of the source tree, or a name one defines;
    ``shoprank.v1.*`` (generated at install time) names the proto package."""
    parts = dotted.split(".")
    if parts[:2] == [PACKAGE, "v1"]:
        return True
    for i in range(len(parts), 0, -1):
        base = PACKAGE_ROOT.joinpath(*parts[:i])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            return i == len(parts) or _defines(module, parts[i])
    return False


def test_readme_and_docs_links_and_module_names_resolve() -> None:
    """After a move the front door and docs/ still point at files and modules that exist."""
    broken = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()
        for m in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in m.group(1) and not (doc.parent / m.group(1)).exists():
                broken.append(f"{doc.relative_to(REPO)}: link {m.group(1)}")
        for m in re.finditer(rf"\b{PACKAGE}(?:\.[A-Za-z_]\w*)+", text):
            if not _names_a_module_or_attribute(m.group(0)):
                broken.append(f"{doc.relative_to(REPO)}: {m.group(0)}")
    assert not broken, "README/docs point at things that do not exist:\n" + "\n".join(broken)
