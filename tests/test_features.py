import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.catalogue import Gauge, River, load_catalogue
from forecast.errors import FrameError
from forecast.features import (
    CENSORED,
    FC_RAIN_FEATURES,
    SILENCE_COLUMNS,
    UNEXPLAINED,
    archive_rain,
    build_features,
    level_to_hourly,
    rain_to_hourly,
    river_hourly,
    silence_reason,
    targets,
)
from forecast.frames import Flag

RIVER = load_catalogue("config/reference_rivers.yaml").rivers[0]
T0 = pd.Timestamp("2023-06-01", tz="UTC")
N_H = 120


def _obs(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t10 = pd.date_range(T0, periods=N_H * 6, freq="10min", tz="UTC")
    th = pd.date_range(T0, periods=N_H, freq="h", tz="UTC")
    lvl = pd.DataFrame({"station_id": "jiseiji", "variable": "level_m", "time": t10,
                        "value": 2.5 + np.cumsum(rng.normal(0, 0.01, len(t10)))})
    rel = pd.DataFrame({"station_id": "kotogawa_dam_release", "variable": "release_m3s",
                        "time": t10, "value": 10 + rng.gamma(1, 3, len(t10))})
    rain = pd.DataFrame({"station_id": "kotogawa_dam_rain", "variable": "rain_mm", "time": th,
                         "value": rng.gamma(0.3, 5, len(th))})
    df = pd.concat([lvl, rel, rain], ignore_index=True)
    df["flag"] = np.where(rng.random(len(df)) < 0.03, int(Flag.UNRELIABLE), int(Flag.GOOD))
    return df


def _vintages(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(0, N_H, 2):  # a vintage every 2 h, 6 hourly steps
        iss = T0 + pd.Timedelta(hours=k)
        for s in range(1, 7):
            rows.append(("p", "koto", iss, iss + pd.Timedelta(hours=s), float(rng.gamma(1, 2))))
    return pd.DataFrame(rows, columns=["product", "catchment_id", "issued_at", "valid_at",
                                       "value"])


def _features(obs, vint, mode, t):
    hourly = river_hourly(obs, RIVER, start=T0, end=T0 + pd.Timedelta(hours=N_H - 1))
    return build_features(hourly, [t], future_rain=mode, vintages=vint, catchment_id="koto")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(50, N_H - 10),
       mode=st.sampled_from(["archive", "perfect", "none"]))
def test_no_leakage_future_changes_do_not_move_features(seed, k, mode):
    obs, vint = _obs(1), _vintages(1)
    t = T0 + pd.Timedelta(hours=k)
    base = _features(obs, vint, mode, t)
    rng = np.random.default_rng(seed)
    obs2 = obs.copy()
    fut = obs2["time"] > t
    obs2.loc[fut, "value"] = obs2.loc[fut, "value"] * rng.uniform(0, 5, fut.sum()) + 1
    obs2.loc[fut, "flag"] = rng.integers(0, 5, fut.sum())
    vint2 = vint.copy()
    vf = vint2["issued_at"] > t
    vint2.loc[vf, "value"] = rng.uniform(0, 100, vf.sum())
    late = vint2[vf].assign(issued_at=t + pd.Timedelta(minutes=30), value=999.0)
    vint2 = pd.concat([vint2, late], ignore_index=True)
    # also: data appended far in the future
    extra = obs.iloc[:5].assign(time=t + pd.Timedelta(days=30), value=50.0)
    obs2 = pd.concat([obs2, extra], ignore_index=True)
    after = _features(obs2, vint2, mode, t)
    cols = [c for c in base.columns if mode != "perfect" or c not in FC_RAIN_FEATURES]
    pd.testing.assert_frame_equal(base[cols], after[cols])


def test_unusable_values_become_nan():
    obs = _obs(2)
    obs["flag"] = int(Flag.GOOD)
    t = T0 + pd.Timedelta(hours=60)
    sel = (obs["station_id"] == "jiseiji") & (obs["time"] > t - pd.Timedelta(minutes=30)) & (
        obs["time"] <= t)
    obs.loc[sel, "flag"] = int(Flag.UNRELIABLE)
    f = _features(obs, None, "none", t)
    assert np.isnan(f["level_m"].iloc[0])
    obs.loc[sel, "flag"] = int(Flag.DOUBTFUL)
    assert np.isfinite(_features(obs, None, "none", t)["level_m"].iloc[0])


def test_level_to_hourly_rules():
    t = pd.to_datetime(["2023-01-01 00:50", "2023-01-01 01:00", "2023-01-01 01:40",
                        "2023-01-01 03:10"], utc=True)
    out = level_to_hourly(pd.Series([1.0, 2.0, 3.0, 4.0], index=t))
    assert out.loc["2023-01-01 01:00+00:00"] == 2.0
    assert out.loc["2023-01-01 02:00+00:00"] == 3.0      # 20 min old: used
    assert np.isnan(out.loc["2023-01-01 03:00+00:00"])   # 80 min old: gap stays NaN


def test_rain_to_hourly_sums_and_keeps_gaps():
    t = pd.date_range("2023-01-01 00:10", periods=12, freq="10min", tz="UTC")
    v = np.arange(12, dtype=float)
    v[8] = np.nan
    out = rain_to_hourly(pd.Series(v, index=t))
    assert out.loc["2023-01-01 01:00+00:00"] == pytest.approx(sum(range(6)))
    assert np.isnan(out.loc["2023-01-01 02:00+00:00"])


def test_archive_rain_matches_naive_lookup():
    vint = _vintages(3)
    its = pd.date_range(T0, periods=40, freq="h", tz="UTC")
    got = archive_rain(vint, "koto", its)
    for T in its:
        v = vint[vint["issued_at"] <= T]
        latest = v[v["issued_at"] == v["issued_at"].max()]
        tot = 0.0
        for h in range(1, 7):
            row = latest[latest["valid_at"] == T + pd.Timedelta(hours=h)]
            tot = tot + row["value"].iloc[0] if len(row) else np.nan
            assert got.loc[T, f"rain_fc_{h}h"] == pytest.approx(tot, nan_ok=True)


def test_targets_and_issue_time_checks():
    hourly = river_hourly(_obs(4), RIVER, start=T0, end=T0 + pd.Timedelta(hours=N_H - 1))
    y = targets(hourly, hourly.index[:10])
    lv = hourly["level_m"]
    assert y["dh_3h"].iloc[2] == pytest.approx(lv.iloc[5] - lv.iloc[2], nan_ok=True)
    with pytest.raises(FrameError):
        build_features(hourly, [T0 + pd.Timedelta(minutes=30)])
    with pytest.raises(FrameError):
        build_features(hourly, [T0], future_rain="archive")


# A crisis primary gauge (itaya, start 0.90 m) with an upstream crisis gauge (start 1.00 m).
CRISIS_RIVER = River.model_validate({
    **load_catalogue("config/rivers.yaml").river("itaya").model_dump(),
    "gauges": (*load_catalogue("config/rivers.yaml").river("itaya").gauges,
               Gauge(code="UPC", name_ja="上流", lat=33.9, lon=135.97, kind="crisis",
                     start_level_m=1.0)),
    "upstream_gauges": ("UPC",)})


def _crisis_obs(seed: int) -> pd.DataFrame:
    """Crisis-gauge readings as delivered: every 10 min at or above the start level, a daily
    heartbeat below it, plus random gaps, BELOW_START rows and unusable flags."""
    rng = np.random.default_rng(seed)
    t10 = pd.date_range(T0, periods=N_H * 6, freq="10min", tz="UTC")
    parts = []
    for code, start in ((CRISIS_RIVER.primary_gauge, 0.9), ("UPC", 1.0)):
        lvl = start - 0.1 + np.cumsum(rng.normal(0, 0.03, len(t10)))
        keep = (lvl >= start) | (np.arange(len(t10)) % 144 == int(rng.integers(0, 144)))
        keep &= rng.random(len(t10)) > 0.05
        flag = rng.choice([int(Flag.GOOD), int(Flag.DOUBTFUL), int(Flag.UNRELIABLE),
                           int(Flag.MISSING), int(Flag.BELOW_START)], len(t10),
                          p=[0.85, 0.05, 0.03, 0.03, 0.04])
        parts.append(pd.DataFrame({"station_id": code, "variable": "level_m", "time": t10,
                                   "value": lvl, "flag": flag})[keep])
    th = pd.date_range(T0, periods=N_H, freq="h", tz="UTC")
    showers = rng.random(len(th)) < 0.2     # mostly dry: silences are explained or not
    for g in CRISIS_RIVER.rain_gauges:
        parts.append(pd.DataFrame({"station_id": g.code, "variable": "rain_mm", "time": th,
                                   "value": rng.gamma(0.3, 5, len(th)) * showers, "flag": 0}))
    return pd.concat(parts, ignore_index=True)


def _crisis_features(obs: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """Feature row at T plus the river frame's level, censoring and silence columns at T, and
    the silence reason at T."""
    hourly = river_hourly(obs, CRISIS_RIVER, start=T0, end=T0 + pd.Timedelta(hours=N_H - 1))
    frame = hourly.loc[[t], ["level_m", CENSORED, *SILENCE_COLUMNS]].add_prefix("frame_")
    return build_features(hourly, [t]).join(frame.rename_axis("issued_at")).assign(
        reason=str(silence_reason(hourly, CRISIS_RIVER, t)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(50, N_H - 10), drop=st.floats(0, 1))
def test_no_leakage_with_censored_crisis_gauges(seed, k, drop):
    """Censoring and its silence classification look back only: changing, dropping or adding
    readings after T (any flag, BELOW_START included; rain too) moves neither the level, the
    censoring marks, ``level_unexplained`` and the other silence columns, the silence reason
    nor any feature at T."""
    obs = _crisis_obs(seed % 7)
    t = T0 + pd.Timedelta(hours=k)
    base = _crisis_features(obs, t)
    assert {CENSORED, "up_UPC_censored", "frame_" + UNEXPLAINED} <= set(base.columns)
    rng = np.random.default_rng(seed)
    fut = (obs["time"] > t).to_numpy()
    obs2 = obs.copy()
    obs2.loc[fut, "value"] = rng.uniform(0.0, 3.0, fut.sum())
    obs2.loc[fut, "flag"] = rng.integers(0, int(max(Flag)) + 1, fut.sum())
    obs2 = obs2[~fut | (rng.random(len(obs2)) > drop)]
    extra = obs.iloc[:3].assign(time=t + pd.Timedelta(minutes=10), value=2.5, flag=0)
    after = _crisis_features(pd.concat([obs2, extra], ignore_index=True), t)
    pd.testing.assert_frame_equal(base, after)


def test_censored_marks_reach_the_features():
    obs = _crisis_obs(3)
    hourly = river_hourly(obs, CRISIS_RIVER, start=T0, end=T0 + pd.Timedelta(hours=N_H - 1))
    X = build_features(hourly, hourly.index)
    assert X[CENSORED].isin([0.0, 1.0]).all() and 0 < X[CENSORED].sum() < len(X)
    pd.testing.assert_series_equal(X[CENSORED], hourly[CENSORED], check_names=False,
                                   check_index=False)
    assert (X.loc[X[CENSORED] == 1.0, "level_m"] == 0.9).all()
    assert UNEXPLAINED not in X.columns
    # frames without censoring columns (telemetry rivers, registry checks) get zeros
    plain = build_features(hourly.drop(columns=[CENSORED, "up_UPC_censored"]), hourly.index)
    assert list(plain.columns) == list(X.columns)
    assert (plain[CENSORED] == 0.0).all() and (plain["up_UPC_censored"] == 0.0).all()


def test_crisis_frames_hold_explained_and_unexplained_silences():
    """The leakage test's frames hold both kinds of silence, so it sees both; an unexplained
    hour is always a censored one and never a feature."""
    hourly = river_hourly(_crisis_obs(1), CRISIS_RIVER, start=T0,
                          end=T0 + pd.Timedelta(hours=N_H - 1))
    un = hourly[UNEXPLAINED]
    assert un.isin([0.0, 1.0]).all() and (hourly.loc[un == 1.0, CENSORED] == 1.0).all()
    assert 0 < un.sum() < hourly[CENSORED].sum() - 20
    assert UNEXPLAINED not in build_features(hourly, hourly.index).columns
