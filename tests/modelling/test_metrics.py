import math

import numpy as np
import pandas as pd
import pytest

from forecast.modelling import metrics as M


def _naive_scores(o, s):
    pairs = [(a, b) for a, b in zip(o, s, strict=True) if not (math.isnan(a) or math.isnan(b))]
    n = len(pairs)
    rm = math.sqrt(sum((b - a) ** 2 for a, b in pairs) / n)
    ma = sum(abs(b - a) for a, b in pairs) / n
    mo = sum(a for a, _ in pairs) / n
    ms = sum(b for _, b in pairs) / n
    ns = 1 - sum((b - a) ** 2 for a, b in pairs) / sum((a - mo) ** 2 for a, _ in pairs)
    so = math.sqrt(sum((a - mo) ** 2 for a, _ in pairs) / n)
    ss = math.sqrt(sum((b - ms) ** 2 for _, b in pairs) / n)
    r = sum((a - mo) * (b - ms) for a, b in pairs) / (n * so * ss)
    kg = 1 - math.sqrt((r - 1) ** 2 + (ss / so - 1) ** 2 + (ms / mo - 1) ** 2)
    return rm, ma, ns, kg


def test_scores_match_naive_loops():
    rng = np.random.default_rng(0)
    o = rng.normal(3, 1, 200)
    s = o + rng.normal(0.1, 0.3, 200)
    o[5] = np.nan
    s[7] = np.nan
    got = (M.rmse(o, s), M.mae(o, s), M.nse(o, s), M.kge(o, s))
    assert got == pytest.approx(_naive_scores(o, s))


def test_event_windows_match_naive():
    rng = np.random.default_rng(1)
    idx = pd.date_range("2023-01-01", periods=300, freq="h", tz="UTC")
    lv = pd.Series(rng.normal(0, 1, 300).cumsum() * 0.1 + 1, index=idx)
    ev = M.event_windows(lv, 1.2, pad_h=3)
    inside = [any(lv.iloc[j] >= 1.2 for j in range(max(0, i - 3), min(300, i + 4)))
              for i in range(300)]
    assert list(ev > 0) == inside
    # naive ids: exceedance runs, joined across dips shorter than min_gap_h; every other hour
    # inside takes the id of its nearest exceedance hour (the earlier on a tie)
    above = [v >= 1.2 for v in lv]
    hours = [i for i in range(300) if above[i]]
    ev_of, k = {}, 0
    for j, h in enumerate(hours):
        if j == 0 or h - hours[j - 1] - 1 >= M.EVENT_MIN_GAP_H:
            k += 1
        ev_of[h] = k
    ids = [ev_of[min(hours, key=lambda h: (abs(h - i), h))] if inside[i] else 0
           for i in range(300)]
    assert list(ev) == ids
    assert ev.max() > 1


def test_double_peak_is_two_events_and_a_short_dip_is_not():
    idx = pd.date_range("2023-07-08", periods=60, freq="h", tz="UTC")
    lv = np.full(60, 3.0)
    lv[10:18] = 4.2      # first peak
    lv[25:33] = 4.2      # second, after 7 h below the threshold: a new event
    lv[36:40] = 4.0      # after a 3 h dip: the same event as the second
    ev = M.event_windows(pd.Series(lv, index=idx), 3.8, pad_h=12)
    assert ev.iloc[17] == 1 and ev.iloc[25] == 2 and ev.iloc[38] == 2
    assert ev.iloc[21] == 1 and ev.iloc[22] == 2       # the gap is split at its middle
    assert ev.iloc[0] == 1 and ev.iloc[51] == 2 and ev.iloc[52] == 0   # pad 12 h


def _paired(rng, n=150):
    idx = pd.date_range("2023-01-01", periods=n, freq="h", tz="UTC")
    lv = pd.Series(2 + 2 * np.sin(np.arange(n) / 12.0) + rng.normal(0, 0.1, n), index=idx)
    rows = []
    for T in idx[:-6]:
        for h in (1, 3):
            v = T + pd.Timedelta(hours=h)
            for model, noise in (("lgbm", 0.2), ("persistence", None)):
                pt = lv[T] if noise is None else lv[v] + rng.normal(0, noise)
                rows.append((model, T, v, h, pt, pt - 0.3, pt + 0.3))
    fc = pd.DataFrame(rows, columns=["model", "issued_at", "valid_at", "horizon_h", "level",
                                     "q10", "q90"])
    return M.attach_observed(fc, lv), lv


