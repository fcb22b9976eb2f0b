"""Forecast aggregate: immutable forecast runs (one per river, issue time and revision) with
their values and lineage.

A run is never replaced: re-running an issue time stores a new revision, so the forecast a
notification was raised on stays readable. ``latest_forecasts`` shows the newest revision of
the newest issue time per river; ``forecast_archive`` every revision of one issue time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from forecast import frames
from forecast.errors import StorageError
from forecast.storage.tables import forecast_runs, forecast_values

LINEAGE_COLUMNS = ("run_id", "revision", "model_version", "model_variant", "degraded",
                   "low_confidence", "reasons", "input_cutoff", "inputs", "cycle_id",
                   "created_at")


def save_forecast(conn: Connection, fc: pd.DataFrame, *, model_variant: str,
                  input_cutoff: datetime, degraded: bool, inputs: dict[str, Any],
                  created_at: datetime, cycle_id: int | None = None,
                  low_confidence: bool = False, reasons: list[str] | None = None) -> int:
    """Store one river's forecast (every lead of one issue time) as a new run with its
    lineage; returns the run id. The revision is one more than the newest stored run of this
    river and issue time (1 for the first)."""
    fc = frames.forecasts(fc)
    keys = ("river_id", "issued_at", "model_version")
    if not len(fc) or any(fc[k].nunique(dropna=False) != 1 for k in keys):
        raise StorageError("save_forecast takes one river, issue time and model version")
    river_id, version = fc["river_id"].iat[0], fc["model_version"].iat[0]
    issued = pd.DatetimeIndex(fc["issued_at"])[0].to_pydatetime()
    fr = forecast_runs
    revision = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(fr.c.revision), 0))
                                .where(fr.c.river_id == river_id, fr.c.issued_at == issued)
                                ).scalar_one()) + 1
    run_id = int(conn.execute(fr.insert().values(
        river_id=river_id, issued_at=issued, model_version=version, revision=revision,
        model_variant=model_variant, input_cutoff=input_cutoff,
        status="degraded" if degraded else "ok", degraded=degraded, inputs=inputs,
        cycle_id=cycle_id, created_at=created_at, low_confidence=low_confidence,
        reasons=list(reasons or []),
    ).returning(fr.c.id)).scalar_one())
    columns = ("horizon_h", "level", "q10", "q50", "q90")
    h, lv, a, b, c = (fc[k].tolist() for k in columns)
    valid = [t.to_pydatetime() for t in fc["valid_at"]]
    conn.execute(forecast_values.insert(), [
        {"run_id": run_id, "horizon_h": int(h[i]), "valid_at": valid[i], "level": float(lv[i]),
         "q10": float(a[i]), "q50": float(b[i]), "q90": float(c[i])} for i in range(len(fc))])
    return run_id


def _frame(rows: list[Any]) -> pd.DataFrame:
    cols = [*frames.FORECAST_COLUMNS[:-1], *LINEAGE_COLUMNS]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("issued_at", "valid_at", "input_cutoff", "created_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return df


def _select() -> sa.Select[Any]:
    fr, fv = forecast_runs, forecast_values
    return (sa.select(fr.c.river_id, fr.c.issued_at, fv.c.valid_at, fv.c.horizon_h, fv.c.level,
                      fv.c.q10, fv.c.q50, fv.c.q90, fr.c.id.label("run_id"), fr.c.revision,
                      fr.c.model_version, fr.c.model_variant, fr.c.degraded,
                      fr.c.low_confidence, fr.c.reasons, fr.c.input_cutoff, fr.c.inputs,
                      fr.c.cycle_id, fr.c.created_at)
            .join(fv, fv.c.run_id == fr.c.id))


def latest_forecasts(conn: Connection, river_id: str | None = None) -> pd.DataFrame:
    """The newest run per river (newest issue time, then highest revision) with its values:
    forecast columns plus ``LINEAGE_COLUMNS``."""
    fr = forecast_runs
    inner = forecast_runs.alias("inner")
    newest = (sa.select(inner.c.id).where(inner.c.river_id == fr.c.river_id)
              .order_by(inner.c.issued_at.desc(), inner.c.revision.desc()).limit(1)
              .scalar_subquery())
    q = _select().where(fr.c.id == newest)
    if river_id is not None:
        q = q.where(fr.c.river_id == river_id)
    return _frame(list(conn.execute(q.order_by(fr.c.river_id, forecast_values.c.horizon_h))))


def newest_run_id(conn: Connection) -> int | None:
    """The id of the newest stored forecast run (any river): a cheap "has anything new been
    stored?" for caches of the latest forecasts."""
    got = conn.execute(sa.select(sa.func.max(forecast_runs.c.id))).scalar()
    return None if got is None else int(got)


def forecast_archive(conn: Connection, river_id: str, issued_at: datetime) -> pd.DataFrame:
    """Every stored revision of one river's forecast for one issue time, oldest first."""
    fr = forecast_runs
    q = _select().where(fr.c.river_id == river_id, fr.c.issued_at == issued_at)
    return _frame(list(conn.execute(q.order_by(fr.c.revision, forecast_values.c.horizon_h))))


def forecasts_issued(conn: Connection, *, issued_from: datetime, issued_to: datetime,
                     river_id: str | None = None) -> pd.DataFrame:
    """Every stored revision of every forecast issued in [issued_from, issued_to] (of one
    river, or all): forecast columns plus ``LINEAGE_COLUMNS``, ordered by river, issue time,
    revision and lead (hindcasts, verification)."""
    fr = forecast_runs
    q = _select().where(fr.c.issued_at >= issued_from, fr.c.issued_at <= issued_to)
    if river_id is not None:
        q = q.where(fr.c.river_id == river_id)
    return _frame(list(conn.execute(q.order_by(fr.c.river_id, fr.c.issued_at, fr.c.revision,
                                               forecast_values.c.horizon_h))))
