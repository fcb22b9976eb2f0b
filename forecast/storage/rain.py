"""Rain-vintage aggregate: catchment rainfall per product, issue time and valid time."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from forecast import frames
from forecast.storage.bulk import bulk_load, dialect_insert
from forecast.storage.tables import rain_vintages


def upsert_rain_vintages(conn: Connection, df: pd.DataFrame, *, now: datetime) -> int:
    """Write rain-vintage rows (``frames.rain_vintages`` contract); a re-issued value replaces
    the old one. Returns the number of rows written."""
    df = frames.rain_vintages(df)
    if df.empty:
        return 0
    stage = sa.Table("stage_rain_vintages", sa.MetaData(),
                     *(sa.Column(c.name, c.type) for c in rain_vintages.columns),
                     prefixes=["TEMPORARY"])
    stage.create(conn)
    try:
        bulk_load(conn, stage, df.assign(ingested_at=pd.Timestamp(now)))
        ins = dialect_insert(conn, rain_vintages).from_select(
            [c.name for c in stage.columns], sa.select(stage).where(sa.true()))
        ins = ins.on_conflict_do_update(
            index_elements=["product", "catchment_id", "issued_at", "valid_at"],
            set_={"value": ins.excluded.value, "ingested_at": ins.excluded.ingested_at},
        )
        conn.execute(ins)
    finally:
        stage.drop(conn)
    return len(df)


def _distinct(conn: Connection, column: sa.Column[str],
              where: sa.ColumnElement[bool] | None = None) -> list[str]:
    """The distinct values of a leading key column, one index seek each (``MIN(column) >
    last``): a skip scan, where ``SELECT DISTINCT`` would read every row of the table."""
    q = sa.select(sa.func.min(column)).where(column > sa.bindparam("last"))
    first = sa.select(sa.func.min(column))
    if where is not None:
        q, first = q.where(where), first.where(where)
    out: list[str] = []
    value = conn.execute(first).scalar()
    while value is not None:
        out.append(str(value))
        value = conn.execute(q, {"last": value}).scalar()
    return out


def read_rain_vintages(conn: Connection, *, product: str | None = None,
                       issued_before: datetime | None = None,
                       issued_after: datetime | None = None,
                       catchment_id: str | None = None) -> pd.DataFrame:
    """Rain vintages, optionally for one product, one catchment and an issue-time window
    [after, before].

    The products (and, for all catchments, the catchments) are named in the query, so it is a
    range of the (product, catchment, issued_at, valid_at) key per pair: a window of a few hours
    reads those rows, not every vintage ever stored."""
    t = rain_vintages
    products = [product] if product is not None else _distinct(conn, t.c.product)
    if catchment_id is not None:
        catchments = [catchment_id]
    else:
        catchments = sorted({c for p in products
                             for c in _distinct(conn, t.c.catchment_id, t.c.product == p)})
    q = sa.select(t.c.product, t.c.catchment_id, t.c.issued_at, t.c.valid_at, t.c.value)
    q = q.where(t.c.product.in_(products), t.c.catchment_id.in_(catchments))
    if issued_before is not None:
        q = q.where(t.c.issued_at <= issued_before)
    if issued_after is not None:
        q = q.where(t.c.issued_at >= issued_after)
    rows = conn.execute(q.order_by(t.c.catchment_id, t.c.issued_at, t.c.valid_at)).all() \
        if products and catchments else []
    df = pd.DataFrame(rows, columns=list(frames.RAIN_VINTAGE_COLUMNS))
    for c in ("issued_at", "valid_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return frames.rain_vintages(df)



def latest_vintages(conn: Connection, *, before: datetime | None = None) -> pd.DataFrame:
    """Newest issue time per rain product (at or before ``before``): ``product, issued_at``."""
    t = rain_vintages
    q = sa.select(t.c.product, sa.func.max(t.c.issued_at).label("issued_at"))
    if before is not None:
        q = q.where(t.c.issued_at <= before)
    rows = conn.execute(q.group_by(t.c.product).order_by(t.c.product)).all()
    df = pd.DataFrame(rows, columns=["product", "issued_at"])
    # an aggregate loses the column type on SQLite: parse the text or datetime here
    df["issued_at"] = pd.to_datetime(df["issued_at"], utc=True, format="ISO8601")
    return df
