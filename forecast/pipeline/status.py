"""How the service is doing, read from the database (so every process — API, scheduler, a
second machine — tells the same story): input freshness, readiness and Prometheus metrics.

* ``freshness(ctx)``: each station's latest usable reading against its cadence and each rain
  product's newest vintage (``qc.freshness``), at the context's clock time.
* ``readiness(ctx)``: ready when the newest finished tick is not late: its issue time is at
  least the newest issue time whose tick should have finished by now (T + tick delay +
  ``TICK_ALLOWANCE``). Stale inputs are listed; they mark forecasts low-confidence but do not
  make the service unready (it still forecasts, honestly labelled).
* ``metrics_text(ctx)``: the Prometheus exposition (prometheus-client) of tick duration and
  stages, ticks by status and trigger (caught-up ticks have trigger ``catchup``), issue times
  missed, per-river status of the newest tick, per-source ticks not ok, failures and age
  (newest reading over the source's stations), per-station age and stale counts, rain-product
  age.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from forecast.frames import RAIN
from forecast.pipeline.context import Context
from forecast.qc.freshness import product_freshness, station_freshness
from forecast.storage.cycles import (
    completed_ticks,
    read_cycles,
    read_outcomes,
    read_source_outcomes,
    source_failure_totals,
    tick_counts,
)
from forecast.storage.engine import transaction
from forecast.storage.observations import latest_usable_times
from forecast.storage.rain import latest_vintages

TICK_ALLOWANCE = timedelta(minutes=10)
"""How long after its tick time a tick may take to finish before the service counts as late."""


def _keys(ctx: Context) -> list[tuple[str, str]]:
    keys: set[tuple[str, str]] = {(g.code, g.variable) for r in ctx.catalogue.rivers
                                  for g in r.gauges}
    keys |= {(g.code, RAIN) for r in ctx.catalogue.rivers for g in r.rain_gauges}
    return sorted(keys)


@dataclass(frozen=True)
class Freshness:
    """Stations (``qc.freshness.station_freshness`` frame) and rain products at ``at``."""

    at: datetime
    stations: pd.DataFrame
    products: pd.DataFrame

    @property
    def stale_stations(self) -> pd.DataFrame:
        return self.stations[self.stations["status"].isin(["stale", "never"])]


def freshness(ctx: Context, at: datetime | None = None) -> Freshness:
    """Input freshness at ``at`` (default: now)."""
    at = at or ctx.clock.now()
    with transaction(ctx.engine, "reading input freshness") as conn:
        latest = latest_usable_times(conn, _keys(ctx), before=at)
        vint = latest_vintages(conn, before=at)
    return Freshness(at, station_freshness(latest, ctx.catalogue, at),
                     product_freshness(vint, at))


def expected_issue_time(ctx: Context, now: datetime) -> datetime:
    """The newest issue time whose tick should have finished by ``now``."""
    lag = pd.Timedelta(minutes=ctx.settings.tick_delay_min) + pd.Timedelta(TICK_ALLOWANCE)
    return (pd.Timestamp(now) - lag).floor("30min").to_pydatetime()


@dataclass
class Readiness:
    """Whether the scheduled ticks are on time, and what is stale."""

    ready: bool
    checked_at: datetime
    expected_issue_time: datetime
    last_tick: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


def _last_tick(conn: Any) -> dict[str, Any] | None:
    runs = read_cycles(conn, kind="tick", limit=1)
    if runs.empty:
        return None
    r = runs.iloc[0]
    out = {
        "cycle_id": int(r["id"]), "issued_at": r["issued_at"].to_pydatetime(),
        "revision": int(r["revision"]), "status": str(r["status"]), "trigger": r["trigger"],
        "started_at": r["started_at"].to_pydatetime(),
        "finished_at": None if pd.isna(r["finished_at"]) else r["finished_at"].to_pydatetime(),
        "message": r["message"], "stages": r["stages"] or {},
    }
    out["rivers"] = read_outcomes(conn, out["cycle_id"])
    out["sources"] = read_source_outcomes(conn, out["cycle_id"])
    return out


def newest_tick_time(ctx: Context) -> datetime | None:
    """Issue time of the newest tick run (any status), or None before the first."""
    with transaction(ctx.engine, "reading the tick history") as conn:
        last = _last_tick(conn)
    return None if last is None else last["issued_at"]


def readiness(ctx: Context) -> Readiness:
    """See the module docstring."""
    now = ctx.clock.now()
    expected = expected_issue_time(ctx, now)
    with transaction(ctx.engine, "reading the tick history") as conn:
        last = _last_tick(conn)
        done = completed_ticks(conn, issued_from=expected, issued_to=now)
    out = Readiness(ready=bool(done), checked_at=now, expected_issue_time=expected,
                    last_tick=last)
    if not done:
        if last is None:
            out.problems.append("no tick has run yet")
        else:
            out.problems.append(
                f"the tick of {expected:%Y-%m-%d %H:%M}Z has not finished; the newest tick "
                f"is of {last['issued_at']:%Y-%m-%d %H:%M}Z ({last['status']})")
    fresh = freshness(ctx, now)
    for st in fresh.stale_stations.to_dict("records"):
        age = "no usable reading" if st["status"] == "never" else \
            f"latest {st['latest']:%Y-%m-%d %H:%M}Z ({st['age_min']:.0f} min)"
        rivers = ", ".join(st["river_ids"])
        out.stale.append(f"{st['role']} {st['station_id']} ({rivers}): {age}")
    for pr in fresh.products.to_dict("records"):
        if pr["status"] == "stale":
            out.stale.append(f"rain product {pr['product']}: newest vintage "
                             f"{pr['issued_at']:%Y-%m-%d %H:%M}Z ({pr['age_min']:.0f} min)")
    return out


class _DbCollector(Collector):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        now = ctx.clock.now()
        with transaction(ctx.engine, "reading metrics") as conn:
            last = _last_tick(conn)
            counts = tick_counts(conn)
            failures = source_failure_totals(conn)
            horizon = (pd.Timestamp(now) - pd.Timedelta(hours=24)).to_pydatetime()
            done = completed_ticks(conn, issued_from=horizon, issued_to=now)
        ticks = CounterMetricFamily("forecast_ticks", "Tick runs by final status and trigger "
                                    "(trigger catchup: a missed issue time caught up)",
                                    labels=["status", "trigger"])
        for (status, trigger), n in sorted(counts.items()):
            ticks.add_metric([status, trigger], n)
        yield ticks
        expected = expected_issue_time(ctx, now)
        if done:
            first = max(min(done), horizon)
            slots = pd.date_range(first, expected, freq="30min")
            missed = sum(t.to_pydatetime() not in done for t in slots)
        else:
            missed = 0
        yield GaugeMetricFamily("forecast_ticks_missed_24h", "Issue times of the last 24 h "
                                "(since the first tick) without a finished tick", value=missed)
        if last is not None:
            yield GaugeMetricFamily("forecast_last_tick_issued_timestamp_seconds",
                                    "Issue time of the newest tick",
                                    value=last["issued_at"].timestamp())
            yield GaugeMetricFamily("forecast_last_tick_age_seconds",
                                    "Seconds since the issue time of the newest tick",
                                    value=(now - last["issued_at"]).total_seconds())
            stages = GaugeMetricFamily("forecast_tick_stage_seconds",
                                       "Duration of each stage of the newest tick "
                                       "(total: the whole tick)", labels=["stage"])
            for stage, secs in sorted(last["stages"].items()):
                stages.add_metric([stage], float(secs))
            yield stages
            river = GaugeMetricFamily("forecast_river_status", "1 for each river's status in "
                                      "the newest tick", labels=["river", "status"])
            for o in last["rivers"]:
                river.add_metric([o["river_id"], o["status"]], 1.0)
            yield river
            src = GaugeMetricFamily("forecast_source_status", "1 for each source's status in "
                                    "the newest tick", labels=["source", "status"])
            for o in last["sources"]:
                src.add_metric([o["source"], o["status"]], 1.0)
            yield src
        bad = CounterMetricFamily("forecast_source_ticks_not_ok", "Ticks in which a source "
                                  "was not ok", labels=["source"])
        errs = CounterMetricFamily("forecast_source_failures", "Failed payloads and stations "
                                   "per source", labels=["source"])
        for source, (n_bad, n_err) in sorted(failures.items()):
            bad.add_metric([source], n_bad)
            errs.add_metric([source], n_err)
        yield bad
        yield errs
        fresh = freshness(ctx, now)
        age = GaugeMetricFamily("forecast_station_age_seconds", "Age of each station's latest "
                                "usable reading", labels=["station", "role"])
        stale = GaugeMetricFamily("forecast_stations_stale", "Stations whose latest usable "
                                  "reading is older than their cadence allows", labels=["role"])
        for st in fresh.stations.to_dict("records"):
            if pd.notna(st["age_min"]):
                age.add_metric([str(st["station_id"]), str(st["role"])],
                               float(st["age_min"]) * 60.0)
        for role, part in fresh.stations.groupby("role"):
            stale.add_metric([str(role)], float(part["status"].isin(["stale", "never"]).sum()))
        yield age
        yield stale
        src_of: dict[tuple[str, str], str] = {
            (g.code, g.variable): g.source for r in ctx.catalogue.rivers for g in r.gauges}
        src_of |= {(g.code, RAIN): g.source for r in ctx.catalogue.rivers for g in r.rain_gauges}
        ages = fresh.stations.assign(source=[src_of.get((a, b), "?") for a, b in zip(
            fresh.stations["station_id"], fresh.stations["variable"], strict=True)])
        by_source = GaugeMetricFamily("forecast_source_age_seconds", "Age of the newest usable "
                                      "reading of each ingest source (over its stations)",
                                      labels=["source"])
        for src_name, part in ages.groupby("source"):
            if part["age_min"].notna().any():
                by_source.add_metric([str(src_name)], float(part["age_min"].min()) * 60.0)
        yield by_source
        prod = GaugeMetricFamily("forecast_rain_product_age_seconds", "Age of each rain "
                                 "product's newest vintage", labels=["product"])
        for pr in fresh.products.to_dict("records"):
            prod.add_metric([str(pr["product"])], float(pr["age_min"]) * 60.0)
        yield prod
        yield from _notification_metrics(ctx)


def _notification_metrics(ctx: Context) -> Iterator[Metric]:
    """Active notifications by level and topic; outbox messages by channel and status."""
    from forecast.catalogue import AlertLevel
    from forecast.storage import alerts, outbox

    with transaction(ctx.engine, "reading notification metrics") as conn:
        active = alerts.read_notifications(conn, active=True, limit=100_000)
        queued = outbox.status_counts(conn)
    notes = GaugeMetricFamily("forecast_notifications_active", "Active (or acknowledged) "
                              "forecast notifications by level and state",
                              labels=["level", "state"])
    counts: dict[tuple[str, str], int] = {}
    for n in active:
        key = (AlertLevel(n["level"]).key if n["level"] else "data", str(n["state"]))
        counts[key] = counts.get(key, 0) + 1
    for (level, state), k in sorted(counts.items()):
        notes.add_metric([level, state], k)
    yield notes
    box = GaugeMetricFamily("forecast_outbox_messages", "Outbox messages by channel and status "
                            "(pending, sent, dead: a dead letter needs `forecast notifications "
                            "dead-letters --replay`)", labels=["channel", "status"])
    for (channel, status), k in sorted(queued.items()):
        box.add_metric([channel, status], k)
    yield box


def metrics_registry(ctx: Context) -> CollectorRegistry:
    """A registry whose every scrape reads the database (see the module docstring)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_DbCollector(ctx))
    return reg


def metrics_text(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return bytes(generate_latest(registry))
