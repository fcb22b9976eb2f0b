"""Repository functions for stations, rain vintages, forecasts, cycle runs, model versions and
the audit log. (Observations and the raw archive have their own modules.) These functions and
their siblings are the only places that issue SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from forecast import frames
from forecast.catalogue import Catalogue
from forecast.errors import StorageError
from forecast.storage.bulk import bulk_load
from forecast.storage.tables import (
    audit_log,
    cycle_river_outcomes,
    cycle_runs,
    forecast_runs,
    forecast_values,
    model_versions,
    rain_vintages,
    stations,
)


def _insert(conn: Connection, table: sa.Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def sync_stations(engine: Engine, catalogue: Catalogue) -> int:
    """Insert or update one row per gauge and rain gauge of the catalogue; returns the count."""
    rows: list[dict[str, Any]] = []
    for r in catalogue.rivers:
        for g in r.gauges:
            rows.append(dict(station_id=g.code, river_id=r.id, kind=g.kind, variable=g.variable,
                             name_ja=g.name_ja, lat=g.lat, lon=g.lon, provisional=g.provisional,
                             meta={"source": g.source, "name_en": g.name_en}))
        for rg in r.rain_gauges:
            rows.append(dict(station_id=rg.code, river_id=r.id, kind="rain", variable="rain_mm",
                             name_ja=rg.name_ja, lat=rg.lat, lon=rg.lon,
                             provisional=rg.provisional,
                             meta={"source": rg.source, "network": rg.network}))
    # A rain gauge shared by several rivers is stored once (first river owns it).
    unique = list({row["station_id"]: row for row in reversed(rows)}.values())
    try:
        with engine.begin() as conn:
            ins = _insert(conn, stations)
            ins = ins.on_conflict_do_update(
                index_elements=["station_id"],
                set_={c: ins.excluded[c] for c in
                      ("river_id", "kind", "variable", "name_ja", "lat", "lon", "provisional",
                       "meta")},
            )
            conn.execute(ins, unique)
    except SQLAlchemyError as exc:
        raise StorageError(f"syncing stations failed: {exc}") from exc
    return len(unique)


def upsert_rain_vintages(engine: Engine, df: pd.DataFrame, *, now: datetime) -> int:
    """Write rain-vintage rows (``frames.rain_vintages`` contract); a re-issued value replaces
    the old one. Returns the number of rows written."""
    df = frames.rain_vintages(df)
    if df.empty:
        return 0
    stage = sa.Table("stage_rain_vintages", sa.MetaData(),
                     *(sa.Column(c.name, c.type) for c in rain_vintages.columns),
                     prefixes=["TEMPORARY"])
    try:
        with engine.begin() as conn:
            stage.create(conn)
            try:
                bulk_load(conn, stage, df.assign(ingested_at=pd.Timestamp(now)))
                ins = _insert(conn, rain_vintages).from_select(
                    [c.name for c in stage.columns], sa.select(stage).where(sa.true()))
                ins = ins.on_conflict_do_update(
                    index_elements=["product", "catchment_id", "issued_at", "valid_at"],
                    set_={"value": ins.excluded.value, "ingested_at": ins.excluded.ingested_at},
                )
                conn.execute(ins)
            finally:
                stage.drop(conn)
    except SQLAlchemyError as exc:
        raise StorageError(f"writing rain vintages failed: {exc}") from exc
    return len(df)


def read_rain_vintages(engine: Engine, *, product: str | None = None,
                       issued_before: datetime | None = None,
                       issued_after: datetime | None = None,
                       catchment_id: str | None = None) -> pd.DataFrame:
    """Rain vintages, optionally for one product, one catchment and an issue-time window
    [after, before]."""
    t = rain_vintages
    q = sa.select(t.c.product, t.c.catchment_id, t.c.issued_at, t.c.valid_at, t.c.value)
    if product is not None:
        q = q.where(t.c.product == product)
    if catchment_id is not None:
        q = q.where(t.c.catchment_id == catchment_id)
    if issued_before is not None:
        q = q.where(t.c.issued_at <= issued_before)
    if issued_after is not None:
        q = q.where(t.c.issued_at >= issued_after)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(t.c.catchment_id, t.c.issued_at, t.c.valid_at)).all()
    df = pd.DataFrame(rows, columns=list(frames.RAIN_VINTAGE_COLUMNS))
    for c in ("issued_at", "valid_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return frames.rain_vintages(df)


def start_cycle(engine: Engine, *, issued_at: datetime, started_at: datetime,
                trigger: str) -> int:
    """Record the start of a forecast cycle; returns its id."""
    with engine.begin() as conn:
        return int(conn.execute(
            cycle_runs.insert().values(issued_at=issued_at, started_at=started_at,
                                       trigger=trigger, status="running")
            .returning(cycle_runs.c.id)
        ).scalar_one())


def finish_cycle(engine: Engine, cycle_id: int, *, finished_at: datetime, status: str,
                 outcomes: Iterable[dict[str, Any]], message: str | None = None) -> None:
    """Close a cycle with its per-river outcomes (river_id, status, model_version, message)."""
    with engine.begin() as conn:
        rows = [dict(cycle_id=cycle_id, model_version=None, message=None) | o for o in outcomes]
        if rows:
            conn.execute(cycle_river_outcomes.insert(), rows)
        conn.execute(cycle_runs.update().where(cycle_runs.c.id == cycle_id).values(
            finished_at=finished_at, status=status, message=message))


def save_forecast(engine: Engine, fc: pd.DataFrame, *, model_variant: str,
                  input_cutoff: datetime, degraded: bool, inputs: dict[str, Any],
                  created_at: datetime, cycle_id: int | None = None) -> int:
    """Store one river's forecast (all leads of one issue time and model version) with its
    lineage; returns the run id. Storing the same (river, issued_at, model_version) again
    replaces the values (idempotent re-run of a cycle)."""
    fc = frames.forecasts(fc)
    keys = fc[["river_id", "issued_at", "model_version"]].drop_duplicates()
    if len(keys) != 1:
        raise StorageError("save_forecast takes one river, issue time and model version")
    river_id, issued_at, version = keys.iloc[0]
    try:
        with engine.begin() as conn:
            existing = conn.execute(sa.select(forecast_runs.c.id).where(
                forecast_runs.c.river_id == river_id,
                forecast_runs.c.issued_at == issued_at.to_pydatetime(),
                forecast_runs.c.model_version == version)).scalar()
            if existing is not None:
                conn.execute(forecast_values.delete().where(forecast_values.c.run_id == existing))
                conn.execute(forecast_runs.delete().where(forecast_runs.c.id == existing))
            run_id = int(conn.execute(forecast_runs.insert().values(
                river_id=river_id, issued_at=issued_at.to_pydatetime(), model_version=version,
                model_variant=model_variant, input_cutoff=input_cutoff,
                status="degraded" if degraded else "ok", degraded=degraded, inputs=inputs,
                cycle_id=cycle_id, created_at=created_at,
            ).returning(forecast_runs.c.id)).scalar_one())
            values = fc[["horizon_h", "valid_at", "level", "q10", "q50", "q90"]].assign(
                run_id=run_id, valid_at=fc["valid_at"].astype(object))
            conn.execute(forecast_values.insert(),
                         [{str(k): v for k, v in r.items()} for r in values.to_dict("records")])
    except SQLAlchemyError as exc:
        raise StorageError(f"saving forecast for {river_id} failed: {exc}") from exc
    return run_id


def latest_forecasts(engine: Engine, river_id: str | None = None) -> pd.DataFrame:
    """The newest forecast run per river with its values (forecast frame + lineage columns)."""
    fr, fv = forecast_runs, forecast_values
    newest = (sa.select(fr.c.river_id, sa.func.max(fr.c.issued_at).label("issued_at"))
              .group_by(fr.c.river_id).subquery())
    q = (sa.select(fr.c.river_id, fr.c.issued_at, fv.c.valid_at, fv.c.horizon_h, fv.c.level,
                   fv.c.q10, fv.c.q50, fv.c.q90, fr.c.model_version, fr.c.model_variant,
                   fr.c.degraded, fr.c.input_cutoff)
         .join(fv, fv.c.run_id == fr.c.id)
         .join(newest, sa.and_(newest.c.river_id == fr.c.river_id,
                               newest.c.issued_at == fr.c.issued_at)))
    if river_id is not None:
        q = q.where(fr.c.river_id == river_id)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(fr.c.river_id, fv.c.horizon_h)).all()
    df = pd.DataFrame(rows, columns=[*frames.FORECAST_COLUMNS[:-1], "model_version",
                                     "model_variant", "degraded", "input_cutoff"])
    for c in ("issued_at", "valid_at", "input_cutoff"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return df


def register_model_version(engine: Engine, *, river_id: str, version: str, path: str,
                           manifest: dict[str, Any], created_at: datetime) -> None:
    """Record a trained model version as a candidate."""
    with engine.begin() as conn:
        conn.execute(model_versions.insert().values(
            river_id=river_id, version=version, path=path, manifest=manifest,
            created_at=created_at, status="candidate"))


def set_champion(engine: Engine, *, river_id: str, version: str, at: datetime) -> None:
    """Make ``version`` the champion of its river; the previous champion is retired."""
    with engine.begin() as conn:
        conn.execute(model_versions.update().where(
            model_versions.c.river_id == river_id, model_versions.c.status == "champion"
        ).values(status="retired"))
        n = conn.execute(model_versions.update().where(
            model_versions.c.river_id == river_id, model_versions.c.version == version
        ).values(status="champion", promoted_at=at)).rowcount
        if n != 1:
            raise StorageError(f"no model version {version!r} for river {river_id!r}")


def list_model_versions(engine: Engine, river_id: str | None = None) -> pd.DataFrame:
    """Model versions with status, newest first."""
    mv = model_versions
    q = sa.select(mv.c.river_id, mv.c.version, mv.c.status, mv.c.created_at,
                  mv.c.promoted_at, mv.c.path)
    if river_id is not None:
        q = q.where(mv.c.river_id == river_id)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(mv.c.river_id, mv.c.created_at.desc())).all()
    return pd.DataFrame(rows, columns=["river_id", "version", "status", "created_at",
                                       "promoted_at", "path"])


def has_simulated_data(engine: Engine) -> bool:
    """True when any stored observation comes from the simulation (labels the API and page)."""
    from forecast.storage.tables import observations

    q = sa.select(sa.exists().where(observations.c.source == "simulated"))
    with engine.connect() as conn:
        return bool(conn.execute(q).scalar())


def audit(engine: Engine, *, at: datetime, actor: str, action: str, target: str,
          details: dict[str, Any] | None = None) -> None:
    """Append to the audit log (who did what to which river/model, when)."""
    with engine.begin() as conn:
        conn.execute(audit_log.insert().values(at=at, actor=actor, action=action, target=target,
                                               details=details or {}))


def read_audit(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """Newest audit entries first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]
