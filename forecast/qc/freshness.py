"""Input freshness: each station's latest usable reading against its expected cadence, and
each rain product's latest vintage.

A station is *stale* at time T when its latest usable reading (a value flagged GOOD, FILLED or
DOUBTFUL) is older than ``STALE_CADENCES`` cadences plus the delivery lag. Cadences: telemetry
level gauges and rain gauges report every 10 minutes; a crisis gauge (危機管理型水位計) reports
only above its observation start level, so its silence is not staleness (the silence rule in
``features.crisis`` judges it) and it is reported as ``event_driven``. A rain product is stale
when its newest vintage issued at or before T is older than ``PRODUCT_STALE``.

Pure: the time is an argument, the latest times come in as a frame.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import pandas as pd

from forecast.catalogue import Catalogue
from forecast.frames import RAIN, Flag

CADENCE: Final = timedelta(minutes=10)
"""Expected reporting interval of telemetry level gauges and rain gauges."""
STALE_CADENCES: Final = 3
DELIVERY_LAG: Final = timedelta(minutes=30)
"""Telemetry reaches the service up to ~20-30 min after the reading's time."""
STALE_AFTER: Final = CADENCE * STALE_CADENCES + DELIVERY_LAG
PRODUCT_STALE: Final = timedelta(minutes=90)
"""JMA 降水短時間予報 is issued every 30 min; two missed deliveries and a margin."""

COLUMNS: Final = ("station_id", "variable", "role", "river_ids", "latest", "age_min",
                  "cadence_min", "status")


def latest_usable(obs: pd.DataFrame) -> pd.DataFrame:
    """Latest time of a usable value (GOOD/FILLED/DOUBTFUL) per station and variable, from an
    observations frame: columns ``station_id, variable, time``."""
    ok = obs["value"].notna() & (obs["flag"] <= int(Flag.DOUBTFUL))
    return (obs.loc[ok].groupby(["station_id", "variable"], sort=True)["time"].max()
            .reset_index())


def _stations(catalogue: Catalogue) -> pd.DataFrame:
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for r in catalogue.rivers:
        for g in r.gauges:
            key = (g.code, g.variable)
            role = ("primary" if g.code == r.primary_gauge else "upstream")
            kind = "crisis" if g.kind == "crisis" else role
            row = rows.setdefault(key, {"role": kind, "river_ids": []})
            if role == "primary" and kind != "crisis":
                row["role"] = "primary"
            row["river_ids"].append(r.id)   # type: ignore[attr-defined]
        for rg in r.rain_gauges:
            row = rows.setdefault((rg.code, RAIN), {"role": "rain", "river_ids": []})
            row["river_ids"].append(r.id)   # type: ignore[attr-defined]
    return pd.DataFrame([{"station_id": k[0], "variable": k[1], **v} for k, v in rows.items()])


def station_freshness(latest: pd.DataFrame, catalogue: Catalogue, at: datetime
                      ) -> pd.DataFrame:
    """One row per catalogue station (level gauges with their variable, rain gauges):
    ``role`` (primary | upstream | crisis | rain), ``river_ids``, ``latest`` (UTC or NaT),
    ``age_min``, ``cadence_min`` (NaN for event-driven gauges) and ``status``: ``ok``,
    ``stale`` (older than ``STALE_AFTER``), ``never`` (no usable reading known) or
    ``event_driven`` (a crisis gauge: silence is judged by the silence rule)."""
    t = pd.Timestamp(at).tz_convert("UTC")
    st = _stations(catalogue)
    lat = latest.rename(columns={"time": "latest"})[["station_id", "variable", "latest"]]
    df = st.merge(lat, on=["station_id", "variable"], how="left")
    df["latest"] = pd.to_datetime(df["latest"], utc=True)
    df["age_min"] = (t - df["latest"]).dt.total_seconds() / 60.0
    crisis = df["role"] == "crisis"
    df["cadence_min"] = (CADENCE.total_seconds() / 60.0)
    df.loc[crisis, "cadence_min"] = float("nan")
    status = pd.Series("ok", index=df.index, dtype=object)
    status[df["latest"].isna()] = "never"
    status[df["age_min"] > STALE_AFTER.total_seconds() / 60.0] = "stale"
    status[crisis] = "event_driven"
    df["status"] = status
    return df[list(COLUMNS)].sort_values(["station_id", "variable"]).reset_index(drop=True)


def product_freshness(latest_vintages: pd.DataFrame, at: datetime) -> pd.DataFrame:
    """Per rain product (``product, issued_at`` = its newest vintage issued ≤ T): ``age_min``
    and ``status`` (ok | stale)."""
    t = pd.Timestamp(at).tz_convert("UTC")
    df = latest_vintages[["product", "issued_at"]].copy()
    df["issued_at"] = pd.to_datetime(df["issued_at"], utc=True)
    df["age_min"] = (t - df["issued_at"]).dt.total_seconds() / 60.0
    df["status"] = ["stale" if a > PRODUCT_STALE.total_seconds() / 60.0 else "ok"
                    for a in df["age_min"]]
    return df.sort_values("product").reset_index(drop=True)


def stale_reasons(fresh: pd.DataFrame, river_id: str) -> list[str]:
    """Low-confidence reasons for one river: its stale or never-seen inputs other than the
    primary level (a stale primary level stops the forecast; the cycle says so)."""
    out: list[str] = []
    mine = fresh[[river_id in ids for ids in fresh["river_ids"]]]
    for row in mine.itertuples(index=False):
        if row.status not in ("stale", "never") or row.role == "primary":
            continue
        what = "rain gauge" if row.role == "rain" else f"{row.role} gauge"
        if row.status == "never":
            out.append(f"{what} {row.station_id}: no usable reading in the look-back")
        else:
            out.append(f"{what} {row.station_id}: latest reading {row.latest:%H:%M}Z, "
                       f"{row.age_min:.0f} min old (expected every {row.cadence_min:.0f} min)")
    return out
