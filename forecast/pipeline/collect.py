"""The one store path for observations, and collection: fetch → archive → parse → QC → store.

``store_observations`` is the only way observations reach storage, whatever their way in (file
import, live fetch, replay, simulation, demo): QC over the stored recent window plus the new
rows, then an idempotent upsert, in one transaction. ``recheck_qc`` re-runs QC over stored
history (after the catalogue's limits change). ``collect`` runs every source of one cycle;
``collect_replay`` stores what a ``Replay`` makes available at a clock time by the same path
(the replayed rows are archived as a CSV payload, so re-parsing from the archive works the same
for both).

Rules:
* every payload is archived (``archive_payload``) *before* it is parsed, so a parser bug never
  loses data; its parse outcome is recorded with ``mark_parsed``;
* a source that is down (``SourceError``), a payload that does not parse (``ParseError``) or a
  station whose rows cannot be checked or stored never stops the others: each outcome is in
  the ``CollectReport`` (and the log);
* QC runs over the stored recent window plus the new rows (``apply_qc``), and the verdicts of
  the last ``REEVALUATE`` (6 h 30 min) before the earliest new reading are rewritten: the
  spike, gap-fill and datum-jump rules look up to 6 h ahead, so a new reading can change them;
* re-ingesting the same bytes adds no rows and no revisions (storage upserts are idempotent
  and QC is deterministic).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecast import frames
from forecast.catalogue import Catalogue
from forecast.errors import ConfigError, ForecastError, SourceError, StorageError
from forecast.ingest.replay import Replay, parse_rain_csv, parse_replay_csv, rain_to_csv, to_csv
from forecast.ingest.sources import Parsed, Source
from forecast.pipeline.context import Context
from forecast.qc import RainLimits, apply_qc
from forecast.storage.archive import archive_payload, mark_parsed
from forecast.storage.engine import transaction
from forecast.storage.observations import read_observations, upsert_observations
from forecast.storage.rain import upsert_rain_vintages

if TYPE_CHECKING:
    from forecast.ingest.fetch import Fetched, Fetcher

log = logging.getLogger(__name__)

REEVALUATE = timedelta(hours=6, minutes=30)
"""How far back a new reading can change QC verdicts (look-ahead of the QC rules)."""
DATUM_JUMP_CONTEXT = timedelta(hours=6)
"""History the datum-jump rule needs before a step (``forecast.qc``)."""


@dataclass
class PayloadOutcome:
    """One URL (or replay payload): ``status`` is ``stored``, ``not_modified``,
    ``fetch_failed``, ``archive_failed``, ``parse_failed`` or ``store_failed``."""

    url: str
    status: str
    rows: int = 0
    fetch_id: int | None = None
    error: str = ""


@dataclass
class SourceReport:
    """Outcome of one source: payloads, rows written, rejected records and failed stations."""

    name: str
    payloads: list[PayloadOutcome] = field(default_factory=list)
    inserted: int = 0
    revised: int = 0
    rain_rows: int = 0
    record_errors: list[str] = field(default_factory=list)
    failed_stations: dict[str, str] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        """No source-level error, no failed payload and no failed station."""
        return not self.error and not self.failed_stations and all(
            p.status in ("stored", "not_modified") for p in self.payloads)

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        """(source, url or station, error) of everything that failed."""
        out = [(self.name, "", self.error)] if self.error else []
        out += [(self.name, p.url, p.error) for p in self.payloads if p.error]
        out += [(self.name, st, e) for st, e in self.failed_stations.items()]
        return out


@dataclass
class CollectReport:
    """Per-source outcomes of one ``collect`` or ``collect_replay`` call."""

    sources: dict[str, SourceReport] = field(default_factory=dict)

    @property
    def inserted(self) -> int:
        """New observation rows over all sources."""
        return sum(s.inserted for s in self.sources.values())

    @property
    def revised(self) -> int:
        """Observation rows whose value, flag or provisional status changed."""
        return sum(s.revised for s in self.sources.values())

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        """(source, url or station, error) of everything that failed."""
        return [f for s in self.sources.values() for f in s.failures]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _lookback(catalogue: Catalogue, rain: RainLimits) -> pd.Timedelta:
    """History QC needs before the rows it re-evaluates (stuck runs, datum-jump flat hours)."""
    stuck = max([r.qc.stuck_hours for r in catalogue.rivers] + [rain.stuck_hours])
    return max(pd.Timedelta(hours=stuck), pd.Timedelta(DATUM_JUMP_CONTEXT)) + pd.Timedelta("1h")


def _merge(stored: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Stored rows plus new ones; on a shared key the new row wins, except that a verified
    stored reading is not replaced by a provisional one (the storage rule for 暫定 → 確定)."""
    keys = new[["station_id", "variable"]].drop_duplicates()
    stored = stored.merge(keys, on=["station_id", "variable"])[list(frames.OBS_COLUMNS)]
    if stored.empty:
        return new
    fill = (stored["qc_rule"] == "gap_fill").to_numpy()
    prio_stored = np.where(stored["provisional"].to_numpy() | fill, 0, 2)
    prio_new = np.where(new["provisional"].to_numpy(), 1, 3)
    both = pd.concat([stored, new], ignore_index=True)
    both["_prio"] = np.concatenate([prio_stored, prio_new])
    both = both.sort_values("_prio", kind="stable")
    both = both.drop_duplicates(["station_id", "variable", "time"], keep="last")
    return frames.observations(both.drop(columns="_prio"))


