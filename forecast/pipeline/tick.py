"""The operational tick: collect → forecast → notify for one issue time, recorded as one run.

``run_tick(ctx, T)`` is the one function the scheduler, ``forecast run-once`` and replays call.
Under the issue-time lock of T it

1. **collects**: every live source is fetched concurrently, each by its own time limit
   (``Settings.source_timeout_s``; the fetcher stops retrying and cuts request timeouts at the
   deadline, so a hung source returns in time), then each source's payloads are archived
   (before parsing), parsed, QC'd and stored one source after another; a replay feed (the live
   demo, hindcasts) stores what it makes available at the collection clock by the same path.
   The collection clock is ``T + tick delay`` (never later than now), so re-running T collects
   the same window;
2. **forecasts** every river (``cycle.forecast_stage``: the best model variant whose inputs
   are there, persistence as the last step; stale inputs become low-confidence reasons);
3. **notifies**: the notification stage (``pipeline.notify.notify_stage`` unless another
   ``notify`` is given): alert engine → notifications and outbox rows, committed per river;
   then, when a ``deliver`` function is given (the scheduler's, ``forecast run-once``'s), it
   delivers what is due (``pipeline.deliver``; a delivery failure never fails the tick);
4. records the run (``cycle_runs`` with ``kind = tick`` and each stage's seconds), each river's
   outcome and each source's outcome.

Idempotent: a T that already has a finished tick (ok or partial) is not run again unless
``force`` (then it is a new revision). A run that a stopped process left "running" is closed as
``interrupted`` by the next run of its T. A failure of the database while a river or a payload
is stored fails that river or payload (recorded if the database answers again, and named in
the run's message); elsewhere it propagates after the run is closed as failed if the database
still answers; a run that could not be closed stays "running" until the next run of its T
closes it as interrupted. A river's six leads and its outcome are committed together, so no
partial forecast set is ever stored (tests/test_tick_faults.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from forecast.errors import ConfigError, CycleError, ForecastError
from forecast.ingest.replay import Replay
from forecast.ingest.sources import Source, sources_for_catalogue
from forecast.pipeline.collect import (
    SourceReport,
    collect_replay,
    fetch_source,
    ingest_fetched,
)
from forecast.pipeline.context import Context
from forecast.pipeline.cycle import (
    CycleReport,
    Inputs,
    close_run,
    forecast_stage,
    issue_time,
    open_run,
)
from forecast.pipeline.models import ModelProvider
from forecast.storage.cycles import completed_ticks, issue_lock, record_source_outcome
from forecast.storage.engine import transaction

log = logging.getLogger(__name__)

LIVE_WINDOW = timedelta(hours=1)
"""Live sources are asked for the hour before the collection clock (each tick's window
overlaps the previous one; conditional requests make the overlap cheap)."""
REPLAY_WINDOW = timedelta(hours=3)
"""A replay feed re-offers the last 3 hours (late readings; idempotent upserts)."""

Notify = Callable[[Context, CycleReport, Inputs], object]
Deliver = Callable[[Context], object]


def no_notifications(ctx: Context, report: CycleReport, inputs: Inputs) -> None:
    """A notification stage that does nothing (hindcasts of forecasts alone, tests)."""


def _notify_stage(ctx: Context, report: CycleReport, inputs: Inputs) -> object:
    from forecast.pipeline.notify import notify_stage

    return notify_stage(ctx, report, inputs)


@dataclass(frozen=True)
class Feeds:
    """What a tick collects from: live ``sources`` and/or a ``replay``."""

    sources: tuple[Source, ...] = ()
    replay: Replay | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources] + ([self.replay.name] if self.replay else [])


def feeds_from_settings(ctx: Context) -> Feeds:
    """The replay of ``FORECAST_REPLAY`` when set, else the catalogue's live sources."""
    if ctx.settings.replay is not None:
        from forecast.pipeline.demo import load_replay

        return Feeds(replay=load_replay(ctx.settings.replay))
    return Feeds(sources=tuple(sources_for_catalogue(ctx.catalogue)))


@dataclass(frozen=True)
class SourceOutcome:
    """How one source fared in a tick."""

    source: str
    status: str            # ok | partial | failed | timed_out
    payloads: int = 0
    rows: int = 0
    failures: int = 0
    seconds: float = 0.0
    message: str | None = None


