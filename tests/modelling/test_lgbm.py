from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.errors import InsufficientDataError, ManifestError, ModelError
from forecast.features import FC_RAIN_FEATURES, build_features, targets
from forecast.modelling.lgbm import LeadModels, LgbmSettings, with_transform
from forecast.modelling.persist import load, save
from forecast.modelling.pooled import train_pooled

from .synth import synthetic_hourly

SET = LgbmSettings(leads=(1, 3), num_rounds=80, early_stopping_rounds=15)


@pytest.fixture(scope="module")
def trained():
    h = synthetic_hourly(1500)
    X = build_features(h, h.index, future_rain="perfect")
    Y = targets(h, h.index)
    tr = X.index < h.index[1200]
    lm = LeadModels.train(X[tr], Y[tr], high_water_m=float(h["level_m"].quantile(0.9)),
                          settings=SET, name="synthetic")
    return lm, X[~tr].dropna(subset=["level_m"]), h


def test_quantiles_do_not_cross_and_track_level(trained):
    lm, Xt, h = trained
    p = lm.predict(Xt)
    assert len(p) == len(Xt) * 2
    assert (p["q10"] <= p["q50"]).all() and (p["q50"] <= p["q90"]).all()
    obs = h["level_m"].reindex(p["issued_at"] + pd.to_timedelta(p["horizon_h"], unit="h"))
    err = np.nanmean(np.abs(p["level"].to_numpy() - obs.to_numpy()))
    pers = np.nanmean(np.abs(p["issued_at"].map(h["level_m"]).to_numpy() - obs.to_numpy()))
    assert err < pers  # synthetic rain-runoff is learnable


def test_more_rain_never_lowers_any_quantile(trained):
    lm, Xt, _ = trained
    base = lm.predict(Xt)
    rng = np.random.default_rng(0)
    more = Xt.copy()
    extra = np.cumsum(rng.uniform(0, 20, size=(len(Xt), len(FC_RAIN_FEATURES))), axis=1)
    more[list(FC_RAIN_FEATURES)] = more[list(FC_RAIN_FEATURES)].to_numpy() + extra
    for c in ("rain_1h", "rain_3h", "api"):
        more[c] = more[c] + 5.0
    wet = lm.predict(more)
    for c in ("level", "q10", "q50", "q90"):
        assert (wet[c].to_numpy() >= base[c].to_numpy() - 1e-9).all(), c
    assert (wet["q50"] > base["q50"] + 1e-6).any()


def test_linear_rain_coefficients_are_non_negative(trained):
    lm = trained[0]
    assert lm.linear
    for fit in lm.linear.values():
        rain = np.array([c.startswith("rain_") or c == "api" for c in fit.columns])
        assert (fit.coef[rain] >= 0).all()
    # the band's spread models only grow with their inputs; the lower one reads no rain
    for band in lm.bands.values():
        assert (band.lo.coef >= 0).all() and (band.up.coef >= 0).all()
        assert not any("rain" in c or c == "api" for c in band.lo.columns)


def test_linear_base_extrapolates_beyond_training_changes():
    """Train on small storms only, forecast a storm three times larger: trees alone cannot
    exceed the largest training change; the linear base can."""
    h = synthetic_hourly(1500)
    big = h.copy()
    big["rain_mm"] *= 3.0
    store = np.zeros(len(big))
    r = big["rain_mm"].to_numpy()
    for t in range(1, len(big)):
        store[t] = 0.93 * store[t - 1] + 0.05 * r[max(t - 2, 0)]
    big["level_m"] = 1.0 + 0.8 * np.sqrt(store)
    X = build_features(h, h.index, future_rain="perfect")
    Y = targets(h, h.index)
    Xb = build_features(big, big.index, future_rain="perfect")
    Yb = targets(big, big.index)
    s = LgbmSettings(leads=(3,), num_rounds=80, fallbacks=False)
    lin = LeadModels.train(X, Y, high_water_m=2.0, settings=s)
    trees = LeadModels.train(X, Y, high_water_m=2.0,
                             settings=LgbmSettings(leads=(3,), num_rounds=80, fallbacks=False,
                                                   linear_base=False))
    top = Yb["dh_3h"].nlargest(20).index          # the big storm's steepest rises
    seen = float(Y["dh_3h"].max())
    assert float(Yb.loc[top, "dh_3h"].min()) > seen    # the test rises are beyond training
    def rise(m):
        p = m.predict(Xb.loc[top])
        return p["level"].to_numpy() - Xb.loc[top, "level_m"].to_numpy()
    assert rise(trees).max() <= seen + 1e-6
    assert rise(lin).max() > seen
    obs = Yb.loc[top, "dh_3h"].to_numpy()
    assert np.sqrt(np.mean((rise(lin) - obs) ** 2)) < np.sqrt(np.mean((rise(trees) - obs) ** 2))