@dataclass(frozen=True)
class StoreResult:
    """Rows written by ``store_observations`` and the stations that failed (with error)."""

    inserted: int = 0
    revised: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def _qc_store(ctx: Context, new: pd.DataFrame, *, source: str, now: datetime,
              rain: RainLimits) -> tuple[int, int]:
    # Per station: rows from REEVALUATE before its earliest new reading are re-checked, with
    # the look-back before that as context (so a chunk of a long import re-reads only the
    # tail of what the previous chunk stored for the same station).
    rewrite_from = new.groupby("station_id")["time"].min() - pd.Timedelta(REEVALUATE)
    context_from = rewrite_from - _lookback(ctx.catalogue, rain)
    with transaction(ctx.engine, f"storing observations from {source}") as conn:
        stored = read_observations(conn, station_ids=sorted(rewrite_from.index),
                                   start=context_from.min().to_pydatetime())
        stored = stored[stored["time"] >= stored["station_id"].map(context_from)]
        checked = apply_qc(_merge(stored, new), ctx.catalogue, rain_limits=rain)
        # Older context rows only inform the rules; their verdicts were settled by earlier runs.
        out = checked[checked["time"] >= checked["station_id"].map(rewrite_from)]
        res = upsert_observations(conn, out, source=source, now=now)
    return res.inserted, res.revised


def store_observations(ctx: Context, obs: pd.DataFrame, *, source: str,
                       now: datetime | None = None,
                       rain_limits: RainLimits | None = None) -> StoreResult:
    """QC new observations together with the stored recent window, then upsert them.

    ``obs``: observations frame (``forecast.frames``), any stations; its flags are the
    source's own (e.g. MLIT 欠測) and QC adds its verdicts. ``source`` is stored with every row
    (the ingest source, or the provenance such as ``simulated``); ``now`` the ingest time
    (default: the context's clock). Rows from ``REEVALUATE`` before the earliest new reading
    onwards are re-checked and rewritten (idempotent: unchanged rows are left alone). If the
    batch fails, each station is retried alone so one bad station is reported in
    ``StoreResult.failed`` and the others are stored.
    """
    new = frames.observations(obs)
    if new.empty:
        return StoreResult()
    now = now or ctx.clock.now()
    rain = rain_limits or RainLimits()
    try:
        return StoreResult(*_qc_store(ctx, new, source=source, now=now, rain=rain))
    except ForecastError as exc:
        stations = sorted(new["station_id"].unique())
        if len(stations) == 1:
            log.warning("storing %s from %s failed: %s", stations[0], source, exc)
            return StoreResult(failed={stations[0]: _describe(exc)})
    inserted = revised = 0
    failed: dict[str, str] = {}
    for station, rows in new.groupby("station_id", sort=True):
        try:
            i, r = _qc_store(ctx, rows.reset_index(drop=True), source=source, now=now,
                             rain=rain)
        except ForecastError as exc:
            log.warning("storing %s from %s failed: %s", station, source, exc)
            failed[str(station)] = _describe(exc)
            continue
        inserted, revised = inserted + i, revised + r
    return StoreResult(inserted, revised, failed)


Parse = Callable[[bytes, str], Parsed]


def _ingest(ctx: Context, source: str, url: str, data: bytes, fetched_at: datetime,
            parse: Parse) -> tuple[PayloadOutcome, Parsed | None]:
    """Archive (committed), then parse one payload; failures become the outcome, never an
    exception."""
    try:
        with transaction(ctx.engine, f"archiving {url}") as conn:
            archived = archive_payload(conn, data, source=source, uri=url,
                                       fetched_at=fetched_at)
    except StorageError as exc:
        log.error("archiving %s from %s failed: %s", url, source, exc)
        return PayloadOutcome(url, "archive_failed", error=_describe(exc)), None
    outcome = PayloadOutcome(url, "stored", fetch_id=archived.fetch_id)
    try:
        parsed = parse(data, url)
    except (ForecastError, ValueError) as exc:   # ValueError: e.g. a grid that misses a window
        log.warning("payload %s from %s does not parse: %s", url, source, exc)
        outcome.status, outcome.error = "parse_failed", _describe(exc)
        _mark(ctx, archived.fetch_id, ok=False, error=outcome.error)
        return outcome, None
    outcome.rows = parsed.rows
    return outcome, parsed


