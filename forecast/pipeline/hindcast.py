"""Hindcasts: a past (or simulated) flood replayed through the operational tick.

``run_hindcast`` runs ``tick.run_tick`` for every issue time of a window, in order, with a
``Replay`` as the only feed and the context's ``FixedClock`` moved to each tick's time
(T + tick delay), so each tick collects exactly what a live deployment would have had then
(archive → parse → QC → store) and forecasts from data up to T only. The notification stage
is pluggable (``notify``, the tick's ``Notify``), so the same run measures notifications once
they exist.

The evidence for the notifications is read from the replay and the stored forecasts:

* ``observed_crossings``: when the observed level first reached each threshold (from the raw
  readings, no QC, no model: the independent side of the comparison);
* ``observed_recessions``: when it last fell back below each threshold (for the all-clear);
* ``forecast_crossings``: the simple rule "the first tick whose P50 at any lead 1–6 h reaches
  the threshold" on the stored forecasts (a cross-check figure, not the alert engine);
* ``lead_time_table``: observed crossing against first notification per level (lead gained,
  minutes; positive = notified before the level was reached).

The real 厚東川 flood of 2023-07-01 (``tests/data/kotogawa``) comes in through the
``kotogawa_csv`` source: ``import_kotogawa_history`` stores the record up to a cut-off by the
import path, ``kotogawa_replay`` replays the whole file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import pandas as pd

from forecast.catalogue import AlertLevel, River
from forecast.clock import FixedClock
from forecast.errors import ConfigError
from forecast.features import LEADS
from forecast.frames import LEVEL
from forecast.ingest.kotogawa import SOURCE as KOTO_SOURCE
from forecast.ingest.kotogawa import parse_kotogawa_csv
from forecast.ingest.replay import Replay
from forecast.pipeline.collect import collect_replay
from forecast.pipeline.context import Context
from forecast.pipeline.importer import ImportReport, import_files
from forecast.pipeline.models import ModelProvider
from forecast.pipeline.tick import (
    Deliver,
    Feeds,
    Notify,
    TickReport,
    no_notifications,
    run_tick,
)

STEP: Final = timedelta(minutes=30)
"""The scheduler's step between issue times."""
TRIGGER: Final = "hindcast"
JST: Final = "Asia/Tokyo"

Ladder = Sequence[tuple[AlertLevel, float]]
"""(level, threshold in metres at the gauge), rising."""


def ladder(river: River) -> list[tuple[AlertLevel, float]]:
    """The river's threshold ladder as ``AlertLevel`` and metres, rising."""
    return [(AlertLevel.from_key(name), m) for name, m in river.thresholds.ladder()]


def jst(t: datetime | pd.Timestamp | None) -> str:
    """``YYYY-MM-DD HH:MM`` JST, or ``–``."""
    return "–" if t is None else f"{pd.Timestamp(t).tz_convert(JST):%Y-%m-%d %H:%M}"


# ---------------------------------------------------------------- 厚東川 (real data)
def kotogawa_replay(csv_path: Path, *, name: str = KOTO_SOURCE) -> Replay:
    """The 厚東川 CSV (``forecast.ingest.kotogawa``) as a replay: every reading available
    at its observation time (the file records no arrival times); no rain vintages (no archive
    of JMA forecast rain for 2023 comes with it)."""
    path = Path(csv_path)
    return Replay.of(parse_kotogawa_csv(path.read_bytes(), str(path)), name=name)


def import_kotogawa_history(ctx: Context, csv_path: Path, *, until: datetime,
                            workdir: Path) -> ImportReport:
    """Store the 厚東川 record up to ``until`` (inclusive, tz-aware) by the import path
    (archive → parse → QC → store, source ``kotogawa_csv``): the file's header and the rows
    timed at or before ``until`` are written unchanged to ``workdir`` and imported. Nothing
    after ``until`` is read into the database."""
    if until.tzinfo is None:
        raise ValueError(f"naive datetime {until!r}: pass a timezone-aware time")
    path = Path(csv_path)
    lines = path.read_bytes().splitlines(keepends=True)
    cut = f"{pd.Timestamp(until).tz_convert(JST):%Y/%m/%d %H:%M}".encode()
    # the first field is YYYY/MM/DD HH:MM (JST): fixed width, so bytes order like times
    kept = [lines[0], *(ln for ln in lines[1:] if ln[:16] <= cut)]
    stamp = f"{pd.Timestamp(until).tz_convert('UTC'):%Y%m%dT%H%MZ}"
    out = Path(workdir) / f"{path.stem}_until_{stamp}.csv"
    out.write_bytes(b"".join(kept))
    return import_files(ctx, [out], source=KOTO_SOURCE)


