"""Live sources: which URLs to fetch for a time window and which parser reads each payload.

A source is anything with a ``name``, ``urls(start, end)`` and ``parse(data, url, now=...)``
(the ``Source`` protocol). ``parse`` returns a ``Parsed`` with an observations frame and/or a
rain-vintage frame (``forecast.frames``) plus the record-level errors the parser collected.
Stations choose their source in the catalogue (``Gauge.source`` / ``RainGauge.source``):
``sources_for_catalogue`` builds one source per source name in use.

Base URLs are parameters (JMA and k.river.go.jp move things; tests use fake hosts). The JSON
endpoints are undocumented public files, not APIs (DOMAIN.md §3, §4.2): fetch them sparingly.

Pure: building URLs and parsing read no clock (``now`` is an argument) and do no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Protocol

import pandas as pd

from forecast import frames
from forecast.catalogue import Catalogue, Catchment
from forecast.errors import ParseError
from forecast.ingest.amedas import parse_amedas_map, parse_amedas_point
from forecast.ingest.crisis import parse_crisis_json

if TYPE_CHECKING:
    from forecast.ingest.gridrain import WeightSet

log = logging.getLogger(__name__)

AMEDAS_BASE: Final = "https://www.jma.go.jp/bosai/amedas/data"
CRISIS_BASE: Final = "https://k.river.go.jp/swin/files/area_info/current"
MIE_PREF_CODE: Final = 24000
_JST: Final = "Asia/Tokyo"

ObsParser = Callable[[bytes, str], pd.DataFrame]


def _empty_rain() -> pd.DataFrame:
    return frames.rain_vintages(pd.DataFrame({
        "product": pd.Series([], dtype=object), "catchment_id": pd.Series([], dtype=object),
        "issued_at": pd.Series([], dtype="datetime64[ns, UTC]"),
        "valid_at": pd.Series([], dtype="datetime64[ns, UTC]"),
        "value": pd.Series([], dtype="float64")}))


@dataclass(frozen=True)
class Parsed:
    """What one payload yielded: ``observations`` (canonical frame), ``rain`` (rain-vintage
    frame) and ``errors`` (rejected records; the rest of the payload still counts)."""

    observations: pd.DataFrame = field(default_factory=frames.empty_observations)
    rain: pd.DataFrame = field(default_factory=_empty_rain)
    errors: tuple[ParseError, ...] = ()

    @property
    def rows(self) -> int:
        """Observation rows plus rain-vintage rows."""
        return len(self.observations) + len(self.rain)


class Source(Protocol):
    """A live source: URLs for a window ``(start, end]`` (UTC) and a parser for each payload."""

    @property
    def name(self) -> str: ...

    def urls(self, start: datetime, end: datetime) -> list[str]: ...

    def parse(self, data: bytes, url: str, *, now: datetime) -> Parsed: ...


def _keep(df: pd.DataFrame, station_ids: frozenset[str] | None) -> pd.DataFrame:
    if station_ids is None:
        return df
    return df[df["station_id"].isin(station_ids)].reset_index(drop=True)


def _jst_floor(t: datetime, freq: str) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        raise ValueError(f"window bound {t!r} must be timezone-aware")
    return ts.tz_convert(_JST).floor(freq)


def _steps(start: datetime, end: datetime, freq: str) -> pd.DatetimeIndex:
    """JST times on the ``freq`` grid in ``(start, end]``."""
    first = _jst_floor(start, freq) + pd.Timedelta(freq)
    last = _jst_floor(end, freq)
    return pd.date_range(first, last, freq=freq) if last >= first else pd.DatetimeIndex([])


@dataclass(frozen=True)
class AmedasMap:
    """AMeDAS map snapshots ``{base}/map/YYYYMMDDhhmm00.json`` (JST), one per 10 minutes;
    ``rain_mm`` per 10 min for ``station_ids`` (all stations when None)."""

    station_ids: frozenset[str] | None = None
    base_url: str = AMEDAS_BASE
    name: str = "amedas"

    def urls(self, start: datetime, end: datetime) -> list[str]:
        """One URL per 10-minute step in ``(start, end]``."""
        return [f"{self.base_url}/map/{t:%Y%m%d%H%M}00.json"
                for t in _steps(start, end, "10min")]

    def parse(self, data: bytes, url: str, *, now: datetime) -> Parsed:
        """``forecast.ingest.amedas.parse_amedas_map`` (time from the URL), filtered."""
        return Parsed(observations=_keep(parse_amedas_map(data, url, now=now), self.station_ids))


@dataclass(frozen=True)
class AmedasPoint:
    """AMeDAS point files ``{base}/point/{code}/{YYYYMMDD}_{HH}.json``: one station, 3-hour
    blocks starting at 00, 03, ... 21 JST. Fewer requests than maps for a long catch-up."""

    station_ids: frozenset[str]
    base_url: str = AMEDAS_BASE
    name: str = "amedas_point"

    def urls(self, start: datetime, end: datetime) -> list[str]:
        """Every station's blocks overlapping ``(start, end]``."""
        first = _jst_floor(start, "3h")
        last = _jst_floor(end, "3h")
        blocks = pd.date_range(first, last, freq="3h")
        return [f"{self.base_url}/point/{code}/{b:%Y%m%d_%H}.json"
                for code in sorted(self.station_ids) for b in blocks]

    def parse(self, data: bytes, url: str, *, now: datetime) -> Parsed:
        """``forecast.ingest.amedas.parse_amedas_point`` (station code from the URL)."""
        return Parsed(observations=parse_amedas_point(data, url, now=now))


