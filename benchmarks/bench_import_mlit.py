"""Benchmark: parse ten years of hourly MLIT .dat files (level + rain) for 38 stations.

Generates 38 × 120 × 2 = 9,120 monthly files in the real 時刻水位月表 / 時刻雨量月表 layout
(Shift_JIS, CRLF, like live downloads; a few provisional/missing flags) in a temporary
directory, then reads and parses them all with ``parse_mlit_dat_many`` (one frame) and, for
comparison, a sample with per-file ``parse_mlit_dat``; then imports them all into SQLite
through ``forecast.pipeline.importer.import_files`` (archive, parse, QC, store). Targets:
parse ≤ 30 s, import ≤ 60 s.

    python benchmarks/bench_import_mlit.py [--stations 38] [--years 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.catalogue import load_catalogue
from forecast.clock import FixedClock
from forecast.ingest.mlit import parse_mlit_dat, parse_mlit_dat_many
from forecast.pipeline.context import Context
from forecast.pipeline.importer import import_files
from forecast.storage.engine import create_engine, migrate

CATALOGUE = Path(__file__).resolve().parent.parent / "config" / "rivers.yaml"

_TITLE = {"level": "時刻水位月表検索結果", "rain": "時刻雨量月表検索結果"}
_COLUMNS = "," + ",".join(f"{h}時," for h in range(1, 25))


def _month_file(kind: str, code: str, year: int, month: int, rng: np.random.Generator) -> bytes:
    days = pd.Period(year=year, month=month, freq="M").days_in_month
    if kind == "level":
        values = 1.0 + 0.3 * np.sin(np.arange(days * 24) / 50.0) + rng.normal(0, 0.02, days * 24)
    else:
        values = np.where(rng.random(days * 24) < 0.1, rng.gamma(1.5, 3.0, days * 24), 0.0)
    flags = np.where(rng.random(days * 24) < 0.01, "*", " ")
    missing = rng.random(days * 24) < 0.002
    cells = np.char.add(np.char.add(np.char.mod("%8.2f", values), ","), flags)
    cells = np.where(missing, "        ,$", cells).reshape(days, 24)
    lines = [
        _TITLE[kind], "水系名,雲出川", "河川名,雲出川", "観測所名,ベンチ", f"観測所記号,{code}",
        "#", "#日付,1時データ,1時フラグ,,,,,,,,24時データ,24時フラグ",
        "#  フラグの意味： *:暫定値, $:欠測, #:閉局, -:未登録", "#", _COLUMNS,
    ]
    lines += [f"{year}/{month:02d}/{d + 1:02d}," + ",".join(cells[d]) for d in range(days)]
    return ("\r\n".join(lines) + "\r\n").encode("cp932")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=38)
    ap.add_argument("--years", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        paths: list[Path] = []
        for s in range(args.stations):
            code = f"3060{s:011d}"
            for year in range(2014, 2014 + args.years):
                for month in range(1, 13):
                    for kind in ("level", "rain"):
                        path = root / f"{code}_{kind}_{year}{month:02d}.dat"
                        path.write_bytes(_month_file(kind, code, year, month, rng))
                        paths.append(path)
        t_gen = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in paths) / 1e6

        t0 = time.perf_counter()
        payloads = [(p.read_bytes(), str(p)) for p in paths]
        t_read = time.perf_counter() - t0

        t0, c0 = time.perf_counter(), time.process_time()
        frame = parse_mlit_dat_many(payloads)
        t_parse, c_parse = time.perf_counter() - t0, time.process_time() - c0

        sample = payloads[:500]
        t0 = time.perf_counter()
        for data, location in sample:
            parse_mlit_dat(data, location)
        per_file_ms = (time.perf_counter() - t0) / len(sample) * 1e3

        # The whole import as `forecast import --source mlit_dat` does it: read, archive every
        # file's bytes, parse in batches, QC, upsert into SQLite.
        engine = create_engine(f"sqlite:///{root / 'import.db'}")
        migrate(engine)
        ctx = Context.of(engine, load_catalogue(CATALOGUE), clock=FixedClock(datetime.now(UTC)))
        t0, c0 = time.perf_counter(), time.process_time()
        report = import_files(ctx, paths, source="mlit_dat")
        t_import, c_import = time.perf_counter() - t0, time.process_time() - c0
        assert not report.failed, report.failed

    print(f"files: {len(paths)} ({size_mb:.1f} MB Shift_JIS), generated in {t_gen:.1f} s")
    print(f"read bytes: {t_read:.2f} s")
    print(f"parse_mlit_dat_many: {t_parse:.2f} s for {len(frame):,} rows "
          f"({len(frame) / t_parse / 1e6:.2f} M rows/s)  target <= 30 s: "
          f"{'PASS' if t_parse <= 30 else 'FAIL'} (CPU {c_parse:.2f} s)")
    print(f"parse_mlit_dat per file: {per_file_ms:.2f} ms "
          f"(≈ {per_file_ms * len(paths) / 1e3:.1f} s for all files one by one)")
    print(f"import into SQLite (archive + parse + QC + upsert): {t_import:.1f} s for "
          f"{report.total_rows:,} rows (CPU {c_import:.1f} s)  target <= 60 s: "
          f"{'PASS' if t_import <= 60 else 'FAIL'}")


if __name__ == "__main__":
    main()
