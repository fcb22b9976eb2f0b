"""File import service: read → archive raw bytes → parse → store, one file at a time.

A file that fails to parse is recorded (the archive keeps its bytes, ``raw_fetches`` its error)
and the other files go on. Used by ``forecast import``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from forecast.errors import ForecastError, ParseError
from forecast.ingest.amedas import parse_amedas_map, parse_amedas_point
from forecast.ingest.canonical_csv import parse_canonical_csv
from forecast.ingest.mlit import parse_mlit_dat
from forecast.ingest.mlit_json import parse_mlit_json
from forecast.ingest.replay import parse_replay_csv
from forecast.ingest.sources import parse_crisis_readings
from forecast.storage.archive import archive_payload, mark_parsed
from forecast.storage.observations import upsert_observations

log = logging.getLogger(__name__)

Parser = Callable[[bytes, str], pd.DataFrame]

PARSERS: dict[str, Parser] = {
    "canonical_csv": parse_canonical_csv,
    "mlit_dat": parse_mlit_dat,
    "mlit_json": parse_mlit_json,
    "amedas_map": parse_amedas_map,        # time from the file name YYYYMMDDhhmm00.json (JST)
    "amedas_point": parse_amedas_point,    # station from the path point/{code}/…
    "crisis_json": parse_crisis_readings,  # readings; rejected records are logged
    "replay_csv": parse_replay_csv,        # payloads archived by collect_replay
}
"""Source name → parser (bytes, location) → observations frame."""


@dataclass
class ImportReport:
    """What an import did: rows per file, and the files that failed with their error."""

    rows: dict[str, int] = field(default_factory=dict)
    inserted: int = 0
    revised: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def import_files(engine: Engine, paths: Iterable[Path], *, source: str, now: datetime,
                 progress: Callable[[Path], object] | None = None) -> ImportReport:
    """Import files with the parser registered as ``source`` (see ``PARSERS``)."""
    try:
        parse = PARSERS[source]
    except KeyError as exc:
        raise ParseError(f"unknown source {source!r}; known: {sorted(PARSERS)}") from exc
    report = ImportReport()
    for path in paths:
        loc = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.failed[loc] = f"cannot read: {exc.strerror}"
            continue
        archived = archive_payload(engine, data, source=source, uri=path.resolve().as_uri(),
                                   fetched_at=now)
        try:
            df = parse(data, loc)
            res = upsert_observations(engine, df, source=source, now=now)
        except ForecastError as exc:
            log.warning("import of %s failed: %s", loc, exc)
            mark_parsed(engine, archived.fetch_id, ok=False, error=f"{type(exc).__name__}: {exc}")
            report.failed[loc] = f"{type(exc).__name__}: {exc}"
            continue
        mark_parsed(engine, archived.fetch_id, ok=True, rows=len(df))
        report.rows[loc] = len(df)
        report.inserted += res.inserted
        report.revised += res.revised
        if progress is not None:
            progress(path)
    return report
