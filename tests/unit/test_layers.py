"""The house's floors: every import (module-level or inside a function) points down or level, and no module imports
in a circle. A new back arrow or cycle fails here with the edge named. ``LAYERS`` lists the floors, lowest first.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "edgeres"
LAYERS = [
    ["edgeres", "errors", "progress", "hw", "paths", "config", "archs", "distributed", "ssh_options", "remote", "interrupts",
     "resources"],  # resources: package data, and the standalone infer.py a bundle ships (it imports no edgeres)
    ["artifacts", "targets"],
    ["data", "onnx_limits"],
    ["onnx_model", "onnx_opset", "models"],
    ["onnx_fp16", "backends", "energy"],  # runtimes and meters: Session, latency, ONNX Runtime, torch, TensorRT
    ["train", "export", "import_onnx", "quantize", "build", "device_setup"],  # one stage per arrow of the data path
    ["bench", "predict", "bundle", "triton_config"],  # what a model does with images, and what ships it
    ["pipeline"],
    ["cli", "__main__"],
]
LAYER = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__")


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edgeres"


def imports() -> dict[str, set[str]]:
    """Every edgeres module and the edgeres modules it imports, anywhere in its text."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    out: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        me = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgeres"):
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("edgeres")]
            out[me].update(n for n in names if n != me)
    return out


def test_every_room_has_a_floor():
    rooms = {room(m) for m in imports()} | {room(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert sorted(rooms - set(LAYER)) == []


def test_no_import_points_up():
    # the root package's lazy re-export (``edgeres.load``) is the API's front door, not an arrow of the design
    up = [f"{a} -> {b}" for a, targets in imports().items() for b in targets
          if room(a) != room(b) and LAYER[room(b)] > LAYER[room(a)] and a != "edgeres"]
    assert up == []


def test_no_import_cycle():
    graph = imports()
    for pkg in list(graph):  # a package's __init__ re-exports its own modules: not an arrow of the design
        graph[pkg] = {t for t in graph[pkg] if not t.startswith(pkg + ".")}
    seen: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if seen.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in seen:
                visit(t)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m)
    assert cycles == []


def _lazy_re_export(node: ast.AST) -> bool:
    """A module ``__getattr__`` (PEP 562) whose body only imports and returns names: a re-export made lazily."""
    if not isinstance(node, ast.FunctionDef) or node.name != "__getattr__":
        return False
    allowed = (ast.If, ast.ImportFrom, ast.Return, ast.Raise, ast.Expr)
    return all(isinstance(n, allowed) for b in node.body for n in ast.walk(b) if isinstance(n, ast.stmt))


def test_init_files_only_re_export():
    fat = []
    for init in PACKAGE.rglob("__init__.py"):
        tree = ast.parse(init.read_text())
        defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and not _lazy_re_export(n)]
        lines = len(init.read_text().splitlines())
        if defs or lines > 40:
            fat.append(f"{init.relative_to(PACKAGE.parent)}: {len(defs)} definitions, {lines} lines")
    assert fat == []
