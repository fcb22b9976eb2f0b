"""Observation repository: idempotent upsert with revision history, and reads.

Writing a batch (one transaction, all or nothing):
1. the batch is bulk-loaded into a temporary staging table (SQLite: ``executemany``;
   PostgreSQL: ``COPY``);
2. current rows that the batch changes (value, flag or provisional status differ) are copied to
   ``observation_history`` with ``superseded_at``;
3. the batch is upserted into ``observations``; a changed row gets ``revision + 1``; an identical
   row is left alone, so re-ingesting the same data is a no-op.

Rule for 暫定 → 確定: a provisional value never replaces a verified (non-provisional) one; a
verified value replaces a provisional one and the provisional one stays in the history.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from forecast import frames
from forecast.storage.bulk import bulk_load, dialect_insert
from forecast.storage.tables import UTCDateTime, observation_history, observations

_STAGE_COLS = ("station_id", "variable", "time", "value", "flag", "qc_rule", "provisional",
               "source")


@dataclass(frozen=True)
class UpsertResult:
    """Counts of one upsert: new rows, revised rows, rows already identical."""

    inserted: int
    revised: int
    unchanged: int


def _stage_table() -> sa.Table:
    md = sa.MetaData()
    return sa.Table(
        "stage_observations", md,
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("variable", sa.String(32), primary_key=True),
        sa.Column("time", UTCDateTime(), primary_key=True),
        sa.Column("value", sa.Float),
        sa.Column("flag", sa.SmallInteger),
        sa.Column("qc_rule", sa.String(64)),
        sa.Column("provisional", sa.Boolean),
        sa.Column("source", sa.String(64)),
        prefixes=["TEMPORARY"],
    )


def _changed(cur: sa.Table, new: sa.Table | Any) -> sa.ColumnElement[bool]:
    """Rows differ in substance, and the change is not verified → provisional."""
    c = cur.c
    n = new.c if isinstance(new, sa.Table) else new
    differs = sa.or_(
        c.value.is_distinct_from(n.value),
        c.flag != n.flag,
        c.provisional != n.provisional,
    )
    return sa.and_(differs, sa.not_(sa.and_(c.provisional.is_(False), n.provisional.is_(True))))


def upsert_observations(
    conn: Connection, df: pd.DataFrame, *, source: str, now: datetime
) -> UpsertResult:
    """Write an observations frame (``forecast.frames`` contract) idempotently.

    ``source`` names the ingest source; a row of a frame with its own ``source`` column
    (``forecast.frames.OPTIONAL_OBS_COLUMNS``, e.g. a canonical CSV exported from a simulation)
    keeps that provenance instead. ``now`` is the ingest time (UTC, tz-aware). Duplicate
    (station, variable, time) rows inside one batch keep the last one. Runs inside the
    caller's transaction: a failure leaves no rows. Callers outside storage use
    ``pipeline.collect.store_observations`` (QC first).
    """
    df = frames.observations(df)
    df = df.drop_duplicates(["station_id", "variable", "time"], keep="last")
    if frames.SOURCE not in df.columns:
        df["source"] = source
    if df.empty:
        return UpsertResult(0, 0, 0)
    spans = df.groupby("station_id", sort=True)["time"].agg(["min", "max"])
    o = observations
    # Per station, the newest stored time inside this batch's span (one indexed range query
    # each): rows after it are new for certain, only rows up to it need comparing. Naming the
    # variables (all of frames.VARIABLES, the only ones stored) makes it a range of the
    # (station, variable, time) key instead of a walk over every stored row of the station.
    newest = sa.select(sa.func.max(o.c.time)).where(
        o.c.station_id == sa.bindparam("sid"), o.c.variable.in_(sorted(frames.VARIABLES)),
        o.c.time >= sa.bindparam("t0", type_=UTCDateTime()),
        o.c.time <= sa.bindparam("t1", type_=UTCDateTime()))
    stored_max = pd.Series({
        sid: conn.execute(newest, {"sid": sid, "t0": t0.to_pydatetime(),
                                   "t1": t1.to_pydatetime()}).scalar_one()
        for sid, t0, t1 in zip(spans.index, spans["min"], spans["max"], strict=True)},
        dtype=object)
    known = stored_max.dropna()
    limit = pd.Series(pd.to_datetime(list(known.to_numpy()), utc=True), index=known.index)
    fresh = ~(df["time"] <= df["station_id"].map(limit)).fillna(False).to_numpy(dtype=bool)
    result = UpsertResult(0, 0, 0)
    if fresh.any():
        # Fast path for new data (bulk imports, live appends): nothing to compare or supersede,
        # so the rows go straight in. A concurrent writer that got there first makes this fail
        # on the primary key; we then take the general path.
        try:
            with conn.begin_nested():
                bulk_load(conn, o, df.loc[fresh, list(_STAGE_COLS)],
                          constants={"revision": 0, "ingested_at": now})
            result = UpsertResult(inserted=int(fresh.sum()), revised=0, unchanged=0)
            df = df.loc[~fresh]
        except IntegrityError:
            pass
    if df.empty:
        return result
    rest = _upsert_general(conn, df, sorted(df["station_id"].unique()),
                           df["time"].min().to_pydatetime(), df["time"].max().to_pydatetime(),
                           now)
    return UpsertResult(result.inserted + rest.inserted, rest.revised, rest.unchanged)


def _upsert_general(conn: Connection, df: pd.DataFrame, stations: list[str], t0: datetime,
                    t1: datetime, now: datetime) -> UpsertResult:
    """Staging table → history of changed rows → upsert (see the module docstring)."""
    stage = _stage_table()
    key = ("station_id", "variable", "time")
    stage.create(conn)
    try:
        bulk_load(conn, stage, df.loc[:, list(_STAGE_COLS)])
        if conn.dialect.name == "postgresql":
            # Temporary tables have no statistics: without them the planner picks a
            # sequential scan of `observations` for the joins below.
            conn.exec_driver_sql(f"ANALYZE {stage.name}")
        o = observations
        # The explicit station/time range lets both databases use the primary-key
        # index on `observations` instead of scanning the whole table.
        # (With the variables named too -- all of frames.VARIABLES, the only ones stored --
        # it is a range of that key, not a walk over every stored row of each station.)
        join = sa.and_(
            *(o.c[k] == stage.c[k] for k in key),
            o.c.station_id.in_(stations), o.c.variable.in_(sorted(frames.VARIABLES)),
            o.c.time >= t0, o.c.time <= t1,
        )
        existing, revised = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(
                sa.case((_changed(o, stage), 1), else_=0)), 0))
            .select_from(o.join(stage, join))
        ).one()
        hist = sa.select(
            o.c.station_id, o.c.variable, o.c.time, o.c.value, o.c.flag, o.c.qc_rule,
            o.c.provisional, o.c.source, o.c.revision, o.c.ingested_at,
            sa.literal(now, UTCDateTime()).label("superseded_at"),
        ).select_from(o.join(stage, join)).where(_changed(o, stage))
        # (counted above: rowcount of INSERT…SELECT is not reliable on every driver)
        if revised:
            conn.execute(observation_history.insert().from_select(
                [c.name for c in hist.selected_columns], hist
            ))
        src = sa.select(
            *(stage.c[c] for c in _STAGE_COLS),
            sa.literal(0).label("revision"),
            sa.literal(now, UTCDateTime()).label("ingested_at"),
        ).where(sa.true())  # `WHERE true` lets SQLite parse INSERT…SELECT…ON CONFLICT
        ins = dialect_insert(conn, o).from_select([*_STAGE_COLS, "revision", "ingested_at"], src)
        ex = ins.excluded
        ins = ins.on_conflict_do_update(
            index_elements=list(key),
            set_={
                "value": ex.value, "flag": ex.flag, "qc_rule": ex.qc_rule,
                "provisional": ex.provisional, "source": ex.source,
                "revision": o.c.revision + 1, "ingested_at": ex.ingested_at,
            },
            where=_changed(o, ex),
        )
        conn.execute(ins)
    finally:
        stage.drop(conn)
    return UpsertResult(inserted=len(df) - existing, revised=revised,
                        unchanged=existing - revised)


_COLUMNS = ["station_id", "variable", "time", "value", "flag", "qc_rule", "provisional",
            "source", "revision"]


def read_observations(
    conn: Connection,
    *,
    station_ids: list[str] | None = None,
    variable: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Current observations in [start, end) as a canonical frame plus ``source`` and
    ``revision`` columns, sorted by station, variable and time.

    With ``station_ids`` (the cycle's and QC's reads) each station is one walk of the
    (station, variable, time) key through the driver's cursor: the rows come back as plain
    tuples, without a result object per row, which is most of the time for the 8 days of
    ~150 stations a forecast cycle reads."""
    if station_ids is not None and conn.dialect.paramstyle in ("qmark", "format", "pyformat"):
        return _frame(*_read_by_station(conn, sorted(set(station_ids)), variable, start, end))
    return _read_select(conn, station_ids=station_ids, variable=variable, start=start, end=end)