def _mark(ctx: Context, fetch_id: int, *, ok: bool, rows: int | None = None,
          error: str | None = None) -> None:
    with transaction(ctx.engine, "recording a parse outcome") as conn:
        mark_parsed(conn, fetch_id, ok=ok, rows=rows, error=error)


def _store(ctx: Context, report: SourceReport,
           items: Sequence[tuple[PayloadOutcome, Parsed]], *, now: datetime) -> None:
    """Store every parsed payload of one source, then record each payload's outcome."""
    for _, p in items:
        report.record_errors += [str(e) for e in p.errors]
    obs = [p.observations for _, p in items if not p.observations.empty]
    rain = [p.rain for _, p in items if not p.rain.empty]
    rain_error = ""
    if obs:
        res = store_observations(ctx, pd.concat(obs, ignore_index=True), source=report.name,
                                 now=now)
        report.inserted += res.inserted
        report.revised += res.revised
        report.failed_stations.update(res.failed)
    if rain:
        try:
            with transaction(ctx.engine, f"storing rain vintages from {report.name}") as conn:
                report.rain_rows += upsert_rain_vintages(
                    conn, pd.concat(rain, ignore_index=True), now=now)
        except ForecastError as exc:
            log.warning("storing rain vintages from %s failed: %s", report.name, exc)
            rain_error = _describe(exc)
    for outcome, p in items:
        assert outcome.fetch_id is not None
        bad = sorted(set(p.observations["station_id"]) & report.failed_stations.keys())
        error = rain_error if not p.rain.empty else ""
        if bad:
            error = "; ".join(f"{s}: {report.failed_stations[s]}" for s in bad)
        if error:
            outcome.status, outcome.error = "store_failed", error
            _mark(ctx, outcome.fetch_id, ok=False, error=error)
        else:
            _mark(ctx, outcome.fetch_id, ok=True, rows=p.rows)


@dataclass
class Fetch:
    """What ``fetch_source`` brought back for one source: the URLs and, per URL, the answer or
    the error (``error``: the source could not even list its URLs)."""

    source: Source
    urls: list[str] = field(default_factory=list)
    answers: list[Fetched | SourceError] = field(default_factory=list)
    error: str = ""


def fetch_source(source: Source, window: timedelta, *, now: datetime, fetcher: Fetcher,
                 deadline: float | None = None) -> Fetch:
    """The network half of ``collect_source``: list the URLs of ``(now - window, now]`` and
    fetch them (by ``deadline``, a ``time.monotonic()`` value). Touches no storage, so the
    sources of a tick can be fetched concurrently; never raises for the source's failures."""
    try:
        urls = source.urls(pd.Timestamp(now) - pd.Timedelta(window), now)
    except (ForecastError, ValueError, TypeError) as exc:   # e.g. a naive `now`
        return Fetch(source, error=_describe(exc))
    return Fetch(source, urls, fetcher.fetch_many(source.name, urls, deadline=deadline))


def ingest_fetched(ctx: Context, fetched: Fetch, *, now: datetime, fetcher: Fetcher
                   ) -> SourceReport:
    """The storage half of ``collect_source``: archive each payload (before parsing), parse,
    QC and store; every failure becomes part of the report."""
    source = fetched.source
    report = SourceReport(source.name, error=fetched.error)
    items: list[tuple[PayloadOutcome, Parsed]] = []
    for url, got in zip(fetched.urls, fetched.answers, strict=True):
        if isinstance(got, SourceError):
            log.warning("%s", got)
            report.payloads.append(PayloadOutcome(url, "fetch_failed", error=_describe(got)))
            continue
        if got.not_modified or got.content is None:
            report.payloads.append(PayloadOutcome(url, "not_modified"))
            continue
        outcome, parsed = _ingest(ctx, source.name, url, got.content, got.fetched_at,
                                  lambda d, u: source.parse(d, u, now=now))
        if outcome.status == "archive_failed":
            fetcher.forget(url)   # we kept nothing: the next run must download it again
        report.payloads.append(outcome)
        if parsed is not None:
            items.append((outcome, parsed))
    _store(ctx, report, items, now=now)
    return report


def collect_source(ctx: Context, source: Source, window: timedelta, *, now: datetime,
                   fetcher: Fetcher, deadline: float | None = None) -> SourceReport:
    """``collect`` for one source (see there); never raises for the source's own failures."""
    return ingest_fetched(ctx, fetch_source(source, window, now=now, fetcher=fetcher,
                                            deadline=deadline), now=now, fetcher=fetcher)


