"""Read-side views for the API and page: what is stored, read through one transaction each."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from forecast.frames import LEVEL
from forecast.pipeline.context import Context
from forecast.storage import forecasts
from forecast.storage.engine import check_schema, current_revision, transaction
from forecast.storage.observations import has_simulated_data, read_observations


def ready(ctx: Context) -> None:
    """Refuse (``MigrationError`` with the fix) a database whose schema is not at head."""
    check_schema(ctx.engine)


def schema_revision(ctx: Context) -> str | None:
    """The schema revision the database is at."""
    return current_revision(ctx.engine)


def simulated(ctx: Context) -> bool:
    """True when any stored observation is simulated (labels every response)."""
    with transaction(ctx.engine, "reading the data label") as conn:
        return has_simulated_data(conn)


def level_observations(ctx: Context, station: str, start: datetime, end: datetime
                       ) -> pd.DataFrame:
    """Stored level readings of one gauge in [start, end) with flags and sources."""
    with transaction(ctx.engine, "reading observations") as conn:
        return read_observations(conn, station_ids=[station], variable=LEVEL, start=start,
                                 end=end)


def latest_forecasts(ctx: Context, river_id: str | None = None) -> pd.DataFrame:
    """The newest forecast run per river (newest issue time, highest revision)."""
    with transaction(ctx.engine, "reading forecasts") as conn:
        return forecasts.latest_forecasts(conn, river_id)


def forecasts_version(ctx: Context) -> int | None:
    """Changes whenever a forecast run is stored (the newest run id)."""
    with transaction(ctx.engine, "reading the newest forecast run") as conn:
        return forecasts.newest_run_id(conn)


def forecast_archive(ctx: Context, river_id: str, issued_at: datetime) -> pd.DataFrame:
    """Every stored revision of one river's forecast for one issue time."""
    with transaction(ctx.engine, "reading the forecast archive") as conn:
        return forecasts.forecast_archive(conn, river_id, issued_at)


def notifications(ctx: Context, *, active: bool | None = None, river_id: str | None = None,
                  limit: int = 200) -> list[dict[str, Any]]:
    """Forecast notifications, newest first, each with its level's names and its latest
    message (``storage.alerts``; ``active`` True: active or acknowledged only)."""
    from forecast.catalogue import AlertLevel
    from forecast.storage import alerts

    with transaction(ctx.engine, "reading notifications") as conn:
        rows = alerts.read_notifications(conn, active=active, river_id=river_id, limit=limit)
        by_event = alerts.messages_of_events(conn, [r["event_key"] for r in rows])
        out = []
        for r in rows:
            level = AlertLevel(r["level"]) if r["level"] else None
            msgs = by_event[r["event_key"]]
            out.append({**r, "level_key": level.key if level else "data",
                        "level_name_ja": level.name_ja if level else "データ異常",
                        "messages": len(msgs),
                        "last_message": msgs[-1]["payload"] if msgs else None})
        return out


def current_cap(ctx: Context, *, keep: timedelta = timedelta(hours=24)) -> list[dict[str, Any]]:
    """The newest CAP message of each open event and of events closed within ``keep``."""
    from forecast.storage import alerts

    with transaction(ctx.engine, "reading CAP messages") as conn:
        return alerts.current_cap(conn, closed_since=ctx.clock.now() - keep)


def cap_message(ctx: Context, identifier: str) -> str | None:
    """One CAP message's XML by identifier, None when unknown."""
    from forecast.storage import alerts

    with transaction(ctx.engine, "reading a CAP message") as conn:
        return alerts.get_cap(conn, identifier)


def all_cap(ctx: Context) -> list[tuple[str, str]]:
    """Every CAP message (identifier, XML), oldest first."""
    from forecast.storage import alerts

    with transaction(ctx.engine, "reading CAP messages") as conn:
        return alerts.all_cap(conn)


