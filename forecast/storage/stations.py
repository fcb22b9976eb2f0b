"""Stations aggregate: one row per level gauge and rain gauge of the catalogue."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from forecast.catalogue import Catalogue
from forecast.frames import RAIN
from forecast.storage.bulk import dialect_insert
from forecast.storage.tables import stations

_UPDATED = ("river_id", "kind", "variable", "name_ja", "lat", "lon", "provisional", "meta")


def sync_stations(conn: Connection, catalogue: Catalogue) -> int:
    """Insert or update one row per gauge and rain gauge of the catalogue; returns the count.
    A rain gauge shared by several rivers is stored once (the first river owns it)."""
    rows: list[dict[str, Any]] = []
    for r in catalogue.rivers:
        for g in r.gauges:
            rows.append(dict(station_id=g.code, river_id=r.id, kind=g.kind, variable=g.variable,
                             name_ja=g.name_ja, lat=g.lat, lon=g.lon, provisional=g.provisional,
                             meta={"source": g.source, "name_en": g.name_en}))
        for rg in r.rain_gauges:
            rows.append(dict(station_id=rg.code, river_id=r.id, kind="rain", variable=RAIN,
                             name_ja=rg.name_ja, lat=rg.lat, lon=rg.lon,
                             provisional=rg.provisional,
                             meta={"source": rg.source, "network": rg.network}))
    unique = list({row["station_id"]: row for row in reversed(rows)}.values())
    ins = dialect_insert(conn, stations)
    ins = ins.on_conflict_do_update(index_elements=["station_id"],
                                    set_={c: ins.excluded[c] for c in _UPDATED})
    conn.execute(ins, unique)
    return len(unique)
