"""Collection benchmark: the demo's live loop on the 38-river catalogue, through the replay.

    python benchmarks/bench_collect.py [--days 2] [--cycles 36] [--pg URL]

Simulates ``--days`` of data for ``config/rivers.yaml`` (SIMULATED), then

* ``Replay.available_at`` query time (median of 200 random clocks);
* the first ``collect_replay`` (24 h window: archive CSV → parse → QC → upsert);
* ``--cycles`` ten-minute cycles of ``collect_replay(..., since=previous clock)`` — what the
  demo does every cycle — reporting median and max seconds per cycle;
* a repeat of the last cycle (idempotent: must add 0 rows).

SQLite in a temporary file, plus PostgreSQL when ``--pg`` / FORECAST_TEST_POSTGRES_URL is set.
Target: one cycle well under 10 s (the cycle budget is minutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecast.catalogue import load_catalogue
from forecast.clock import FixedClock
from forecast.ingest.replay import Replay
from forecast.pipeline.collect import collect_replay
from forecast.pipeline.context import Context
from forecast.simulate import simulate
from forecast.storage.engine import create_engine, migrate

ROOT = Path(__file__).resolve().parent.parent


def run(url: str, replay: Replay, start: datetime, cycles: int) -> None:
    cat = load_catalogue(ROOT / "config" / "rivers.yaml")
    engine = create_engine(url)
    migrate(engine)
    ctx = Context.of(engine, cat, clock=FixedClock(datetime.now(UTC)))
    clock = start
    t0 = time.perf_counter()
    first = collect_replay(ctx, replay, clock)
    print(f"  first load (24 h window): {time.perf_counter() - t0:.2f} s, "
          f"{first.inserted:,} rows inserted")
    times, rows = [], 0
    for _ in range(cycles):
        nxt = clock + timedelta(minutes=10)
        t0 = time.perf_counter()
        rep = collect_replay(ctx, replay, nxt, since=clock)
        times.append(time.perf_counter() - t0)
        rows += rep.inserted
        clock = nxt
    print(f"  {cycles} ten-minute cycles: median {statistics.median(times):.3f} s, "
          f"max {max(times):.3f} s, {rows:,} rows inserted")
    t0 = time.perf_counter()
    again = collect_replay(ctx, replay, clock, since=clock - timedelta(minutes=10))
    print(f"  repeat of the last cycle: {time.perf_counter() - t0:.3f} s, "
          f"inserted {again.inserted}, revised {again.revised}")
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--cycles", type=int, default=36)
    ap.add_argument("--pg", default=os.environ.get("FORECAST_TEST_POSTGRES_URL", ""))
    args = ap.parse_args()
    cat = load_catalogue(ROOT / "config" / "rivers.yaml")
    t_start = datetime(2024, 6, 28, tzinfo=UTC)
    end = t_start + timedelta(days=args.days)
    t0 = time.perf_counter()
    sim = simulate(cat, t_start, end, seed=1)
    print(f"simulated {len(sim.observations):,} readings, {len(sim.rain_forecasts):,} rain "
          f"vintages ({len(cat.rivers)} rivers, {args.days} d) in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    replay = Replay.of(sim.observations, sim.rain_forecasts, name="simulated")
    print(f"Replay.of: {time.perf_counter() - t0:.3f} s")
    rng = np.random.default_rng(0)
    span = (end - t_start).total_seconds()
    clocks = [t_start + timedelta(seconds=float(s)) for s in rng.uniform(0, span, 200)]
    q = []
    for c in clocks:
        t0 = time.perf_counter()
        replay.available_at(c, window=timedelta(hours=24))
        q.append(time.perf_counter() - t0)
    print(f"available_at (24 h window): median {statistics.median(q) * 1e3:.1f} ms")
    start = pd.Timestamp(t_start + timedelta(days=1)).to_pydatetime()
    with tempfile.TemporaryDirectory() as d:
        print("SQLite:")
        run(f"sqlite:///{d}/bench.db", replay, start, args.cycles)
    if args.pg:
        print("PostgreSQL:")
        schema = f"bench_{uuid.uuid4().hex[:8]}"    # a throw-away schema, dropped after
        admin = create_engine(args.pg)
        with admin.begin() as c:
            c.execute(sa.text(f"CREATE SCHEMA {schema}"))
        try:
            sep = "&" if "?" in args.pg else "?"
            run(f"{args.pg}{sep}options=-csearch_path%3D{schema}", replay, start, args.cycles)
        finally:
            with admin.begin() as c:
                c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


if __name__ == "__main__":
    main()