def outbox_messages(ctx: Context, *, status: str | None = None, limit: int = 200
                    ) -> list[dict[str, Any]]:
    """Outbox rows, newest first (``status``: pending | sent | dead)."""
    from forecast.storage import outbox

    with transaction(ctx.engine, "reading the outbox") as conn:
        return outbox.read_outbox(conn, status=status, limit=limit)


def runs(ctx: Context, *, limit: int = 50, before_id: int | None = None,
         kind: str | None = None) -> list[dict[str, Any]]:
    """Cycle runs (ticks and cycles), newest first, with their river and source outcomes."""
    from forecast.storage import cycles

    with transaction(ctx.engine, "reading cycle runs") as conn:
        frame = cycles.read_cycles(conn, limit=limit, before_id=before_id, kind=kind)
        out = []
        for rec in frame.to_dict("records"):
            row: dict[str, Any] = {str(k): (None if isinstance(v, float) and v != v else v)
                                   for k, v in rec.items()}
            for c in ("issued_at", "started_at", "finished_at"):
                v = row[c]
                row[c] = None if v is None or pd.isna(v) else pd.Timestamp(v).to_pydatetime()
            run_id = int(str(row["id"]))
            row["rivers"] = cycles.read_outcomes(conn, run_id)
            row["sources"] = cycles.read_source_outcomes(conn, run_id)
            out.append(row)
        return out


def observations(ctx: Context, station: str, start: datetime, end: datetime
                 ) -> pd.DataFrame:
    """Stored readings of one station (every variable) in [start, end), with flags."""
    with transaction(ctx.engine, "reading observations") as conn:
        return read_observations(conn, station_ids=[station], start=start, end=end)


def catchment_rain(ctx: Context, river_id: str, start: datetime, end: datetime) -> pd.Series:
    """Observed catchment rain of one river (mm over the hour ending at each whole hour in
    [start, end]), weighted over its rain gauges as the features read it; NaN = unknown."""
    from forecast.features import river_hourly
    from forecast.frames import RAIN

    river = ctx.catalogue.river(river_id)
    codes = [g.code for g in river.rain_gauges]
    idx = pd.date_range(pd.Timestamp(start).ceil("h"), pd.Timestamp(end).floor("h"), freq="h")
    if not codes:
        return pd.Series(float("nan"), index=idx, name=RAIN, dtype="float64")
    with transaction(ctx.engine, "reading rain observations") as conn:
        obs = read_observations(conn, station_ids=codes, variable=RAIN,
                                start=start - timedelta(hours=1), end=end)
    if obs.empty:
        return pd.Series(float("nan"), index=idx, name=RAIN, dtype="float64")
    hourly = river_hourly(obs, river, start=idx[0], end=idx[-1])
    out: pd.Series = hourly[RAIN].reindex(idx)
    return out


def forecast_rain(ctx: Context, river_id: str, at: datetime,
                  max_age: timedelta = timedelta(hours=6)) -> pd.DataFrame:
    """The newest forecast-rain vintage for one river's catchment issued at or before ``at``
    (and no older than ``max_age``): ``product, issued_at, valid_at, value`` (mm over the
    hour ending at ``valid_at``), empty when there is none."""
    from forecast.storage.rain import read_rain_vintages

    with transaction(ctx.engine, "reading forecast rain") as conn:
        v = read_rain_vintages(conn, catchment_id=river_id, issued_before=at,
                               issued_after=at - max_age)
    v = v[v["valid_at"] > v["issued_at"]]
    if v.empty:
        empty: pd.DataFrame = v.drop(columns="catchment_id").reset_index(drop=True)
        return empty
    newest = v["issued_at"].max()
    v = v[v["issued_at"] == newest].sort_values(["valid_at", "product"])
    v = v.drop_duplicates("valid_at", keep="first")
    out: pd.DataFrame = v.drop(columns="catchment_id").reset_index(drop=True)
    return out