def test_lead_scores_skill_and_coverage():
    rng = np.random.default_rng(2)
    paired, lv = _paired(rng)
    ev = M.event_windows(lv, 3.5)
    sc = M.lead_scores(paired, ev, 3.5).set_index(["model", "horizon_h"])
    g = paired[(paired["model"] == "lgbm") & (paired["horizon_h"] == 3)]
    p = paired[(paired["model"] == "persistence") & (paired["horizon_h"] == 3)]
    assert sc.loc[("lgbm", 3), "skill"] == pytest.approx(
        1 - M.rmse(g["obs"], g["level"]) / M.rmse(p["obs"], p["level"]))
    inside = [(a >= lo) and (a <= hi) for a, lo, hi in zip(g["obs"], g["q10"], g["q90"],
                                                             strict=True) if a >= 3.5]
    assert sc.loc[("lgbm", 3), "coverage_high"] == pytest.approx(sum(inside) / len(inside))


def test_contingency_and_peaks_match_naive():
    rng = np.random.default_rng(3)
    paired, lv = _paired(rng)
    thr = 3.5
    ct = M.contingency(paired, thr).set_index(["model", "horizon_h"])
    g = paired[(paired["model"] == "lgbm") & (paired["horizon_h"] == 1)]
    hits = sum(1 for o, f in zip(g["obs"], g["level"], strict=True) if o >= thr and f >= thr)
    miss = sum(1 for o, f in zip(g["obs"], g["level"], strict=True) if o >= thr and f < thr)
    fa = sum(1 for o, f in zip(g["obs"], g["level"], strict=True) if o < thr and f >= thr)
    assert ct.loc[("lgbm", 1), "csi"] == pytest.approx(hits / (hits + miss + fa))
    assert ct.loc[("lgbm", 1), "pod"] == pytest.approx(hits / (hits + miss))
    ev = M.event_windows(lv, thr, pad_h=2)
    pk = M.peak_errors(paired, lv, ev)
    row = pk[(pk["model"] == "lgbm") & (pk["horizon_h"] == 1) & (pk["event"] == 1)].iloc[0]
    win = ev[ev == 1].index
    gw = g[g["valid_at"].isin(win)]
    best = gw.loc[gw["level"].idxmax()]
    assert row["fc_peak_m"] == pytest.approx(best["level"])
    assert row["peak_error_m"] == pytest.approx(best["level"] - lv[win].max())
    assert row["timing_error_h"] == pytest.approx(
        (best["valid_at"] - lv[win].idxmax()) / pd.Timedelta(hours=1))


def test_first_warning_lead():
    idx = pd.date_range("2023-01-01", periods=20, freq="h", tz="UTC")
    lv = pd.Series([1.0] * 10 + [3.0] * 10, index=idx)  # crossing of 2.0 at idx[10]
    fc = pd.DataFrame({"model": "m", "issued_at": [idx[6], idx[8], idx[2]],
                       "valid_at": [idx[9], idx[10], idx[3]], "horizon_h": [3, 2, 1],
                       "level": [2.5, 2.5, 2.5]})
    out = M.first_warning_lead(fc, lv, 2.0, max_lead_h=6)
    assert out["warning_lead_h"].tolist() == [4.0]  # idx[2] is outside the 6 h window


def test_constant_observations_give_nan_nse_and_kge_even_when_the_mean_is_inexact():
    # 0.1 m repeated: np.mean is not exactly 0.1, so sum((o - mean)^2) is ~1e-33, not 0;
    # NSE / KGE must still be NaN ("observations do not vary"), not -1e31
    o = np.full(7, 0.1)
    s = o + np.array([0.1, -0.1, 0.2, 0.0, 0.1, -0.2, 0.3])
    assert math.isnan(M.nse(o, s))
    assert math.isnan(M.kge(o, s))
    assert math.isnan(M.kge(s, o))        # a constant forecast: r undefined
    assert math.isnan(M.kge(np.full(7, 2.7), s))
