"""Replay source: never shows data received after the clock; late data appear once received;
window limits; CSV payload round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast import frames
from forecast.catalogue import load_catalogue
from forecast.ingest.replay import (
    Replay,
    parse_rain_csv,
    parse_replay_csv,
    rain_to_csv,
    to_csv,
)
from forecast.simulate import simulate

T0 = pd.Timestamp("2023-07-01T00:00", tz="UTC")


def _frames(seed: int = 0, n: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    time = T0 + pd.to_timedelta(rng.integers(0, 48 * 6, n) * 10, unit="min")
    delay = pd.to_timedelta(rng.choice([0, 0, 0, 5, 30, 240, 900], n), unit="min")
    obs = pd.DataFrame({
        "station_id": rng.choice(["A", "B", "C"], n), "variable": frames.LEVEL,
        "time": time, "value": rng.normal(1.0, 0.2, n),
        "received_at": (time + delay).where(rng.random(n) > 0.1),   # some NaT: "on time"
    }).drop_duplicates(["station_id", "time"])
    issued = T0 + pd.to_timedelta(rng.integers(0, 48, 60), unit="h")
    rain = pd.DataFrame({"product": "simulated_forecast", "catchment_id": "r1",
                         "issued_at": issued, "valid_at": issued + pd.Timedelta("1h"),
                         "value": rng.gamma(1.0, 2.0, 60)}).drop_duplicates(["issued_at"])
    return obs, rain


OBS, RAIN = _frames()
REPLAY = Replay.of(OBS, RAIN)


def _naive(obs: pd.DataFrame, clock: pd.Timestamp) -> set[tuple[str, pd.Timestamp]]:
    """Oracle: row-by-row rule."""
    out = set()
    for r in obs.itertuples():
        avail = r.time if pd.isna(r.received_at) else max(r.time, r.received_at)
        if avail <= clock:
            out.add((r.station_id, r.time))
    return out


@settings(max_examples=60, deadline=None)
@given(minutes=st.integers(min_value=-60, max_value=72 * 60))
def test_never_returns_data_received_after_clock(minutes: int) -> None:
    clock = T0 + pd.Timedelta(minutes=minutes)
    part = REPLAY.available_at(clock.to_pydatetime())
    assert (part.observations["received_at"] <= clock).all()
    assert (part.observations["time"] <= clock).all()
    assert (part.rain["issued_at"] <= clock).all()
    got = set(zip(part.observations["station_id"], part.observations["time"], strict=True))
    assert got == _naive(OBS, clock)
    assert len(part.rain) == int((RAIN["issued_at"] <= clock).sum())


@settings(max_examples=40, deadline=None)
@given(a=st.integers(0, 72 * 60), b=st.integers(0, 72 * 60))
def test_arrivals_partition_the_history(a: int, b: int) -> None:
    """available(t1) = available(t0) + arrived_between(t0, t1), without overlap."""
    t0, t1 = sorted((T0 + pd.Timedelta(minutes=a), T0 + pd.Timedelta(minutes=b)))
    before = REPLAY.available_at(t0.to_pydatetime()).observations
    new = REPLAY.arrived_between(t0.to_pydatetime(), t1.to_pydatetime()).observations
    after = REPLAY.available_at(t1.to_pydatetime()).observations
    assert len(before) + len(new) == len(after)
    assert ((new["received_at"] > t0) & (new["received_at"] <= t1)).all()


def test_late_reading_appears_once_received() -> None:
    obs = pd.DataFrame({
        "station_id": ["G", "G"], "variable": frames.LEVEL,
        "time": [T0, T0 + pd.Timedelta("10min")], "value": [1.0, 2.0],
        "received_at": [T0, T0 + pd.Timedelta("3h")],          # second one 3 h late
    })
    replay = Replay.of(obs)
    at = lambda h: replay.available_at((T0 + pd.Timedelta(hours=h)).to_pydatetime())  # noqa: E731
    assert at(1).observations["value"].tolist() == [1.0]
    assert at(2.99).observations["value"].tolist() == [1.0]
    assert sorted(at(3).observations["value"]) == [1.0, 2.0]
    # its own observation time is kept, not the arrival time
    assert at(3).observations.sort_values("time")["time"].iloc[1] == T0 + pd.Timedelta("10min")


def test_received_before_time_is_not_shown_early() -> None:
    obs = pd.DataFrame({"station_id": ["G"], "variable": frames.LEVEL, "time": [T0],
                        "value": [1.0], "received_at": [T0 - pd.Timedelta("1h")]})
    replay = Replay.of(obs)
    assert replay.available_at((T0 - pd.Timedelta("30min")).to_pydatetime()).observations.empty
    assert len(replay.available_at(T0.to_pydatetime()).observations) == 1


def test_window_limits_to_recent_data() -> None:
    clock = T0 + pd.Timedelta(hours=30)
    part = REPLAY.available_at(clock.to_pydatetime(), window=timedelta(hours=6))
    assert (part.observations["time"] > clock - pd.Timedelta("6h")).all()
    assert (part.rain["issued_at"] > clock - pd.Timedelta("6h")).all()
    full = REPLAY.available_at(clock.to_pydatetime()).observations
    expect = full[full["time"] > clock - pd.Timedelta("6h")]
    assert len(part.observations) == len(expect) > 0


def test_naive_clock_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        REPLAY.available_at(datetime(2023, 7, 1))


def test_without_received_at_uses_observation_time() -> None:
    obs = OBS.drop(columns="received_at")
    replay = Replay.of(obs)
    clock = T0 + pd.Timedelta(hours=5)
    part = replay.available_at(clock.to_pydatetime()).observations
    assert len(part) == int((obs["time"] <= clock).sum())


def test_csv_payload_round_trip_keeps_flags_and_exact_values() -> None:
    obs = frames.observations(OBS.drop(columns="received_at").assign(
        flag=np.where(np.arange(len(OBS)) % 7 == 0, 4, 0),
        qc_rule=np.where(np.arange(len(OBS)) % 7 == 0, "mlit:$", ""),
        provisional=np.arange(len(OBS)) % 2 == 0))
    back = parse_replay_csv(to_csv(obs), "replay://x")
    pd.testing.assert_frame_equal(back, obs)
    rain = frames.rain_vintages(RAIN)
    pd.testing.assert_frame_equal(parse_rain_csv(rain_to_csv(rain), "replay://r"), rain)


def test_replays_simulated_data(reference_catalogue_path) -> None:  # type: ignore[no-untyped-def]
    cat = load_catalogue(reference_catalogue_path)
    sim = simulate(cat, datetime(2023, 7, 1, tzinfo=UTC), datetime(2023, 7, 2, tzinfo=UTC),
                   seed=3)
    replay = Replay.of(sim.observations, sim.rain_forecasts, name="simulated")
    clock = datetime(2023, 7, 1, 12, tzinfo=UTC)
    part = replay.available_at(clock)
    rec = sim.observations["received_at"]
    assert len(part.observations) == int((rec <= pd.Timestamp(clock)).sum()) > 0
    assert (part.rain["issued_at"] <= pd.Timestamp(clock)).all() and len(part.rain) > 0
