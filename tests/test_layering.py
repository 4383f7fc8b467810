"""Layering (docs/DESIGN.md "Layers"): arrows point down only.

    cli/, pipeline/, api.py     outer ring
    report/                     renders records; imports no pipeline, no cli
    core + base                 attribution, pruning, export, occlusion, targets, models, data;
                                errors, fileio, onnx_graph, ort_session, onnx_safety, training, ...

Every ``.py`` file under ``etdeploy/`` is parsed with :mod:`ast` and every ``import`` /
``from ... import`` node is checked, function-local ones included (a lazy import is still a
dependency), as are ``importlib.import_module("...")`` / ``__import__("...")`` calls with a literal name.
``from etdeploy import api`` counts as importing ``etdeploy.api``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "etdeploy"

OUTER = ("cli", "pipeline", "api")
REPORT = ("report",)
CORE = ("attribution", "pruning", "export", "occlusion", "targets", "models", "data", "importing", "packaging",
        "assurance", "compress", "archive")
BASE = ("errors", "fileio", "onnx_graph", "ort_session", "onnx_safety", "training", "progress", "vocab",
        "records")
PACKAGE_INIT = ("__init__",)  # etdeploy/__init__.py: version + lazy re-exports of etdeploy.models

#: What each layer must never import (module prefixes).
FORBIDDEN = {
    "core": ("etdeploy.cli", "etdeploy.pipeline", "etdeploy.report", "etdeploy.api"),
    "report": ("etdeploy.cli", "etdeploy.pipeline", "etdeploy.api"),
    "init": ("etdeploy.cli", "etdeploy.pipeline", "etdeploy.report", "etdeploy.api"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(path: Path) -> str | None:
    rel = path.relative_to(PACKAGE)
    top = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    if top in OUTER:
        return "outer"
    if top in REPORT:
        return "report"
    if top in CORE or top in BASE:
        return "core"
    if top in PACKAGE_INIT:
        return "init"
    return None


def imported_modules(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path`` (or in ``source``, read as if it were
    that file), nested ones included."""
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(layer: str) -> list[str]:
    """``file:line imports module`` for every forbidden import of ``layer``'s files, sorted."""
    out = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if layer_of(path) != layer:
            continue
        for line, module in imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[layer]):
                out.add(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return sorted(out)


def test_every_module_belongs_to_a_layer():
    unclassified = [str(p.relative_to(PACKAGE.parent)) for p in sorted(PACKAGE.rglob("*.py")) if layer_of(p) is None]
    assert unclassified == [], f"add these modules to a layer in {Path(__file__).name}: {unclassified}"


def test_import_scanner_sees_nested_relative_and_dynamic_imports():
    source = ("import os\n"
              "def f():\n    from etdeploy import api\n    from ..pipeline import runner\n"
              "    from . import geometry\n"
              "    import importlib\n    importlib.import_module('etdeploy.cli.main')\n")
    found = {m for _, m in imported_modules(PACKAGE / "occlusion" / "probe.py", source)}
    assert found == {"os", "etdeploy", "etdeploy.api", "etdeploy.pipeline", "etdeploy.pipeline.runner",
                     "etdeploy.occlusion", "etdeploy.occlusion.geometry", "importlib", "etdeploy.cli.main"}
    assert layer_of(PACKAGE / "occlusion" / "probe.py") == "core"
    assert layer_of(PACKAGE / "report" / "x.py") == "report" and layer_of(PACKAGE / "api.py") == "outer"


def test_core_and_base_import_no_outer_ring():
    assert violations("core") == []


def test_package_init_imports_no_outer_ring():
    assert violations("init") == []


def test_report_imports_no_pipeline_or_cli():
    assert violations("report") == []
