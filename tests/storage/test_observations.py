"""Observation storage on SQLite and PostgreSQL: idempotent re-ingest, revision history,
暫定→確定, atomic writes, concurrent reader + writer."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import run
from sqlalchemy.engine import Engine

from forecast.errors import StorageError
from forecast.storage.observations import (
    observation_history_frame,
    read_observations,
    upsert_observations,
)
from forecast.storage.tables import observation_history, observations

NOW = datetime(2024, 7, 1, tzinfo=UTC)


def batch(n: int = 6, *, station: str = "G1", start: str = "2024-06-30 00:00",
          provisional: bool = True, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = pd.date_range(start, periods=n, freq="10min", tz="UTC")
    v = rng.uniform(0.5, 3.0, n).round(2)
    v[n // 2] = np.nan
    return pd.DataFrame({"station_id": station, "variable": "level_m", "time": t, "value": v,
                         "provisional": provisional})


def count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_round_trip_keeps_values_times_and_nan(engine: Engine) -> None:
    b = batch()
    run(engine, upsert_observations, b, source="test", now=NOW)
    got = run(engine, read_observations)
    assert list(got["time"]) == list(b["time"])
    assert str(got["time"].dt.tz) == "UTC"
    np.testing.assert_array_equal(got["value"].to_numpy(), b["value"].to_numpy())
    assert (got["revision"] == 0).all()


def test_reingest_same_data_is_a_no_op(engine: Engine) -> None:
    b = batch(50)
    first = run(engine, upsert_observations, b, source="test", now=NOW)
    second = run(engine, upsert_observations, b, source="test", now=NOW)
    assert (first.inserted, first.revised) == (50, 0)
    assert (second.inserted, second.revised, second.unchanged) == (0, 0, 50)
    assert count(engine, observations) == 50
    assert count(engine, observation_history) == 0


def test_verified_values_replace_provisional_and_history_keeps_them(engine: Engine) -> None:
    prov = batch(6, provisional=True)
    run(engine, upsert_observations, prov, source="mlit", now=NOW)
    final = prov.copy()
    final["provisional"] = False
    final.loc[1, "value"] = prov.loc[1, "value"] + 0.07
    res = run(engine, upsert_observations, final, source="mlit", now=NOW)
    assert res.revised == 6
    cur = run(engine, read_observations)
    assert not cur["provisional"].any()
    assert cur.loc[1, "value"] == pytest.approx(prov.loc[1, "value"] + 0.07)
    assert (cur["revision"] == 1).all()
    hist = run(engine, observation_history_frame, "G1", "level_m",
               prov.loc[1, "time"].to_pydatetime())
    assert len(hist) == 1
    assert hist.loc[0, "value"] == pytest.approx(prov.loc[1, "value"])
    assert bool(hist.loc[0, "provisional"])


def test_provisional_never_overwrites_verified(engine: Engine) -> None:
    verified = batch(4, provisional=False)
    run(engine, upsert_observations, verified, source="mlit", now=NOW)
    late_prov = verified.copy()
    late_prov["provisional"] = True
    late_prov["value"] = late_prov["value"] + 1.0
    res = run(engine, upsert_observations, late_prov, source="telemetry", now=NOW)
    assert res.revised == 0
    cur = run(engine, read_observations)
    np.testing.assert_allclose(cur["value"], verified["value"])


def test_duplicate_rows_in_one_batch_keep_the_last(engine: Engine) -> None:
    b = batch(3)
    dup = pd.concat([b, b.iloc[[0]].assign(value=9.99)], ignore_index=True)
    run(engine, upsert_observations, dup, source="test", now=NOW)
    cur = run(engine, read_observations)
    assert len(cur) == 3
    assert cur.loc[0, "value"] == pytest.approx(9.99)


def test_failed_write_leaves_no_partial_rows(engine: Engine) -> None:
    run(engine, upsert_observations, batch(6), source="test", now=NOW)
    before = run(engine, read_observations)
    changed = batch(6, seed=1, provisional=False)
    extra = batch(6, start="2024-07-02", seed=2)
    # Fail the final upsert statement, after staging and history rows were written in the
    # same transaction: everything must roll back.
    def fail(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("INSERT INTO OBSERVATIONS "):
            raise RuntimeError("injected failure")

    sa.event.listen(engine, "before_cursor_execute", fail)
    try:
        with pytest.raises((StorageError, RuntimeError)):
            run(engine, upsert_observations, pd.concat([changed, extra]), source="test", now=NOW)
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail)
    after = run(engine, read_observations)
    pd.testing.assert_frame_equal(before, after)
    assert count(engine, observation_history) == 0


def test_bad_frame_is_refused_before_writing(engine: Engine) -> None:
    b = batch(3).drop(columns=["value"])
    with pytest.raises(Exception, match="lacks columns"):
        run(engine, upsert_observations, b, source="test", now=NOW)
    assert count(engine, observations) == 0


def test_concurrent_reader_and_writer(engine: Engine) -> None:
    """A reader polling while a writer commits batches never sees a partial batch or an error."""
    n_batches, size = 15, 200
    errors: list[BaseException] = []
    seen: list[int] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(n_batches):
                b = batch(size, station=f"S{i % 3}", start=f"2024-01-{i + 1:02d}", seed=i)
                run(engine, upsert_observations, b, source="test", now=NOW)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                seen.append(len(run(engine, read_observations)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert seen, "reader never ran"
    assert all(n % size == 0 for n in seen), "reader saw a partially written batch"
    assert count(engine, observations) == n_batches * size


def test_mixed_batch_new_station_and_revised_station(engine: Engine) -> None:
    """A batch mixing a station with history (general path) and a new station (fast path)."""
    old = batch(6, station="OLD", provisional=True)
    run(engine, upsert_observations, old, source="test", now=NOW)
    revised = old.assign(provisional=False)
    new = batch(4, station="NEW", seed=5)
    res = run(engine, upsert_observations, pd.concat([revised, new]), source="test", now=NOW)
    assert (res.inserted, res.revised, res.unchanged) == (4, 6, 0)
    cur = run(engine, read_observations)
    assert len(cur) == 10
    assert cur.set_index("station_id").loc["OLD", "revision"].tolist() == [1] * 6
    assert count(engine, observation_history) == 6


def test_station_reads_equal_the_single_query(engine: Engine) -> None:
    """``read_observations(station_ids=...)`` (one driver-level walk of the key per station)
    gives exactly the frame of the one SQLAlchemy query (``_read_select``): values, NaN,
    flags, rules, provisional, source, revision, order, dtypes; daily variables included."""
    from forecast.storage.observations import _read_select

    rng = np.random.default_rng(3)
    parts = []
    for i, station in enumerate(["G2", "G1", "R1", "X9"]):
        b = batch(40, station=station, seed=i, provisional=bool(i % 2))
        b["flag"] = rng.choice([0, 1, 2, 3], len(b))
        b["qc_rule"] = np.where(b["flag"] > 0, "spike", "")
        if station == "R1":
            b["variable"] = "rain_mm"
        parts.append(b)
    daily = batch(3, station="G1", start="2024-06-30 00:00").assign(
        variable="level_m_daily_mean", time=lambda d: d["time"].dt.floor("D")
        + pd.Timedelta(days=1) * np.arange(3), flag=0, qc_rule="")
    run(engine, upsert_observations, pd.concat([*parts, daily]), source="test", now=NOW)
    run(engine, upsert_observations, parts[1].assign(value=lambda d: d["value"] + 1),
        source="again", now=NOW)   # revision 1, another source
    t0 = pd.Timestamp("2024-06-30 02:00", tz="UTC").to_pydatetime()
    for kw in ({}, {"start": t0}, {"end": t0}, {"variable": "level_m", "start": t0},
               {"variable": "rain_mm"}):
        for stations in (["G1", "G2", "R1", "X9", "nowhere"], ["R1"], [], ["nowhere"]):
            got = run(engine, read_observations, station_ids=stations, **kw)
            want = run(engine, _read_select, station_ids=stations, **kw)
            pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert 1 in set(run(engine, read_observations, station_ids=["G1"])["revision"])


def test_a_sliding_window_reads_what_a_fresh_read_would(engine: Engine) -> None:
    """``ObservationWindow`` (kept between cycles) against ``read_observations`` after every
    kind of write: new rows, late rows inside the window, revised values and flags, a new
    station or variable, a window that moves forward, stays, moves back or jumps."""
    from forecast.storage.observations import ObservationWindow

    rng = np.random.default_rng(7)
    stations = ["G1", "G2", "R1"]
    t0 = pd.Timestamp("2024-06-30 00:00", tz="UTC")
    for i, s in enumerate(stations):
        b = batch(60, station=s, start="2024-06-30 00:00", seed=i)
        run(engine, upsert_observations,
            b.assign(variable="rain_mm") if s == "R1" else b, source="test", now=NOW)
    window = ObservationWindow()

    def check(start: pd.Timestamp, end: pd.Timestamp, ids: list[str] = stations) -> None:
        kw = {"start": start.to_pydatetime(), "end": end.to_pydatetime()}
        got = run(engine, window.read, station_ids=ids, **kw)
        want = run(engine, read_observations, station_ids=ids, **kw)
        pd.testing.assert_frame_equal(got, want, check_exact=True)

    start, end = t0 + pd.Timedelta(hours=1), t0 + pd.Timedelta(hours=6)
    check(start, end)
    check(start, end)                                     # nothing changed
    for step in range(8):
        start, end = start + pd.Timedelta(minutes=30), end + pd.Timedelta(minutes=30)
        what = step % 4
        if what == 0:   # new rows after the window's end
            new = batch(3, station="G1", start=str(end - pd.Timedelta(minutes=30))[:16],
                        seed=10 + step)
            run(engine, upsert_observations, new, source="test", now=NOW)
        elif what == 1:   # a revised value inside the window (revision + 1)
            old = run(engine, read_observations, station_ids=["G2"])
            row = old[old["value"].notna()].iloc[int(rng.integers(0, 10)) + 12]
            fixed = row.to_frame().T[["station_id", "variable", "time", "value"]].assign(
                value=float(row["value"]) + 0.5, provisional=False)
            fixed["time"] = pd.to_datetime(fixed["time"], utc=True)
            fixed["value"] = fixed["value"].astype(float)
            run(engine, upsert_observations, fixed, source="fix", now=NOW)
        elif what == 2:   # a late row inside the window, and a flag change
            late = batch(1, station="R1", start=str(start + pd.Timedelta(minutes=5))[:16])
            run(engine, upsert_observations, late.assign(variable="rain_mm"), source="late",
                now=NOW)
        else:             # a new variable for a station
            extra = batch(4, station="G1", start=str(start)[:16]).assign(
                variable="release_m3s")
            run(engine, upsert_observations, extra, source="dam", now=NOW)
        check(start, end)
    check(start - pd.Timedelta(hours=2), end)            # moved back: read afresh
    check(start, end + pd.Timedelta(days=1))             # a longer window
    check(end + pd.Timedelta(days=2), end + pd.Timedelta(days=3))   # no overlap
    check(start, end, ["G1", "X9"])                      # other stations
