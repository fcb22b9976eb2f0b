"""Left-censored crisis gauges (危機管理型水位計): below their observation start level they are
silent (or send a daily heartbeat), which is low water, not missing data.

The river frame gives those hours the start level plus ``level_censored`` = 1 while genuine
gaps stay NaN; rivers whose forecast point is a crisis gauge (``itaya``, ``kabake``) train on
simulated data, forecast from a censored issue time, and a cycle issues their forecasts;
censored targets are not scored, and a target whose silence nothing explains is no target
(``level_unexplained``; the rules are tested in test_crisis_silence.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import context, run
from sqlalchemy.engine import Engine

from forecast.catalogue import Catalogue, Gauge, River, load_catalogue
from forecast.features import (
    CENSORED,
    CRISIS_MAX_SILENCE,
    UNEXPLAINED,
    build_features,
    level_to_hourly,
    river_hourly,
    targets,
)
from forecast.frames import Flag
from forecast.ingest import crisis
from forecast.modelling.backtest import Fold, backtest_river
from forecast.modelling.judging import train_frames
from forecast.modelling.lgbm import LeadModels, LgbmSettings
from forecast.modelling.metrics import attach_observed
from forecast.pipeline.cycle import run_cycle
from forecast.simulate import simulate
from forecast.storage import tables
from forecast.storage.observations import upsert_observations
from forecast.storage.rain import upsert_rain_vintages

CAT = load_catalogue("config/rivers.yaml")
ITAYA = CAT.river("itaya")          # primary MIE-C-007, start level 0.90 m
KABAKE = CAT.river("kabake")        # primary MIE-C-002, start level 0.80 m
CRISIS = Catalogue(name="crisis", description="SIMULATED", rivers=(ITAYA, KABAKE))
SIM_START = datetime(2024, 3, 1, tzinfo=UTC)
SIM_END = datetime(2024, 6, 20, tzinfo=UTC)
SMALL = LgbmSettings(num_rounds=40)
T0 = pd.Timestamp("2024-06-01", tz="UTC")


@pytest.fixture(scope="module")
def sim_obs() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    sim = simulate(CRISIS, SIM_START, SIM_END, seed=3)
    return sim.observations.drop(columns=["received_at"]), sim.rain_forecasts, sim.truth


def _rows(code: str, times: list[str], values: list[float], flag: Flag = Flag.GOOD,
          ) -> pd.DataFrame:
    return pd.DataFrame({"station_id": code, "variable": "level_m",
                         "time": pd.to_datetime(times, utc=True), "value": values,
                         "flag": int(flag)})


def _hand_made() -> pd.DataFrame:
    c = ITAYA.primary_gauge
    above = pd.date_range(T0, T0 + pd.Timedelta("5h50min"), freq="10min")
    parts = [
        _rows(c, [str(t) for t in above], [1.5] * len(above)),        # reporting above start
        _rows(c, ["2024-06-01 06:00", "2024-06-01 06:10"], [1.2, 0.95]),  # falls through start
        _rows(c, ["2024-06-02 06:10"], [0.5]),                         # daily heartbeat
        _rows(c, ["2024-06-04 00:00"], [2.0]),                         # then silent well above
        _rows(c, ["2024-06-04 03:00"], [0.6]),                         # a reading below start
        _rows(c, ["2024-06-04 04:20"], [np.nan], Flag.MISSING),        # a genuine gap
        _rows(c, [str(t) for t in pd.date_range("2024-06-04 06:00", "2024-06-04 08:00",
                                                freq="10min", tz="UTC")], [np.nan] * 13,
              Flag.BELOW_START),                                       # ingest's censoring
        _rows(c, ["2024-06-04 09:00"], [5.0], Flag.UNRELIABLE),        # QC threw this out
    ]
    rain = pd.DataFrame({"station_id": [g.code for g in ITAYA.rain_gauges], "variable": "rain_mm",
                         "time": T0, "value": 0.0, "flag": 0})
    return pd.concat([*parts, rain], ignore_index=True)


def test_river_hourly_fills_censored_hours_and_keeps_gaps() -> None:
    end = pd.Timestamp("2024-06-04 12:00", tz="UTC")
    h = river_hourly(_hand_made(), ITAYA, start=T0, end=end)
    start = ITAYA.gauge.start_level_m
    assert start == 0.90

    def at(t: str) -> tuple[float, float]:
        row = h.loc[pd.Timestamp(t, tz="UTC")]
        return float(row["level_m"]), float(row[CENSORED])

    assert at("2024-06-01 05:00") == (1.5, 0.0)            # a measurement
    assert at("2024-06-01 06:00") == (1.2, 0.0)
    assert at("2024-06-01 07:00") == (start, 1.0)          # silent after 0.95 m: fell below
    assert at("2024-06-02 06:00") == (start, 1.0)          # ~24 h of silence, still low water
    assert at("2024-06-02 07:00") == (start, 1.0)          # after the heartbeat (0.5 m)
    assert at("2024-06-03 18:00") == (start, 1.0)          # 35 h 50 min after the heartbeat
    lv, cens = at("2024-06-03 19:00")                      # 36 h 50 min: no longer read as low
    assert np.isnan(lv) and cens == 0.0
    assert at("2024-06-04 00:00") == (2.0, 0.0)
    lv, cens = at("2024-06-04 01:00")                      # went silent at 2.0 m: a gap
    assert np.isnan(lv) and cens == 0.0
    assert at("2024-06-04 03:00") == (start, 1.0)          # a reading below start: bound
    assert at("2024-06-04 04:00") == (start, 1.0)
    lv, cens = at("2024-06-04 05:00")                      # MISSING row since: a gap
    assert np.isnan(lv) and cens == 0.0
    assert at("2024-06-04 06:00") == (start, 1.0)          # BELOW_START rows
    assert at("2024-06-04 08:00") == (start, 1.0)
    lv, cens = at("2024-06-04 09:00")                      # UNRELIABLE reading: a gap
    assert np.isnan(lv) and cens == 0.0
    # the rain gauges report only at T0, so no silence is explained (rain unknown): still held
    # at the start level and censored, but marked unexplained; fresh evidence needs no reason
    assert at("2024-06-03 18:00") == (start, 1.0)
    un = h[UNEXPLAINED]
    assert un[pd.Timestamp("2024-06-01 07:00", tz="UTC")] == 1.0
    assert un[pd.Timestamp("2024-06-04 03:00", tz="UTC")] == 0.0     # a below-start reading
    assert un[pd.Timestamp("2024-06-04 04:00", tz="UTC")] == 1.0     # silent after it
    assert un[pd.Timestamp("2024-06-04 06:00", tz="UTC")] == 0.0     # BELOW_START rows
    assert un[pd.Timestamp("2024-06-04 05:00", tz="UTC")] == 0.0     # a gap is NaN, not a guess
    assert (h.loc[un == 1.0, CENSORED] == 1.0).all()
    # every censored hour carries the start level, every other hour a reading or NaN
    cens_h = h[CENSORED] == 1.0
    assert (h.loc[cens_h, "level_m"] == start).all()
    assert set(h[CENSORED].unique()) <= {0.0, 1.0}


def test_telemetry_rivers_are_never_censored() -> None:
    koto = load_catalogue("config/reference_rivers.yaml").rivers[0]
    t10 = pd.date_range(T0, periods=60, freq="10min", tz="UTC")
    obs = pd.DataFrame({"station_id": koto.primary_gauge, "variable": "level_m", "time": t10,
                        "value": np.linspace(0.1, 0.5, 60), "flag": 0})
    obs.loc[20:35, "flag"] = int(Flag.BELOW_START)     # a source flag on a telemetry gauge
    h = river_hourly(obs, koto, start=T0, end=T0 + pd.Timedelta(hours=9))
    series = pd.Series(obs["value"].where(obs["flag"] == 0).to_numpy(), index=t10)
    pd.testing.assert_series_equal(h["level_m"], level_to_hourly(series, h.index),
                                   check_names=False)
    assert (h[CENSORED] == 0.0).all()
    assert all((h[c] == 0.0).all() for c in h.columns if c.endswith("_censored"))


def test_upstream_crisis_gauge_is_censored_too() -> None:
    up = Gauge(code="UP-C", name_ja="上流", lat=33.9, lon=135.97, kind="crisis",
               start_level_m=1.0)
    river = River.model_validate({**ITAYA.model_dump(), "gauges": (*ITAYA.gauges, up),
                                  "upstream_gauges": ("UP-C",)})
    obs = pd.concat([_hand_made(), _rows("UP-C", ["2024-06-01 00:00"], [0.4])],
                    ignore_index=True)
    h = river_hourly(obs, river, start=T0, end=T0 + pd.Timedelta(hours=40))
    col = "up_UP-C"
    assert (h.loc[: T0 + CRISIS_MAX_SILENCE, col] == 1.0).all()
    assert (h.loc[: T0 + CRISIS_MAX_SILENCE, col + "_censored"] == 1.0).all()
    assert h.loc[T0 + pd.Timedelta(hours=37):, col].isna().all()
    X = build_features(h, h.index[:3])
    assert (X[col + "_censored"] == 1.0).all() and (X["d_up_UP-C_1h"].iloc[1:] == 0.0).all()


def test_agrees_with_ingest_censoring(sim_obs) -> None:  # type: ignore[no-untyped-def]
    """Hours ``censor_below_start`` flags BELOW_START are censored, whether river_hourly reads
    the raw readings or the ingest's censored 10-minute grid."""
    assert CRISIS_MAX_SILENCE == crisis.MAX_SILENCE
    obs, _, _ = sim_obs
    code, start = ITAYA.primary_gauge, ITAYA.gauge.start_level_m
    raw = obs[obs["station_id"] == code]
    grid = pd.date_range("2024-04-01", "2024-05-01", freq="10min", tz="UTC")
    ingest = crisis.censor_below_start(raw, start, grid, station_id=code)
    assert (ingest["flag"] == Flag.BELOW_START).mean() > 0.5
    rain = obs[obs["station_id"].isin([g.code for g in ITAYA.rain_gauges])]
    hours = pd.DatetimeIndex(grid[grid == grid.floor("h")])
    a = river_hourly(obs, ITAYA, start=hours[0], end=hours[-1])
    b = river_hourly(pd.concat([ingest, rain], ignore_index=True), ITAYA, start=hours[0],
                     end=hours[-1])
    flagged = ingest.set_index("time")["flag"].reindex(hours) == Flag.BELOW_START
    for h in (a, b):
        assert (h.loc[flagged.to_numpy(), CENSORED] == 1.0).all()
        assert (h.loc[flagged.to_numpy(), "level_m"] == start).all()
    # raw readings: hardly any hour is left unknown (before: most of them)
    assert a["level_m"].notna().mean() > 0.95
    assert a[CENSORED].mean() > 0.5


