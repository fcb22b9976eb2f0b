"""Data platform export (the prefecture's ETL → DWH → BI): observations, forecasts,
notifications and runs as Hive-partitioned Parquet with a stable schema, incremental by time.

Layout under the output directory::

    <dataset>/date=YYYY-MM-DD/part-<since>_<until>.parquet
    _export_state.json

Each dataset has a *change time* column (``TIME_COLUMNS``; why each one: the docstring of
``forecast.storage.export``). A run exports, per dataset, the rows whose change time is in
``[since, until)``: ``until`` defaults to the context clock's now, ``since`` to the ``until``
of that dataset's last successful export (remembered in ``_export_state.json``; none yet: from
the first row). Consecutive runs therefore hand over every row exactly once. Rows are
partitioned by the UTC date of their change time; a file's name is its window, so
re-running one window rewrites the same files. Each file is written to a hidden temporary
name and renamed (readers ignore names starting with ``.`` or ``_``); the state moves on only
after every file of the dataset is in place. The schema (``SCHEMAS``) is explicit and
versioned: ``schema_version`` and the window are in every file's metadata. A change of a
column's name or type must bump ``SCHEMA_VERSION`` and the README's table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.engine import Connection

from forecast.errors import ConfigError
from forecast.pipeline.context import Context
from forecast.storage import export as reads
from forecast.storage.engine import transaction

SCHEMA_VERSION = 1
STATE_FILE = "_export_state.json"

_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "float64": pa.float64(), "bool": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC"),
}


def _schema(*fields: str) -> pa.Schema:
    """``"name type"`` per column; a trailing ``?`` makes it nullable."""
    out = []
    for f in fields:
        name, kind = f.split()
        out.append(pa.field(name, _TYPES[kind.rstrip("?")], nullable=kind.endswith("?")))
    return pa.schema(out)


_RUN = ("cycle_id int64", "issued_at timestamp", "finished_at timestamp")
SCHEMAS: dict[str, pa.Schema] = {
    "observations": _schema(
        "station_id string", "variable string", "time timestamp", "value float64?",
        "flag int16", "flag_name string", "qc_rule string", "provisional bool",
        "source string", "revision int32", "ingested_at timestamp"),
    "forecasts": _schema(
        "run_id int64", "river_id string", "issued_at timestamp", "revision int32",
        "model_version string", "model_variant string", "status string", "degraded bool",
        "low_confidence bool", "reasons string", "inputs string", "input_cutoff timestamp",
        "cycle_id int64?", "created_at timestamp", "horizon_h int16", "valid_at timestamp",
        "q10 float64", "q50 float64", "q90 float64", "level float64"),
    "notifications": _schema(
        "id int64", "event_key string", "stream_key string", "river_id string",
        "gauge string", "topic string", "level int16", "state string", "basis string?",
        "raised_at timestamp", "updated_at timestamp", "cycle_id int64?",
        "forecast_run_id int64?", "details string", "acknowledged_by string?",
        "acknowledged_at timestamp?", "cleared_at timestamp?", "changed_at timestamp"),
    "notification_messages": _schema(
        "id int64", "event_key string", "stream_key string", "river_id string",
        "notification_id int64?", "kind string", "topic string", "level int16?",
        "from_level int16?", "occurred_at timestamp", "created_at timestamp",
        "cycle_id int64?", "cap_identifier string?", "payload string"),
    "runs": _schema(
        "id int64", "issued_at timestamp", "revision int32", "kind string", "trigger string",
        "status string", "message string?", "owner string", "started_at timestamp",
        "finished_at timestamp", "stages string?"),
    "run_rivers": _schema(*_RUN, "river_id string", "status string", "model_version string?",
                          "message string?"),
    "run_sources": _schema(*_RUN, "source string", "status string", "payloads int32",
                           "rows int32", "failures int32", "seconds float64?",
                           "message string?"),
}
TIME_COLUMNS: dict[str, str] = {
    "observations": "ingested_at", "forecasts": "created_at", "notifications": "changed_at",
    "notification_messages": "created_at", "runs": "finished_at", "run_rivers": "finished_at",
    "run_sources": "finished_at"}
_READERS: dict[str, Callable[[Connection, datetime | None, datetime], pd.DataFrame]] = {
    "observations": reads.read_observations, "forecasts": reads.read_forecasts,
    "notifications": reads.read_notifications,
    "notification_messages": reads.read_notification_messages, "runs": reads.read_runs,
    "run_rivers": reads.read_run_rivers, "run_sources": reads.read_run_sources}
DATASETS: tuple[str, ...] = tuple(SCHEMAS)


@dataclass
class DatasetReport:
    """What one dataset's export wrote: its window, rows and files."""

    name: str
    since: datetime | None
    until: datetime
    rows: int = 0
    files: list[Path] = field(default_factory=list)


