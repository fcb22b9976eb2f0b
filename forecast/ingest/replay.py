"""The Replay source: stored history played back as if it were arriving live.

Give it an observations frame (simulated or real; with an optional ``received_at`` column,
UTC) and rain vintages; ask what was *available* at a clock time. A reading is available once
``max(time, received_at)`` has passed (just ``time`` without ``received_at``: real archives
rarely know their arrival time); a rain vintage once ``issued_at`` has passed. Used by the demo
(a simulated flood "live"), staff training and hindcasts of past floods, through
``forecast.collect.collect_replay``, which stores the replayed rows by the same archive → parse
→ QC → store path as live data (``to_csv`` / ``parse_replay_csv`` are that payload format).

Pure: no clock read (the clock is an argument), no I/O. Rows are sorted once by availability
time so each query is two binary searches plus a slice.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import pandas as pd

from forecast import frames
from forecast.errors import ParseError
from forecast.ingest.canonical_csv import parse_canonical_csv

SOURCE: Final = "replay"
_NS: Final = "datetime64[ns, UTC]"


def _utc_ns(t: datetime, name: str) -> int:
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got {t!r}")
    return int(ts.tz_convert("UTC").value)


@dataclass(frozen=True)
class ReplaySlice:
    """What a replay makes available: ``observations`` (canonical columns plus ``received_at``,
    the time the row became available, UTC) and ``rain`` (rain-vintage frame)."""

    observations: pd.DataFrame
    rain: pd.DataFrame


@dataclass(frozen=True, eq=False)   # holds arrays: compare by identity
class Replay:
    """Plays ``observations`` and ``rain`` (rain vintages) against a clock.

    Build with ``Replay.of(observations, rain)``; the constructor expects the sorted internal
    form.
    """

    observations: pd.DataFrame           # canonical + received_at, sorted by received_at
    rain: pd.DataFrame                   # rain vintages sorted by issued_at
    name: str = SOURCE
    _obs_avail: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    _obs_time: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    _rain_issued: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of(cls, observations: pd.DataFrame, rain: pd.DataFrame | None = None, *,
           name: str = SOURCE) -> Replay:
        """A replay of an observations frame (``forecast.frames`` contract, optional
        ``received_at`` UTC column; NaT means "on time") and optional rain vintages."""
        obs = frames.observations(observations)
        time_ns = obs["time"].to_numpy("datetime64[ns]").view(np.int64)
        if "received_at" in observations.columns:
            rec = pd.to_datetime(observations["received_at"], utc=True).reset_index(drop=True)
            rec_ns = rec.to_numpy("datetime64[ns]").view(np.int64)
            missing = rec.isna().to_numpy()
            # a reading cannot be known before it was measured, whatever received_at says
            avail = np.where(missing, time_ns, np.maximum(rec_ns, time_ns))
        else:
            avail = time_ns
        order = np.argsort(avail, kind="stable")
        obs = obs.iloc[order].reset_index(drop=True)
        avail = avail[order]
        obs["received_at"] = pd.DatetimeIndex(avail.view("M8[ns]")).tz_localize("UTC")
        if rain is None or rain.empty:
            rv = frames.rain_vintages(pd.DataFrame({
                "product": pd.Series([], dtype=object),
                "catchment_id": pd.Series([], dtype=object),
                "issued_at": pd.Series([], dtype=_NS), "valid_at": pd.Series([], dtype=_NS),
                "value": pd.Series([], dtype="float64")}))
        else:
            rv = frames.rain_vintages(rain)
            rv = rv.sort_values("issued_at", kind="stable").reset_index(drop=True)
        return cls(obs, rv, name, avail, time_ns[order],
                   rv["issued_at"].to_numpy("datetime64[ns]").view(np.int64))

    def available_at(self, clock: datetime, *, window: timedelta | None = None) -> ReplaySlice:
        """Rows available at ``clock``: observations received at or before ``clock`` and rain
        vintages issued at or before it. ``window`` keeps only observations with ``time`` and
        vintages with ``issued_at`` in ``(clock - window, clock]``."""
        c = _utc_ns(clock, "clock")
        n_obs = int(np.searchsorted(self._obs_avail, c, side="right"))
        n_rain = int(np.searchsorted(self._rain_issued, c, side="right"))
        obs = self.observations.iloc[:n_obs]
        rain = self.rain.iloc[:n_rain]
        if window is not None:
            lo = c - int(pd.Timedelta(window).value)
            obs = obs[self._obs_time[:n_obs] > lo]
            rain = rain[self._rain_issued[:n_rain] > lo]
        return ReplaySlice(obs.reset_index(drop=True), rain.reset_index(drop=True))

    def arrived_between(self, after: datetime, clock: datetime) -> ReplaySlice:
        """Rows that became available in ``(after, clock]``: what a live feed polled at
        ``after`` and again at ``clock`` would deliver the second time."""
        a, c = _utc_ns(after, "after"), _utc_ns(clock, "clock")
        o0, o1 = np.searchsorted(self._obs_avail, [a, c], side="right")
        r0, r1 = np.searchsorted(self._rain_issued, [a, c], side="right")
        return ReplaySlice(self.observations.iloc[o0:o1].reset_index(drop=True),
                           self.rain.iloc[r0:r1].reset_index(drop=True))


def _iso(times: pd.Series) -> pd.Series:
    out: pd.Series = times.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    return out


def to_csv(obs: pd.DataFrame) -> bytes:
    """Observations as canonical CSV (``station_id,variable,time,value,flag,qc_rule,
    provisional``; times ISO 8601 UTC with offset; values round-trip exactly)."""
    df = frames.observations(obs)
    out = df.assign(time=_iso(df["time"]), provisional=df["provisional"].astype(int))
    return out.to_csv(index=False, lineterminator="\n").encode("utf-8")


def parse_replay_csv(data: bytes, location: str) -> pd.DataFrame:
    """Read ``to_csv`` output back: ``canonical_csv`` plus the ``qc_rule`` and
    ``provisional`` columns (so source flags such as ``mlit:$`` survive the replay)."""
    obs = parse_canonical_csv(data, location)
    try:
        extra = pd.read_csv(io.BytesIO(data), usecols=["qc_rule", "provisional"],
                            dtype={"qc_rule": str}, keep_default_na=False)
    except ValueError as exc:
        raise ParseError(f"replay CSV lacks qc_rule/provisional: {exc}", source=SOURCE,
                         location=location) from exc
    obs["qc_rule"] = extra["qc_rule"].astype(object).to_numpy()
    obs["provisional"] = pd.to_numeric(extra["provisional"]).astype(bool).to_numpy()
    return frames.observations(obs)


def rain_to_csv(rain: pd.DataFrame) -> bytes:
    """Rain vintages as CSV (``product,catchment_id,issued_at,valid_at,value``; UTC)."""
    df = frames.rain_vintages(rain)
    out = df.assign(issued_at=_iso(df["issued_at"]), valid_at=_iso(df["valid_at"]))
    return out.to_csv(index=False, lineterminator="\n").encode("utf-8")


def parse_rain_csv(data: bytes, location: str) -> pd.DataFrame:
    """Read ``rain_to_csv`` output back into a rain-vintage frame."""
    try:
        df = pd.read_csv(io.BytesIO(data), dtype={"product": str, "catchment_id": str})
        for c in ("issued_at", "valid_at"):
            df[c] = pd.to_datetime(df[c], utc=True, format="ISO8601")
        return frames.rain_vintages(df)
    except (ValueError, KeyError, pd.errors.ParserError) as exc:
        raise ParseError(f"not a rain-vintage CSV: {exc}", source=SOURCE,
                         location=location) from exc
