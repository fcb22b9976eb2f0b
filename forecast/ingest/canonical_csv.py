"""Canonical CSV source: ``station_id,time,value[,variable][,flag]`` (time ISO 8601 with
offset). The simplest way to bring any series in; also the format of ``forecast simulate --out``.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from forecast import frames
from forecast.errors import EncodingError, FrameError, ParseError

SOURCE = "canonical_csv"


def parse_canonical_csv(
    data: bytes, location: str, *, variable: str = frames.LEVEL
) -> pd.DataFrame:
    """Parse canonical CSV bytes into an observations frame.

    ``variable`` applies when the file has no ``variable`` column. Times without an offset,
    unparseable values and unknown variables are ``ParseError`` naming the row.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EncodingError(f"not UTF-8 (byte {exc.start})", source=SOURCE,
                            location=location, position=f"byte {exc.start}") from exc
    try:
        df = pd.read_csv(io.StringIO(text), dtype={"station_id": str, "time": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise ParseError(f"not a CSV table: {exc}", source=SOURCE, location=location) from exc
    missing = {"station_id", "time", "value"} - set(df.columns)
    if missing:
        raise ParseError(f"missing columns {sorted(missing)}; need station_id,time,value",
                         source=SOURCE, location=location, position="header")
    if "variable" not in df.columns:
        df["variable"] = variable
    has_offset = df["time"].str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False)
    if not has_offset.all():
        row = int(np.argmin(has_offset.to_numpy())) + 2
        raise ParseError("time without a UTC offset (write e.g. 2024-07-01T09:00+09:00)",
                         source=SOURCE, location=location, position=f"row {row}")
    times = pd.to_datetime(df["time"], utc=True, errors="coerce", format="ISO8601")
    values = pd.to_numeric(df["value"], errors="coerce")
    for name, bad in (("time", times.isna()), ("value", values.isna() & df["value"].notna())):
        if bad.any():
            row = int(np.argmax(bad.to_numpy())) + 2
            raise ParseError(f"unparseable {name} {df[name].iloc[row - 2]!r}", source=SOURCE,
                             location=location, position=f"row {row}")
    out = pd.DataFrame({"station_id": df["station_id"], "variable": df["variable"],
                        "time": times, "value": values.astype("float64")})
    if "flag" in df.columns:
        out["flag"] = pd.to_numeric(df["flag"], errors="coerce").fillna(0).astype("int8")
    bad_value = ~np.isfinite(out["value"].to_numpy()) & out["value"].notna().to_numpy()
    if bad_value.any():
        row = int(np.argmax(bad_value)) + 2
        raise ParseError("infinite value", source=SOURCE, location=location, position=f"row {row}")
    try:
        return frames.observations(out)
    except FrameError as exc:
        raise ParseError(str(exc), source=SOURCE, location=location) from exc
