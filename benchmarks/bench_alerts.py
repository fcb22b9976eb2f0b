"""Alert evaluation at a region's scale: the notification stage for ~2,000 gauges.

    python benchmarks/bench_alerts.py [--rivers 38,200,800] [--ticks 6]

For ``synthetic_catalogue(n)`` (about 2.5 gauges per river; 800 rivers ≈ 2,000 gauges) it
builds, in a temporary SQLite database, the inputs a tick hands to the notification stage —
the primary gauges' 10-min levels of the last 8 days and a forecast of every river — on a
storm path: every river rises through its ladder over the ticks (so raises, escalations and
their messages with CAP are written every tick; the costly case), then measures

(a) the pure engine alone (``rules.assess`` + ``lifecycle.step`` for every stream, no I/O);
(b) ``pipeline.notify.notify_stage`` (read states, run the engine, store states,
    notifications, messages with payload and CAP, one transaction per river) with no channel
    configured and with the three channels configured (outbox rows; nothing sent).

Prints a markdown table of the median seconds per tick and the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.alerts.lifecycle import StreamState, step
from forecast.alerts.rules import assess, river_ladder
from forecast.clock import FixedClock
from forecast.pipeline.context import Context
from forecast.pipeline.cycle import CycleReport, Inputs
from forecast.pipeline.demo import init_db
from forecast.pipeline.notify import forecasts_by_river, notify_stage, river_streams
from forecast.qc.freshness import latest_usable, station_freshness
from forecast.settings import load_settings
from forecast.simulate.demo_catalogue import synthetic_catalogue
from forecast.storage.engine import create_engine

T0 = datetime(2024, 7, 1, tzinfo=UTC)


def _inputs(cat, at: datetime, k: int, ticks: int) -> tuple[Inputs, pd.DataFrame]:  # type: ignore[no-untyped-def]
    """Observations (8 days, 10 min) and forecasts at tick ``k`` of ``ticks``: each river's
    level climbs from below its lowest threshold to above its highest."""
    frames, fcs = [], []
    times = pd.date_range(at - timedelta(days=8), at, freq="10min", inclusive="right")
    for river in cat.rivers:
        ladder = river_ladder(river)
        lo, hi = ladder[0][1] - 0.3, ladder[-1][1] + 0.3
        level_at = lo + (hi - lo) * (k + 1) / ticks
        frames.append(pd.DataFrame({"station_id": river.primary_gauge, "variable": "level_m",
                                    "time": times, "value": np.full(len(times), level_at),
                                    "flag": np.int8(0)}))
        h = np.arange(1, 7)
        q50 = level_at + (hi - lo) / ticks * h / 2
        fcs.append(pd.DataFrame({"river_id": river.id, "issued_at": pd.Timestamp(at),
                                 "valid_at": pd.Timestamp(at) + pd.to_timedelta(h, unit="h"),
                                 "horizon_h": h, "level": q50, "q10": q50 - 0.2, "q50": q50,
                                 "q90": q50 + 0.3, "model_version": "bench"}))
    obs = pd.concat(frames, ignore_index=True)
    fresh = station_freshness(latest_usable(obs), cat, at)
    vintages = pd.DataFrame({"product": [], "catchment_id": [], "issued_at": [],
                             "valid_at": [], "value": []})
    return Inputs(obs, vintages, fresh), pd.concat(fcs, ignore_index=True)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(n: int, ticks: int, channels: bool, d: Path) -> dict[str, object]:
    cat = synthetic_catalogue(n, seed=5, crisis_share=0.3)
    env = {"FORECAST_DATA_DIR": str(d)}
    if channels:
        env.update({"FORECAST_WEBHOOK_URL": "http://127.0.0.1:9/hook",
                    "FORECAST_WEBHOOK_SECRET": "x", "FORECAST_CAP_URL": "http://127.0.0.1:9/c",
                    "FORECAST_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/slack"})
    settings = load_settings(env)
    clock = FixedClock(T0)
    ctx = Context.of(create_engine(settings.db_url), cat, clock=clock, settings=settings)
    init_db(ctx)
    pure, stage, messages = [], [], 0
    states: dict[str, StreamState] = {}
    for k in range(ticks):
        at = T0 + timedelta(minutes=30 * k)
        clock.set(at + timedelta(minutes=20))
        inputs, fc = _inputs(cat, at, k, ticks)
        report = CycleReport(cycle_id=0, revision=1, issued_at=at, forecasts=fc)
        t0 = time.perf_counter()
        split = forecasts_by_river(report)
        for river in cat.rivers:
            rules = cat.alert_rules(river)
            for stream, ladder, inp in river_streams(river, report, inputs, split):
                st, _ = step(stream, states.get(stream.key, StreamState()),
                             assess(ladder, rules, inp), rules, inp)
                states[stream.key] = st
        pure.append(time.perf_counter() - t0)
        report.cycle_id = _cycle(ctx, at)
        t0 = time.perf_counter()
        got = notify_stage(ctx, report, inputs)
        stage.append(time.perf_counter() - t0)
        messages += sum(got.messages.values())
        assert not got.failed, got.failed
    # stations as benchmarks/bench_tick.py counts them (level and rain gauges of the rivers)
    gauges = len({code for r in cat.rivers for code in r.station_codes})
    level_gauges = sum(len(r.gauges) for r in cat.rivers)
    return {"rivers": n, "gauges": gauges, "level_gauges": level_gauges, "streams": len(states) + n,
            "pure": statistics.median(pure), "stage": statistics.median(stage),
            "stage_max": max(stage), "messages": messages, "rss": _rss_mb()}


def _cycle(ctx: Context, at: datetime) -> int:
    from forecast.storage.cycles import start_cycle
    from forecast.storage.engine import transaction

    with transaction(ctx.engine) as conn:
        cid, _ = start_cycle(conn, issued_at=at, started_at=at, trigger="bench",
                             owner="bench", kind="tick")
    return cid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rivers", default="38,200,800")
    ap.add_argument("--ticks", type=int, default=6)
    args = ap.parse_args()
    rows = []
    for n in [int(x) for x in args.rivers.split(",")]:
        for channels in (False, True):
            with tempfile.TemporaryDirectory(prefix="bench-alerts-") as d:
                r = bench(n, args.ticks, channels, Path(d))
            r["channels"] = "3" if channels else "none"
            rows.append(r)
            print(r, flush=True)
    print("\n| rivers / stations (level gauges) | streams | channels | engine alone, median "
          "| notify stage, median | max | messages | peak RSS |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rivers']} / {r['gauges']} ({r['level_gauges']}) | {r['streams']} | "
              f"{r['channels']} | "
              f"{r['pure']:.3f} s | {r['stage']:.3f} s | {r['stage_max']:.3f} s | "
              f"{r['messages']} | {r['rss']:.0f} MB |")


if __name__ == "__main__":
    main()
