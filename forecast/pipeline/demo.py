"""The embedded default: simulated history stored by the live paths, first champions, one
forecast cycle. ``forecast demo`` calls ``prepare`` and then serves.

Everything here is SIMULATED (``forecast.simulate``, docs/simulation.md) and stored with
source ``simulated``, so the API and page label it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from forecast.ingest.canonical_csv import to_canonical_csv
from forecast.ingest.replay import Replay
from forecast.pipeline import models as champions
from forecast.pipeline.collect import collect_replay, store_observations
from forecast.pipeline.context import Context
from forecast.pipeline.cycle import CycleReport, run_cycle
from forecast.pipeline.training import train_all
from forecast.simulate import simulate
from forecast.storage.engine import migrate, transaction
from forecast.storage.observations import read_observations
from forecast.storage.rain import upsert_rain_vintages
from forecast.storage.stations import sync_stations

DEMO_DELAY = timedelta(minutes=15)
"""The cycle for issue time T runs a little after T, when the telemetry for T has arrived."""
RAIN_PRODUCT = "simulated_forecast"

Say = Callable[[str], object]


@dataclass
class DemoReport:
    """What ``prepare`` did."""

    end: datetime
    loaded: bool
    trained: list[str]
    not_trained: dict[str, str]
    cycle: CycleReport


def init_db(ctx: Context) -> tuple[str, int]:
    """Migrate the schema and load the stations; returns (revision, stations)."""
    rev = migrate(ctx.engine)
    with transaction(ctx.engine, "loading the stations") as conn:
        n = sync_stations(conn, ctx.catalogue)
    return rev, n


def write_simulation(ctx: Context, start: datetime, end: datetime, seed: int, *,
                     say: Say = print) -> tuple[int, int]:
    """Simulate [start, end) and store it through the QC store path (source ``simulated``);
    returns (observation rows, rain-vintage rows)."""
    init_db(ctx)
    say(f"simulating {len(ctx.catalogue.rivers)} rivers {start:%Y-%m-%d} → {end:%Y-%m-%d} "
        f"(seed {seed}; SIMULATED data, not observations)")
    sim = simulate(ctx.catalogue, start, end, seed=seed)
    res = store_observations(ctx, sim.observations.drop(columns=["received_at"]),
                             source="simulated")
    for station, err in res.failed.items():
        say(f"station {station} not stored: {err}")
    with transaction(ctx.engine, "storing simulated rain vintages") as conn:
        n_rain = upsert_rain_vintages(conn, sim.rain_forecasts, now=ctx.clock.now())
    return res.inserted + res.revised, n_rain


def export_simulation(ctx: Context, start: datetime, end: datetime, seed: int,
                      path: Path) -> int:
    """Simulate [start, end) into a canonical CSV whose ``source`` column says ``simulated``
    (so re-importing it keeps the label); returns the row count."""
    sim = simulate(ctx.catalogue, start, end, seed=seed)
    Path(path).write_bytes(to_canonical_csv(sim.observations, source="simulated"))
    return len(sim.observations)


def _load_history(ctx: Context, end: datetime, years: float, say: Say) -> None:
    """Simulate ``years`` up to ``end`` and store it as a live deployment would have: the
    history through the QC store path, the last day through the replay source (archive →
    parse → QC → store)."""
    start = end - timedelta(days=round(365.25 * years))
    say(f"simulating {len(ctx.catalogue.rivers)} rivers {start:%Y-%m-%d} → {end:%Y-%m-%d} "
        f"(seed {ctx.settings.seed}; SIMULATED data, not observations)")
    sim = simulate(ctx.catalogue, start, end + timedelta(hours=2), seed=ctx.settings.seed)
    replay = Replay.of(sim.observations, sim.rain_forecasts, name="simulated")
    live_from = end - timedelta(hours=24)
    history = replay.available_at(live_from, window=end - start)
    say(f"storing {len(history.observations):,} observations and "
        f"{len(history.rain):,} forecast-rain values (QC + store)")
    res = store_observations(ctx, history.observations.drop(columns=["received_at"]),
                             source="simulated", now=live_from)
    if res.failed:
        say(f"stations that failed to store: {res.failed}")
    with transaction(ctx.engine, "storing simulated rain vintages") as conn:
        upsert_rain_vintages(conn, history.rain, now=live_from)
    report = collect_replay(ctx, replay, end + DEMO_DELAY, since=live_from)
    say(f"replayed the last 24 h through the live path: {len(report.sources)} source(s), "
        f"{len(report.failures)} failure(s)")


def _first_champions(ctx: Context, end: datetime, say: Say,
                     progress: Callable[[str], object] | None) -> tuple[list[str],
                                                                        dict[str, str]]:
    """Train, register and promote a first champion for every river without one."""
    missing = [r.id for r in ctx.catalogue.rivers if champions.champion(ctx, r.id) is None]
    if not missing:
        return [], {}
    report = train_all(ctx, end=end, days=365, judge=False, rivers=missing,
                       progress=progress, workers=min(2, os.cpu_count() or 1))
    for rid, version in report.versions.items():
        champions.promote(ctx, rid, version.version, actor="demo")
    for rid, msg in report.failed.items():
        say(f"river {rid}: not trained: {msg}")
    return sorted(report.versions), dict(report.failed)


def prepare(ctx: Context, *, end: datetime, years: float = 1.0, say: Say = print,
            progress: Callable[[str], object] | None = None) -> DemoReport:
    """Migrate, store simulated history unless present, make first champions, run one cycle.
    ``end``: the demo's issue time (whole hour, UTC) when there is no history yet."""
    init_db(ctx)
    with transaction(ctx.engine, "reading the demo history") as conn:
        have = read_observations(conn, station_ids=[ctx.catalogue.rivers[0].primary_gauge],
                                 start=end - timedelta(days=2), end=end)
    loaded = have.empty
    if loaded:
        _load_history(ctx, end, years, say)
    else:
        end = have["time"].max().floor("h").to_pydatetime()
        say(f"simulated history already present (up to {end:%Y-%m-%d %H:%M}Z)")
    trained, failed = _first_champions(ctx, end, say, progress)
    cycle = run_cycle(ctx, end, trigger="demo", rain_product=RAIN_PRODUCT)
    return DemoReport(end, loaded, trained, failed, cycle)
