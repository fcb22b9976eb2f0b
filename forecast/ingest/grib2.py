"""JMA 1 km rainfall GRIB2 (解析雨量, 降水短時間予報 and their 速報版) decoded with ecCodes.

Bytes in, a typed ``RainGrid`` out: hourly rain in mm/h on the JMA 1 km lat/lon grid.

* ecCodes ships no JMA-local product templates 4.50008 (analysis) / 4.50009 (forecast); this
  package carries its own in ``eccodes_definitions/`` and puts that folder first on
  ``ECCODES_EXTRA_DEFINITION_PATH`` at import. ecCodes reads the variable once, when its
  default context is created (the first ``codes_*`` call), so this module must be imported
  before anything else in the process uses ecCodes; ``decode_rain_grib`` checks it did work.
* Forecast files hold six fields in one message (Sections 4-7 repeated): read with ecCodes'
  multi-field support.
* Every message is first checked by hand (``forecast.ingest.rle.scan_message`` plus a
  run-length total per field): ecCodes trusts section lengths and the run-length stream, and
  corrupt bytes could otherwise crash the process instead of raising ``GribError``.
* ecCodes labels parameter 0/1/200 "potential evaporation, m"; it is JMA's 1-hour
  precipitation, in mm/h (= mm over the hour), and is named so here.
* Times (UTC): an analysis' Section-1 time is the **end** of its accumulation hour; forecast
  field k (k = 1..6) is rain in (init + k-1 h, init + k h].
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecast.errors import GribError
from forecast.ingest import rle

DEFINITIONS_DIR = Path(__file__).resolve().parent / "eccodes_definitions"
_ENV = "ECCODES_EXTRA_DEFINITION_PATH"


def _register_definitions() -> None:
    parts = [p for p in os.environ.get(_ENV, "").split(os.pathsep) if p]
    if str(DEFINITIONS_DIR) not in parts:
        os.environ[_ENV] = os.pathsep.join([str(DEFINITIONS_DIR), *parts])


_register_definitions()

# Load order matters. ecCodes' wheel (eckitlib) bundles an old libsqlite3 (3.26, no RETURNING)
# and its own libldap/libssl. Whichever copy loads first serves the whole process: if ecCodes
# comes first, sqlite3 loses RETURNING and libpq's libldap crashes in its exit-time destructor
# (SIGSEGV at interpreter exit). So the system sqlite3 and psycopg's libpq load here, before
# ecCodes (this is the only module that imports it; a process that never decodes GRIB2 does
# not pay for psycopg unless it uses PostgreSQL). tests/test_load_order.py checks both in a
# fresh interpreter.
import sqlite3 as _sqlite3  # noqa: E402, F401, I001

import psycopg as _psycopg  # noqa: E402, F401

import eccodes  # noqa: E402  (after the environment variable, see module docstring)
import gribapi.gribapi  # noqa: E402
from gribapi.errors import GribInternalError  # noqa: E402

CREDIT = "出典：気象庁"
SOURCE_TEXT = "Japan Meteorological Agency (出典：気象庁); decoded and cut by mie-river-forecast"
_TIME_UNIT_MIN = {0: 1, 1: 60, 2: 1440}   # GRIB2 code table 4.4 -> minutes


class ProductKind(StrEnum):
    """Which JMA rain product a file holds."""

    ANALYSIS = "analysis"                   # 解析雨量 (every 30 min)
    QUICK_ANALYSIS = "quick_analysis"       # 速報版解析雨量 (every 10 min)
    FORECAST = "forecast"                   # 降水短時間予報 FT1-6 (every 30 min)
    QUICK_FORECAST = "quick_forecast"       # 速報版降水短時間予報 (every 10 min)

    @property
    def is_forecast(self) -> bool:
        return self in (ProductKind.FORECAST, ProductKind.QUICK_FORECAST)

    @property
    def product_name(self) -> str:
        """Value of the ``product`` column in rain-vintage frames."""
        return {
            ProductKind.ANALYSIS: "jma_analysis",
            ProductKind.QUICK_ANALYSIS: "jma_quick_analysis",
            ProductKind.FORECAST: "jma_srf_forecast",
            ProductKind.QUICK_FORECAST: "jma_quick_srf_forecast",
        }[self]


class Window(NamedTuple):
    """A rectangle of grid cells: rows [row0, row1), cols [col0, col1) of the full grid."""

    row0: int
    row1: int
    col0: int
    col1: int


@dataclass(frozen=True)
class LatLonGrid:
    """Regular lat/lon grid of cell centres, rows from north to south, cols west to east."""

    lat_first: float    # degrees N of the north-west cell centre
    lon_first: float    # degrees E
    dlat: float         # degrees between rows (positive; rows go south)
    dlon: float         # degrees between columns
    ny: int
    nx: int

    def lats(self, window: Window | None = None) -> npt.NDArray[np.float64]:
        """Cell-centre latitudes (degrees N) of the rows of ``window`` (default: all)."""
        w = window or self.full
        return self.lat_first - np.arange(w.row0, w.row1, dtype=np.float64) * self.dlat

    def lons(self, window: Window | None = None) -> npt.NDArray[np.float64]:
        """Cell-centre longitudes (degrees E) of the columns of ``window`` (default: all)."""
        w = window or self.full
        return self.lon_first + np.arange(w.col0, w.col1, dtype=np.float64) * self.dlon

    @property
    def full(self) -> Window:
        return Window(0, self.ny, 0, self.nx)

    def same_as(self, other: LatLonGrid, tol_deg: float = 1e-5) -> bool:
        """True when both describe the same cells (coded coordinates are micro-degrees)."""
        return (self.ny, self.nx) == (other.ny, other.nx) and all(
            abs(a - b) <= tol_deg
            for a, b in ((self.lat_first, other.lat_first), (self.lon_first, other.lon_first),
                         (self.dlat * self.ny, other.dlat * other.ny),
                         (self.dlon * self.nx, other.dlon * other.nx))
        )


# The JMA 1 km rain grid (2560 x 3360 cells; step 1/120 deg N-S, 1/80 deg E-W).
JMA_1KM = LatLonGrid(48.0 - 1 / 240, 118.0 + 1 / 160, 1 / 120, 1 / 80, 3360, 2560)


@dataclass(frozen=True)
class LevelTable:
    """Section 5 level table of one field: ``values_mm_h[m]`` for level m (0 = missing)."""

    values_mm_h: tuple[float, ...]   # R(m) / 10**E for m = 1..M
    scale: int                       # decimal scale factor E
    max_level_used: int              # V

    @property
    def n_levels(self) -> int:
        """M, the number of level values (98 in standard files, fewer in some quick ones)."""
        return len(self.values_mm_h)


@dataclass(frozen=True)
class RainGrid:
    """Decoded hourly rain: ``values[k, i, j]`` mm/h, NaN where JMA has no data.

    ``issued_at`` is the forecast's initial time, or for analyses its valid time.
    ``valid_at[k]`` is the end of field k's accumulation hour (UTC); ``lead_h[k]`` its lead
    in hours (0 for analyses). ``values`` covers ``window`` of ``grid``.
    """

    kind: ProductKind
    issued_at: pd.Timestamp
    valid_at: tuple[pd.Timestamp, ...]
    lead_h: tuple[int, ...]
    values: npt.NDArray[np.float32]
    grid: LatLonGrid
    window: Window
    level_tables: tuple[LevelTable, ...]
    source: str

    def to_xarray(self) -> Any:
        """An ``xarray.Dataset`` (dims valid_at, lat, lon) with variable ``precipitation``.

        ``valid_at`` is naive UTC (xarray has no tz-aware time index); attributes carry the
        JMA credit, product and issue time.
        """
        import xarray as xr

        times = pd.DatetimeIndex(self.valid_at).tz_convert("UTC").tz_localize(None)
        return xr.Dataset(
            {"precipitation": (("valid_at", "lat", "lon"), self.values, {
                "units": "mm h-1", "long_name": "1-hour precipitation (hour ending valid_at)",
            })},
            coords={
                "valid_at": ("valid_at", times, {"timezone": "UTC"}),
                "lead_h": ("valid_at", np.asarray(self.lead_h)),
                "lat": ("lat", self.grid.lats(self.window), {"units": "degrees_north"}),
                "lon": ("lon", self.grid.lons(self.window), {"units": "degrees_east"}),
            },
            attrs={
                "source": SOURCE_TEXT, "credit": CREDIT, "product": self.kind.value,
                "issued_at": self.issued_at.isoformat(), "file": self.source,
            },
        )


def read_rain_grib(path: str | Path, *, kind: ProductKind | None = None,
                   window: Window | None = None) -> RainGrid:
    """Read and decode a JMA rain GRIB2 file; see ``decode_rain_grib``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise GribError(f"cannot read file: {exc.strerror}", source=rle.SOURCE,
                        location=str(p)) from exc
    return decode_rain_grib(data, name=str(p), kind=kind, window=window)


