"""Dependency direction (ARCHITECTURE.md), checked by reading every module's imports:
foundation ← pure core ← services ← cycle ← entry points; entry points never import each other;
pure modules do no I/O and read no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "forecast"
LAYERS = {
    "errors": 0, "settings": 0, "catalogue": 0, "frames": 0, "logs": 0,
    "qc": 1, "features": 1, "alerts": 1,
    "ingest": 2, "modelling": 2, "storage": 2, "notify": 2, "simulate": 2, "importer": 2,
    "collect": 2, "training": 2,
    "cycle": 3,
    "api": 4, "scheduler": 4, "cli": 4,
}
PURE = {"qc", "features", "alerts"}


def _top(module_path: Path) -> str:
    rel = module_path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for n in names:
            parts = n.split(".")
            if parts[0] == "forecast" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] != "forecast":
                found.add("ext:" + parts[0])
    return found


MODULES = sorted(p for p in PKG.rglob("*.py") if _top(p) in LAYERS)


def test_every_top_level_module_has_a_layer() -> None:
    tops = {_top(p) for p in PKG.rglob("*.py")} - {"__init__"}
    assert tops <= set(LAYERS), f"add {sorted(tops - set(LAYERS))} to LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path: Path) -> None:
    me = _top(path)
    for dep in _imports(path):
        if dep.startswith("ext:") or dep == me or dep not in LAYERS:
            continue
        assert LAYERS[dep] < LAYERS[me] or (LAYERS[dep] == LAYERS[me] and LAYERS[me] < 4), (
            f"{path.relative_to(PKG)} (layer {LAYERS[me]}) imports {dep} (layer {LAYERS[dep]})")


@pytest.mark.parametrize("path", [p for p in MODULES if _top(p) in PURE],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_pure_modules_do_no_io(path: Path) -> None:
    forbidden = {"ext:httpx", "ext:sqlalchemy", "ext:requests", "ext:socket", "storage",
                 "ingest", "ext:time"}
    assert not (_imports(path) & forbidden)
    text = path.read_text(encoding="utf-8")
    for call in ("datetime.now(", ".utcnow(", "open(", "read_csv(", "time.time("):
        assert call not in text, f"{path.name} calls {call}"
