"""The demo's replay file (forecast.pipeline.demo): the simulated future the live demo plays.

``write_replay``/``load_replay`` round trip, their errors, and ``prepare`` writing the file
from ``end - 24 h`` to ``end + REPLAY_DAYS``, reusing it, and regenerating it identically.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from helpers import run

from forecast.catalogue import load_catalogue
from forecast.clock import FixedClock
from forecast.errors import ConfigError
from forecast.ingest.replay import Replay
from forecast.pipeline.context import Context
from forecast.pipeline.demo import (
    DEMO_DELAY,
    REPLAY_DAYS,
    TYPHOON_AFTER,
    load_replay,
    prepare,
    replay_path,
    write_replay,
)
from forecast.settings import load_settings
from forecast.simulate import simulate_river
from forecast.storage.engine import create_engine
from forecast.storage.observations import read_observations

ROOT = Path(__file__).resolve().parent.parent
END = datetime(2024, 7, 10, 3, tzinfo=UTC)
KEY = ["station_id", "variable", "time"]


@pytest.fixture(scope="module")
def koto():
    return load_catalogue(ROOT / "config" / "reference_rivers.yaml").rivers[0]


@pytest.fixture(scope="module")
def replay(koto) -> Replay:
    sim = simulate_river(koto, datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 7, 4, tzinfo=UTC),
                         seed=3)
    return Replay.of(sim.observations, sim.rain_forecasts, name="simulated")


# --- write_replay / load_replay ----------------------------------------------------------------

def test_round_trip_keeps_observations_received_at_and_rain(replay, tmp_path):
    path = tmp_path / "demo" / "replay"
    n_obs, n_rain = write_replay(path, replay)
    assert (n_obs, n_rain) == (len(replay.observations), len(replay.rain)) and n_rain > 0
    back = load_replay(path)
    assert back.name == "simulated"
    pd.testing.assert_frame_equal(back.observations, replay.observations)
    pd.testing.assert_frame_equal(back.rain, replay.rain)
    late = back.observations["received_at"] - back.observations["time"]
    assert late.min() >= pd.Timedelta(0) and late.max() > pd.Timedelta(minutes=1)
    clock = datetime(2024, 7, 2, 12, 5, tzinfo=UTC)
    for a, b in ((back.available_at(clock, window=timedelta(hours=6)),
                  replay.available_at(clock, window=timedelta(hours=6))),
                 (back.arrived_between(clock - timedelta(minutes=30), clock),
                  replay.arrived_between(clock - timedelta(minutes=30), clock))):
        pd.testing.assert_frame_equal(a.observations, b.observations)
        pd.testing.assert_frame_equal(a.rain, b.rain)
    assert os.listdir(path.parent) == ["replay"]     # no temporary leftovers


def test_write_replay_takes_frames_and_replaces_the_old_file(replay, tmp_path):
    path = tmp_path / "replay"
    write_replay(path, replay)
    part = replay.available_at(datetime(2024, 7, 2, tzinfo=UTC), window=timedelta(hours=12))
    assert write_replay(path, part) == (len(part.observations), len(part.rain))
    back = load_replay(path)
    pd.testing.assert_frame_equal(back.observations, part.observations)
    pd.testing.assert_frame_equal(back.rain, part.rain)
    assert sorted(os.listdir(tmp_path)) == ["replay"]


def test_missing_replay_says_how_to_create_it(tmp_path):
    path = tmp_path / "demo" / "replay"
    with pytest.raises(ConfigError) as err:
        load_replay(path)
    assert str(err.value) == (f"no demo replay at {path}; run `forecast demo --no-serve` to "
                              "create it")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "foreign"])
def test_damaged_replay_names_the_file(replay, tmp_path, damage):
    path = tmp_path / "replay"
    write_replay(path, replay)
    file = path / ("rain.parquet" if damage in ("truncated", "missing") else
                   "observations.parquet")
    if damage == "garbage":
        file.write_bytes(b"this is not parquet\n" * 100)
    elif damage == "truncated":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif damage == "missing":
        file.unlink()
    else:   # valid parquet, but not observations
        pd.DataFrame({"x": [1, 2]}).to_parquet(file)
    with pytest.raises(ConfigError) as err:
        load_replay(path)
    msg = str(err.value)
    assert "\n" not in msg and "forecast demo --no-serve" in msg
    assert str(file if damage != "foreign" else path) in msg


# --- prepare -----------------------------------------------------------------------------------

@pytest.fixture
def ctx(tmp_path) -> Context:
    settings = load_settings({}, data_dir=tmp_path, models_dir=tmp_path / "models",
                             catalogue=ROOT / "config" / "reference_rivers.yaml", seed=11)
    return Context.of(create_engine(settings.db_url), load_catalogue(settings.catalogue),
                      clock=FixedClock(END + DEMO_DELAY), models_root=settings.models_dir,
                      settings=settings)


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.slow
def test_prepare_writes_reuses_and_regenerates_the_replay(ctx, tmp_path):
    said: list[str] = []
    report = prepare(ctx, end=END, years=0.25, say=said.append)
    path = replay_path(ctx.settings)
    assert path == tmp_path / "demo" / "replay" and report.replay == path and report.loaded
    assert report.typhoon_at == END + TYPHOON_AFTER
    assert report.replay_until == END + timedelta(days=REPLAY_DAYS)
    replay = load_replay(path)
    obs, rain = replay.observations, replay.rain
    assert obs["time"].min() == pd.Timestamp(END - timedelta(hours=24))
    assert obs["time"].max() >= pd.Timestamp(report.replay_until - timedelta(hours=1))
    assert rain["issued_at"].min() == pd.Timestamp(END - timedelta(hours=24))
    assert rain["issued_at"].max() >= pd.Timestamp(report.replay_until - timedelta(hours=2))
    assert (obs["received_at"] >= obs["time"]).all()
    spec = json.loads((path.parent / "replay.json").read_text(encoding="utf-8"))
    assert spec["seed"] == 11 and spec["label"] == "SIMULATED"
    assert spec["typhoon"]["start"] == (END + TYPHOON_AFTER).isoformat()
    assert datetime.fromisoformat(spec["start"]) == END - timedelta(days=91)
    # the progress lines carry the counts
    writing = next(s for s in said if s.startswith("writing the replay file"))
    assert f"{len(obs):,} observations" in writing and f"{len(rain):,} forecast-rain" in writing
    assert any(s.startswith("first forecast cycle") for s in said)
    # the typhoon is in the replay: rain gauges get far more in the 2 days after it starts
    gauge = obs[obs["variable"] == "rain_mm"]
    at = pd.Timestamp(report.typhoon_at)
    storm = gauge[(gauge["time"] > at) & (gauge["time"] <= at + pd.Timedelta("48h"))]
    later = gauge[gauge["time"] > at + pd.Timedelta("48h")]
    assert storm["value"].sum() > 150 * gauge["station_id"].nunique()
    assert storm["value"].sum() > 5 * later["value"].sum() * 2 / 11   # per-day rates
    # history stored as before: up to the demo's issue time, the last day as the replay had it
    stored = run(ctx.engine, read_observations, start=END - timedelta(hours=24))
    assert stored["time"].max() <= pd.Timestamp(END + DEMO_DELAY)
    assert set(stored["source"]) == {"simulated"}
    known = replay.available_at(END + DEMO_DELAY, window=timedelta(hours=25)).observations
    both = known.merge(stored, on=KEY, how="left", suffixes=("", "_db"))
    assert len(known) > 100 and both["value_db"].notna().all()
    assert (both["value"] == both["value_db"]).all()
    first = _files(path)

    # a second start reuses the file as it is
    said.clear()
    again = prepare(ctx, end=END, years=0.25, say=said.append)
    assert not again.loaded and again.typhoon_at == report.typhoon_at
    assert any(s.startswith("reusing the replay file") for s in said)
    assert not any(s.startswith("simulating") for s in said)
    assert _files(path) == first

    # deleted: regenerated from replay.json, identical (seed 11 kept, whatever settings say)
    shutil.rmtree(path)
    said.clear()
    prepare(ctx, end=END, years=0.25, say=said.append)
    assert any(s.startswith("simulating") for s in said)
    regenerated = load_replay(path)
    pd.testing.assert_frame_equal(regenerated.observations, obs)
    pd.testing.assert_frame_equal(regenerated.rain, rain)

    # damaged: regenerated too
    (path / "observations.parquet").write_bytes(b"\0" * 64)
    said.clear()
    prepare(ctx, end=END, years=0.25, say=said.append)
    assert any("unreadable" in s and "regenerating" in s for s in said)
    pd.testing.assert_frame_equal(load_replay(path).observations, obs)

    # replay.json lost too (or a data dir from an older demo): derived from the stored
    # history's last hour, the years and the configured seed — here the original simulation
    shutil.rmtree(path)
    (path.parent / "replay.json").unlink()
    said.clear()
    prepare(ctx, end=END, years=0.25, say=said.append)
    assert any(s.startswith("no readable replay.json") for s in said)
    pd.testing.assert_frame_equal(load_replay(path).observations, obs)
    assert json.loads((path.parent / "replay.json").read_text(encoding="utf-8")) == spec