def decode_rain_grib(data: bytes, *, name: str = "<bytes>", kind: ProductKind | None = None,
                     window: Window | None = None) -> RainGrid:
    """Decode one JMA 1 km rain GRIB2 message (all fields) into mm/h.

    ``name`` (file name or URL) is used in errors and to tell the 速報版 products from the
    standard ones, which have the same bytes: JMA names them ``..._Aper10min_...`` /
    ``..._Fper10min_...``; a reference time off the half hour also means 速報版. ``kind``
    overrides the guess. ``window`` keeps only those cells (the full grid is always
    run-length decoded first); default all 3360 x 2560 cells. A grid that does not hold
    ``window`` is a ``GribError`` too (the file is not the expected 1 km product).

    Raises ``GribError`` (naming ``name`` and a byte offset where known) for non-GRIB,
    GRIB1, truncated or corrupt bytes, foreign centres (not 34 RJTD), test data (production
    status 1) and products other than JMA hourly rain.
    """
    layout = rle.scan_message(data, name)
    _check_origin(layout, name)
    for f in layout.fields:   # ecCodes does not bound the decoded run total: check it first
        try:
            rle.check_run_lengths(rle.unpack_codes(f.stream, f.nbits), f.maxv, f.nbits,
                                  f.n_values)
        except ValueError as exc:
            raise GribError(str(exc), source=rle.SOURCE, location=name,
                            position=f"byte {f.section7 + 5}") from exc
    templates = {f.template4 for f in layout.fields}
    if len(templates) != 1:
        raise GribError(f"mixed product templates {sorted(templates)} in one message",
                        source=rle.SOURCE, location=name)
    is_forecast = templates == {rle.FORECAST_TEMPLATE}
    if window is not None and not (0 <= window.row0 < window.row1 <= layout.nj
                                   and 0 <= window.col0 < window.col1 <= layout.ni):
        raise GribError(f"window {window} is outside the message's {layout.nj} x {layout.ni} "
                        "grid", source=rle.SOURCE, location=name)
    _check_definitions(name)
    try:
        grid, fields = _decode_fields(data, window, name)
    except GribInternalError as exc:
        raise GribError(f"ecCodes could not decode the message: {exc}", source=rle.SOURCE,
                        location=name) from exc
    if len(fields) != len(layout.fields):
        raise GribError(f"ecCodes read {len(fields)} fields, the message has "
                        f"{len(layout.fields)}", source=rle.SOURCE, location=name)
    win = window or grid.full
    reference = _utc(layout.reference, name)
    valid_at, lead_h = [], []
    for k, meta in enumerate(fields):
        valid = _valid_time(meta, reference, name, layout.fields[k].section4)
        valid_at.append(valid)
        lead_h.append(round((valid - reference) / pd.Timedelta(hours=1)) if is_forecast else 0)
    if is_forecast and lead_h != list(range(1, len(lead_h) + 1)):
        raise GribError(f"forecast leads {lead_h} h are not 1..{len(lead_h)}",
                        source=rle.SOURCE, location=name)
    if not is_forecast and valid_at != [reference]:
        raise GribError("analysis does not end at its reference time",
                        source=rle.SOURCE, location=name)
    return RainGrid(
        kind=kind or _guess_kind(is_forecast, name, reference),
        issued_at=reference,
        valid_at=tuple(valid_at),
        lead_h=tuple(lead_h),
        values=np.stack([m["values"] for m in fields]),
        grid=grid,
        window=win,
        level_tables=tuple(m["levels"] for m in fields),
        source=name,
    )