@dataclass
class TickReport:
    """What a tick did. ``skipped``: why it did not run (already done)."""

    issued_at: datetime
    cycle: CycleReport | None = None
    sources: list[SourceOutcome] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    notified: object = None      # what the notify stage returned (``notify.NotifyReport``)

    @property
    def status(self) -> str:
        """skipped | ok | partial (a river or a source failed) | failed."""
        if self.skipped is not None:
            return "skipped"
        if self.cycle is None:
            return "failed"
        status = self.cycle.status
        if status == "ok" and any(s.status != "ok" for s in self.sources):
            return "partial"
        return status


def _outcome(report: SourceReport, seconds: float) -> SourceOutcome:
    failures = report.failures
    rows = report.inserted + report.revised + report.rain_rows
    # the tick's time limit, or every attempt's request timeout (``ingest.fetch``)
    timed_out = any(m in (p.error or "") for p in report.payloads
                    for m in ("time limit reached", "timed out ("))
    if report.ok:
        status = "ok"
    elif timed_out:
        status = "timed_out"
    elif report.error or not any(p.status in ("stored", "not_modified")
                                 for p in report.payloads):
        status = "failed"
    else:
        status = "partial"
    message = "; ".join(f"{where}: {err}" if where else err for _, where, err in failures[:3])
    if len(failures) > 3:
        message += f"; and {len(failures) - 3} more"
    return SourceOutcome(report.name, status, len(report.payloads), rows, len(failures),
                         round(seconds, 3), message or None)


def collect_stage(ctx: Context, feeds: Feeds, at: datetime) -> list[SourceOutcome]:
    """Collect every feed at clock time ``at`` (see the module docstring)."""
    outcomes: list[SourceOutcome] = []
    if feeds.sources:
        if ctx.fetcher is None:
            raise ConfigError("this context has no HTTP fetcher (Context.from_settings "
                              "builds one)")
        fetcher = ctx.fetcher
        started = time.monotonic()
        deadline = started + ctx.settings.source_timeout_s
        with ThreadPoolExecutor(max_workers=len(feeds.sources)) as pool:
            futures = [pool.submit(fetch_source, s, LIVE_WINDOW, now=at, fetcher=fetcher,
                                   deadline=deadline) for s in feeds.sources]
            fetched = [(f.result(), time.monotonic() - started) for f in futures]
        for got, fetch_s in fetched:
            t0 = time.monotonic()
            try:
                report = ingest_fetched(ctx, got, now=at, fetcher=fetcher)
            except ForecastError as exc:   # storage failing for this source: record, go on
                log.warning("tick: storing %s failed: %s", got.source.name, exc)
                report = SourceReport(got.source.name, error=f"{type(exc).__name__}: {exc}")
            outcomes.append(_outcome(report, fetch_s + time.monotonic() - t0))
    if feeds.replay is not None:
        t0 = time.monotonic()
        rep = collect_replay(ctx, feeds.replay, at, window=REPLAY_WINDOW)
        for report in rep.sources.values():
            outcomes.append(_outcome(report, time.monotonic() - t0))
    return outcomes


def collection_clock(ctx: Context, issued: pd.Timestamp) -> datetime:
    """``T + tick delay``, or now if that is still in the future."""
    at = (issued + pd.Timedelta(minutes=ctx.settings.tick_delay_min)).to_pydatetime()
    return min(at, ctx.clock.now())