@dataclass
class ExportReport:
    """One export run: a ``DatasetReport`` per dataset, in ``DATASETS`` order."""

    out_dir: Path
    datasets: dict[str, DatasetReport] = field(default_factory=dict)


def to_table(name: str, df: pd.DataFrame) -> pa.Table:
    """A dataset's frame as an Arrow table of exactly ``SCHEMAS[name]``."""
    schema = SCHEMAS[name]
    arrays = [pa.array(df[f.name], type=f.type, from_pandas=True) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _utc(t: datetime, what: str) -> datetime:
    if t.tzinfo is None:
        raise ConfigError(f"{what} {t.isoformat()} has no UTC offset: pass an aware time")
    return pd.Timestamp(t).tz_convert("UTC").to_pydatetime()


def _stamp(t: datetime | None) -> str:
    return "start" if t is None else f"{pd.Timestamp(t).tz_convert('UTC'):%Y%m%dT%H%M%S.%fZ}"


def read_state(out_dir: Path) -> dict[str, datetime]:
    """Per dataset, the ``until`` of its last successful export into ``out_dir``."""
    path = out_dir / STATE_FILE
    if not path.exists():
        return {}
    try:
        got = json.loads(path.read_text(encoding="utf-8"))
        return {k: datetime.fromisoformat(v["until"]) for k, v in got["datasets"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not an export state file ({exc}); move it away to "
                          "export everything again") from exc


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_state(out_dir: Path, state: dict[str, datetime]) -> None:
    body = {"schema_version": SCHEMA_VERSION,
            "datasets": {k: {"until": v.isoformat()} for k, v in sorted(state.items())}}
    _write_atomic(out_dir / STATE_FILE, lambda p: p.write_text(
        json.dumps(body, indent=1) + "\n", encoding="utf-8"))


def _export_one(ctx: Context, out_dir: Path, name: str, since: datetime | None,
                until: datetime) -> DatasetReport:
    rep = DatasetReport(name, since, until)
    if since is not None and since >= until:
        return rep
    with transaction(ctx.engine, f"reading {name} for the export") as conn:
        df = _READERS[name](conn, since, until)
    rep.rows = len(df)
    if df.empty:
        return rep
    days = df[TIME_COLUMNS[name]].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d")
    meta = {"schema_version": str(SCHEMA_VERSION), "dataset": name,
            "time_column": TIME_COLUMNS[name], "since": "" if since is None else
            since.isoformat(), "until": until.isoformat()}
    for day, part in df.groupby(days, sort=True):
        table = to_table(name, part).replace_schema_metadata(meta)
        path = out_dir / name / f"date={day}" / f"part-{_stamp(since)}_{_stamp(until)}.parquet"
        _write_atomic(path, partial(pq.write_table, table))
        rep.files.append(path)
    return rep


def export(ctx: Context, out_dir: Path, *, datasets: Sequence[str] | None = None,
           since: datetime | None = None, until: datetime | None = None) -> ExportReport:
    """Export ``datasets`` (default: all of ``DATASETS``) changed in ``[since, until)`` to
    ``out_dir`` (see the module docstring). ``since`` None: where each dataset's last export
    ended. ``ConfigError`` for an unknown dataset, a naive time, ``since >= until``, or an
    ``until`` before a dataset's last export without an explicit ``since``."""
    names = list(dict.fromkeys(datasets or DATASETS))
    unknown = [n for n in names if n not in SCHEMAS]
    if unknown:
        raise ConfigError(f"unknown dataset {', '.join(unknown)}; known: {', '.join(DATASETS)}")
    since = None if since is None else _utc(since, "--since")
    until = _utc(ctx.clock.now() if until is None else until, "--until")
    if since is not None and since >= until:
        raise ConfigError(f"--since {since.isoformat()} is not before --until "
                          f"{until.isoformat()}")
    state = read_state(out_dir)
    for n in names:
        if since is None and n in state and state[n] > until:
            raise ConfigError(f"{n} was exported up to {state[n].isoformat()}, after --until "
                              f"{until.isoformat()}; give --since to export an older window")
    report = ExportReport(out_dir)
    for n in names:
        report.datasets[n] = _export_one(ctx, out_dir, n, since if since is not None
                                         else state.get(n), until)
        # never backwards: re-exporting an old window leaves the incremental point alone
        state[n] = max(state.get(n, until), until)
        _save_state(out_dir, state)
    return report

