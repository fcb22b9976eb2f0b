"""Champions, registration, promotion and rollback: the one place that decides which model
version forecasts a river.

The champion record is ``storage.models`` (champion events in the database); the registry
directory holds the artifacts. Every change commits with its audit row in one transaction.
The cycle, the CLI and the API all ask ``champion`` / ``champion_models``.

Loaded champions stay loaded in the process (``champion_models``): a version directory is
written once and never changed, so a tick after the first loads nothing. Each use still checks
that the version's ``manifest.json`` and ``model.json`` are the files that were loaded (size and
modification time), and a river's entry is replaced when its champion changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from forecast.errors import RegistryError
from forecast.features import FutureRain
from forecast.modelling import registry
from forecast.modelling.lgbm import LeadModels
from forecast.pipeline.context import Context
from forecast.storage import audit, models
from forecast.storage.engine import transaction


def register(ctx: Context, river_id: str, lead_models: LeadModels, *,
             window: tuple[datetime, datetime], data_sha256: str, backtest: Mapping[str, Any],
             future_rain: FutureRain | None, upstream: Sequence[str] | None, source: str,
             actor: str, pooled: Mapping[str, Any] | None = None) -> registry.Version:
    """Write a new version to the registry and record it (``model_versions`` + audit)."""
    now = ctx.clock.now()
    version = registry.register(ctx.models_root, river_id, lead_models, created_at=now,
                                window=window, data_sha256=data_sha256, backtest=backtest,
                                future_rain=future_rain, upstream=upstream, source=source,
                                pooled=pooled)
    with transaction(ctx.engine, f"recording model {river_id}/{version.version}") as conn:
        models.register_model_version(conn, river_id=river_id, version=version.version,
                                      path=str(version.path),
                                      manifest=registry.jsonable(version.manifest),
                                      created_at=now)
        audit.audit(conn, at=now, actor=actor, action="model.register",
                    target=f"{river_id}/{version.version}",
                    details={"data_sha256": data_sha256})
    return version


def champion(ctx: Context, river_id: str) -> str | None:
    """The champion version of a river (None when none was promoted)."""
    with transaction(ctx.engine, "reading the champion") as conn:
        return models.champion(conn, river_id)


ModelProvider = Callable[[str], tuple[str, LeadModels] | None]
"""river id → (model version, trained models), or None when the river has no model."""


_Key = tuple[str, str]                        # (registry root, river id)
_Stamp = tuple[tuple[int, int], ...]          # (size, mtime) of manifest.json and model.json
_loaded: dict[_Key, tuple[str, _Stamp, LeadModels]] = {}
_loaded_lock = threading.Lock()


def _stamp(path: Path) -> _Stamp:
    out = []
    for name in ("manifest.json", "model.json"):
        try:
            st = (path / name).stat()
        except OSError:
            return ()
        out.append((st.st_size, st.st_mtime_ns))
    return tuple(out)


def _load_champion(root: Path, river_id: str, version: str) -> LeadModels:
    """The loaded models of a champion, from this process's cache when the version's files
    are the ones loaded; otherwise loaded (manifest checked now, boosters read, hash-checked
    and parsed when they first predict: ``registry.load_version(lazy=True)``)."""
    key = (str(Path(root).resolve()), river_id)
    stamp = _stamp(Path(root) / river_id / version)
    with _loaded_lock:
        hit = _loaded.get(key)
    if hit is not None and hit[0] == version and hit[1] == stamp and stamp:
        return hit[2]
    _, lead = registry.load_version(root, river_id, version, lazy=True)
    with _loaded_lock:
        _loaded[key] = (version, stamp, lead)
    return lead


def forget_loaded_models() -> None:
    """Drop every model this process keeps loaded (tests; after restoring a registry)."""
    with _loaded_lock:
        _loaded.clear()


def champion_models(ctx: Context) -> ModelProvider:
    """River id → (champion version, loaded models) or None; champions read once, models
    loaded (and their manifests checked) when asked for, and kept loaded in the process for
    the next call (module docstring)."""
    with transaction(ctx.engine, "reading the champions") as conn:
        champs = models.champions(conn)

    def provider(river_id: str) -> tuple[str, LeadModels] | None:
        v = champs.get(river_id)
        if v is None:
            return None
        return v, _load_champion(ctx.models_root, river_id, v)

    return provider


def list_versions(ctx: Context, river_id: str | None = None) -> pd.DataFrame:
    """Registry versions with ``champion`` (bool) from the champion record."""
    table = registry.list_versions(ctx.models_root, river_id)
    with transaction(ctx.engine, "reading the champions") as conn:
        champs = models.champions(conn)
    table.insert(3, "champion", [champs.get(r) == v for r, v in
                                 zip(table["river_id"], table["version"], strict=True)])
    return table


def _ensure_recorded(conn: Any, v: registry.Version) -> None:
    if not models.is_registered(conn, v.river_id, v.version):
        # registered before the database was in use: record it now
        models.register_model_version(
            conn, river_id=v.river_id, version=v.version, path=str(v.path),
            manifest=registry.jsonable(v.manifest),
            created_at=datetime.fromisoformat(str(v.manifest["created_at"])))


def promote(ctx: Context, river_id: str, version: str, *, force: bool = False,
            evaluate: registry.Evaluator | None = None, actor: str = "forecast") -> str:
    """Make ``version`` the champion after the champion–challenger check
    (``registry.promotion_note``); returns the message. Audited."""
    now = ctx.clock.now()
    current = champion(ctx, river_id)
    note = registry.promotion_note(ctx.models_root, river_id, version, current, force=force,
                                   evaluate=evaluate)
    v, _ = registry.load_version(ctx.models_root, river_id, version)
    with transaction(ctx.engine, f"promoting {river_id}/{version}") as conn:
        if models.champion(conn, river_id) != current:
            raise RegistryError(f"{river_id}: the champion changed while {version} was being "
                                "judged; run the promotion again")
        _ensure_recorded(conn, v)
        models.add_champion_event(conn, river_id=river_id, version=version, action="promote",
                                  at=now, actor=actor, note=note)
        audit.audit(conn, at=now, actor=actor, action="model.promote",
                    target=f"{river_id}/{version}",
                    details={"previous": current, "note": note, "force": force})
    return f"{river_id}: {version} is champion ({note})"


def rollback(ctx: Context, river_id: str, *, actor: str = "forecast") -> str:
    """Restore the previous champion (it must still load); returns its version. Audited."""
    now = ctx.clock.now()
    with transaction(ctx.engine, f"rolling back {river_id}") as conn:
        stack = models.champion_stack(models.champion_history(conn, river_id))
        if len(stack) < 2:
            raise RegistryError(f"{river_id}: no earlier champion to roll back to")
        previous, current = stack[-2], stack[-1]
        registry.load_version(ctx.models_root, river_id, previous)  # refuses a damaged one
        models.add_champion_event(conn, river_id=river_id, version=previous,
                                  action="rollback", at=now, actor=actor,
                                  note=f"rollback from {current}")
        audit.audit(conn, at=now, actor=actor, action="model.rollback",
                    target=f"{river_id}/{previous}", details={"from": current})
    return previous
