"""Fast bulk loading of a DataFrame into a table (one driver call, vectorised conversion).

PostgreSQL gets ``COPY … FROM STDIN`` (CSV); SQLite gets one ``executemany``. Datetime columns
must be tz-aware; they are written in UTC in SQLAlchemy's storage format so that
``UTCDateTime`` reads them back. Used for staging tables before set-based upserts.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection


def _utc_strings(s: pd.Series, sep: str) -> np.ndarray:
    naive = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
    out = np.datetime_as_string(naive, unit="us")
    return np.char.replace(out, "T", sep) if sep != "T" else out


def bulk_load(conn: Connection, table: sa.Table, df: pd.DataFrame) -> None:
    """Append every row of ``df`` (columns named as in ``table``) to ``table``."""
    cols = list(df.columns)
    out = df.copy()
    for c in cols:
        if isinstance(out[c].dtype, pd.DatetimeTZDtype):
            if conn.dialect.name == "postgresql":  # explicit offset: no session-zone guess
                out[c] = np.char.add(_utc_strings(out[c], "T"), "+00:00")
            else:
                out[c] = _utc_strings(out[c], " ")
        elif out[c].dtype == bool:
            out[c] = out[c].astype("int8") if conn.dialect.name == "sqlite" \
                else np.where(out[c].to_numpy(), "t", "f")
        elif out[c].dtype.kind == "f":
            v = out[c].to_numpy(dtype="float64")
            out[c] = np.where(np.isfinite(v), v, np.nan)
    if conn.dialect.name == "postgresql":
        buf = io.StringIO()
        out.to_csv(buf, index=False, header=False, na_rep="\\N", float_format="%.10g")
        raw = conn.connection.dbapi_connection
        assert raw is not None
        sql = f"COPY {table.name} ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
        with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[attr-defined]
            copy.write(buf.getvalue())
        return
    # sqlite3 binds NaN as NULL, so floats need no per-value conversion.
    rows = list(zip(*(out[c].tolist() for c in cols), strict=True))
    marks = ",".join("?" * len(cols))
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({marks})",
        rows,
    )