def run_tick(ctx: Context, issued_at: datetime, *, feeds: Feeds | None = None,
             trigger: str = "run-once", force: bool = False,
             models: ModelProvider | None = None, notify: Notify | None = None,
             deliver: Deliver | None = None, rain_product: str | None = None) -> TickReport:
    """Run the tick of issue time ``issued_at`` (whole or half UTC hour); see the module
    docstring. ``feeds`` default: ``feeds_from_settings``. Raises ``CycleError`` when the
    time is not an issue time or another process holds its lock."""
    issued = issue_time(issued_at)
    feeds = feeds if feeds is not None else feeds_from_settings(ctx)
    tick = TickReport(issued.to_pydatetime())
    with issue_lock(ctx.engine, issued.to_pydatetime(), owner=ctx.owner, now=ctx.clock.now()):
        if not force:
            with transaction(ctx.engine, "checking earlier ticks") as conn:
                done = completed_ticks(conn, issued_from=issued.to_pydatetime(),
                                       issued_to=issued.to_pydatetime())
            if done:
                tick.skipped = (f"issue time {issued:%Y-%m-%d %H:%M}Z already has a finished "
                                "tick (use --force for a new revision)")
                return tick
        report = open_run(ctx, issued, trigger=trigger, kind="tick")
        tick.cycle = report
        status = "failed"
        message: str | None = "aborted in the collect stage"
        t_all = time.monotonic()
        try:
            t0 = time.monotonic()
            tick.sources = collect_stage(ctx, feeds, collection_clock(ctx, issued))
            tick.stages["collect"] = round(time.monotonic() - t0, 3)
            with transaction(ctx.engine, "recording the source outcomes") as conn:
                for s in tick.sources:
                    record_source_outcome(conn, report.cycle_id, source=s.source,
                                          status=s.status, payloads=s.payloads, rows=s.rows,
                                          failures=s.failures, seconds=s.seconds,
                                          message=s.message)
            message = "aborted in the forecast stage"
            t0 = time.monotonic()
            inputs = forecast_stage(ctx, report, models=models, rain_product=rain_product)
            tick.stages["forecast"] = round(time.monotonic() - t0, 3)
            message = "aborted in the notify stage"
            t0 = time.monotonic()
            tick.notified = (notify or _notify_stage)(ctx, report, inputs)
            tick.stages["notify"] = round(time.monotonic() - t0, 3)
            if deliver is not None:
                t0 = time.monotonic()
                try:
                    deliver(ctx)
                except Exception:   # delivery retries on its own; the tick's work is stored
                    log.exception("tick %s: delivery failed", issued)
                tick.stages["deliver"] = round(time.monotonic() - t0, 3)
            status = tick.status
            bad = [s.source for s in tick.sources if s.status != "ok"]
            # in the run itself: a river's own outcome row may not have been recordable
            failed = [o.river_id for o in report.outcomes if o.status in ("failed", "skipped")]
            parts = [f"sources not ok: {', '.join(bad)}"] if bad else []
            if failed:
                parts.append(f"rivers failed: {', '.join(failed)}")
            message = "; ".join(parts) or None
        except Exception as exc:
            message = f"{message}: {type(exc).__name__}: {exc}"
            raise
        finally:
            tick.stages["total"] = round(time.monotonic() - t_all, 3)
            close_run(ctx, report.cycle_id, status, message, stages=tick.stages)
    return tick


def due_issue_times(now: datetime, *, delay: timedelta, limit: int,
                    done: set[datetime]) -> list[datetime]:
    """Issue times to run at ``now``, oldest first: of the newest ``limit`` issue times whose
    tick time (T + ``delay``) has passed, those without a finished tick in ``done``."""
    newest = (pd.Timestamp(now) - pd.Timedelta(delay)).floor("30min")
    times = [(newest - pd.Timedelta(minutes=30 * k)).to_pydatetime()
             for k in range(limit - 1, -1, -1)]
    return [t for t in times if t not in done]


@dataclass
class DueReport:
    """What ``run_due`` did: the ticks run, in order, and the issue times skipped because
    another process held their lock."""

    ticks: list[TickReport] = field(default_factory=list)
    locked: list[datetime] = field(default_factory=list)
    missed: list[datetime] = field(default_factory=list)


def run_due(ctx: Context, *, feeds: Feeds | None = None, trigger: str = "schedule",
            limit: int | None = None, notify: Notify | None = None,
            deliver: Deliver | None = None) -> DueReport:
    """Run every due issue time (``due_issue_times``), oldest first; the newest is the
    scheduled tick, older ones are catch-up (trigger ``catchup``). ``missed``: issue times
    older than the catch-up limit that have no tick (reported, not run)."""
    limit = limit or ctx.settings.catchup_limit
    now = ctx.clock.now()
    delay = timedelta(minutes=ctx.settings.tick_delay_min)
    horizon = pd.Timestamp(now) - pd.Timedelta(delay) - pd.Timedelta(hours=24)
    with transaction(ctx.engine, "reading finished ticks") as conn:
        done = completed_ticks(conn, issued_from=horizon.to_pydatetime(), issued_to=now)
    due = due_issue_times(now, delay=delay, limit=limit, done=done)
    out = DueReport()
    feeds = feeds if feeds is not None else feeds_from_settings(ctx)
    newest = (pd.Timestamp(now) - pd.Timedelta(delay)).floor("30min").to_pydatetime()
    if done:   # beyond the catch-up limit, since the first tick of the last day
        window = set(due_issue_times(now, delay=delay, limit=limit, done=set()))
        out.missed = [t for t in due_issue_times(now, delay=delay, limit=48, done=done)
                      if t not in window and t > min(done)]
    for t in due:
        try:
            out.ticks.append(run_tick(ctx, t, feeds=feeds, notify=notify, deliver=deliver,
                                      trigger=trigger if t == newest else "catchup"))
        except CycleError as exc:
            if "being run by another process" not in str(exc):
                raise
            log.info("tick %s: %s", t, exc)
            out.locked.append(t)
    return out