def test_nonneg_ridge_matches_bounded_least_squares_oracle():
    from scipy.optimize import lsq_linear

    from forecast.modelling.linear import fit_nonneg_ridge

    rng = np.random.default_rng(3)
    A = rng.normal(size=(400, 4)) * [1.0, 5.0, 0.2, 2.0] + [0.0, 3.0, 1.0, -1.0]
    y = A @ [0.5, -0.3, -2.0, 0.8] + 1.5 + rng.normal(0, 0.1, 400)
    nonneg = np.array([False, True, True, False])
    fit = fit_nonneg_ridge(A, y, columns=list("abcd"), nonneg=nonneg, ridge=0.0)
    lo = np.r_[np.where(nonneg, 0.0, -np.inf), -np.inf]
    ref = lsq_linear(np.column_stack([A, np.ones(len(A))]), y, bounds=(lo, np.inf), tol=1e-12)
    np.testing.assert_allclose(fit.coef, ref.x[:4], atol=1e-6)
    assert fit.intercept == pytest.approx(ref.x[4], abs=1e-6)
    assert fit.coef[1] == 0.0 and fit.coef[2] == 0.0   # true negatives clipped to zero
    # NaN inputs are filled with the column mean
    B = A[:3].copy()
    B[0, 1] = np.nan
    assert fit.predict(B)[0] == pytest.approx(fit.predict(np.where(np.isnan(B), fit.fill, B))[0])


def test_conformal_quantile_covers_calibration_scores():
    from forecast.modelling.quantile import _conformal

    rng = np.random.default_rng(0)
    for n in (20, 57, 300):
        s = rng.normal(size=n)
        hi, lo = _conformal(s, 0.9), _conformal(s, 0.1)
        # naive definition: smallest sample value with at least ceil((n+1) q) values <= it
        k = int(np.ceil((n + 1) * 0.9))
        assert hi == np.sort(s)[min(k, n) - 1]
        assert (s <= hi).mean() >= 0.9 - 1e-12 and (s >= lo).mean() >= 0.9 - 1e-12


def test_band_coverage_on_held_out_high_water(trained):
    lm, Xt, h = trained
    p = lm.predict(Xt)
    obs = h["level_m"].reindex(p["issued_at"] + pd.to_timedelta(p["horizon_h"], unit="h"))
    o = obs.to_numpy()
    inside = (o >= p["q10"].to_numpy()) & (o <= p["q90"].to_numpy())
    ok = np.isfinite(o)
    assert (p["q90"].to_numpy() - p["q10"].to_numpy() > 0).all()   # a band on every row
    assert 0.65 <= inside[ok].mean() <= 0.97
    high = ok & (o >= lm.high_water_m)
    assert high.sum() > 30
    assert 0.6 <= inside[high].mean() <= 0.98


def test_fallback_variant_recorded_when_inputs_missing(trained):
    lm, Xt, _ = trained
    X = Xt.iloc[:4].copy()
    X.loc[X.index[1], list(FC_RAIN_FEATURES)] = np.nan
    X.loc[X.index[2], "up_dam"] = np.nan
    X.loc[X.index[3], ["rain_1h", "up_dam"]] = np.nan
    p = lm.predict(X).query("horizon_h == 1")
    assert list(p["model_variant"]) == ["full", "no_fc", "no_upstream", "level_only"]
    assert p["inputs"].iloc[0] == "level,rain,fc,upstream"
    assert p["inputs"].iloc[3] == "level"
    assert p["q50"].notna().all()


