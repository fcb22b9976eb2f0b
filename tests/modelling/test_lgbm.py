import numpy as np
import pandas as pd
import pytest

from forecast.errors import InsufficientDataError, ManifestError
from forecast.features import FC_RAIN_FEATURES, build_features, targets
from forecast.modelling.lgbm import LeadModels, LgbmSettings
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


def test_more_forecast_rain_never_lowers_p50(trained):
    lm, Xt, _ = trained
    base = lm.predict(Xt)
    rng = np.random.default_rng(0)
    more = Xt.copy()
    extra = np.cumsum(rng.uniform(0, 20, size=(len(Xt), len(FC_RAIN_FEATURES))), axis=1)
    more[list(FC_RAIN_FEATURES)] = more[list(FC_RAIN_FEATURES)].to_numpy() + extra
    for c in ("rain_1h", "rain_3h", "api"):
        more[c] = more[c] + 5.0
    wet = lm.predict(more)
    assert (wet["q50"].to_numpy() >= base["q50"].to_numpy() - 1e-9).all()
    assert (wet["q50"] > base["q50"] + 1e-6).any()


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
