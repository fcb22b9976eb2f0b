"""Read-side views for the API and page: what is stored, read through one transaction each."""

from __future__ import annotations

from datetime import datetime

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


def forecast_archive(ctx: Context, river_id: str, issued_at: datetime) -> pd.DataFrame:
    """Every stored revision of one river's forecast for one issue time."""
    with transaction(ctx.engine, "reading the forecast archive") as conn:
        return forecasts.forecast_archive(conn, river_id, issued_at)
