"""Canonical CSV parser and the file-import service (archive before parse; a bad file never
stops the others)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from forecast.errors import EncodingError, ParseError
from forecast.importer import import_files
from forecast.ingest.canonical_csv import parse_canonical_csv
from forecast.storage.observations import read_observations
from forecast.storage.tables import raw_fetches, raw_payloads

# a file without a variable column no longer defaults to level_m: the column names it
GOOD = (b"station_id,time,value,variable\nG1,2024-07-01T09:00+09:00,1.25,level_m\n"
        b"G1,2024-07-01T09:10+09:00,,level_m\n")
NOW = datetime(2024, 7, 2, tzinfo=UTC)


def test_parses_times_to_utc_and_blank_to_nan() -> None:
    df = parse_canonical_csv(GOOD, "x.csv")
    assert df["time"].iloc[0] == datetime(2024, 7, 1, 0, 0, tzinfo=UTC)
    assert df["value"].isna().tolist() == [False, True]


@pytest.mark.parametrize(("data", "err", "where"), [
    (b"station,time,value\nG1,2024-07-01T09:00+09:00,1\n", ParseError, "header"),
    (b"station_id,time,value\nG1,2024-07-01T09:00,1\n", ParseError, "row 2"),
    (b"station_id,time,value\nG1,2024-07-01T09:00Z,1\nG1,2024-07-01T09:10Z,abc\n",
     ParseError, "row 3"),
    (b"station_id,time,value\nG1,2024-07-01T09:00Z,inf\n", ParseError, "row 2"),
    ("station_id,time,value\nG1,2024-07-01T09:00Z,1\n".encode("utf-16"), EncodingError, "byte"),
])
def test_bad_input_names_the_position(data: bytes, err: type, where: str) -> None:
    with pytest.raises(err, match=where):
        parse_canonical_csv(data, "x.csv")


def test_import_archives_everything_and_continues_after_a_bad_file(
        engine: Engine, tmp_path: Path) -> None:
    good, bad, gone = tmp_path / "good.csv", tmp_path / "bad.csv", tmp_path / "missing.csv"
    good.write_bytes(GOOD)
    bad.write_bytes(b"station_id,time,value\nG2,2024-07-01T09:00,1\n")
    report = import_files(engine, [bad, good, gone], source="canonical_csv", now=NOW)
    assert report.rows == {str(good): 2}
    assert set(report.failed) == {str(bad), str(gone)}
    assert len(read_observations(engine)) == 2
    with engine.connect() as conn:
        status = dict(conn.execute(sa.select(raw_fetches.c.uri, raw_fetches.c.parse_status)).all())
        n_payloads = conn.execute(sa.select(sa.func.count()).select_from(raw_payloads)).scalar()
    assert status == {bad.resolve().as_uri(): "failed", good.resolve().as_uri(): "ok"}
    assert n_payloads == 2  # the bad file's bytes are kept for re-parsing
    again = import_files(engine, [good], source="canonical_csv", now=NOW)
    assert again.inserted == 0 and again.revised == 0


MLIT = Path(__file__).parent / "data" / "mlit-wis"


def test_batch_import_isolates_a_bad_file(engine: Engine, tmp_path: Path) -> None:
    """mlit_dat parses files in batches; one truncated file must not cost the others."""
    good = sorted(MLIT.glob("*kind6*.dat"))
    bad = tmp_path / "truncated.dat"
    data = good[0].read_bytes()
    bad.write_bytes(data[: len(data) // 2 - 7])
    report = import_files(engine, [*good, bad], source="mlit_dat", now=NOW)
    assert list(report.failed) == [str(bad)]
    assert set(report.rows) == {str(p) for p in good}
    stored = read_observations(engine)
    assert len(stored) == report.total_rows > 0
    with engine.connect() as conn:
        status = sorted(conn.execute(sa.select(raw_fetches.c.parse_status)).scalars())
    assert status == ["failed", "ok", "ok"]
    # all-good batch goes through the fast path and gives the same rows
    again = import_files(engine, good, source="mlit_dat", now=NOW)
    assert not again.failed and again.inserted == 0 and again.revised == 0