@pytest.mark.parametrize("river", [ITAYA, KABAKE], ids=lambda r: r.id)
def test_crisis_rivers_train_and_forecast_from_a_censored_hour(sim_obs, river: River) -> None:  # type: ignore[no-untyped-def]
    obs, rain, truth = sim_obs
    start, end = pd.Timestamp(SIM_START), pd.Timestamp(SIM_END) - pd.Timedelta(hours=1)
    hourly = river_hourly(obs, river, start=start, end=end)
    cens = hourly[CENSORED] == 1.0
    assert cens.mean() > 0.3 and hourly["level_m"].notna().mean() > 0.95
    # censored hours really are low water in the simulation (up to gauge noise)
    true = truth[truth["river_id"] == river.id].set_index("time")["level_m"]
    assert (true.reindex(hourly.index[cens]) < river.gauge.start_level_m + 0.05).all()
    run = train_frames(river, hourly, vintages=rain, start=start.to_pydatetime(),
                       end=end.to_pydatetime(), settings=SMALL)
    assert run.X[CENSORED].isin([0.0, 1.0]).all() and run.X[CENSORED].sum() > 0
    # some silences are not explained (rain since, a rise into them): held at the start level
    # and censored like the others, so the forecast can be issued from them
    un = hourly[UNEXPLAINED] == 1.0
    assert un.any() and cens[un].all() and un.mean() < 0.2
    # explained censored training targets are the start level: a change of 0 between censored
    # hours; a target hour whose level is a guess is no target at all
    y = targets(hourly, run.X.index)
    nxt_cens = cens.shift(-1, fill_value=False).reindex(run.X.index).to_numpy()
    nxt_un = un.shift(-1, fill_value=False).reindex(run.X.index).to_numpy()
    both = cens.reindex(run.X.index).to_numpy() & nxt_cens & ~nxt_un
    assert both.any() and (y.loc[both, "dh_1h"] == 0.0).all()
    assert nxt_un.any() and y.loc[nxt_un, "dh_1h"].isna().all()
    # the judging backtest issues at censored hours but scores only uncensored targets
    assert run.evaluation is not None
    fc = run.evaluation.forecasts
    assert fc["issued_at"].isin(hourly.index[cens]).any()
    paired = attach_observed(fc, hourly["level_m"], hourly[CENSORED])
    valid = pd.DatetimeIndex(fc["valid_at"])
    expect = hourly["level_m"].reindex(valid).where(~cens.reindex(valid, fill_value=False))
    np.testing.assert_array_equal(paired["obs"].to_numpy(), expect.to_numpy())
    assert cens.reindex(valid, fill_value=False).any() and paired["obs"].notna().sum() > 100
    # forecast from a censored issue time
    t = hourly.index[cens][-1]
    X = build_features(hourly, [t], future_rain="archive", vintages=rain, catchment_id=river.id)
    assert X[CENSORED].iloc[0] == 1.0 and X["level_m"].iloc[0] == river.gauge.start_level_m
    pred = run.models.predict(X)
    assert len(pred) == 6 and pred[["level", "q10", "q50", "q90"]].notna().all(axis=None)
    assert (pred["q10"] <= pred["q90"]).all()


