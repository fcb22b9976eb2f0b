"""Champions, registration, promotion and rollback: the one place that decides which model
version forecasts a river.

The champion record is ``storage.models`` (champion events in the database); the registry
directory holds the artifacts. Every change commits with its audit row in one transaction.
The cycle, the CLI and the API all ask ``champion`` / ``champion_models``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
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


def champion_models(ctx: Context) -> ModelProvider:
    """River id → (champion version, loaded models) or None; champions read once, models
    loaded (and their manifests checked) when asked for."""
    with transaction(ctx.engine, "reading the champions") as conn:
        champs = models.champions(conn)

    def provider(river_id: str) -> tuple[str, LeadModels] | None:
        v = champs.get(river_id)
        if v is None:
            return None
        version, lead = registry.load_version(ctx.models_root, river_id, v)
        return version.version, lead

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
