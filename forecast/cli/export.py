"""``forecast export``: observations, forecasts, notifications and runs as partitioned
Parquet for the prefecture's data platform (ETL → DWH → BI), incremental by time
(``forecast.pipeline.export``; the schema is in the README, "Data platform export")."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

EXPORT_DATASETS = ("observations", "forecasts", "notifications", "notification_messages",
                   "runs", "run_rivers", "run_sources")
"""= ``pipeline.export.DATASETS`` (named here so ``--help`` does not import pyarrow)."""


def _iso(t: datetime | None) -> str:
    return "start" if t is None else f"{t:%Y-%m-%d %H:%M:%S}Z"


def cmd_export(args: argparse.Namespace) -> int:
    from forecast.pipeline.context import Context
    from forecast.pipeline.export import export

    out: Path = args.out
    rep = export(Context.from_settings(), out, datasets=args.dataset, since=args.since,
                 until=args.until)
    for r in rep.datasets.values():
        print(f"{r.name:<22} {r.rows:>8} rows in {len(r.files)} file(s)  "
              f"[{_iso(r.since)}, {_iso(r.until)})")
    print(f"state: {out / '_export_state.json'}")
    return 0


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser],
               utc_time: Callable[[str], datetime]) -> None:
    """``forecast export`` under the main parser's subcommands."""
    s = sub.add_parser("export", help="write observations, forecasts, notifications and runs "
                       "as partitioned Parquet for the data platform, incremental by time")
    s.add_argument("--out", type=Path, required=True, help="output directory "
                   "(<dataset>/date=YYYY-MM-DD/part-….parquet, _export_state.json)")
    s.add_argument("--dataset", action="append", choices=EXPORT_DATASETS,
                   help="export only this dataset (repeatable; default: all)")
    s.add_argument("--since", type=utc_time, help="start of the window, inclusive (default: "
                   "where the last export of each dataset ended)")
    s.add_argument("--until", type=utc_time, help="end of the window, exclusive "
                   "(default: now)")
    s.set_defaults(func=cmd_export)