def _check_origin(layout: rle.MessageLayout, name: str) -> None:
    if layout.centre != rle.JMA_CENTRE:
        raise GribError(f"centre {layout.centre} is not JMA (34, RJTD)", source=rle.SOURCE,
                        location=name, position="byte 21 (Section 1 octet 6)")
    if layout.production_status == 1:
        raise GribError("production status 1: JMA test data, not for use", source=rle.SOURCE,
                        location=name, position="byte 35 (Section 1 octet 20)")
    if layout.scanning_mode != 0:
        raise GribError(f"scanning mode {layout.scanning_mode} (expected 0: rows west to east "
                        "from the north-west corner)", source=rle.SOURCE, location=name)


def _check_definitions(name: str) -> None:
    found = gribapi.gribapi.grib_full_defs_path("grib2/local/rjtd/template.4.50008.def")
    if not found:
        raise GribError(
            "ecCodes does not see the JMA templates: it was initialised before "
            f"forecast.ingest.grib2 was imported. Set {_ENV}={DEFINITIONS_DIR} in the "
            "environment or import forecast.ingest.grib2 first", source=rle.SOURCE,
            location=name)


def _decode_fields(data: bytes, window: Window | None, name: str
                   ) -> tuple[LatLonGrid, list[dict[str, Any]]]:
    # Multi-field reading needs a FILE*; an anonymous temporary file keeps the API bytes-in.
    fields: list[dict[str, Any]] = []
    grid: LatLonGrid | None = None
    eccodes.codes_grib_multi_support_on()
    with tempfile.TemporaryFile() as fh:
        fh.write(data)
        fh.seek(0)
        try:
            while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
                try:
                    if grid is None:
                        grid = _grid(h, name)
                    fields.append(_field(h, grid, window or grid.full, name))
                finally:
                    eccodes.codes_release(h)
        finally:
            eccodes.codes_grib_multi_support_reset_file(fh)
    if grid is None:
        raise GribError("ecCodes found no field", source=rle.SOURCE, location=name)
    return grid, fields


