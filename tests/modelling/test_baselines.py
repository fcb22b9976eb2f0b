import warnings

import numpy as np
import pandas as pd
import pytest

from forecast.features import build_features
from forecast.modelling.baselines import AR2, SarimaxRain, _exog, persistence


def _idx(n):
    return pd.date_range("2020-01-01", periods=n, freq="h", tz="UTC")


def test_ar2_recovers_coefficients():
    rng = np.random.default_rng(1)
    n, c, a1, a2 = 5000, 0.3, 1.2, -0.35
    y = np.zeros(n)
    y[:2] = 2.0
    for t in range(2, n):
        y[t] = c + a1 * y[t - 1] + a2 * y[t - 2] + rng.normal(0, 0.05)
    h = pd.DataFrame({"level_m": y, "rain_mm": 0.0}, index=_idx(n))
    m = AR2().fit(h)
    assert m.a1 == pytest.approx(a1, abs=0.03)
    assert m.a2 == pytest.approx(a2, abs=0.03)
    fc = m.predict(h, h.index[[100]], leads=(1, 2))
    y1 = c + a1 * y[100] + a2 * y[99]
    assert fc["level"].iloc[0] == pytest.approx(m.c + m.a1 * y[100] + m.a2 * y[99])
    assert fc["level"].iloc[0] == pytest.approx(y1, abs=0.02)
    assert fc["level"].iloc[1] == pytest.approx(m.c + m.a1 * fc["level"].iloc[0]
                                                + m.a2 * y[100])


def test_sarimax_recovers_and_matches_statsmodels_forecast():
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    rng = np.random.default_rng(2)
    n = 1500
    rain = np.where(rng.random(n) < 0.05, rng.gamma(2, 5, n), 0.0)
    ex = _exog(rain)
    beta = np.array([1.5, 0.02, 0.005])
    u = np.zeros(n)
    for t in range(2, n):
        u[t] = 1.1 * u[t - 1] - 0.3 * u[t - 2] + rng.normal(0, 0.02)
    h = pd.DataFrame({"level_m": ex @ beta + u, "rain_mm": rain}, index=_idx(n))
    m = SarimaxRain().fit(h.iloc[:1200])
    assert m.phi[0] == pytest.approx(1.1, abs=0.08)
    assert m.beta[1] == pytest.approx(0.02, abs=0.004)
    # vectorised multi-origin forecast == statsmodels forecast from one origin (perfect rain)
    T = 1300
    X = build_features(h, h.index[[T]], future_rain="perfect")
    mine = m.predict(h, X)["level"].to_numpy()
    params = np.concatenate([m.beta, m.phi, [m.sigma2]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = SARIMAX(h["level_m"].to_numpy()[:T + 1], exog=ex[:T + 1], order=(2, 0, 0),
                      trend="n").filter(params)
    ref = res.forecast(steps=6, exog=ex[T + 1:T + 7])
    np.testing.assert_allclose(mine, ref, atol=1e-6)


def test_persistence_frame():
    h = pd.DataFrame({"level_m": [1.0, 2.0], "rain_mm": 0.0}, index=_idx(2))
    p = persistence(build_features(h, h.index), leads=(1, 3))
    assert list(p["level"]) == [1.0, 1.0, 2.0, 2.0]
    assert list(p["horizon_h"]) == [1, 3, 1, 3]
