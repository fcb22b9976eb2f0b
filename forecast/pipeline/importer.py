"""File import: read → archive raw bytes (committed) → parse → the one QC store path.

A file that fails to parse is recorded (the archive keeps its bytes, ``raw_fetches`` its error)
and the other files go on. Every observation goes through ``collect.store_observations``, so
imported history is QC'd exactly like live data. Used by ``forecast import``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from forecast.errors import ForecastError, ParseError
from forecast.ingest.amedas import parse_amedas_map, parse_amedas_point
from forecast.ingest.canonical_csv import parse_canonical_csv
from forecast.ingest.kotogawa import parse_kotogawa_csv
from forecast.ingest.mlit import parse_mlit_dat, parse_mlit_dat_many
from forecast.ingest.mlit_json import parse_mlit_json
from forecast.ingest.replay import parse_replay_csv
from forecast.ingest.sources import parse_crisis_readings
from forecast.pipeline.collect import store_observations
from forecast.pipeline.context import Context
from forecast.storage.archive import archive_payloads, mark_parsed, mark_parsed_many
from forecast.storage.engine import transaction

log = logging.getLogger(__name__)

Parser = Callable[[bytes, str], pd.DataFrame]

SOURCES = ("canonical_csv", "mlit_dat", "mlit_json", "amedas_map", "amedas_point",
           "crisis_json", "replay_csv", "kotogawa_csv")
"""Import source names (``forecast import --source``)."""

BATCH_FILES = 400


@dataclass
class ImportReport:
    """What an import did: rows per file, the files that failed with their error, and the
    station codes the catalogue does not know (stored, but no river reads them)."""

    rows: dict[str, int | None] = field(default_factory=dict)  # None: parsed in a batch
    total_rows: int = 0
    inserted: int = 0
    revised: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    unknown_stations: set[str] = field(default_factory=set)


def _parsers(ctx: Context, accept_unknown: bool) -> dict[str, Parser]:
    """Source name → parser (bytes, location) → observations frame."""
    variables = ctx.catalogue.station_variables()

    def canonical(data: bytes, loc: str) -> pd.DataFrame:
        return parse_canonical_csv(data, loc, station_variables=variables,
                                   accept_unknown=accept_unknown)

    return {
        "canonical_csv": canonical,            # variable from the file or the catalogue
        "mlit_dat": parse_mlit_dat,            # daily tables become daily variables
        "mlit_json": parse_mlit_json,
        "amedas_map": parse_amedas_map,        # time from the file name YYYYMMDDhhmm00.json
        "amedas_point": parse_amedas_point,    # station from the path point/{code}/…
        "crisis_json": parse_crisis_readings,  # readings; rejected records are logged
        "replay_csv": parse_replay_csv,        # payloads archived by collect_replay
        "kotogawa_csv": parse_kotogawa_csv,    # the real 厚東川 10-min CSV (zeros = missing)
    }


BATCH_PARSERS: dict[str, Callable[[list[tuple[bytes, str]]], pd.DataFrame]] = {
    "mlit_dat": lambda items: parse_mlit_dat_many(items),
}
"""Sources whose parser is much faster on many files at once (ten-year MLIT imports)."""


def _error(exc: ForecastError) -> str:
    return f"{type(exc).__name__}: {exc}"


def _mark_failed(ctx: Context, report: ImportReport, fetch_id: int, loc: str,
                 error: str) -> None:
    with transaction(ctx.engine, "recording a failed import") as conn:
        mark_parsed(conn, fetch_id, ok=False, error=error)
    report.failed[loc] = error


def import_files(ctx: Context, paths: Iterable[Path], *, source: str,
                 accept_unknown: bool = False,
                 progress: Callable[[Path], object] | None = None) -> ImportReport:
    """Import files with the parser registered as ``source`` (see ``SOURCES``).

    Files go in chunks of ``BATCH_FILES``: every file's bytes are archived (and committed)
    first; a source with a batch parser parses the chunk at once and, if any file in it is
    bad, falls back to one file at a time so only the bad file is lost. The rows then go
    through ``store_observations`` (QC, then upsert); a canonical CSV's ``source`` column (e.g.
    ``simulated``) is kept as the rows' provenance. ``accept_unknown``: store canonical-CSV
    rows of stations the catalogue does not know instead of refusing the file.
    """
    parsers = _parsers(ctx, accept_unknown)
    if source not in parsers:
        raise ParseError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    known = set(ctx.catalogue.station_variables())
    now = ctx.clock.now()
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
        with transaction(ctx.engine, f"archiving {len(items)} files") as conn:
            archived = archive_payloads(
                conn, [(d, p.resolve().as_uri()) for (d, _), p in zip(items, chunk,
                                                                       strict=True)],
                source=source, fetched_at=now)
        by_file: dict[str, pd.DataFrame] = {}
        batch = BATCH_PARSERS.get(source)
        if batch is not None:
            try:
                by_file = {"*": batch(items)}
            except ForecastError:
                batch = None  # a bad file in the chunk: isolate it below
        if batch is None:
            for (data, loc), a in zip(items, archived, strict=True):
                try:
                    by_file[loc] = parsers[source](data, loc)
                except ForecastError as exc:
                    log.warning("import of %s failed: %s", loc, exc)
                    _mark_failed(ctx, report, a.fetch_id, loc, _error(exc))
        if not by_file:
            continue
        rows = pd.concat(list(by_file.values()), ignore_index=True)
        report.unknown_stations |= set(rows["station_id"].unique()) - known
        bad = _store(ctx, report, rows, source, now)
        in_batch = set(rows["station_id"].unique()) if bad else set()
        ok: dict[int, int | None] = {}
        for (_, loc), a, path in zip(items, archived, chunk, strict=True):
            if loc in report.failed:
                continue
            frame = by_file.get(loc)
            # a batch-parsed file is blamed for any failed station of its batch
            hit = sorted(bad.keys() & (set(frame["station_id"].unique()) if frame is not None
                                       else in_batch))
            if hit:
                _mark_failed(ctx, report, a.fetch_id, loc,
                             "; ".join(f"{s}: {bad[s]}" for s in hit))
                continue
            ok[a.fetch_id] = report.rows[loc] = len(frame) if frame is not None else None
            if progress is not None:
                progress(path)
        with transaction(ctx.engine, "recording parse outcomes") as conn:
            mark_parsed_many(conn, ok)
    return report


def _store(ctx: Context, report: ImportReport, rows: pd.DataFrame, source: str,
           now: datetime) -> dict[str, str]:
    """Store one chunk's rows by provenance; returns the stations that failed."""
    failed: dict[str, str] = {}
    groups = (rows.groupby(rows["source"].fillna(source), sort=True) if "source" in rows.columns
              else [(source, rows)])
    for provenance, part in groups:
        res = store_observations(ctx, part.drop(columns="source", errors="ignore"),
                                 source=str(provenance), now=now)
        report.inserted += res.inserted
        report.revised += res.revised
        failed.update(res.failed)
    report.total_rows += len(rows)
    return failed
