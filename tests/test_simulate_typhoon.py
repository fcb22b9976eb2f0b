"""Forced storms in forecast.simulate: the demo's typhoon (SIMULATED data).

Without ``storms`` the output is pinned to a digest of the frames computed before forced storms
existed; with them, everything before the storm starts is unchanged and the storm floods
several rivers of the demo catalogue within two days.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.catalogue import load_catalogue
from forecast.errors import SimulationError
from forecast.simulate import FORCED_TYPHOON_MM_H, ForcedStorm, rain, simulate
from forecast.simulate.demo_catalogue import synthetic_catalogue

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2021, 8, 20, tzinfo=UTC)
T1 = datetime(2021, 9, 10, tzinfo=UTC)
TYPHOON = datetime(2021, 9, 1, 6, tzinfo=UTC)
DIGEST = "30f6ec9fabd7db36934c083235c6a6832908f311c6b921f2ce4432ccb7387721"
"""``_digest(simulate(synthetic_catalogue(6, seed=3), T0, T1, seed=7))`` computed with the code
of commit 4eabcc0, before forced storms existed."""


def _digest(sim) -> str:
    """sha256 of every frame's content; floats rounded to 1e-9 so that last-bit differences of
    a CPU's exp/log do not count (gauge values are quantised anyway)."""
    h = hashlib.sha256()
    for df in (sim.observations, sim.truth, sim.rain_forecasts):
        h.update(",".join(df.columns).encode())
        for c in df.columns:
            col = df[c]
            if col.dtype.kind == "M":
                a = col.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
                h.update(a.astype("datetime64[ns]").view(np.int64).tobytes())
            elif col.dtype == object:
                h.update("\x1f".join(map(str, col.to_numpy())).encode())
            elif col.dtype.kind == "f":
                h.update((np.round(col.to_numpy(), 9) + 0.0).tobytes())
            else:
                h.update(col.to_numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small():
    return synthetic_catalogue(6, seed=3)


@pytest.fixture(scope="module")
def plain(small):
    return simulate(small, T0, T1, seed=7)


@pytest.fixture(scope="module")
def forced(small):
    return simulate(small, T0, T1, seed=7, storms=(ForcedStorm(TYPHOON),))


def test_without_storms_the_output_is_what_it_was(small, plain):
    assert _digest(plain) == DIGEST, (
        "simulate() without storms changed its output: the seeded demo and the tests depend on "
        "it. If that was deliberate (or numpy changed its random streams), update DIGEST.")
    assert _digest(simulate(small, T0, T1, seed=7, storms=())) == DIGEST
    assert "forced_storms" not in plain.meta


def test_everything_before_the_typhoon_is_unchanged(plain, forced):
    def before(df: pd.DataFrame, col: str, until: datetime) -> pd.DataFrame:
        return df[df[col] <= pd.Timestamp(until)].reset_index(drop=True)

    for col in plain.observations.columns:   # received_at too: delays are value-independent
        pd.testing.assert_series_equal(before(plain.observations, "time", TYPHOON)[col],
                                       before(forced.observations, "time", TYPHOON)[col])
    pd.testing.assert_frame_equal(before(plain.truth, "time", TYPHOON),
                                  before(forced.truth, "time", TYPHOON))
    # forecasts smear rain up to 3 h earlier (kernel half-width ceil(6/2))
    pd.testing.assert_frame_equal(
        before(plain.rain_forecasts, "valid_at", TYPHOON - timedelta(hours=3)),
        before(forced.rain_forecasts, "valid_at", TYPHOON - timedelta(hours=3)))
    # and it does rain afterwards: ~18 mm/h regionally for 30 h on top of the random storms
    after = forced.truth["time"] > pd.Timestamp(TYPHOON)
    extra = (forced.truth.loc[after, "rain_mm"].to_numpy()
             - plain.truth.loc[after, "rain_mm"].to_numpy())
    per_river = pd.Series(extra).groupby(forced.truth.loc[after, "river_id"].to_numpy()).sum()
    regional = FORCED_TYPHOON_MM_H * 30.0
    assert (per_river > 0.3 * regional).all() and (per_river < 3.0 * regional).all(), per_river
    assert forced.meta["forced_storms"] == [{"kind": "typhoon", "start": TYPHOON.isoformat(),
                                             "duration_h": 30.0, "mean_mm_h": 18.0,
                                             "peak": 0.6}]


def test_forced_typhoon_is_deterministic_in_the_seed(small, forced):
    again = simulate(small, T0, T1, seed=7, storms=(ForcedStorm(TYPHOON),))
    assert _digest(again) == _digest(forced)
    other = simulate(small, T0, T1, seed=8, storms=(ForcedStorm(TYPHOON),))
    assert _digest(other) != _digest(forced)


def test_forced_rain_places_the_storm_depth_on_the_grid():
    """Oracle: the storm's regional depth is mean × duration, starting in the step after its
    start; a storm that began before the grid keeps only its tail."""
    step = rain.STEP_MIN * 60_000_000_000
    t0 = np.datetime64("2024-01-01T00:00", "ns").astype(np.int64)
    times = t0 + (np.arange(1000, dtype=np.int64) + 1) * step
    start = int(times[99])                       # on the grid: rain from index 100
    storm = ForcedStorm(datetime(2024, 1, 1, tzinfo=UTC), mean_mm_h=12.0, duration_h=20.0)
    extra, conv = rain._forced_rain(times, [(start, storm)], len(times))
    wet = np.flatnonzero(extra > 0)
    assert wet[0] == 100 and wet[-1] == 100 + 20 * 6 - 1
    assert extra.sum() == pytest.approx(12.0 * 20.0)
    assert not conv.any()
    # began 60 steps before the grid's first step ends: that step is the storm's 60th
    early, _ = rain._forced_rain(times, [(int(times[0]) - 60 * step, storm)], len(times))
    profile = rain._profile(120, storm.peak) * 12.0 / 6
    np.testing.assert_allclose(early[:61], profile[59:])
    assert not early[61:].any()
    late, _ = rain._forced_rain(times, [(int(times[-1]), storm)], len(times))
    assert not late.any()


def test_continued_field_matches_a_naive_loop():
    rng = np.random.default_rng(4)
    rho, n, g = 0.95, 40, 3
    field = rng.standard_normal((n, g))
    is_new = np.zeros(n, dtype=bool)
    is_new[[0, 1, 7, 8, 9, 20, 39]] = True
    eps = rng.standard_normal((int(is_new.sum()), g))
    got = rain._continue_ar1(field, is_new, eps, rho)
    want = field.copy()
    k = 0
    for t in range(n):
        if not is_new[t]:
            continue
        if t == 0:
            want[t] = eps[k]
        else:
            want[t] = rho * want[t - 1] + np.sqrt(1 - rho * rho) * eps[k]
        k += 1
    np.testing.assert_allclose(got, want)
    np.testing.assert_array_equal(got[~is_new], field[~is_new])


@pytest.mark.parametrize("kwargs, words", [
    ({"kind": "hurricane"}, "kind"),
    ({"mean_mm_h": 40.0}, "mean_mm_h"),
    ({"mean_mm_h": 0.0}, "mean_mm_h"),
    ({"duration_h": 0.5}, "duration_h"),
    ({"peak": 1.5}, "peak"),
])
def test_implausible_forced_storms_are_refused(kwargs, words):
    with pytest.raises(SimulationError, match=words):
        ForcedStorm(TYPHOON, **kwargs)


def test_forced_storm_outside_the_window_or_naive_is_refused(small):
    with pytest.raises(SimulationError, match="after the window"):
        simulate(small, T0, T1, storms=(ForcedStorm(T1),))
    with pytest.raises(SimulationError, match="timezone-aware"):
        simulate(small, T0, T1, storms=(ForcedStorm(datetime(2021, 9, 1)),))


# --- the demo catalogue ------------------------------------------------------------------------

END = datetime(2026, 12, 1, 12, tzinfo=UTC)      # a dry-season start, as `forecast demo` today
AT = END + timedelta(hours=6)
SEED = 20240601                                   # FORECAST_SEED's default


@pytest.fixture(scope="module")
def mie():
    return load_catalogue(ROOT / "config" / "rivers.yaml")


def _levels_reached(mie, truth: pd.DataFrame) -> dict[str, int]:
    window = truth[(truth["time"] > pd.Timestamp(AT))
                   & (truth["time"] <= pd.Timestamp(AT + timedelta(hours=48)))]
    peak = window.groupby("river_id")["level_m"].max()
    out = {}
    for level in ("caution_m", "evacuation_m"):
        out[level] = sum(peak[r.id] >= getattr(r.thresholds, level) for r in mie.rivers)
    return out


@pytest.mark.slow
def test_forced_typhoon_floods_several_demo_rivers(mie):
    storm = (ForcedStorm(AT),)
    sim = simulate(mie, END - timedelta(days=5), END + timedelta(days=3), seed=SEED, storms=storm)
    calm = simulate(mie, END - timedelta(days=5), END + timedelta(days=3), seed=SEED)
    assert len(mie.rivers) == 38
    wet, dry = _levels_reached(mie, sim.truth), _levels_reached(mie, calm.truth)
    assert wet["caution_m"] >= 5 and wet["evacuation_m"] >= 1, wet
    assert dry["caution_m"] <= 1, dry        # it is the typhoon, not the season
    # the gauges see it too: >= 3 readings above caution (a spike is one reading)
    obs = sim.observations
    obs = obs[(obs["variable"] == "level_m") & (obs["time"] > pd.Timestamp(AT))
              & (obs["time"] <= pd.Timestamp(AT + timedelta(hours=48)))]
    above = 0
    for r in mie.rivers:
        v = obs.loc[obs["station_id"] == r.primary_gauge, "value"]
        above += int((v >= r.thresholds.caution_m).sum() >= 3)
    assert above >= 5
    # plausible rain: nothing above the ~150 mm/h ceiling, at 10 minutes or per hour
    gauge = sim.observations[sim.observations["variable"] == "rain_mm"]
    assert gauge["value"].max() <= 25.0
    hourly = gauge.set_index("time").groupby("station_id")["value"].resample("1h").sum()
    assert hourly.max() <= 150.0