def test_backtest_issues_at_censored_hours_and_skips_censored_targets() -> None:
    idx = pd.date_range(T0, periods=400, freq="h", tz="UTC")
    rng = np.random.default_rng(0)
    level = 1.0 + 0.3 * np.sin(np.arange(400) / 10) + 0.01 * rng.standard_normal(400)
    censored = level < 0.9
    hourly = pd.DataFrame({"level_m": np.where(censored, 0.9, level),
                           CENSORED: censored.astype(float), "rain_mm": 0.0}, index=idx)
    fold = Fold("1", idx[300], idx[300], idx[-1])
    fc = backtest_river(hourly, [fold], river_id="x", high_water_m=1.2,
                        models=("persistence",), settings=LgbmSettings(num_rounds=5))
    want = hourly[CENSORED].reindex(pd.DatetimeIndex(fc["valid_at"])).fillna(0).to_numpy() > 0
    assert want.any() and not want.all()
    assert fc["issued_at"].isin(idx[censored]).any()      # censored hours are issue times
    paired = attach_observed(fc, hourly["level_m"], censored=hourly[CENSORED])
    assert paired["obs"].isna().to_numpy()[want].all()
    assert paired["obs"].notna().to_numpy()[~want & fc["valid_at"].le(idx[-1]).to_numpy()].all()


