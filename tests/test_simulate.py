"""Tests for forecast.simulate: the SIMULATED demo-data generator."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast import frames
from forecast.catalogue import load_catalogue
from forecast.errors import CatalogueError, SimulationError
from forecast.simulate import LABEL, gauges, rain, rating, runoff, simulate, simulate_river
from forecast.simulate.demo_catalogue import synthetic_catalogue

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2021, 6, 1, tzinfo=UTC)
T1 = datetime(2021, 6, 21, tzinfo=UTC)


@pytest.fixture(scope="module")
def koto():
    return load_catalogue(ROOT / "config" / "reference_rivers.yaml").rivers[0]


@pytest.fixture(scope="module")
def small_catalogue():
    return synthetic_catalogue(6, seed=3)


@pytest.fixture(scope="module")
def small_run(small_catalogue):
    return simulate(small_catalogue, T0, T1, seed=7)


def _times_ns(start: str, days: int) -> np.ndarray:
    t0 = np.datetime64(start, "ns").astype(np.int64)
    return t0 + (np.arange(days * 144, dtype=np.int64) + 1) * 600_000_000_000


# --- reproducibility ---------------------------------------------------------------------------

def test_same_seed_gives_identical_frames(small_catalogue, small_run):
    again = simulate(small_catalogue, T0, T1, seed=7)
    pd.testing.assert_frame_equal(small_run.observations, again.observations)
    pd.testing.assert_frame_equal(small_run.truth, again.truth)
    pd.testing.assert_frame_equal(small_run.rain_forecasts, again.rain_forecasts)
    assert small_run.meta == again.meta


def test_different_seed_differs(small_catalogue, small_run):
    other = simulate(small_catalogue, T0, T1, seed=8)
    assert not np.allclose(small_run.truth["rain_mm"], other.truth["rain_mm"])
    # The world (rating curves) is the same; only the weather differs.
    assert small_run.meta["rivers"] == other.meta["rivers"]


# --- rain --------------------------------------------------------------------------------------

def test_rain_is_seasonal():
    times = _times_ns("2010-01-01T00:00", 4 * 365)
    reg = rain.regional_process(times, np.random.default_rng(11))
    month = pd.DatetimeIndex(times.view("M8[ns]")).month
    # Mean rain per month (4 years): Jun-Sep should be well above Dec-Feb.
    wet = reg.rate_mm[np.isin(month, [6, 7, 8, 9])].sum() / (4 * 4)
    dry = reg.rate_mm[np.isin(month, [12, 1, 2])].sum() / (4 * 3)
    assert wet > 2.0 * dry
    assert reg.n_events["typhoon"] >= 1
    assert reg.n_events["baiu"] > 0


def test_spatial_correlation_decays_with_distance():
    times = _times_ns("2010-01-01T00:00", 2 * 365)
    rng = np.random.default_rng(5)
    reg = rain.regional_process(times, rng)
    lat = np.array([34.70, 34.72, 34.70, 34.10])     # 0, ~2 km, and ~67 km away
    lon = np.array([136.50, 136.51, 136.95, 136.20])
    at = rain.hourly(rain.gauge_rain(reg, lat, lon, rng))
    c = np.corrcoef(at.T)
    assert c[0, 1] > c[0, 2] > 0.0
    assert c[0, 1] > c[0, 3]
    assert c[0, 1] > 0.8


def test_cholesky_factor_reproduces_exponential_correlation():
    lat = np.array([34.0, 34.1, 34.5, 35.0])
    lon = np.array([136.0, 136.2, 136.1, 136.9])
    chol = rain.correlation_factor(lat, lon, 30.0)
    expected = np.exp(-rain.distance_km(lat, lon) / 30.0)
    np.testing.assert_allclose(chol @ chol.T, expected, atol=1e-5)
    # Haversine spot check: 1 degree of latitude is ~111 km.
    d = rain.distance_km(np.array([34.0, 35.0]), np.array([136.0, 136.0]))
    assert d[0, 1] == pytest.approx(111.2, abs=0.5)


def test_tipping_bucket_keeps_the_total():
    true = np.random.default_rng(0).gamma(0.3, 1.0, 5000)
    tips = gauges.tipping_bucket(true)
    assert np.all(np.isclose(tips / gauges.TIP_MM, np.round(tips / gauges.TIP_MM)))
    assert 0.0 <= true.sum() - tips.sum() < gauges.TIP_MM


# --- tank model --------------------------------------------------------------------------------

def _naive_tanks(rain_h, pet, p):
    """Scalar reference: one river, plain Python floats, same explicit scheme."""
    s = [0.0, 10.0, 40.0, 150.0]
    ch = 0.0
    h = [p["h11"], p["h2"], p["h3"], 0.0]
    a = [p["a11"], p["a2"], p["a3"], p["a4"]]
    b = [p["b1"], p["b2"], p["b3"], 0.0]
    c = 1.0 - np.exp(-1.0 / p["route_k_h"])
    q_out, r_out, et_out = [], [], []
    for t in range(len(rain_h)):
        s[0] += rain_h[t]
        demand = pet[t]
        et = 0.0
        for i in range(3):
            take = min(demand, s[i])
            s[i] -= take
            demand -= take
            et += take
        side = [a[i] * max(s[i] - h[i], 0.0) for i in range(4)]
        side[0] += p["a12"] * max(s[0] - p["h12"], 0.0)
        down = [b[i] * s[i] for i in range(4)]
        for i in range(4):
            s[i] -= side[i] + down[i]
        for i in range(3):
            s[i + 1] += down[i]
        q = sum(side)
        ch += q
        out = c * ch
        ch -= out
        q_out.append(q)
        r_out.append(out)
        et_out.append(et)
    return np.array(q_out), np.array(r_out), np.array(et_out), np.array([*s, ch])


def test_tank_model_matches_naive_reference_and_conserves_mass():
    rng = np.random.default_rng(2)
    n_t = 1500
    rain_h = rng.gamma(0.15, 8.0, (n_t, 3)) * (rng.random((n_t, 3)) < 0.2)
    pet = runoff.potential_et_mm_h(
        np.datetime64("2021-07-01", "ns").astype(np.int64)
        + np.arange(n_t, dtype=np.int64) * 3_600_000_000_000)
    base = dict(runoff.TANK_DEFAULTS, route_k_h=2.0)
    variants = [base, dict(base, a11=0.2, h11=5.0, route_k_h=0.7),
                dict(base, b1=0.2, a4=0.002, route_k_h=5.0)]
    stacked = {k: np.array([v[k] for v in variants]) for k in base}
    run = runoff.run_tanks(rain_h, pet, stacked)
    for j, v in enumerate(variants):
        q, r, et, end = _naive_tanks(rain_h[:, j], pet, v)
        np.testing.assert_allclose(run.runoff[:, j], q, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(run.routed[:, j], r, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(run.et[:, j], et, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(run.storage_end[:, j], end, rtol=1e-9)
    # rain in = runoff out + ET + storage change (tanks), and the channel store closes too.
    d_tanks = (run.storage_end[:4] - run.storage_start[:4]).sum(axis=0)
    np.testing.assert_allclose(rain_h.sum(0), run.runoff.sum(0) + run.et.sum(0) + d_tanks,
                               rtol=1e-9)
    d_ch = run.storage_end[4] - run.storage_start[4]
    np.testing.assert_allclose(run.runoff.sum(0), run.routed.sum(0) + d_ch, rtol=1e-9)
    assert (run.et > 0).any() and (run.runoff > 0).all()


def test_bigger_catchments_respond_more_slowly():
    assert runoff.route_lag_h(300.0) > runoff.route_lag_h(30.0) > runoff.route_lag_h(5.0)


def test_unknown_simulation_key_is_refused(koto):
    bad = koto.model_copy(update={"simulation": {"a11": 0.1, "speed_of_light": 3e8}})
    with pytest.raises(CatalogueError, match="speed_of_light"):
        runoff.river_parameters(bad)
    drains = koto.model_copy(update={"simulation": {"a11": 0.9, "a12": 0.5}})
    with pytest.raises(CatalogueError, match="outlet"):
        runoff.river_parameters(drains)


# --- rating ------------------------------------------------------------------------------------

def test_rating_fit_recovers_a_known_curve():
    truth = rating.RatingCurve(a=40.0, b=1.8, h0=0.7)
    hs = np.array([2.0, 2.6, 3.1, 3.6])
    anchors = list(zip(hs, truth.discharge(hs), strict=True))
    fit = rating.fit_rating(anchors)
    np.testing.assert_allclose(fit.discharge(hs), truth.discharge(hs), rtol=0.02)
    np.testing.assert_allclose(fit.stage(fit.discharge(hs)), hs, atol=1e-9)


def test_discharge_at_rate_is_monotone():
    peaks = np.sort(np.random.default_rng(1).exponential(100.0, 200) + 50)[::-1]
    qs = [rating.discharge_at_rate(peaks, 12, r) for r in (8, 4, 1, 0.4, 1 / 6)]
    assert all(a < b for a, b in itertools.pairwise(qs))


# --- stage and thresholds ----------------------------------------------------------------------

@pytest.mark.slow
def test_thresholds_are_crossed_at_plausible_rates():
    cat = synthetic_catalogue(4, seed=1)
    years = 4
    run = simulate(cat, datetime(2015, 1, 1, tzinfo=UTC), datetime(2015 + years, 1, 1,
                                                                    tzinfo=UTC), seed=2)
    rates: dict[str, list[float]] = {name: [] for name in rating.TARGET_RATE_PER_YEAR}
    for river in cat.rivers:
        level = run.truth.loc[run.truth["river_id"] == river.id, "level_m"].to_numpy()
        for name, h in river.thresholds.ladder():
            ups = int(np.sum((level[1:] >= h) & (level[:-1] < h)))
            rates[name].append(ups / years)
    standby = float(np.mean(rates["standby_m"]))
    danger = float(np.mean(rates["danger_m"]))
    assert 1.0 <= standby <= 12.0, rates
    assert danger <= 1.0, rates
    assert np.mean(rates["caution_m"]) < standby


def test_truth_is_physically_consistent(small_catalogue, small_run):
    t = small_run.truth
    assert list(t.columns) == ["river_id", "time", "level_m", "rain_mm", "discharge_m3s"]
    assert (t["discharge_m3s"] > 0).all() and (t["rain_mm"] >= 0).all()
    assert t["time"].min() >= pd.Timestamp(T0) and t["time"].max() < pd.Timestamp(T1)
    assert len(t) == len(small_catalogue.rivers) * 20 * 24
    for rid, g in t.groupby("river_id"):
        # Stage is a monotone function of discharge at the primary gauge.
        order = np.argsort(g["discharge_m3s"].to_numpy())
        assert np.all(np.diff(g["level_m"].to_numpy()[order]) >= -1e-12), rid


# --- gauge behaviour ---------------------------------------------------------------------------

def test_crisis_gauge_is_silent_below_its_start_level():
    n = 20 * 144
    true = np.full(n, 0.5)
    true[1000:1300] = 2.0          # a flood of 50 hours above the 1.2 m start level
    rd = gauges.level_readings(true, np.random.default_rng(4), crisis=True, start_level_m=1.2)
    below = rd.index[rd.value < 1.2]
    # Below the start level only the daily heartbeat remains: one step of the day.
    assert len(np.unique(below % gauges.STEPS_PER_DAY)) == 1
    assert len(below) <= 20
    above = rd.index[(rd.index >= 1000) & (rd.index < 1300)]
    assert len(above) > 200        # every 10 minutes while high (minus rare gaps)


def test_crisis_gauges_in_a_run_are_sparse(small_catalogue, small_run):
    obs = small_run.observations
    crisis = [g for r in small_catalogue.rivers for g in r.gauges if g.kind == "crisis"]
    assert crisis, "the test catalogue should contain crisis gauges"
    for g in crisis:
        rows = obs[obs["station_id"] == g.code]
        low = rows[rows["value"] < g.start_level_m]
        assert len(low) > 0, g.code          # the daily heartbeat is there
        per_day = low.groupby(low["time"].dt.floor("D")).size()
        assert per_day.max() <= 1, g.code


def test_late_data_arrive_after_observation():
    rd = gauges.level_readings(np.full(200 * 144, 1.0), np.random.default_rng(9))
    assert (rd.delay_s > 0).all()
    assert (rd.delay_s > 3600).any()     # some readings are hours late


def test_observation_frame_contract(small_catalogue, small_run):
    obs = small_run.observations
    assert list(obs.columns) == [*frames.OBS_COLUMNS, "received_at"]
    pd.testing.assert_frame_equal(frames.observations(obs), obs.drop(columns="received_at"))
    assert (obs["received_at"] >= obs["time"]).all()
    assert (obs["flag"] == frames.Flag.GOOD).all()
    assert obs["time"].min() >= pd.Timestamp(T0) and obs["time"].max() < pd.Timestamp(T1)
    codes = {g.code for r in small_catalogue.rivers for g in r.gauges}
    rain_codes = {g.code for r in small_catalogue.rivers for g in r.rain_gauges}
    levels = obs[obs["variable"] == frames.LEVEL]
    rains = obs[obs["variable"] == frames.RAIN]
    assert set(levels["station_id"]) == codes
    assert set(rains["station_id"]) == rain_codes
    assert np.allclose(rains["value"] / 0.5, np.round(rains["value"] / 0.5))
    assert (obs["time"].dt.minute % 10 == 0).all()


def test_rain_forecast_contract(small_catalogue, small_run):
    fc = small_run.rain_forecasts
    pd.testing.assert_frame_equal(frames.rain_vintages(fc), fc)
    lead = (fc["valid_at"] - fc["issued_at"]) / pd.Timedelta(hours=1)
    assert set(lead) == {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}
    assert (fc.groupby(["catchment_id", "issued_at"]).size() == 6).all()
    assert set(fc["catchment_id"]) == set(small_catalogue.ids)
    assert (fc["product"] == "simulated_forecast").all() and (fc["value"] >= 0).all()
    # Lead-1 forecasts track the truth better than lead-6 forecasts.
    truth = small_run.truth.set_index(["river_id", "time"])["rain_mm"]
    errs = {}
    for k in (1, 6):
        sub = fc[lead == k]
        key = pd.MultiIndex.from_arrays([sub["catchment_id"], sub["valid_at"]])
        ok = key.isin(truth.index)
        errs[k] = float(np.mean(np.abs(sub["value"].to_numpy()[ok]
                                       - truth.loc[key[ok]].to_numpy())))
    assert errs[1] < errs[6]


def test_meta_labels_the_data_as_simulated(small_catalogue, small_run):
    m = small_run.meta
    assert m["label"] == LABEL == "SIMULATED"
    assert "SIMULATED" in m["notice"]
    assert m["seed"] == 7 and m["start"].startswith("2021-06-01")
    assert set(m["rivers"]) == set(small_catalogue.ids)
    one = m["rivers"][small_catalogue.ids[0]]
    assert {"parameters", "threshold_discharge_m3s", "gauges"} <= set(one)


def test_simulate_river_on_the_real_reference_entry(koto):
    run = simulate_river(koto, T0, datetime(2021, 6, 4, tzinfo=UTC), seed=1)
    assert set(run.truth["river_id"]) == {"koto"}
    assert set(run.observations["station_id"]) == {
        "jiseiji", "kotogawa_dam_release", "kotogawa_dam_rain"}
    std = run.meta["rivers"]["koto"]["threshold_discharge_m3s"]
    assert std["standby_m"] < std["danger_m"]


def test_bad_windows_are_refused(koto):
    with pytest.raises(SimulationError, match="timezone"):
        simulate_river(koto, datetime(2021, 6, 1), datetime(2021, 6, 2, tzinfo=UTC))
    with pytest.raises(SimulationError, match="after start"):
        simulate_river(koto, T1, T0)
