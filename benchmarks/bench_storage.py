"""Storage write benchmark: one year of 10-minute data for 38 level gauges and their rain
gauges, written through ``upsert_observations`` into SQLite and PostgreSQL; reports rows/s.

    python benchmarks/bench_storage.py [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

The series are synthetic (random walks / intermittent rain): the write path does not care about
realism. A second pass re-ingests the same rows to time the idempotent no-op path.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecast.storage.engine import create_engine, migrate, transaction
from forecast.storage.observations import upsert_observations

N_LEVEL, N_RAIN = 38, 38


def make_year(seed: int = 0) -> list[pd.DataFrame]:
    """One frame per station: 52,560 ten-minute values each."""
    rng = np.random.default_rng(seed)
    t = pd.date_range("2023-01-01", "2024-01-01", freq="10min", tz="UTC", inclusive="left")
    out = []
    for i in range(N_LEVEL):
        v = 1.0 + np.cumsum(rng.normal(0, 0.005, len(t))).clip(-0.9, 5)
        out.append(pd.DataFrame({"station_id": f"L{i:03d}", "variable": "level_m", "time": t,
                                 "value": v.round(2)}))
    for i in range(N_RAIN):
        v = np.where(rng.random(len(t)) < 0.08, rng.gamma(0.8, 1.5, len(t)), 0.0).round(1)
        out.append(pd.DataFrame({"station_id": f"R{i:03d}", "variable": "rain_mm", "time": t,
                                 "value": v}))
    return out


def run(url: str, parts: list[pd.DataFrame]) -> tuple[float, float]:
    engine = create_engine(url)
    migrate(engine)
    now = datetime.now(UTC)
    rows = sum(len(p) for p in parts)
    t0 = time.perf_counter()
    for p in parts:
        with transaction(engine) as conn:
            upsert_observations(conn, p, source="bench", now=now)
    first = rows / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for p in parts:
        with transaction(engine) as conn:
            upsert_observations(conn, p, source="bench", now=now)
    second = rows / (time.perf_counter() - t0)
    engine.dispose()
    return first, second


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default=os.environ.get("FORECAST_TEST_POSTGRES_URL", ""))
    args = ap.parse_args()
    parts = make_year()
    rows = sum(len(p) for p in parts)
    print(f"{rows:,} rows ({N_LEVEL} level + {N_RAIN} rain gauges × 1 year of 10-min data)")
    with tempfile.TemporaryDirectory() as d:
        first, again = run(f"sqlite:///{d}/bench.db", parts)
        print(f"SQLite (WAL)  first write {first:>10,.0f} rows/s   "
              f"re-ingest {again:>10,.0f} rows/s")
    if args.pg:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg)
        with admin.begin() as c:
            c.execute(sa.text(f"CREATE SCHEMA {schema}"))
        try:
            sep = "&" if "?" in args.pg else "?"
            first, again = run(f"{args.pg}{sep}options=-csearch_path%3D{schema}", parts)
            print(f"PostgreSQL    first write {first:>10,.0f} rows/s   "
                  f"re-ingest {again:>10,.0f} rows/s")
        finally:
            with admin.begin() as c:
                c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    else:
        print("PostgreSQL skipped: pass --pg URL or set FORECAST_TEST_POSTGRES_URL")


if __name__ == "__main__":
    main()