def _read_select(conn: Connection, *, station_ids: list[str] | None = None,
                 variable: str | None = None,
                 start: datetime | None = None, end: datetime | None = None
                 ) -> pd.DataFrame:
    """``read_observations`` as one SQLAlchemy query (and the oracle of the fast path)."""
    o = observations
    # SQLite stores times as UTC text: reading the text and parsing it in one vectorised call
    # is ~10x faster than a datetime object per row (training reads millions of rows).
    time_col = (sa.type_coerce(o.c.time, sa.String).label("time")
                if conn.dialect.name == "sqlite" else o.c.time)
    q = sa.select(o.c.station_id, o.c.variable, time_col, o.c.value, o.c.flag, o.c.qc_rule,
                  o.c.provisional, o.c.source, o.c.revision)
    if station_ids is not None:
        q = q.where(o.c.station_id.in_(station_ids))
    if variable is not None:
        q = q.where(o.c.variable == variable)
    elif station_ids is not None:
        # Every stored variable is one of frames.VARIABLES (upserts validate it): naming them
        # lets both databases walk the (station, variable, time) key over the time range
        # instead of every stored row of each station.
        q = q.where(o.c.variable.in_(sorted(frames.VARIABLES)))
    if start is not None:
        q = q.where(o.c.time >= start)
    if end is not None:
        q = q.where(o.c.time < end)
    q = q.order_by(o.c.station_id, o.c.variable, o.c.time)
    rows = conn.execute(q).all()
    if not rows:
        return _frame([], [])
    df = pd.DataFrame(rows, columns=_COLUMNS)
    df["time"] = pd.to_datetime(df["time"], utc=True, format="ISO8601")
    # frames.observations keeps ``source`` (an optional column); ``revision`` is joined back
    return frames.observations(df).join(df[["revision"]])