def test_cycle_issues_forecasts_for_crisis_rivers(engine: Engine, sim_obs) -> None:  # type: ignore[no-untyped-def]
    obs, rain, _ = sim_obs
    train_end = pd.Timestamp("2024-06-01", tz="UTC")
    models: dict[str, LeadModels] = {}
    issue: dict[str, pd.Timestamp] = {}
    for river in CRISIS.rivers:
        hourly = river_hourly(obs, river, start=pd.Timestamp(SIM_START), end=train_end)
        times = hourly.index[48:-6]
        X = build_features(hourly, times, future_rain="archive", vintages=rain,
                           catchment_id=river.id)
        models[river.id] = LeadModels.train(X, targets(hourly, times),
                                            high_water_m=river.thresholds.ladder()[0][1],
                                            settings=SMALL, name=river.id)
        later = river_hourly(obs, river, start=train_end + pd.Timedelta(days=8),
                             end=pd.Timestamp(SIM_END) - pd.Timedelta(hours=1))
        issue[river.id] = later.index[later[CENSORED] == 1.0][0]
    t = issue["itaya"]
    run(engine, upsert_observations, obs[(obs["time"] > t - pd.Timedelta(days=9))
                                         & (obs["time"] <= t + pd.Timedelta(hours=6))],
        source="simulated", now=t.to_pydatetime())
    run(engine, upsert_rain_vintages, rain[(rain["issued_at"] > t - pd.Timedelta(hours=6))
                                           & (rain["issued_at"] <= t)],
        now=t.to_pydatetime())
    report = run_cycle(context(engine, CRISIS, t.to_pydatetime()), t.to_pydatetime(),
                       models=lambda r: ("v1", models[r]), trigger="test",
                       rain_product="simulated_forecast")
    status = {o.river_id: o.status for o in report.outcomes}
    assert set(status) == {"itaya", "kabake"}
    assert set(status.values()) <= {"ok", "degraded"}, report.outcomes
    fc = report.forecasts
    assert set(fc["river_id"]) == {"itaya", "kabake"} and len(fc) == 12
    assert fc[["level", "q10", "q50", "q90"]].notna().all(axis=None)
    with engine.connect() as conn:
        inputs = dict(conn.execute(sa.select(tables.forecast_runs.c.river_id,
                                             tables.forecast_runs.c.inputs)).all())
    assert inputs["itaya"]["level_censored"] == "yes"
    # at that hour 鹿化川's crisis gauge is reporting at or above its start level: a reading,
    # not censored (checked on the raw readings, not through river_hourly)
    kab = obs[(obs["station_id"] == KABAKE.primary_gauge) & (obs["time"] > t - pd.Timedelta(
        minutes=30)) & (obs["time"] <= t) & (obs["flag"] == int(Flag.GOOD))]
    assert len(kab) and (kab["value"] >= KABAKE.gauge.start_level_m).all()
    assert inputs["kabake"]["level_censored"] == "no"