def collect(ctx: Context, sources: Sequence[Source], window: timedelta, *,
            fetcher: Fetcher | None = None, now: datetime | None = None) -> CollectReport:
    """Fetch every source's payloads for ``(now - window, now]`` and store what they hold.

    ``fetcher`` defaults to the context's. Each payload is archived before parsing;
    observations go through ``store_observations`` (QC over the stored recent window, then an
    idempotent upsert with ``source`` = the source name); rain vintages through
    ``upsert_rain_vintages``. ``now`` (UTC, default the context's clock) is the ingest time.
    Returns a ``CollectReport``; only storage failures outside a source's own work raise.
    """
    now = now or ctx.clock.now()
    fetcher = fetcher or ctx.fetcher
    if fetcher is None:
        raise ConfigError("this context has no HTTP fetcher (Context.from_settings builds one)")
    report = CollectReport()
    for source in sources:
        report.sources[source.name] = collect_source(ctx, source, window, now=now,
                                                     fetcher=fetcher)
    return report


def collect_replay(ctx: Context, replay: Replay, clock: datetime, *,
                   since: datetime | None = None,
                   window: timedelta = timedelta(hours=24)) -> CollectReport:
    """Store what ``replay`` makes available at ``clock`` by the live path.

    With ``since``: the rows that arrived in ``(since, clock]`` (call it every cycle with the
    previous clock); without: ``replay.available_at(clock, window=window)``. Observations and
    rain vintages are archived as CSV payloads (source = ``replay.name``, URI
    ``replay://{name}/…?clock=…``), parsed back, QC'd and stored with ``ingested_at = clock``.
    """
    part = replay.arrived_between(since, clock) if since is not None \
        else replay.available_at(clock, window=window)
    report = SourceReport(replay.name)
    stamp = pd.Timestamp(clock).tz_convert("UTC").isoformat()
    items: list[tuple[PayloadOutcome, Parsed]] = []
    payloads: list[tuple[str, pd.DataFrame, Callable[[pd.DataFrame], bytes], Parse]] = [
        ("observations", part.observations, to_csv,
         lambda d, u: Parsed(observations=parse_replay_csv(d, u))),
        ("rain", part.rain, rain_to_csv, lambda d, u: Parsed(rain=parse_rain_csv(d, u))),
    ]
    for kind, df, write, parse in payloads:
        if df.empty:
            continue
        url = f"replay://{replay.name}/{kind}?clock={stamp}"
        outcome, parsed = _ingest(ctx, replay.name, url, write(df), clock, parse)
        report.payloads.append(outcome)
        if parsed is not None:
            items.append((outcome, parsed))
    _store(ctx, report, items, now=clock)
    return CollectReport({replay.name: report})


def recheck_qc(ctx: Context, *, stations: Sequence[str] | None = None,
               start: datetime | None = None, end: datetime | None = None,
               rain_limits: RainLimits | None = None) -> StoreResult:
    """Re-run QC over stored observations (e.g. after the catalogue's limits changed) and
    rewrite the flags that change; values are never changed, and the old flags move to the
    observation history. ``stations`` None: every station of the catalogue; [start, end):
    the window (None: all). Returns the rows revised, per station failures recorded."""
    rain = rain_limits or RainLimits()
    codes = list(stations) if stations is not None else sorted(
        {c for r in ctx.catalogue.rivers for c in r.station_codes})
    now = ctx.clock.now()
    revised = 0
    failed: dict[str, str] = {}
    for code in codes:
        try:
            with transaction(ctx.engine, f"re-checking {code}") as conn:
                ctx_start = None if start is None else \
                    (pd.Timestamp(start) - _lookback(ctx.catalogue, rain)).to_pydatetime()
                stored = read_observations(conn, station_ids=[code], start=ctx_start, end=end)
                if stored.empty:
                    continue
                # apply_qc undoes its own earlier verdicts first, so each value is judged
                # anew from its source flag under today's limits.
                checked = apply_qc(stored[list(frames.OBS_COLUMNS)], ctx.catalogue,
                                   rain_limits=rain)
                if start is not None:
                    checked = checked[checked["time"] >= pd.Timestamp(start)]
                # keep each row's stored source (provenance); fills take the station's
                key = ["station_id", "variable", "time"]
                checked = checked.merge(stored[[*key, "source"]], on=key, how="left")
                checked["source"] = checked["source"].fillna(stored["source"].iloc[-1])
                for src, part in checked.groupby("source", sort=True):
                    res = upsert_observations(conn, part.drop(columns="source"),
                                              source=str(src), now=now)
                    revised += res.revised
        except ForecastError as exc:
            log.warning("re-checking %s failed: %s", code, exc)
            failed[code] = _describe(exc)
    return StoreResult(0, revised, failed)