def _grid(h: int, name: str) -> LatLonGrid:
    g = {k: eccodes.codes_get(h, k) for k in (
        "Ni", "Nj", "latitudeOfFirstGridPointInDegrees", "longitudeOfFirstGridPointInDegrees",
        "latitudeOfLastGridPointInDegrees", "longitudeOfLastGridPointInDegrees")}
    ni, nj = int(g["Ni"]), int(g["Nj"])
    lat0, lat1 = g["latitudeOfFirstGridPointInDegrees"], g["latitudeOfLastGridPointInDegrees"]
    lon0, lon1 = g["longitudeOfFirstGridPointInDegrees"], g["longitudeOfLastGridPointInDegrees"]
    if ni < 2 or nj < 2 or not (lat0 > lat1 and lon1 > lon0):
        raise GribError(f"unexpected grid corners ({lat0}, {lon0}) - ({lat1}, {lon1})",
                        source=rle.SOURCE, location=name)
    # Dj is coded as 8333 micro-degrees, but the true step is 1/120 deg: use the corners.
    return LatLonGrid(float(lat0), float(lon0), (lat0 - lat1) / (nj - 1), (lon1 - lon0) / (ni - 1),
                      nj, ni)


def _field(h: int, grid: LatLonGrid, window: Window, name: str) -> dict[str, Any]:
    get = eccodes.codes_get
    meta: dict[str, Any] = {k: get(h, k) for k in (
        "indicatorOfUnitOfTimeRange", "forecastTime", "typeOfStatisticalProcessing",
        "indicatorOfUnitForTimeRange", "lengthOfTimeRange", "yearOfEndOfOverallTimeInterval",
        "monthOfEndOfOverallTimeInterval", "dayOfEndOfOverallTimeInterval",
        "hourOfEndOfOverallTimeInterval", "minuteOfEndOfOverallTimeInterval",
        "secondOfEndOfOverallTimeInterval", "decimalScaleFactor", "maxLevelValue")}
    scale = int(meta["decimalScaleFactor"])
    levels = eccodes.codes_get_array(h, "levelValues")
    meta["levels"] = LevelTable(tuple(float(v) for v in levels / 10.0**scale), scale,
                                int(meta["maxLevelValue"]))
    # Level 0 (missing) comes out as NaN. (Asking ecCodes for float32 values crashes on
    # template 5.200 in 2.50, so decode as float64 and convert the window.)
    eccodes.codes_set(h, "missingValue", float("nan"))
    flat = eccodes.codes_get_values(h)
    cut = flat.reshape(grid.ny, grid.nx)[window.row0:window.row1, window.col0:window.col1]
    # a corrupt level table or decimal scale can decode to values float32 cannot hold (inf)
    if np.any(np.abs(cut) > np.finfo(np.float32).max):
        raise GribError(f"decoded values overflow float32 (decimal scale factor {scale})",
                        source=rle.SOURCE, location=name)
    meta["values"] = cut.astype(np.float32)
    return meta