def test_a_data_outage_is_never_forecast_as_low_water(engine: Engine, sim_obs) -> None:  # type: ignore[no-untyped-def]
    """Every station of the crisis rivers silent for the 5 h before T (a feed outage, as after
    a demo whose data stopped): 板屋川 is still forecast, but low-confidence with the reason,
    never as a plain low-water forecast."""
    obs, rain, _ = sim_obs
    river = CRISIS.river("itaya")
    hourly = river_hourly(obs, river, start=pd.Timestamp(SIM_START), end=pd.Timestamp(SIM_END))
    t = hourly.index[(hourly[CENSORED] == 1.0) & (hourly.index > pd.Timestamp(SIM_START)
                                                   + pd.Timedelta(days=60))][0]
    times = hourly.index[48:-6]
    X = build_features(hourly, times, future_rain="archive", vintages=rain,
                       catchment_id=river.id)
    model = LeadModels.train(X, targets(hourly, times),
                             high_water_m=river.thresholds.ladder()[0][1], settings=SMALL,
                             name=river.id)
    before = obs[(obs["time"] > t - pd.Timedelta(days=9))
                 & (obs["time"] <= t - pd.Timedelta(hours=5))]
    run(engine, upsert_observations, before, source="simulated", now=t.to_pydatetime())
    one = Catalogue(name="itaya", rivers=(river,))
    report = run_cycle(context(engine, one, t.to_pydatetime()), t.to_pydatetime(),
                       models=lambda r: ("v1", model), trigger="test")
    (outcome,) = report.outcomes
    assert outcome.status == "degraded", outcome
    reasons = report.low_confidence["itaya"]
    assert any("silent" in r and "not read as low water" in r for r in reasons), reasons
    with engine.connect() as conn:
        row = conn.execute(sa.select(tables.forecast_runs.c.low_confidence,
                                     tables.forecast_runs.c.reasons)).one()
    assert row[0] is True and row[1] == reasons
    with engine.connect() as conn:
        lineage = conn.execute(sa.select(tables.forecast_runs.c.inputs)).scalar_one()
    assert lineage["level_censored"] == "yes" and lineage["level_unexplained"] == "yes"
    # the reason names the real time of the gauge's last word, also for a half-hour issue time
    gauge_rows = before[before["station_id"] == river.primary_gauge]
    last = gauge_rows["time"].max() + pd.Timedelta(hours=9)
    assert f"at {last:%Y-%m-%d %H:%M} JST" in " ".join(reasons)
    half = (t + pd.Timedelta(minutes=30)).to_pydatetime()
    later = run_cycle(context(engine, one, half), half, models=lambda r: ("v1", model),
                      trigger="test")
    assert f"at {last:%Y-%m-%d %H:%M} JST" in " ".join(later.low_confidence["itaya"])