def _read_by_station(conn: Connection, stations: list[str], variable: str | None,
                     start: datetime | None, end: datetime | None
                     ) -> tuple[list[tuple[Any, ...]], list[int], list[str]]:
    """Rows (variable, time, value, flag, qc_rule, provisional, source, revision) of each
    station in turn, the row count of each, and the stations; one indexed query each."""
    ph = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    variables = [variable] if variable is not None else sorted(frames.VARIABLES)
    # every stored variable is one of frames.VARIABLES (upserts validate it): naming them
    # lets both databases walk the (station, variable, time) key over the time range
    where = [f'"station_id" = {ph}', f'"variable" IN ({", ".join([ph] * len(variables))})']
    bind = UTCDateTime().bind_processor(conn.dialect) or (lambda v: v)
    tail: list[Any] = []
    if start is not None:
        where.append(f'"time" >= {ph}')
        tail.append(bind(start))
    if end is not None:
        where.append(f'"time" < {ph}')
        tail.append(bind(end))
    columns = ", ".join(f'"{c}"' for c in _COLUMNS[1:])
    sql = (f'SELECT {columns} FROM "{observations.name}" WHERE {" AND ".join(where)} '
           'ORDER BY "variable", "time"')
    rows: list[tuple[Any, ...]] = []
    counts: list[int] = []
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.cursor()
    params: tuple[Any, ...] = ()
    try:
        for sid in stations:
            params = (sid, *variables, *tail)
            cursor.execute(sql, params)
            got = cursor.fetchall()
            rows.extend(got)
            counts.append(len(got))
    except dbapi.Error as exc:   # the driver's error, as SQLAlchemy would report it
        raise sa.exc.DBAPIError.instance(sql, params, exc, dbapi.Error) from exc
    finally:
        cursor.close()
    return rows, counts, stations


