"""Dependency direction (ARCHITECTURE.md, README "Architecture"), checked by reading every
module's imports:

    foundation (errors, settings, clock, catalogue, frames, logs)
      ← pure core (qc, features, alerts)
      ← services (ingest, modelling, storage, notify, simulate; never each other)
      ← pipeline (the only composer)
      ← entry points (api, scheduler, cli; never each other, never a service directly)

Pure modules do no I/O and read no clock; only storage imports SQLAlchemy, and storage and
modelling never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "forecast"
FOUNDATION = {"errors", "settings", "clock", "catalogue", "frames", "logs"}
PURE = {"qc", "features", "alerts"}
SERVICES = {"ingest", "modelling", "storage", "notify", "simulate"}
PIPELINE = {"pipeline"}
ENTRY = {"api", "scheduler", "cli"}
LAYER = {**dict.fromkeys(FOUNDATION, 0), **dict.fromkeys(PURE, 1),
         **dict.fromkeys(SERVICES, 2), **dict.fromkeys(PIPELINE, 3), **dict.fromkeys(ENTRY, 4)}


def _top(module_path: Path) -> str:
    return module_path.relative_to(PKG).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Project packages (``pipeline``) and external top-level modules (``ext:httpx``)."""
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


MODULES = sorted(p for p in PKG.rglob("*.py") if _top(p) in LAYER)


def _allowed(me: str, dep: str) -> bool:
    if dep == me:
        return True
    lm, ld = LAYER[me], LAYER[dep]
    if lm == 4:   # entry points: foundation, pure core and the pipeline only
        return ld in (0, 1, 3)
    if lm in (0, 1):   # foundation and pure modules may use lower layers of their own kind
        return ld < lm or (ld == lm == 0)
    return ld < lm


def test_every_top_level_module_has_a_layer() -> None:
    tops = {_top(p) for p in PKG.rglob("*.py")} - {"__init__"}
    assert tops <= set(LAYER), f"add {sorted(tops - set(LAYER))} to a layer"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path: Path) -> None:
    me = _top(path)
    for dep in _imports(path):
        if dep.startswith("ext:") or dep not in LAYER:
            continue
        assert _allowed(me, dep), (
            f"{path.relative_to(PKG)} ({me}, layer {LAYER[me]}) may not import {dep} "
            f"(layer {LAYER[dep]})")


@pytest.mark.parametrize("path", [p for p in MODULES if _top(p) in PURE],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_pure_modules_do_no_io(path: Path) -> None:
    forbidden = {"ext:httpx", "ext:sqlalchemy", "ext:requests", "ext:socket", "ext:time",
                 "ext:os", "ext:pathlib", "clock"}
    assert not (_imports(path) & forbidden)
    text = path.read_text(encoding="utf-8")
    for call in ("datetime.now(", ".utcnow(", "open(", "read_csv(", "time.time(",
                 "Timestamp.now(", "pd.Timestamp.utcnow("):
        assert call not in text, f"{path.name} calls {call}"


@pytest.mark.parametrize("path", [p for p in MODULES if _top(p) != "storage"],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_only_storage_speaks_sql(path: Path) -> None:
    """SQL lives in storage; others may name SQLAlchemy types (Engine, Connection) only."""
    text = path.read_text(encoding="utf-8")
    for sql in ("sa.select(", "sa.text(", ".execute(", "engine.begin(", "engine.connect("):
        assert sql not in text, f"{path.relative_to(PKG)} runs SQL ({sql}): move it to storage"


def test_the_rules_catch_a_bad_import(tmp_path: Path) -> None:
    """The checker itself: a service importing another service, or an entry point importing
    storage, is refused."""
    assert not _allowed("modelling", "storage")
    assert not _allowed("storage", "modelling")
    assert not _allowed("api", "storage")
    assert not _allowed("cli", "api")
    assert not _allowed("features", "qc")
    assert _allowed("pipeline", "storage") and _allowed("cli", "pipeline")
    bad = tmp_path / "m.py"
    bad.write_text("from forecast.storage.engine import transaction\nimport httpx\n")
    assert _imports(bad) == {"storage", "ext:httpx"}
