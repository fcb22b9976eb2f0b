"""Silence is not low water without evidence: a crisis gauge (危機管理型水位計) silent after a
below- or near-start reading is read as low water only when nothing contradicts it -- it was
not rising into the silence, the catchment rain since is known and small, and the river's other
gauges still report. Otherwise the hour is *unexplained*: held at the start level and censored
(so a forecast can still be issued, low-confidence), marked ``level_unexplained`` = 1, never a
training target, and ``silence_reason`` says why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast.catalogue import Gauge, River, load_catalogue
from forecast.features import (
    CENSORED,
    CRISIS_MAX_SILENCE,
    CRISIS_SILENCE_RAIN_MM,
    LAST_M,
    LAST_RISE_M,
    SILENT_H,
    UNEXPLAINED,
    build_features,
    river_hourly,
    silence_reason,
    targets,
)
from forecast.frames import Flag
from forecast.modelling.registry import expected_features

CAT = load_catalogue("config/rivers.yaml")
ITAYA = CAT.river("itaya")          # primary MIE-C-007 (板屋), start level 0.90 m, no upstream
UP = Gauge(code="UP-T", name_ja="上流", lat=33.9, lon=135.97, kind="telemetry")
ITAYA_UP = River.model_validate({**ITAYA.model_dump(), "gauges": (*ITAYA.gauges, UP),
                                 "upstream_gauges": ("UP-T",)})
START = 0.90
T0 = pd.Timestamp("2024-07-01 00:00", tz="UTC")
END = T0 + pd.Timedelta(hours=48)
LAST = pd.Timestamp("2024-07-01 06:10", tz="UTC")    # the gauge's last reading


def _level(values: list[float], last: pd.Timestamp = LAST, code: str = ITAYA.primary_gauge,
           ) -> pd.DataFrame:
    """Readings every 10 min ending at ``last`` with these values (the last one at ``last``)."""
    times = pd.date_range(end=last, periods=len(values), freq="10min", tz="UTC")
    return pd.DataFrame({"station_id": code, "variable": "level_m", "time": times,
                         "value": values, "flag": int(Flag.GOOD)})


def _rain(mm_per_hour: dict[str, float] | None = None, until: pd.Timestamp = END,
          ) -> pd.DataFrame:
    """Hourly rain at every rain gauge of the river up to ``until``; dry except the given hours
    (UTC time string -> mm in the hour ending then)."""
    hours = pd.date_range(T0 - pd.Timedelta(hours=2), until, freq="h", tz="UTC")
    value = pd.Series(0.0, index=hours)
    for t, mm in (mm_per_hour or {}).items():
        value[pd.Timestamp(t, tz="UTC")] = mm
    return pd.concat([pd.DataFrame({"station_id": g.code, "variable": "rain_mm", "time": hours,
                                    "value": value.to_numpy(), "flag": 0})
                      for g in ITAYA.rain_gauges], ignore_index=True)


FALLING = [1.5] * 30 + [1.3, 1.1, 1.0, 0.97, 0.95]      # a recession through the start level


def _hourly(obs: pd.DataFrame, river: River = ITAYA) -> pd.DataFrame:
    return river_hourly(obs, river, start=T0, end=END)


def _at(h: pd.DataFrame, t: str) -> pd.Series:
    return h.loc[pd.Timestamp(t, tz="UTC")]


def test_falling_near_start_then_dry_silence_is_explained_low_water() -> None:
    h = _hourly(pd.concat([_level(FALLING), _rain()], ignore_index=True))
    silent = h.index[(h.index > LAST) & (h.index <= LAST + CRISIS_MAX_SILENCE)]
    assert len(silent) == 36
    assert (h.loc[silent, CENSORED] == 1.0).all() and (h.loc[silent, "level_m"] == START).all()
    assert (h.loc[silent, UNEXPLAINED] == 0.0).all()
    assert h.loc[h.index <= LAST, UNEXPLAINED].eq(0.0).all()
    row = _at(h, "2024-07-01 12:00")
    assert row[SILENT_H] == pytest.approx(5 + 5 / 6)
    assert row[LAST_M] == 0.95 and row[LAST_RISE_M] < 0       # falling into the silence
    assert all(silence_reason(h, ITAYA, t) is None for t in silent)
    assert silence_reason(h, ITAYA, pd.Timestamp("2024-07-01 05:00", tz="UTC")) is None  # reading
    # explained censored targets are kept: the change between censored hours is 0
    y = targets(h, silent[:-1])
    assert (y["dh_1h"] == 0.0).all()


def test_silence_while_it_rains_is_unexplained_and_names_the_rain() -> None:
    # 4 mm/h from the hour ending 09:00: the sum since 06:10 passes 10 mm at 11:00
    wet = {f"2024-07-01 {hh:02d}:00": 4.0 for hh in range(9, 19)}
    h = _hourly(pd.concat([_level(FALLING), _rain(wet)], ignore_index=True))
    assert CRISIS_SILENCE_RAIN_MM == 10.0
    assert _at(h, "2024-07-01 10:00")[UNEXPLAINED] == 0.0          # 8 mm so far
    for t in ("2024-07-01 11:00", "2024-07-01 20:00", "2024-07-02 18:00"):
        row = _at(h, t)
        assert (row[UNEXPLAINED], row[CENSORED], row["level_m"]) == (1.0, 1.0, START)
    reason = silence_reason(h, ITAYA, pd.Timestamp("2024-07-01 11:00", tz="UTC"))
    assert reason is not None
    assert reason.startswith("crisis gauge 板屋 (MIE-C-007, 板屋川) silent 5 h since 0.95 m at "
                             "2024-07-01 15:10 JST")
    assert "while 12 mm of rain fell over the catchment" in reason
    assert "rain gauges are silent" not in reason and "rising" not in reason
    assert "40 mm of rain" in str(silence_reason(h, ITAYA, pd.Timestamp("2024-07-02 00:00",
                                                                         tz="UTC")))
    # a guessed level is never a target; an explained one still is
    y = targets(h, pd.DatetimeIndex([pd.Timestamp("2024-07-01 09:00", tz="UTC")]))
    assert y["dh_1h"].iloc[0] == 0.0 and y[["dh_2h", "dh_6h"]].isna().all(axis=None)
    # the feature rows do not change: features do not see the new column
    dry = _hourly(pd.concat([_level(FALLING), _rain()], ignore_index=True))
    t = pd.DatetimeIndex([pd.Timestamp("2024-07-01 12:00", tz="UTC")])
    X_wet, X_dry = build_features(h, t), build_features(dry, t)
    assert list(X_wet.columns) == list(X_dry.columns)
    assert X_wet.loc[:, ["level_m", CENSORED]].equals(X_dry.loc[:, ["level_m", CENSORED]])


def test_outage_every_station_silent_is_unexplained() -> None:
    """The feed stops at 06:10: the crisis gauge, its upstream gauge and the rain gauges."""
    cut = LAST
    obs = pd.concat([_level(FALLING),
                     _level(list(np.linspace(2.0, 1.9, 36)), code="UP-T"),
                     _rain(until=cut.floor("h"))], ignore_index=True)
    h = _hourly(obs, ITAYA_UP)
    silent = h.index[(h.index > cut) & (h.index <= cut + CRISIS_MAX_SILENCE)]
    assert (h.loc[silent, CENSORED] == 1.0).all() and (h.loc[silent, "level_m"] == START).all()
    assert (h.loc[silent, UNEXPLAINED] == 1.0).all()
    assert h["rain_mm"].loc[silent].isna().all() and h["up_UP-T"].loc[silent].isna().all()
    reason = silence_reason(h, ITAYA_UP, pd.Timestamp("2024-07-01 09:00", tz="UTC"))
    assert reason is not None and "silent 3 h since 0.95 m" in reason
    assert "rain gauges are silent too (catchment rain unknown for 3 of 3 h, the latest hour " \
        "included; data outage?)" in reason
    assert "upstream UP-T silent too" in reason
    assert "not read as low water" in reason
    # the same silence without the upstream gauge (rain gauges silent only): still unexplained
    h2 = _hourly(pd.concat([_level(FALLING), _rain(until=cut.floor("h"))], ignore_index=True))
    assert (h2.loc[silent, UNEXPLAINED] == 1.0).all()


def test_silent_upstream_gauge_alone_makes_the_silence_unexplained() -> None:
    up_until = pd.Timestamp("2024-07-01 10:00", tz="UTC")
    up = _level(list(np.full(60, 2.0)), last=up_until, code="UP-T")
    h = _hourly(pd.concat([_level(FALLING), up, _rain()], ignore_index=True), ITAYA_UP)
    assert _at(h, "2024-07-01 10:00")[UNEXPLAINED] == 0.0        # upstream still reporting
    assert _at(h, "2024-07-01 11:00")[UNEXPLAINED] == 1.0        # upstream silent too
    reason = silence_reason(h, ITAYA_UP, pd.Timestamp("2024-07-01 11:00", tz="UTC"))
    assert reason is not None and "upstream UP-T silent too" in reason
    assert "rain" not in reason


def test_rising_into_the_silence_is_unexplained() -> None:
    rising = [0.5] + [np.nan] * 28 + [0.90, 0.91, 0.92, 0.94, 0.95, 0.97]   # up through start
    obs = pd.concat([_level(rising).dropna(), _rain()], ignore_index=True)
    h = _hourly(obs)
    silent = h.index[(h.index > LAST) & (h.index <= LAST + CRISIS_MAX_SILENCE)]
    assert (h.loc[silent, CENSORED] == 1.0).all()
    assert (h.loc[silent, UNEXPLAINED] == 1.0).all()
    assert _at(h, "2024-07-01 07:00")[LAST_RISE_M] == pytest.approx(0.97 - np.mean(rising[29:34]))
    reason = silence_reason(h, ITAYA, pd.Timestamp("2024-07-01 07:00", tz="UTC"))
    assert reason is not None and "silent 50 min since 0.97 m" in reason
    assert "after rising +0.05 m over the hour before" in reason and "mm of rain" not in reason


@pytest.mark.parametrize(("value", "unexplained"), [(0.5, 0.0), (0.91, 0.0), (0.95, 1.0)])
def test_lone_reading_trend_is_measured_from_the_start_level(value: float,
                                                             unexplained: float) -> None:
    """A lone reading after hours of silence: the level came up from below the start level, so
    a below-start heartbeat or a reading at the start (noise) is not a rise, 5 cm above is."""
    obs = pd.concat([_level([1.2]), _level([value], last=LAST + pd.Timedelta(hours=5)),
                     _rain()], ignore_index=True)
    h = _hourly(obs)
    row = _at(h, "2024-07-01 12:00")
    assert row[CENSORED] == 1.0 and row[LAST_RISE_M] == pytest.approx(value - START)
    assert row[UNEXPLAINED] == unexplained


def test_below_start_rows_count_as_not_rising() -> None:
    rows = pd.DataFrame({"station_id": ITAYA.primary_gauge, "variable": "level_m",
                         "time": [LAST], "value": [np.nan], "flag": int(Flag.BELOW_START)})
    before = _level([1.5, 1.0], last=LAST - pd.Timedelta(minutes=10))
    h = _hourly(pd.concat([before, rows, _rain()], ignore_index=True))
    row = _at(h, "2024-07-01 09:00")
    assert row[CENSORED] == 1.0 and row[UNEXPLAINED] == 0.0
    assert np.isnan(row[LAST_M]) and np.isnan(row[LAST_RISE_M])
    wet = _hourly(pd.concat([before, rows, _rain({"2024-07-01 08:00": 30.0})],
                            ignore_index=True))
    reason = silence_reason(wet, ITAYA, pd.Timestamp("2024-07-01 09:00", tz="UTC"))
    assert reason is not None and "since a below-start report at 2024-07-01 15:10 JST" in reason


def test_gap_and_telemetry_hours_are_never_unexplained() -> None:
    # silent well above the start level: a gap (NaN), not censored, not "unexplained"
    h = _hourly(pd.concat([_level([1.5, 1.6]), _rain()], ignore_index=True))
    row = _at(h, "2024-07-01 08:00")
    assert np.isnan(row["level_m"]) and row[CENSORED] == 0.0 and row[UNEXPLAINED] == 0.0
    reason = silence_reason(h, ITAYA, pd.Timestamp("2024-07-01 08:00", tz="UTC"))
    assert reason is not None and "no usable level" in reason
    koto = load_catalogue("config/reference_rivers.yaml").rivers[0]
    obs = _level([2.0] * 6, code=koto.primary_gauge)
    ht = river_hourly(obs, koto, start=T0 + pd.Timedelta(hours=6), end=T0 + pd.Timedelta(hours=9))
    assert (ht[UNEXPLAINED] == 0.0).all() and ht[[SILENT_H, LAST_M, LAST_RISE_M]].isna().all(
        axis=None)
    assert silence_reason(ht, koto, pd.Timestamp("2024-07-01 06:00", tz="UTC")) is None


FEATURES_WITH_UPSTREAM = [
    "level_m", "level_censored", "d_level_1h", "d_level_2h", "d_level_3h", "d_level_6h",
    "rain_1h", "rain_3h", "rain_6h", "rain_12h", "rain_24h", "rain_48h", "api",
    "up_UP-T", "up_UP-T_censored", "d_up_UP-T_1h", "d_up_UP-T_3h",
    "doy_sin", "doy_cos", "hour_jst",
]


@pytest.mark.parametrize("mode", ["none", "perfect"])
def test_feature_columns_are_unchanged(mode: str) -> None:
    """Registered models check the feature list: the silence columns are not features."""
    obs = pd.concat([_level(FALLING), _level(list(np.full(36, 2.0)), code="UP-T"),
                     _rain({"2024-07-01 09:00": 20.0})], ignore_index=True)
    h = _hourly(obs, ITAYA_UP)
    assert h[UNEXPLAINED].sum() > 0
    X = build_features(h, h.index[:5], future_rain=mode)  # type: ignore[arg-type]
    fc = [f"rain_fc_{k}h" for k in range(1, 7)] if mode == "perfect" else []
    assert list(X.columns) == FEATURES_WITH_UPSTREAM + fc
    assert list(X.columns) == expected_features(["UP-T"], mode)  # type: ignore[arg-type]
    assert not any(c in X.columns for c in (UNEXPLAINED, SILENT_H, LAST_M, LAST_RISE_M))


def _future(after: pd.Timestamp, river: River) -> pd.DataFrame:
    """Every station of the river reporting after ``after``: high water, heavy rain."""
    t10 = pd.date_range(after + pd.Timedelta(minutes=10), END, freq="10min", tz="UTC")
    th = pd.date_range(after.floor("h") + pd.Timedelta(hours=1), END, freq="h", tz="UTC")
    parts = [pd.DataFrame({"station_id": code, "variable": "level_m", "time": t10,
                           "value": 2.5, "flag": int(Flag.GOOD)})
             for code in (river.primary_gauge, *river.upstream_gauges)]
    parts += [pd.DataFrame({"station_id": g.code, "variable": "rain_mm", "time": th,
                            "value": 30.0, "flag": 0}) for g in river.rain_gauges]
    return pd.concat(parts, ignore_index=True)


SCENARIOS = {
    "dry": (pd.concat([_level(FALLING), _rain()], ignore_index=True), ITAYA),
    "showers": (pd.concat([_level(FALLING), _rain({"2024-07-01 08:00": 6.0,
                                                   "2024-07-01 11:00": 5.0})],
                          ignore_index=True), ITAYA),
    "upstream_stops": (pd.concat([_level(FALLING), _rain(until=pd.Timestamp(
        "2024-07-01 12:00", tz="UTC")), _level(list(np.full(60, 2.0)), code="UP-T",
                                               last=pd.Timestamp("2024-07-01 10:00", tz="UTC"))],
                                 ignore_index=True), ITAYA_UP),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_silence_columns_at_t_depend_only_on_rows_up_to_t(name: str) -> None:
    """For every hour T: the frame's level, censoring and silence columns at T and the reason
    at T are the same from all the rows, from the rows <= T only, and from the rows <= T plus
    an invented future (every station reporting high water and heavy rain after T)."""
    obs, river = SCENARIOS[name]
    cols = ["level_m", CENSORED, "rain_mm", UNEXPLAINED, SILENT_H, LAST_M, LAST_RISE_M]
    full = river_hourly(obs, river, start=T0, end=END)
    seen = set()
    for t in full.index[3:24]:
        past = obs[obs["time"] <= t]
        for variant in (past, pd.concat([past, _future(t, river)], ignore_index=True)):
            h = river_hourly(variant, river, start=T0, end=END)
            pd.testing.assert_series_equal(h.loc[t, cols], full.loc[t, cols])
            assert silence_reason(h, river, t) == silence_reason(full, river, t)
        seen.add(float(full.loc[t, UNEXPLAINED]))
    assert seen == ({0.0} if name == "dry" else {0.0, 1.0})


def test_a_censored_hour_without_silence_columns_is_not_read_as_low_water() -> None:
    h = _hourly(pd.concat([_level(FALLING), _rain()], ignore_index=True))
    t = pd.Timestamp("2024-07-01 12:00", tz="UTC")
    assert silence_reason(h, ITAYA, t) is None
    reason = silence_reason(h.drop(columns=[SILENT_H, LAST_M, LAST_RISE_M, UNEXPLAINED]), ITAYA, t)
    assert reason is not None and "no silence columns" in reason


def test_rain_gauges_silent_for_the_latest_hour_is_an_outage() -> None:
    """A long quiet silence (rain known for most of it) whose rain gauges stopped reporting in
    the latest hour: the feed is down now, so the silence is not read as low water."""
    obs = pd.concat([_level(FALLING), _rain(until=LAST + pd.Timedelta(hours=10))],
                    ignore_index=True)
    h = _hourly(obs, ITAYA)
    at = (LAST + pd.Timedelta(hours=12)).ceil("h")
    i = h.index.get_loc(at)
    assert h[CENSORED].iloc[i] == 1.0 and np.isnan(h["rain_mm"].iloc[i])
    assert h["rain_mm"].loc[:at].iloc[-12:].notna().sum() >= 9      # known for >= 75 %
    assert h[UNEXPLAINED].iloc[i] == 1.0
    reason = silence_reason(h, ITAYA, at)
    assert reason is not None and "the latest hour included" in reason
    # while the rain gauges still reported (dry), the same silence was explained
    dry = (LAST + pd.Timedelta(hours=9)).ceil("h")
    assert h.loc[dry, CENSORED] == 1.0 and h.loc[dry, UNEXPLAINED] == 0.0
    assert silence_reason(h, ITAYA, dry) is None