def _utc(t: tuple[int, ...], name: str) -> pd.Timestamp:
    try:
        year, month, day, hour, minute, second = t
        return pd.Timestamp(datetime(year, month, day, hour, minute, second, tzinfo=UTC))
    except (ValueError, TypeError) as exc:
        raise GribError(f"impossible time {t}", source=rle.SOURCE, location=name) from exc


def _valid_time(m: dict[str, Any], reference: pd.Timestamp, name: str, offset: int
                ) -> pd.Timestamp:
    where = {"source": rle.SOURCE, "location": name, "position": f"byte {offset}"}
    unit = _TIME_UNIT_MIN.get(int(m["indicatorOfUnitOfTimeRange"]))
    unit_len = _TIME_UNIT_MIN.get(int(m["indicatorOfUnitForTimeRange"]))
    if unit is None or unit_len is None:
        raise GribError("unsupported time unit", **where)
    length = int(m["lengthOfTimeRange"]) * unit_len
    if int(m["typeOfStatisticalProcessing"]) != 1 or length != 60:
        raise GribError(f"not a 1-hour accumulation ({length} min, statistical process "
                        f"{m['typeOfStatisticalProcessing']})", **where)
    valid = reference + timedelta(minutes=int(m["forecastTime"]) * unit + length)
    end = _utc(tuple(int(m[f"{p}OfEndOfOverallTimeInterval"]) for p in (
        "year", "month", "day", "hour", "minute", "second")), name)
    if end != valid:
        raise GribError(f"end of accumulation {end} disagrees with forecast time ({valid})",
                        **where)
    return valid


def _guess_kind(is_forecast: bool, name: str, reference: pd.Timestamp) -> ProductKind:
    quick = "per10min" in Path(name).name or reference.minute % 30 != 0
    if is_forecast:
        return ProductKind.QUICK_FORECAST if quick else ProductKind.FORECAST
    return ProductKind.QUICK_ANALYSIS if quick else ProductKind.ANALYSIS