@dataclass(frozen=True)
class CrisisArea:
    """Crisis-management gauges of one prefecture: ``{base}/{pref_code}.json`` (Mie 24000).

    The file is "current" only, so the window does not change the URL (late readings keep
    their own obsTime). Rejected records are returned in ``Parsed.errors``, not raised.
    """

    station_ids: frozenset[str] | None = None
    pref_code: int = MIE_PREF_CODE
    base_url: str = CRISIS_BASE
    name: str = "crisis_json"

    def urls(self, start: datetime, end: datetime) -> list[str]:
        """Always the one area file."""
        return [f"{self.base_url}/{self.pref_code}.json"]

    def parse(self, data: bytes, url: str, *, now: datetime) -> Parsed:
        """Readings (``level_m``, m) of ``station_ids``; per-record errors collected."""
        payload = parse_crisis_json(data, url, now=now)
        return Parsed(observations=_keep(payload.readings, self.station_ids),
                      errors=tuple(payload.errors))


@dataclass(frozen=True)
class UrlList:
    """Fixed URLs read by an importer-style parser ``(bytes, location) -> observations``
    (e.g. MLIT .dat downloads or a prefecture telemetry export)."""

    name: str
    urls_: tuple[str, ...]
    parser: ObsParser
    station_ids: frozenset[str] | None = None

    def urls(self, start: datetime, end: datetime) -> list[str]:
        """The configured URLs, whatever the window."""
        return list(self.urls_)

    def parse(self, data: bytes, url: str, *, now: datetime) -> Parsed:
        """The configured parser's observations, filtered to ``station_ids``."""
        return Parsed(observations=_keep(self.parser(data, url), self.station_ids))


@dataclass
class JmaGrib:
    """JMA 1 km rain GRIB2 (解析雨量 / 降水短時間予報) from a configured base URL, averaged
    over the catchments: rain vintages (mm over the hour ending ``valid_at``).

    ``pattern`` is formatted with the UTC issue time ``t`` (JMA's file names by default);
    issue times are every ``every`` in ``(start, end]``. Catchment weights are built on the
    first parse and reused.
    """

    catchments: Mapping[str, Catchment]
    base_url: str
    name: str = "jma_grib2"
    pattern: str = "Z__C_RJTD_{t:%Y%m%d%H%M%S}_SRF_GPV_Ggis1km_Prr60lv_FH01-06_grib2.bin"
    every: timedelta = timedelta(minutes=30)
    _weights: WeightSet | None = field(default=None, init=False, repr=False)

    def urls(self, start: datetime, end: datetime) -> list[str]:
        """One URL per issue time in ``(start, end]``."""
        freq = pd.Timedelta(self.every)
        first = pd.Timestamp(start).tz_convert("UTC").floor(freq) + freq
        times = pd.date_range(first, pd.Timestamp(end).tz_convert("UTC"), freq=freq)
        return [f"{self.base_url}/{self.pattern.format(t=t)}" for t in times]

    def parse(self, data: bytes, url: str, *, now: datetime) -> Parsed:
        """Decode, cut to the catchments' window and average (``GribError`` if bad)."""
        # ecCodes and the polygon code load with the first GRIB2 payload, not at start-up
        from forecast.ingest.grib2 import decode_rain_grib
        from forecast.ingest.gridrain import build_weights, catchment_rain

        if self._weights is None:
            self._weights = build_weights(self.catchments)
        grid = decode_rain_grib(data, name=url, window=self._weights.window)
        return Parsed(rain=frames.rain_vintages(catchment_rain(grid, self._weights)))


def parse_crisis_readings(data: bytes, location: str) -> pd.DataFrame:
    """Importer parser for crisis JSON: the readings frame; rejected records are logged."""
    payload = parse_crisis_json(data, location)
    for err in payload.errors:
        log.warning("crisis record skipped: %s", err)
    return payload.readings


def _codes(catalogue: Catalogue, source: str) -> frozenset[str]:
    gauges = {g.code for r in catalogue.rivers for g in r.gauges if g.source == source}
    rain = {g.code for r in catalogue.rivers for g in r.rain_gauges if g.source == source}
    return frozenset(gauges | rain)


def sources_for_catalogue(
    catalogue: Catalogue,
    *,
    amedas_base: str = AMEDAS_BASE,
    crisis_base: str = CRISIS_BASE,
    pref_code: int = MIE_PREF_CODE,
    grib_base: str | None = None,
    known: Collection[str] = ("amedas", "amedas_point", "crisis_json"),
) -> list[Source]:
    """One live source per catalogue ``source`` name in use (``amedas``, ``amedas_point``,
    ``crisis_json``), restricted to the catalogue's stations of that source; plus ``JmaGrib``
    over every catchment when ``grib_base`` is given. Other names (``simulated``, file
    imports) have no live source and are skipped."""
    out: list[Source] = []
    for name in sorted(known):
        codes = _codes(catalogue, name)
        if not codes:
            continue
        if name == "amedas":
            out.append(AmedasMap(codes, amedas_base))
        elif name == "amedas_point":
            out.append(AmedasPoint(codes, amedas_base))
        elif name == "crisis_json":
            out.append(CrisisArea(codes, pref_code, crisis_base))
    if grib_base is not None:
        out.append(JmaGrib({r.id: r.catchment for r in catalogue.rivers}, grib_base))
    return out