def _frame(rows: list[tuple[Any, ...]], counts: list[int],
           stations: list[str] | None = None) -> pd.DataFrame:
    """The observations frame of ``_read_by_station``'s rows (or an empty one)."""
    if not rows:
        out = frames.empty_observations()
        out["source"] = pd.Series([], dtype=object)
        out["revision"] = pd.Series([], dtype="int64")
        return out
    cols = [[r[j] for r in rows] for j in range(len(_COLUMNS) - 1)]   # by column
    df = pd.DataFrame({
        "station_id": np.repeat(np.array(stations, dtype=object), counts),
        "variable": np.array(cols[0], dtype=object),
        "time": pd.to_datetime(pd.Series(cols[1], dtype=object), utc=True, format="ISO8601"),
        "value": np.array(cols[2], dtype="float64"),
        "flag": np.array(cols[3]),
        "qc_rule": np.array(cols[4], dtype=object),
        "provisional": np.array(cols[5], dtype=bool),
        "source": np.array(cols[6], dtype=object),
        "revision": np.array(cols[7], dtype="int64"),
    })
    return frames.observations(df).join(df[["revision"]])


def observation_history_frame(
    conn: Connection, station_id: str, variable: str, time: datetime
) -> pd.DataFrame:
    """Every superseded version of one observation, oldest first."""
    h = observation_history
    q = (
        sa.select(h.c.value, h.c.flag, h.c.provisional, h.c.source, h.c.revision,
                  h.c.ingested_at, h.c.superseded_at)
        .where(h.c.station_id == station_id, h.c.variable == variable, h.c.time == time)
        .order_by(h.c.revision)
    )
    rows = conn.execute(q).all()
    return pd.DataFrame(rows, columns=["value", "flag", "provisional", "source", "revision",
                                       "ingested_at", "superseded_at"])


def has_simulated_data(conn: Connection) -> bool:
    """True when any stored observation comes from the simulation (labels the API and page)."""
    return bool(conn.execute(sa.select(sa.exists().where(observations.c.source == "simulated"))
                             ).scalar())



def latest_usable_times(conn: Connection, keys: list[tuple[str, str]], *,
                        before: datetime | None = None) -> pd.DataFrame:
    """Newest time of a usable value (flag GOOD/FILLED/DOUBTFUL) per (station, variable) in
    ``keys``, at or before ``before``: columns ``station_id, variable, time`` (stations with
    none are left out). One index walk per key (fast on a table of millions of rows)."""
    o = observations
    out = []
    for station, variable in keys:
        q = sa.select(o.c.time).where(o.c.station_id == station, o.c.variable == variable,
                                      o.c.value.is_not(None), o.c.flag <= 2)
        if before is not None:
            q = q.where(o.c.time <= before)
        t = conn.execute(q.order_by(o.c.time.desc()).limit(1)).scalar()
        if t is not None:
            out.append((station, variable, t))
    df = pd.DataFrame(out, columns=["station_id", "variable", "time"])
    df["time"] = pd.to_datetime(df["time"], utc=True)
    return df