def test_save_load_roundtrip(trained, tmp_path):
    lm, Xt, _ = trained
    save(lm, tmp_path / "m")
    assert (tmp_path / "m" / "model.json").exists()
    again = load(tmp_path / "m")
    pd.testing.assert_frame_equal(lm.predict(Xt.iloc[:50]), again.predict(Xt.iloc[:50]))
    import json
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["format"] = 1   # the old quantile-booster format is refused, not misread
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ManifestError, match="retrain"):
        load(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text("{broken")
    with pytest.raises(ManifestError):
        load(tmp_path / "m")


def test_too_little_data_names_river():
    h = synthetic_hourly(100)
    X = build_features(h, h.index)
    with pytest.raises(InsufficientDataError, match="tiny"):
        LeadModels.train(X, targets(h, h.index), high_water_m=2.0, settings=SET, name="tiny")


def test_pooled_model_trains_and_predicts():
    parts = {}
    for i in range(2):
        h = synthetic_hourly(700, seed=i, upstream=False)
        X = build_features(h, h.index)
        parts[f"r{i}"] = (X, targets(h, h.index), 10.0 * (i + 1), 1.5)
    s = LgbmSettings(leads=(1,), num_rounds=30, fallbacks=False)
    lm = train_pooled(parts, settings=s)
    assert "attr_area_km2" in lm.features
    X0 = parts["r0"][0].iloc[-5:].assign(attr_area_km2=10.0, attr_threshold_m=1.5)
    X0["level_rel_m"] = X0["level_m"] - 1.5
    assert lm.predict(X0)["q50"].notna().all()


# ---------------------------------------------------------------- log target transform
def synthetic_flow(hours: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Flow-like river frame (level_m holds a positive, skewed flow; rain_mm): log-flow is a
    linear reservoir driven by rain, so a storm multiplies the flow and recessions are
    exponential, with multiplicative noise."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2022-06-01", periods=hours, freq="h", tz="UTC", name="time")
    rain = np.zeros(hours)
    for i in np.flatnonzero(rng.random(hours) < 0.02):
        dur = rng.integers(3, 12)
        rain[i:i + dur] += rng.gamma(2.0, 3.0, size=min(dur, hours - i))
    z = np.zeros(hours)
    noise = rng.normal(0, 0.02, hours)
    for t in range(1, hours):
        z[t] = 0.93 * z[t - 1] + 0.03 * rain[max(t - 2, 0)] + noise[t]
    return pd.DataFrame({"level_m": 0.5 * np.exp(z), "rain_mm": rain}, index=idx)


LOG = LgbmSettings(leads=(1, 3), num_rounds=80, early_stopping_rounds=15, transform="log")


def _flow_split(seed: int = 0):
    h = synthetic_flow(2000, seed=seed)
    X = build_features(h, h.index, future_rain="perfect")
    Y = targets(h, h.index)
    tr = X.index < h.index[1500]
    return h, X[tr], Y[tr], X[~tr].dropna(subset=["level_m"])


@pytest.fixture(scope="module")
def flow_models():
    h, X, Y, Xt = _flow_split()
    hw = float(h["level_m"].quantile(0.9))
    log = LeadModels.train(X, Y, high_water_m=hw, settings=LOG, name="flow")
    raw = LeadModels.train(X, Y, high_water_m=hw,
                           settings=LgbmSettings(leads=(1, 3), num_rounds=80,
                                                 early_stopping_rounds=15), name="flow")
    return log, raw, Xt, h


def _rmse(p: pd.DataFrame, h: pd.DataFrame, lead: int) -> float:
    obs = h["level_m"].reindex(p["issued_at"] + pd.to_timedelta(p["horizon_h"], unit="h"))
    e = p["level"].to_numpy() - obs.to_numpy()
    ok = np.isfinite(e) & (p["horizon_h"].to_numpy() == lead)
    return float(np.sqrt(np.mean(e[ok] ** 2)))


def test_log_beats_raw_on_multiplicative_flow(flow_models):
    """Storms multiply the flow: in log space the response is additive and learnable.
    (Lead 1 is mostly noise, where both tie; lead 3 is where the rain response counts.)"""
    log, raw, Xt, h = flow_models
    assert _rmse(log.predict(Xt), h, 3) < 0.9 * _rmse(raw.predict(Xt), h, 3)


def test_log_predictions_are_positive_levels_with_ordered_bands(flow_models):
    log, _, Xt, h = flow_models
    train = h["level_m"].iloc[:1500]   # issue times before the split (their levels)
    assert log.log is not None
    assert log.log.floor == pytest.approx(float(train.min()), rel=1e-6)
    assert log.log.ceiling == pytest.approx(float(train.min() + 3 * (train.max() - train.min())),
                                            rel=1e-6)
    p = log.predict(Xt)
    v = p[["level", "q10", "q50", "q90"]].to_numpy()
    assert np.isfinite(v).all() and (v > 0).all()
    assert (p["q10"] <= p["q50"]).all() and (p["q50"] <= p["q90"]).all()
    assert (p["q90"] > p["q10"]).all()
    # level space, not z: lead-1 forecasts stay close to the current flow
    now = p["issued_at"].map(Xt["level_m"]).to_numpy()
    one = p["horizon_h"].to_numpy() == 1
    assert np.median(np.abs(p["level"].to_numpy()[one] / now[one] - 1.0)) < 0.1
    # a NaN current level gives NaN forecasts (not the floor)
    X1 = Xt.iloc[:2].copy()
    X1.loc[X1.index[0], "level_m"] = np.nan
    q = log.predict(X1)
    assert q.loc[q["issued_at"] == X1.index[0], "q50"].isna().all()
    assert q.loc[q["issued_at"] == X1.index[1], "q50"].notna().all()


def test_log_more_rain_never_lowers_any_quantile(flow_models):
    log, _, Xt, _ = flow_models
    base = log.predict(Xt)
    more = Xt.copy()
    extra = np.cumsum(np.random.default_rng(1).uniform(0, 10, size=(len(Xt),
                                                                      len(FC_RAIN_FEATURES))),
                      axis=1)
    more[list(FC_RAIN_FEATURES)] = more[list(FC_RAIN_FEATURES)].to_numpy() + extra
    for c in ("rain_1h", "rain_3h", "api"):
        more[c] = more[c] + 5.0
    wet = log.predict(more)
    for c in ("level", "q10", "q50", "q90"):
        assert (wet[c].to_numpy() >= base[c].to_numpy() - 1e-9).all(), c
    assert (wet["q50"] > base["q50"] + 1e-6).any()
    # exponential extrapolation is capped: a deluge gives finite forecasts under the ceiling
    assert log.log is not None
    more[list(FC_RAIN_FEATURES)] = more[list(FC_RAIN_FEATURES)].to_numpy() * 50.0
    q90 = log.predict(more)["q90"].to_numpy()
    assert np.isfinite(q90).all() and (q90 <= log.log.ceiling).all()


def test_log_transform_survives_save_load(flow_models, tmp_path):
    import json

    log, raw, Xt, _ = flow_models
    save(log, tmp_path / "log")
    again = load(tmp_path / "log")
    assert again.settings.transform == "log" and again.log == log.log
    pd.testing.assert_frame_equal(log.predict(Xt.iloc[:50]), again.predict(Xt.iloc[:50]))
    meta = json.loads((tmp_path / "log" / "model.json").read_text())
    del meta["transform"]   # a log model without its offset is refused, not misread
    (tmp_path / "log" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ManifestError, match="retrain"):
        load(tmp_path / "log")
    # a model saved before the transform existed (no such settings or key) loads as raw
    save(raw, tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "model.json").read_text())
    for k in ("transform", "log_scale"):
        del meta["settings"][k]
    del meta["transform"]
    (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
    old = load(tmp_path / "old")
    assert old.settings.transform == "none" and old.log is None
    pd.testing.assert_frame_equal(raw.predict(Xt.iloc[:50]), old.predict(Xt.iloc[:50]))


def test_river_target_transform_reaches_the_settings():
    import yaml

    from forecast.catalogue import parse_catalogue
    from forecast.errors import CatalogueError

    ref = Path(__file__).resolve().parents[2] / "config" / "reference_rivers.yaml"
    data = yaml.safe_load(ref.read_text(encoding="utf-8"))
    data["rivers"][0]["target_transform"] = "log"
    river = parse_catalogue(data).rivers[0]
    for given in (SET, None):
        s = with_transform(given, river.target_transform)
        assert s is not None and s.transform == "log"
    del data["rivers"][0]["target_transform"]
    assert with_transform(SET, parse_catalogue(data).rivers[0].target_transform) is SET
    data["rivers"][0]["target_transform"] = "sqrt"
    with pytest.raises(CatalogueError, match="target_transform"):
        parse_catalogue(data)
    with pytest.raises(ModelError, match="sqrt"):
        with_transform(SET, "sqrt")