# ---------------------------------------------------------------- the replayed ticks
def issue_times(start: datetime, end: datetime, step: timedelta = STEP) -> list[datetime]:
    """Issue times start, start + step, … ≤ end (UTC)."""
    times = pd.date_range(pd.Timestamp(start).tz_convert("UTC"),
                          pd.Timestamp(end).tz_convert("UTC"), freq=step)
    return [t.to_pydatetime() for t in times]


def run_hindcast(ctx: Context, replay: Replay, start: datetime, end: datetime, *,
                 notify: Notify = no_notifications, deliver: Deliver | None = None,
                 step: timedelta = STEP,
                 catch_up_from: datetime | None = None, models: ModelProvider | None = None,
                 force: bool = False, rain_product: str | None = None,
                 progress: Callable[[TickReport], object] | None = None) -> list[TickReport]:
    """Run the tick of every issue time in [start, end] (whole or half UTC hours, ``step``
    apart), in order, on ``replay`` alone (trigger ``hindcast``).

    ``ctx.clock`` must be a ``FixedClock``: before each tick it is set to T + tick delay
    (``Settings.tick_delay_min``), the time the scheduler would run it, so the tick collects
    what had arrived by then and stamps its rows and runs with that time. ``catch_up_from``:
    first store the replay rows that arrived in (catch_up_from, first tick's clock] (what a
    deployment running since then would hold, e.g. from the end of the imported history).
    ``force``: run issue times that already have a finished tick again (new revisions).
    ``progress`` is called with each tick's report. Returns the reports in issue-time order.
    """
    clock = ctx.clock
    if not isinstance(clock, FixedClock):
        raise ConfigError("a hindcast moves the clock: build the context with a FixedClock")
    delay = timedelta(minutes=ctx.settings.tick_delay_min)
    times = issue_times(start, end, step)
    feeds = Feeds(replay=replay)
    if catch_up_from is not None and times:
        clock.set(times[0] + delay)
        collect_replay(ctx, replay, times[0] + delay, since=catch_up_from)
    reports = []
    for t in times:
        clock.set(t + delay)
        report = run_tick(ctx, t, feeds=feeds, trigger=TRIGGER, force=force, models=models,
                          notify=notify, deliver=deliver, rain_product=rain_product)
        reports.append(report)
        if progress is not None:
            progress(report)
    return reports


# ---------------------------------------------------------------- what was observed
def _level_series(obs: pd.DataFrame, gauge: str, start: datetime | None,
                  end: datetime | None) -> pd.Series:
    """The gauge's raw level readings (m) by time: NaN and 0 (missing) dropped, no QC."""
    mine = obs[(obs["station_id"] == gauge) & (obs["variable"] == LEVEL)]
    s = pd.Series(mine["value"].to_numpy(dtype="float64"),
                  index=pd.DatetimeIndex(mine["time"]).tz_convert("UTC")).sort_index()
    s = s[s.notna() & (s != 0.0)]
    if start is not None:
        s = s[s.index >= pd.Timestamp(start)]
    if end is not None:
        s = s[s.index <= pd.Timestamp(end)]
    return s


def observed_crossings(obs: pd.DataFrame, levels: Ladder, gauge: str, *,
                       start: datetime | None = None, end: datetime | None = None
                       ) -> dict[AlertLevel, datetime | None]:
    """When the observed level at ``gauge`` first reached (≥) each threshold in
    [start, end]: the time of the first such reading (UTC), None if never.

    ``obs``: observations frame (``station_id, variable, time, value``; level in m). Raw
    readings: no QC flag is consulted; NaN and 0 (written for missing) are skipped."""
    s = _level_series(obs, gauge, start, end)
    out: dict[AlertLevel, datetime | None] = {}
    for level, m in levels:
        hit = s.index[s.to_numpy() >= m]
        out[level] = hit[0].to_pydatetime() if len(hit) else None
    return out


