"""Canonical CSV source: ``station_id,time,value[,variable][,flag][,source]``.

The simplest way to bring any series in; ``to_canonical_csv`` writes it (the format for
``forecast simulate --out``). UTF-8 (a BOM is allowed), one header row, columns in any order;
"row N" in errors is line N of the file, the header being line 1.

=========== =============================================================================
station_id  station code as in the catalogue (non-empty)
time        ISO 8601 with a UTC offset (``2024-07-01T09:00+09:00``, ``…Z``); for
            accumulations the end of the interval
value       number; empty (or ``NA``, ``NaN``, ``null``…) is a missing reading
variable    optional: one of ``forecast.frames.VARIABLES`` (``level_m``, ``rain_mm``,
            ``release_m3s``, ``level_m_daily_mean``…). An empty cell, or no column, takes
            the station's variable from the catalogue (``station_variables``); never a
            default: a row whose variable is known from neither is refused.
flag        optional: a ``forecast.frames.Flag`` number 0–5; empty = 0 (GOOD)
source      optional: provenance of the row, a short identifier ``[a-z0-9_]{1,32}`` such as
            ``simulated``, ``observed`` or an ingest source name. Returned as the frame's
            ``source`` column (``forecast.frames.OPTIONAL_OBS_COLUMNS``), which
            ``storage.upsert_observations`` stores instead of the import's source name, so
            an exported simulation re-imported stays labelled simulated.
=========== =============================================================================

Other columns (e.g. ``qc_rule``, ``provisional`` of the replay format) are ignored here.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import Final

import numpy as np
import pandas as pd

from forecast import frames
from forecast.errors import EncodingError, FrameError, ParseError

SOURCE = "canonical_csv"

SOURCE_NAME: Final = re.compile(r"^[a-z0-9_]{1,32}$")
"""What a ``source`` cell may hold (a short identifier)."""

_NA_TEXT: Final = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
"""Value cells that mean "missing" (pandas' default NA strings)."""

_OFFSET: Final = re.compile(r"(?:Z|[+-]\d\d:?\d\d)$")
_FIX_STATION: Final = ("add a variable column (one of " + ", ".join(sorted(frames.VARIABLES))
                       + ") or add the station to the catalogue")


def _err(message: str, location: str, row: int | None = None) -> ParseError:
    return ParseError(message, source=SOURCE, location=location,
                      position=f"row {row}" if row is not None else "")


def _first(bad: np.ndarray) -> int:
    """0-based index of the first True."""
    return int(np.flatnonzero(bad)[0])


def _values(text: pd.Series, location: str) -> np.ndarray:
    """Value cells → float64 (exact decimal → binary rounding, as ``float``); NaN = missing."""
    cells = text.to_numpy(dtype=object)
    missing = np.fromiter((c.strip() in _NA_TEXT for c in cells), dtype=bool, count=len(cells))
    out = np.full(len(cells), np.nan)
    given = np.flatnonzero(~missing)
    try:
        out[given] = np.asarray(cells[given], dtype=str).astype(np.float64)
    except ValueError:
        for i in given:                      # error path only: find the culprit
            try:
                float(cells[i])
            except ValueError:
                raise _err(f"unparseable value {cells[i]!r}", location, int(i) + 2) from None
        raise
    if not np.isfinite(out[given]).all():
        i = given[_first(~np.isfinite(out[given]))]
        raise _err(f"infinite value {cells[i]!r}", location, int(i) + 2)
    return out


_FLAG_OF_TEXT: Final = {"": int(frames.Flag.GOOD), **{str(int(f)): int(f) for f in frames.Flag}}


def _flags(text: pd.Series, location: str) -> np.ndarray:
    """Flag cells → int8; checked per distinct cell (a file holds a handful)."""
    codes, uniques = pd.factorize(text.to_numpy(dtype=object))
    table = np.empty(len(uniques), dtype=np.int8)
    for j, cell in enumerate(uniques):
        flag = _FLAG_OF_TEXT.get(str(cell).strip())
        if flag is None:
            raise _err(f"flag {cell!r} is not a forecast.frames.Flag number "
                       f"0–{int(max(frames.Flag))} (empty = 0, GOOD)", location,
                       _first(codes == j) + 2)
        table[j] = flag
    return table[codes]


def _variables(df: pd.DataFrame, location: str, station_variables: Mapping[str, str] | None,
               accept_unknown: bool) -> np.ndarray:
    """Each row's variable: the file's ``variable`` cell, else the catalogue's (see module)."""
    stations = df["station_id"]
    n = len(df)
    if station_variables is not None and not accept_unknown:
        unknown = ~stations.isin(list(station_variables)).to_numpy(dtype=bool)
        if unknown.any():
            i = _first(unknown)
            raise _err(f"station {stations.iloc[i]!r} is not in the catalogue; add it to the "
                       "catalogue (gauges or rain_gauges) or import with "
                       "--accept-unknown-stations", location, i + 2)
    given = (df["variable"].to_numpy(dtype=object) if "variable" in df.columns
             else np.full(n, "", dtype=object))
    named = given != ""
    bad = named & ~pd.Series(given).isin(list(frames.VARIABLES)).to_numpy(dtype=bool)
    if bad.any():
        i = _first(bad)
        raise _err(f"unknown variable {given[i]!r} (station {stations.iloc[i]!r}); expected "
                   f"one of {sorted(frames.VARIABLES)}", location, i + 2)
    from_catalogue = (stations.map(dict(station_variables)).to_numpy(dtype=object)
                      if station_variables is not None else np.full(n, None, dtype=object))
    out = np.where(named, given, from_catalogue)
    none = pd.isna(out)
    if none.any():
        i = _first(none)
        why = ("the file has no variable column" if "variable" not in df.columns
               else "its variable cell is empty")
        why += (" and no catalogue was given" if station_variables is None
                else " and the station is not in the catalogue")
        raise _err(f"no variable for station {stations.iloc[i]!r}: {why}; {_FIX_STATION}",
                   location, i + 2)
    return out


def _sources(text: pd.Series, location: str) -> np.ndarray:
    """Source cells, each a short identifier; checked per distinct cell."""
    values = text.to_numpy(dtype=object)
    codes, uniques = pd.factorize(values)
    for j, cell in enumerate(uniques):
        if not SOURCE_NAME.fullmatch(str(cell)):
            raise _err(f"source {cell!r} is not a short identifier [a-z0-9_]{{1,32}} "
                       "(e.g. simulated, observed)", location, _first(codes == j) + 2)
    return values


def parse_canonical_csv(
    data: bytes, location: str, *, station_variables: Mapping[str, str] | None = None,
    accept_unknown: bool = False,
) -> pd.DataFrame:
    """Parse canonical CSV bytes (format in the module docstring) into an observations frame.

    The variable of a row comes from the file's ``variable`` column when the cell is set,
    else from ``station_variables`` (station code → variable, e.g.
    ``Catalogue.station_variables()``); nothing defaults to a level. With
    ``station_variables``, a station missing from it is refused unless ``accept_unknown``
    (then it needs a variable cell). With a ``source`` column the frame has a ``source``
    column too. Every problem is a ``ParseError`` naming the file and row (and the station
    where it is about one): no offset, unparseable or infinite value, bad flag, unknown
    variable, unknown station, no variable, bad source. Non-UTF-8 bytes: ``EncodingError``.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EncodingError(f"not UTF-8 (byte {exc.start})", source=SOURCE,
                            location=location, position=f"byte {exc.start}") from exc
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise _err(f"not a CSV table: {exc}", location) from exc
    missing = {"station_id", "time", "value"} - set(df.columns)
    if missing:
        raise ParseError(f"missing columns {sorted(missing)}; need station_id,time,value",
                         source=SOURCE, location=location, position="header")
    empty = (df["station_id"] == "").to_numpy(dtype=bool)
    if empty.any():
        raise _err("empty station_id", location, _first(empty) + 2)
    has_offset = df["time"].str.contains(_OFFSET.pattern, regex=True).to_numpy(dtype=bool)
    if not has_offset.all():
        raise _err("time without a UTC offset (write e.g. 2024-07-01T09:00+09:00)", location,
                   _first(~has_offset) + 2)
    times = pd.to_datetime(df["time"], utc=True, errors="coerce", format="ISO8601")
    if times.isna().any():
        i = _first(times.isna().to_numpy())
        raise _err(f"unparseable time {df['time'].iloc[i]!r}", location, i + 2)
    values = _values(df["value"], location)
    flags = _flags(df["flag"], location) if "flag" in df.columns else None
    sources = _sources(df[frames.SOURCE], location) if frames.SOURCE in df.columns else None
    out = pd.DataFrame({
        "station_id": df["station_id"].to_numpy(dtype=object),
        "variable": _variables(df, location, station_variables, accept_unknown),
        "time": times.dt.as_unit("ns"),
        "value": values,
    })
    if flags is not None:
        out["flag"] = flags
    if sources is not None:
        out[frames.SOURCE] = sources
    try:
        return frames.observations(out)
    except FrameError as exc:
        raise _err(str(exc), location) from exc


def _iso_utc(times: pd.Series) -> np.ndarray:
    """UTC times as ISO 8601 text with ``+00:00``; whole seconds unless a time needs more
    (then nanoseconds), so every time reads back exactly."""
    ns = times.dt.tz_convert("UTC").dt.as_unit("ns").to_numpy("datetime64[ns]")
    whole = (ns.view(np.int64) % 1_000_000_000 == 0).all()
    text = np.datetime_as_string(ns, unit="s" if whole else "ns")
    return np.char.add(text.astype(str), "+00:00")


def to_canonical_csv(obs: pd.DataFrame, *, source: str | None = None) -> bytes:
    """Observations as canonical CSV: ``station_id,variable,time,value,flag[,source]``.

    Times are ISO 8601 in UTC with ``+00:00``; values are written in the shortest form that
    reads back to the same float (missing = empty); flags as ``Flag`` numbers. The ``source``
    column holds ``source`` for every row when it is given, else the frame's own ``source``
    column when it has one, else it is left out. ``parse_canonical_csv`` of the result gives
    back the same station ids, variables, times, values, flags and sources (``qc_rule`` and
    ``provisional`` are not part of this format). Raises ``FrameError`` for a frame that
    breaks the observations contract, an empty station id, or a source that is not a short
    identifier ``[a-z0-9_]{1,32}``.
    """
    df = frames.observations(obs)
    if (df["station_id"] == "").any():
        raise FrameError("canonical CSV needs a non-empty station_id in every row")
    out = pd.DataFrame({
        "station_id": df["station_id"],
        "variable": df["variable"],
        "time": _iso_utc(df["time"]),
        "value": df["value"],
        "flag": df["flag"].astype(np.int64),
    })
    labels = (pd.Series(source, index=df.index, dtype=object) if source is not None
              else df[frames.SOURCE] if frames.SOURCE in df.columns else None)
    if labels is not None:
        bad = [u for u in pd.unique(labels) if not SOURCE_NAME.fullmatch(str(u))]
        if bad:
            raise FrameError(f"source {bad[0]!r} is not a short identifier [a-z0-9_]{{1,32}}")
        out[frames.SOURCE] = labels
    # float repr (pandas' default) is the shortest text that reads back to the same float
    return out.to_csv(index=False, lineterminator="\n").encode("utf-8")