class ObservationWindow:
    """The observations of a set of stations over a window that slides forward (a scheduler's
    ticks: the last 8 days, every half hour), kept between reads: ``read`` returns exactly the
    frame ``read_observations(conn, station_ids=..., start=..., end=...)`` would, but of the
    part it already holds it reads only a per-(station, variable) summary -- row count, sum of
    revisions, first and last time, one aggregate query the database answers without sending
    the rows -- and fetches again only the stations whose summary changed (every write that
    changes a row raises its revision; a new or late row changes the count), plus the new rows
    after the previous window's end. Any other request (other stations, a window that moved
    back or does not overlap) is a plain ``read_observations``. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: tuple[tuple[str, ...], datetime, datetime, pd.DataFrame] | None = None

    def read(self, conn: Connection, *, station_ids: list[str], start: datetime,
             end: datetime) -> pd.DataFrame:
        """Observations of ``station_ids`` in [start, end) (see the class docstring)."""
        stations = tuple(sorted(set(station_ids)))
        with self._lock:
            held = self._held
            if (held is None or held[0] != stations or conn.dialect.paramstyle not in
                    ("qmark", "format", "pyformat") or not held[1] <= start < held[2] <= end):
                frame = read_observations(conn, station_ids=list(stations), start=start,
                                          end=end)
            else:
                frame = self._update(conn, stations, held, start, end)
            self._held = (stations, start, end, frame)
            return frame

    @staticmethod
    def _update(conn: Connection, stations: tuple[str, ...],
                held: tuple[tuple[str, ...], datetime, datetime, pd.DataFrame],
                start: datetime, end: datetime) -> pd.DataFrame:
        _, _, held_end, frame = held
        old = frame[frame["time"] >= pd.Timestamp(start)]
        stored = _summaries(conn, list(stations), start, held_end)
        kept = _summaries_of(old)
        changed = {s for s, v, *_ in stored.symmetric_difference(kept)}
        same = [s for s in stations if s not in changed]
        parts = [old[~old["station_id"].isin(list(changed))]]
        if same and end > held_end:
            parts.append(_frame(*_read_by_station(conn, same, None, held_end, end)))
        if changed:
            parts.append(_frame(*_read_by_station(conn, sorted(changed), None, start, end)))
        out = pd.concat([p for p in parts if len(p)] or [parts[0]], ignore_index=True)
        # the order of read_observations: station, variable, time
        rank = {s: i for i, s in enumerate(stations)}
        order = np.lexsort((
            pd.DatetimeIndex(out["time"]).as_unit("ns").asi8,
            out["variable"].to_numpy(dtype=object).astype(str),
            out["station_id"].map(rank).to_numpy()))
        return out.iloc[order].reset_index(drop=True)


def _summaries(conn: Connection, stations: list[str], start: datetime, end: datetime
               ) -> set[tuple[str, str, int, int, int, int]]:
    """(station, variable, rows, sum of revisions, first and last time in ns) of the stored
    rows in [start, end): one aggregate query."""
    ph = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    variables = sorted(frames.VARIABLES)
    bind = UTCDateTime().bind_processor(conn.dialect) or (lambda v: v)
    sql = (f'SELECT "station_id", "variable", COUNT(*), SUM("revision"), MIN("time"), '
           f'MAX("time") FROM "{observations.name}" WHERE "station_id" IN '
           f'({", ".join([ph] * len(stations))}) AND "variable" IN '
           f'({", ".join([ph] * len(variables))}) AND "time" >= {ph} AND "time" < {ph} '
           'GROUP BY "station_id", "variable"')
    params = (*stations, *variables, bind(start), bind(end))
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(sql, params, exc, dbapi.Error) from exc
    finally:
        cursor.close()
    return {(str(s), str(v), int(n), int(r), _ns(t0), _ns(t1)) for s, v, n, r, t0, t1 in rows}


def _ns(t: Any) -> int:
    return int(pd.Timestamp(pd.to_datetime(t, utc=True)).as_unit("ns").value)


def _summaries_of(frame: pd.DataFrame) -> set[tuple[str, str, int, int, int, int]]:
    """``_summaries`` of rows already read."""
    if not len(frame):
        return set()
    g = frame.groupby(["station_id", "variable"], sort=False)
    agg = pd.DataFrame({"n": g.size(), "r": g["revision"].sum(), "t0": g["time"].min(),
                        "t1": g["time"].max()})
    return {(str(s), str(v), int(n), int(r), _ns(t0), _ns(t1))
            for (s, v), n, r, t0, t1 in zip(agg.index, agg["n"], agg["r"], agg["t0"],
                                            agg["t1"], strict=True)}
