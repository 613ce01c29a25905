"""The governor's shape (docs/governor.md, "How it is built"): small modules, an acyclic import
graph, ComfyUI's protocol only in the adapter's modules, and a facade without logic."""

from __future__ import annotations

import ast
import re

from harness.paths import REPO_ROOT

GOVERNOR = REPO_ROOT / "governor"
COMFY_SIDE = {p.stem for p in GOVERNOR.glob("comfy_*.py")}  # the adapter and the wire protocol it owns
MAX_LINES = 300


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text()) for p in sorted(GOVERNOR.glob("*.py"))}


def _imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return found - {"__init__"}


def test_every_module_is_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in GOVERNOR.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_import_graph_is_acyclic_and_only_the_comfy_side_imports_the_protocol():
    graph = {name: _imports(tree) for name, tree in _modules().items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dep in graph.get(name, ()):
            visit(dep, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())
    assert {name for name, deps in graph.items() if "comfy_protocol" in deps} <= COMFY_SIDE
    assert {name for name, deps in graph.items() if deps & {"comfy_adapter", "comfy_queue"}} <= COMFY_SIDE


def test_comfyui_event_names_and_imports_stay_on_the_comfy_side():
    pattern = re.compile(r"execution_(error|interrupted|start|success|cached)|[\"']executing[\"']")
    for path in GOVERNOR.glob("*.py"):
        if path.stem in COMFY_SIDE:
            continue
        text = path.read_text()
        assert not pattern.search(text), f"{path.name} names a ComfyUI event"
        assert not re.search(r"^\s*(import|from)\s+(comfy|execution|server|folder_paths)\b", text, re.M), path.name


def test_the_facade_only_forwards():
    facade = _modules()["facade"]
    cls = next(n for n in facade.body if isinstance(n, ast.ClassDef) and n.name == "Governor")
    for method in (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name != "__init__"):
        body = [s for s in method.body if not isinstance(s, ast.Expr) or not isinstance(s.value, ast.Constant)]
        assert len(body) == 1 and isinstance(body[0], (ast.Return, ast.Expr)), f"Governor.{method.name} has logic"
        assert not any(isinstance(n, (ast.If, ast.For, ast.While, ast.With, ast.Try)) for n in ast.walk(method))
