"""MLIT hourly water levels in the JSON rendering ``timestamp, value, flag`` (DOMAIN.md §4.1).

Seen in the 久慈川 額田 data set: ``{"meta": {"station_id": …}, "records": [{"timestamp":
"YYYY-MM-DDTHH:MM" (JST), "value": m or null, "flag": "" | "*" | "$" | "#" | "-"}, …]}``.
Flags mean what they mean in the .dat files (``forecast.ingest.mlit``).

Error policy: strict (a bad record is a ``ParseError`` naming ``records[i]``): these files are
produced by a converter, so a bad record means the converter is wrong, not one bad reading.
Records may come in any order (the frame is sorted); a repeated timestamp is an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from forecast import frames
from forecast.errors import ParseError
from forecast.ingest._payload import finite_number, first_future, load_json, utc_ns_from_jst
from forecast.ingest.mlit import _FLAG_TABLE, _RULES, _classify

SOURCE_JSON: Final = "mlit_json"


def parse_mlit_json(data: bytes, location: str, *, station_id: str | None = None,
                    now: datetime | None = None) -> pd.DataFrame:
    """Parse the JSON rendering of MLIT hourly levels (``meta`` + ``records`` of
    ``{"timestamp": "YYYY-MM-DDTHH:MM" JST, "value": m or null, "flag": str}``).

    ``station_id`` defaults to ``meta.station_id``. Returns ``level_m`` observations in metres,
    ``time`` UTC; flags as for .dat files, a null value is MISSING. Records may be in any order
    (the frame is sorted); a repeated timestamp is a ``ParseError``, as is a timestamp later
    than ``now`` (if given).
    """
    doc = load_json(data, source=SOURCE_JSON, location=location)
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise ParseError("expected an object with a 'records' list", source=SOURCE_JSON,
                         location=location)
    if station_id is None:
        meta = doc.get("meta")
        sid = meta.get("station_id") if isinstance(meta, dict) else None
        if not isinstance(sid, str) or not sid.strip():
            raise ParseError("no meta.station_id and no station_id argument",
                             source=SOURCE_JSON, location=location, position="meta")
        station_id = sid.strip()
    records: list[Any] = doc["records"]
    stamps: list[str] = []
    values = np.full(len(records), np.nan)
    flag_text: list[str] = []
    for i, rec in enumerate(records):         # JSON objects are Python dicts already
        pos = f"records[{i}]"
        if not isinstance(rec, dict) or not {"timestamp", "value", "flag"} <= rec.keys():
            raise ParseError("record is not an object with timestamp, value, flag",
                             source=SOURCE_JSON, location=location, position=pos)
        ts, value, flag = rec["timestamp"], rec["value"], rec["flag"]
        if not isinstance(ts, str) or not isinstance(flag, str) or flag not in _FLAG_TABLE:
            raise ParseError(f"bad timestamp {ts!r} or flag {flag!r}", source=SOURCE_JSON,
                             location=location, position=pos)
        if value is not None:
            number = finite_number(value)
            if number is None:
                raise ParseError(f"value {str(value)[:30]} is not a finite number",
                                 source=SOURCE_JSON, location=location, position=pos)
            values[i] = number
        stamps.append(ts)
        flag_text.append(flag)
    series = pd.Series(stamps, dtype=object)
    # the regex first: pandas would turn "now"/"today" into a clock read despite the format
    shaped = series.str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}").to_numpy(dtype=bool)
    parsed = pd.to_datetime(series.where(shaped), format="%Y-%m-%dT%H:%M", errors="coerce")
    if parsed.isna().any():
        i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise ParseError(f"timestamp {stamps[i]!r} is not YYYY-MM-DDTHH:MM", source=SOURCE_JSON,
                         location=location, position=f"records[{i}]")
    times_jst = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    blank = np.isnan(values)
    idx = np.arange(len(records))
    vals, flags, rules, prov = _classify(values, blank, np.asarray(flag_text, dtype=str), idx,
                                         idx, location)
    df = frames.observations(pd.DataFrame({
        "station_id": station_id, "variable": frames.LEVEL,
        "time": utc_ns_from_jst(times_jst), "value": vals, "flag": flags,
        "qc_rule": np.asarray(_RULES, dtype=object)[rules], "provisional": prov,
    }))
    dup = df["time"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ParseError(f"timestamp {stamps[i]} appears twice", source=SOURCE_JSON,
                         location=location, position=f"records[{i}]")
    fut = first_future(df["time"], now, source=SOURCE_JSON)
    if fut is not None:
        raise ParseError(f"timestamp {stamps[fut]} is in the future", source=SOURCE_JSON,
                         location=location, position=f"records[{fut}]")
    return df.sort_values("time", kind="stable").reset_index(drop=True)
