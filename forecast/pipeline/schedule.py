"""The scheduler: APScheduler runs the operational tick on time, every time.

* **When**: a cron trigger at ``Settings.tick_minutes`` past each hour (default :20 and :50,
  after JMA's 降水短時間予報 deliveries), in UTC; each firing runs the issue time
  ``floor(now - tick delay, 30 min)``. On a sped-up demo clock (``ScaledClock``) the trigger
  is an interval of 30 simulated minutes in wall seconds instead.
* **Catch-up**: every firing (and one at start) runs ``tick.run_due``: the newest
  ``catchup_limit`` issue times without a finished tick, oldest first, so after downtime or a
  clock jump the missed ones are filled in (bounded), then the current one.
* **Misfires**: ``misfire_grace_time`` (``Settings.misfire_grace_s``) lets a late firing still
  run; ``coalesce`` folds a backlog of firings into one (the catch-up does the rest);
  ``max_instances=1``: a tick never overlaps the previous one in the same process.
* **Several instances** (a second process, or a second machine on PostgreSQL): the issue-time
  lock lets one run each tick; the other finds it locked or already finished and skips.
* **Failures**: a tick that raises (the database restarting, say) is logged and the scheduler
  goes on; the next firing catches the issue time up.
* **Delivery**: an interval job every ``Settings.delivery_interval_s`` (wall seconds) and
  the end of each tick deliver due notifications (``pipeline.deliver``), so retries go on
  between ticks.
* **Stop**: ``shutdown`` waits for a running tick to finish; ``run_until_signal`` does that on
  SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from forecast.clock import ScaledClock
from forecast.pipeline.context import Context
from forecast.pipeline.tick import DueReport, Feeds, Notify, feeds_from_settings, run_due

log = logging.getLogger(__name__)

TICK_SPACING = timedelta(minutes=30)


def trigger_for(ctx: Context) -> CronTrigger | IntervalTrigger:
    """The tick trigger: cron at the tick minutes (UTC), or, on a sped-up clock, an interval
    of 30 simulated minutes."""
    clock = ctx.clock
    if isinstance(clock, ScaledClock) and clock.speed != 1:
        return IntervalTrigger(seconds=clock.wall_seconds(TICK_SPACING), timezone=UTC)
    return CronTrigger(minute=ctx.settings.tick_minutes, timezone=UTC)


class Scheduler:
    """The operational scheduler of one process (see the module docstring).

    ``on_tick`` (optional) receives each ``DueReport`` (tests, metrics)."""

    def __init__(self, ctx: Context, *, feeds: Feeds | None = None,
                 notify: Notify | None = None,
                 on_tick: Callable[[DueReport], object] | None = None) -> None:
        self.ctx = ctx
        self._feeds = feeds
        self._notify = notify
        self._senders: dict[str, Any] | None = None
        self._deliver_lock = threading.Lock()
        self._on_tick = on_tick
        self._aps = BackgroundScheduler(timezone=UTC)
        self.failures = 0

    @property
    def running(self) -> bool:
        return bool(self._aps.running)

    def tick(self) -> DueReport | None:
        """One firing: run every due issue time. Never raises (logged instead)."""
        try:
            if self._feeds is None:   # read once, on the first firing (a replay file)
                self._feeds = feeds_from_settings(self.ctx)
            due = run_due(self.ctx, feeds=self._feeds, trigger="schedule", notify=self._notify,
                          deliver=self._deliver)
        except Exception:
            self.failures += 1
            log.exception("scheduled tick failed; the next firing catches up")
            return None
        for t in due.ticks:
            log.info("tick %s: %s (%s)", t.issued_at.isoformat(), t.status,
                     t.skipped or f"{t.stages.get('total', 0):.2f} s")
        for missed in due.missed:
            log.warning("issue time %s missed (beyond the catch-up limit)", missed.isoformat())
        if self._on_tick is not None:
            self._on_tick(due)
        return due

    def _deliver(self, ctx: Context) -> None:
        """Deliver due notifications (one deliverer at a time in this process)."""
        from forecast.pipeline.deliver import deliver_due, senders_from_settings

        with self._deliver_lock:
            if self._senders is None:
                self._senders = dict(senders_from_settings(ctx.settings))
            if self._senders:
                deliver_due(ctx, self._senders)

    def deliver(self) -> None:
        """The delivery job: never raises (logged; the next run retries)."""
        try:
            self._deliver(self.ctx)
        except Exception:
            log.exception("delivery failed; the next run retries")

    def start(self, *, run_now: bool = True) -> None:
        """Start ticking in a background thread; ``run_now``: catch up at once."""
        opts: dict[str, Any] = {}
        if run_now:
            opts["next_run_time"] = datetime.now(UTC)
        self._aps.add_job(self.tick, trigger_for(self.ctx), id="tick", name="operational tick",
                          misfire_grace_time=self.ctx.settings.misfire_grace_s, coalesce=True,
                          max_instances=1, replace_existing=True, **opts)
        self._aps.add_job(self.deliver, IntervalTrigger(
            seconds=self.ctx.settings.delivery_interval_s, timezone=UTC), id="deliver",
            name="notification delivery", coalesce=True, max_instances=1,
            replace_existing=True)
        self._aps.start()
        job = self._aps.get_job("tick")
        log.info("scheduler started (%s); next tick at %s", job.trigger if job else "?",
                 job.next_run_time if job else "?")

    def next_fire_time(self) -> datetime | None:
        job = self._aps.get_job("tick")
        return None if job is None else job.next_run_time

    def wakeup(self) -> None:
        """Make APScheduler re-check its jobs now (after the system clock moved)."""
        self._aps.wakeup()

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop; ``wait``: let a running tick finish first."""
        if self._aps.running:
            self._aps.shutdown(wait=wait)
            log.info("scheduler stopped")

    def run_until_signal(self) -> None:
        """Start, block until SIGTERM or SIGINT, then stop cleanly (waiting for the tick)."""
        stop = threading.Event()

        def handler(signum: int, _frame: object) -> None:
            log.info("signal %s: stopping after the running tick", signal.Signals(signum).name)
            stop.set()

        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stop.wait(1.0):
                pass
        finally:
            self.shutdown(wait=True)
            for s, h in old.items():
                signal.signal(s, h)