def observed_recessions(obs: pd.DataFrame, levels: Ladder, gauge: str, *,
                        start: datetime | None = None, end: datetime | None = None
                        ) -> dict[AlertLevel, datetime | None]:
    """When the observed level at ``gauge`` fell back below each threshold for good in
    [start, end]: the first reading below it after the last reading at or above it (UTC);
    None if it never reached the threshold or was still at or above it at the end."""
    s = _level_series(obs, gauge, start, end)
    out: dict[AlertLevel, datetime | None] = {}
    for level, m in levels:
        above = s.index[s.to_numpy() >= m]
        after = s[s.index > above[-1]] if len(above) else s.iloc[:0]
        out[level] = after.index[0].to_pydatetime() if len(after) else None
    return out


# ---------------------------------------------------------------- what was forecast
def forecast_crossings(fc: pd.DataFrame, levels: Ladder, *,
                       leads: Sequence[int] = LEADS) -> dict[AlertLevel, datetime | None]:
    """The simple rule "notify at the first tick whose P50 at any of ``leads`` reaches the
    threshold", on one river's stored forecasts (``storage.forecasts.forecasts_issued``
    frame: ``issued_at, horizon_h, q50, created_at``; first revision per issue time).

    Returns, per level, when that forecast existed: its ``created_at`` (in a hindcast the
    tick's clock, T + tick delay), None if no forecast reached it."""
    first = fc[fc["revision"] == fc.groupby("issued_at")["revision"].transform("min")]
    first = first[first["horizon_h"].isin(list(leads))]
    peak = first.groupby("issued_at").agg(q50=("q50", "max"), created_at=("created_at", "min"))
    out: dict[AlertLevel, datetime | None] = {}
    for level, m in levels:
        hit = peak[peak["q50"] >= m]
        out[level] = (pd.Timestamp(hit["created_at"].iloc[0]).to_pydatetime() if len(hit)
                      else None)
    return out


# ---------------------------------------------------------------- the table
@dataclass(frozen=True)
class LeadRow:
    """One level of the lead-time table; ``lead_min`` > 0: notified before the crossing."""

    level: AlertLevel
    threshold_m: float | None
    observed_at: datetime | None
    notified_at: datetime | None
    lead_min: float | None
    basis: str | None
    note: str

    def as_dict(self) -> dict[str, object]:
        """JSON-able: level key, times JST (ISO 8601 with offset), lead in minutes."""
        def iso(t: datetime | None) -> str | None:
            return None if t is None else pd.Timestamp(t).tz_convert(JST).isoformat()

        return {"level": self.level.key, "level_ja": self.level.name_ja,
                "threshold_m": self.threshold_m, "observed_at": iso(self.observed_at),
                "notified_at": iso(self.notified_at), "lead_min": self.lead_min,
                "basis": self.basis, "note": self.note}


def lead_time_table(crossings: Mapping[AlertLevel, datetime | None],
                    first_notified: Mapping[AlertLevel, datetime | None], *,
                    basis: Mapping[AlertLevel, str] | None = None,
                    thresholds: Mapping[AlertLevel, float] | None = None) -> list[LeadRow]:
    """Per level (rising): the observed crossing against the first notification and the lead
    gained in minutes (crossing − notification; positive = notified before the level was
    reached). ``basis``: why it was notified (observed / forecast / probability)."""
    rows = []
    for level in sorted(set(crossings) | set(first_notified)):
        seen, sent = crossings.get(level), first_notified.get(level)
        lead = None
        if seen is not None and sent is not None:
            lead = (pd.Timestamp(seen) - pd.Timestamp(sent)).total_seconds() / 60.0
            note = "before the crossing" if lead > 0 else "at or after the crossing"
        elif seen is not None:
            note = "missed: reached, never notified"
        elif sent is not None:
            note = "false alarm: notified, never reached"
        else:
            note = "not reached, not notified"
        rows.append(LeadRow(level, (thresholds or {}).get(level), seen, sent, lead,
                            (basis or {}).get(level), note))
    return rows


def markdown_table(rows: Sequence[LeadRow], *, notified: str = "first notification") -> str:
    """The lead-time table in markdown (times JST, lead in minutes)."""
    out = [f"| level | threshold (m) | observed crossing (JST) | {notified} (JST) | "
           "lead gained (min) | basis | note |", "|---|---:|---|---|---:|---|---|"]
    for r in rows:
        m = "–" if r.threshold_m is None else f"{r.threshold_m:.2f}"
        lead = "–" if r.lead_min is None else f"{r.lead_min:+.0f}"
        out.append(f"| {r.level.short_ja} ({r.level.key}) | {m} | {jst(r.observed_at)} | "
                   f"{jst(r.notified_at)} | {lead} | {r.basis or '–'} | {r.note} |")
    return "\n".join(out)
