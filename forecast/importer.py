"""File import service: read → archive raw bytes → parse → store.

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
from forecast.ingest.mlit import parse_mlit_dat, parse_mlit_dat_many
from forecast.ingest.mlit_json import parse_mlit_json
from forecast.ingest.replay import parse_replay_csv
from forecast.ingest.sources import parse_crisis_readings
from forecast.storage.archive import archive_payloads, mark_parsed, mark_parsed_many
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

    rows: dict[str, int | None] = field(default_factory=dict)  # None: parsed in a batch
    total_rows: int = 0
    inserted: int = 0
    revised: int = 0
    failed: dict[str, str] = field(default_factory=dict)


BATCH_PARSERS: dict[str, Callable[[list[tuple[bytes, str]]], pd.DataFrame]] = {
    "mlit_dat": lambda items: parse_mlit_dat_many(items),
}
"""Sources whose parser is much faster on many files at once (ten-year MLIT imports)."""

BATCH_FILES = 400


def _one(engine: Engine, report: ImportReport, source: str, now: datetime,
         fetch_id: int, loc: str, data: bytes) -> pd.DataFrame | None:
    """Parse one file; record a failure instead of raising."""
    try:
        return PARSERS[source](data, loc)
    except ForecastError as exc:
        log.warning("import of %s failed: %s", loc, exc)
        mark_parsed(engine, fetch_id, ok=False, error=f"{type(exc).__name__}: {exc}")
        report.failed[loc] = f"{type(exc).__name__}: {exc}"
        return None


def import_files(engine: Engine, paths: Iterable[Path], *, source: str, now: datetime,
                 progress: Callable[[Path], object] | None = None) -> ImportReport:
    """Import files with the parser registered as ``source`` (see ``PARSERS``).

    Files go in chunks of ``BATCH_FILES``: every file's bytes are archived first; a source with
    a batch parser parses the chunk at once and, if any file in it is bad, falls back to one
    file at a time so only the bad file is lost. Each chunk is one storage transaction.
    """
    if source not in PARSERS:
        raise ParseError(f"unknown source {source!r}; known: {sorted(PARSERS)}")
    report = ImportReport()
    todo = list(paths)
    for start in range(0, len(todo), BATCH_FILES):
        items: list[tuple[bytes, str]] = []
        chunk: list[Path] = []
        for path in todo[start:start + BATCH_FILES]:
            try:
                items.append((path.read_bytes(), str(path)))
                chunk.append(path)
            except OSError as exc:
                report.failed[str(path)] = f"cannot read: {exc.strerror}"
        if not items:
            continue
        archived = archive_payloads(
            engine, [(d, p.resolve().as_uri()) for (d, _), p in zip(items, chunk, strict=True)],
            source=source, fetched_at=now)
        frames_: dict[str, pd.DataFrame] = {}
        batch = BATCH_PARSERS.get(source)
        if batch is not None:
            try:
                whole = batch(items)
                frames_ = {"*": whole}
            except ForecastError:
                batch = None  # a bad file in the chunk: isolate it below
        if batch is None:
            for (data, loc), a in zip(items, archived, strict=True):
                df = _one(engine, report, source, now, a.fetch_id, loc, data)
                if df is not None:
                    frames_[loc] = df
        if not frames_:
            continue
        all_rows = pd.concat(list(frames_.values()), ignore_index=True)
        try:
            res = upsert_observations(engine, all_rows, source=source, now=now)
        except ForecastError as exc:
            for (_, loc), a in zip(items, archived, strict=True):
                if loc not in report.failed:
                    mark_parsed(engine, a.fetch_id, ok=False, error=f"{type(exc).__name__}: {exc}")
                    report.failed[loc] = f"{type(exc).__name__}: {exc}"
            continue
        report.inserted += res.inserted
        report.revised += res.revised
        report.total_rows += len(all_rows)
        ok: dict[int, int | None] = {}
        for (_, loc), a, path in zip(items, archived, chunk, strict=True):
            if loc in report.failed:
                continue
            ok[a.fetch_id] = report.rows[loc] = len(frames_[loc]) if loc in frames_ else None
            if progress is not None:
                progress(path)
        mark_parsed_many(engine, ok)
    return report
