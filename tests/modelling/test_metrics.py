import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --------------------------------------------------------------------------------------------
# Independent oracles (plain Python loops over the module docstring's definitions) for every
# public function, on hand-made series with boundary cases and on small random ones.

NAN = float("nan")
T0 = pd.Timestamp("2024-06-01", tz="UTC")
LEAD_COLS = ["model", "horizon_h", "n", "rmse", "mae", "nse", "kge", "n_event", "rmse_event",
             "mae_event", "nse_event", "kge_event", "coverage", "coverage_high"]
PEAK_COLS = ["model", "horizon_h", "event", "fc_peak_m", "fc_peak_at", "obs_peak_m",
             "obs_peak_at", "peak_error_m", "peak_error_pct", "timing_error_h"]
CT_COLS = ["model", "horizon_h", "hits", "misses", "false_alarms", "pod", "far", "csi",
           "threshold_m"]
FWL_COLS = ["model", "crossing_at", "threshold_m", "warning_lead_h"]


def _t(i):
    return T0 + pd.Timedelta(hours=i)


def _same(a, b):
    """Equal floats, NaN equal to NaN."""
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == pytest.approx(b, rel=1e-9, abs=1e-12)


def _oracle_scores(o, s):
    """(n, rmse, mae, nse, kge) over the pairs with finite values on both sides."""
    pairs = [(float(a), float(b)) for a, b in zip(o, s, strict=True)
             if math.isfinite(a) and math.isfinite(b)]
    n = len(pairs)
    if n == 0:
        return 0, NAN, NAN, NAN, NAN
    obs, sim = [a for a, _ in pairs], [b for _, b in pairs]
    sse = sum((b - a) ** 2 for a, b in pairs)
    rm = math.sqrt(sse / n)
    ma = sum(abs(b - a) for a, b in pairs) / n
    mo, ms = sum(obs) / n, sum(sim) / n
    obs_vary, sim_vary = len(set(obs)) > 1, len(set(sim)) > 1
    ns = 1 - sse / sum((a - mo) ** 2 for a in obs) if obs_vary else NAN
    if n < 2 or not obs_vary or not sim_vary or mo == 0:
        kg = NAN
    else:
        so = math.sqrt(sum((a - mo) ** 2 for a in obs) / n)
        ss = math.sqrt(sum((b - ms) ** 2 for b in sim) / n)
        r = sum((a - mo) * (b - ms) for a, b in pairs) / (n * so * ss)
        kg = 1 - math.sqrt((r - 1) ** 2 + (ss / so - 1) ** 2 + (ms / mo - 1) ** 2)
    return n, rm, ma, ns, kg


_QUARTERS = [k / 4 for k in range(-8, 17)]   # exact in binary: sums and means are exact


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from([*_QUARTERS, NAN, math.inf]),
                          st.sampled_from([*_QUARTERS, NAN, -math.inf])), max_size=10))
def test_scores_match_the_oracle_on_small_exact_series(pairs):
    o = np.array([a for a, _ in pairs], dtype="float64")
    s = np.array([b for _, b in pairs], dtype="float64")
    _, rm, ma, ns, kg = _oracle_scores(o, s)
    for got, want in ((M.rmse(o, s), rm), (M.mae(o, s), ma), (M.nse(o, s), ns),
                      (M.kge(o, s), kg)):
        assert isinstance(got, float)
        assert _same(got, want)


def test_score_boundaries():
    # no pairs, all NaN
    for o, s in (([], []), ([NAN, 1.0], [1.0, NAN]), ([NAN], [NAN])):
        assert all(math.isnan(f(np.array(o), np.array(s))) for f in (M.rmse, M.mae, M.nse, M.kge))
    # squared deviations summing to 0.5 m^2 (<= 1): NSE is defined; 1 - 0.25 / 0.5
    assert M.nse(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 0.5])) == 0.5
    assert M.nse(np.array([0.0, 0.1]), np.array([0.0, 0.1])) == 1.0
    # one pair: RMSE / MAE defined, NSE and KGE not
    assert M.rmse(np.array([1.0]), np.array([3.0])) == 2.0
    assert M.mae(np.array([1.0]), np.array([-2.0])) == 3.0
    assert math.isnan(M.nse(np.array([1.0]), np.array([3.0])))
    # exactly two pairs: KGE defined. r = 1, sd ratio 1, mean ratio 3/2 -> 0.5
    assert M.kge(np.array([1.0, 3.0]), np.array([2.0, 4.0])) == pytest.approx(0.5)
    # observed mean exactly 0: KGE undefined, NSE defined
    assert math.isnan(M.kge(np.array([-1.0, 1.0]), np.array([-2.0, 2.0])))
    assert M.nse(np.array([-1.0, 1.0]), np.array([-2.0, 2.0])) == 0.0
    # RMSE and MAE differ (squares vs absolute values)
    o, s = np.array([0.0, 0.0]), np.array([1.0, 3.0])
    assert (M.rmse(o, s), M.mae(o, s)) == (pytest.approx(math.sqrt(5.0)), 2.0)


def test_event_threshold():
    lv = pd.Series([float(v) for v in range(20)] + [NAN], index=[_t(i) for i in range(21)])
    # without thresholds: the 0.95 quantile, linear between order statistics, NaN ignored
    vals = sorted(v for v in lv if not math.isnan(v))
    pos = M.EVENT_QUANTILE * (len(vals) - 1)
    lo = math.floor(pos)
    want = vals[lo] + (pos - lo) * (vals[lo + 1] - vals[lo])
    got = M.event_threshold(lv, None)
    assert isinstance(got, float) and got == pytest.approx(want) and want == pytest.approx(18.05)
    assert M.EVENT_QUANTILE == 0.95
    # the river's lowest threshold wins, also 0 m
    assert M.event_threshold(lv, 3) == 3.0 and isinstance(M.event_threshold(lv, 3), float)
    assert M.event_threshold(lv, 0.0) == 0.0


def _oracle_windows(lv, thr, pad, gap):
    hours = [i for i, v in enumerate(lv) if v >= thr]
    ev_of, k = {}, 0
    for j, h in enumerate(hours):
        if j == 0 or h - hours[j - 1] - 1 >= gap:
            k += 1
        ev_of[h] = k
    out = []
    for i in range(len(lv)):
        near = min(hours, key=lambda h: (abs(h - i), h)) if hours else None
        out.append(ev_of[near] if near is not None and abs(near - i) <= pad else 0)
    return out


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from([0.0, 1.0, 1.0, NAN]), max_size=40),
       st.integers(0, 8), st.integers(1, 8))
def test_event_windows_match_the_oracle(vals, pad, gap):
    lv = pd.Series(vals, index=pd.DatetimeIndex([_t(i) for i in range(len(vals))]),
                   dtype="float64")
    ev = M.event_windows(lv, 1.0, pad_h=pad, min_gap_h=gap)
    assert ev.dtype == "int64" and ev.index.equals(lv.index)
    assert list(ev) == _oracle_windows(vals, 1.0, pad, gap)


def test_event_windows_defaults_gap_and_ties():
    assert (M.EVENT_PAD_H, M.EVENT_MIN_GAP_H) == (12, 6)
    idx = [_t(i) for i in range(80)]
    for dip in (5, 6):                     # below for 5 h: one event; for 6 h: two
        lv = np.zeros(80)
        lv[20:22] = 2.0
        lv[22 + dip:24 + dip] = 2.0
        ev = M.event_windows(pd.Series(lv, index=idx), 2.0)
        assert list(ev) == _oracle_windows(list(lv), 2.0, 12, 6)
        assert ev.max() == (1 if dip == 5 else 2)
        assert ev.iloc[7] == 0 and ev.iloc[8] == 1          # pad 12 h before the first hour
        assert ev.iloc[23 + dip + 12] > 0 and ev.iloc[23 + dip + 13] == 0
    # an hour equidistant from two events goes to the earlier one
    lv = np.zeros(30)
    lv[[5, 15]] = 1.0
    ev = M.event_windows(pd.Series(lv, index=idx[:30]), 1.0, pad_h=5, min_gap_h=6)
    assert list(ev.iloc[9:12]) == [1, 1, 2]
    # no event at all; a threshold never crossed; every hour above
    assert (M.event_windows(pd.Series(lv, index=idx[:30]), 1.5) == 0).all()
    assert list(M.event_windows(pd.Series(np.ones(3), index=idx[:3]), 1.0, pad_h=0)) == [1] * 3
    # a short series whose only exceedance is more than pad_h after the first hour
    lv = np.zeros(10)
    lv[9] = 1.0
    assert list(M.event_windows(pd.Series(lv, index=idx[:10]), 1.0, pad_h=8)) == [0] + [1] * 9
    assert list(M.event_windows(pd.Series(lv[::-1], index=idx[:10]), 1.0, pad_h=8)) == (
        [1] * 9 + [0])                     # and before the last hour
    # a single hour above, pad 0: the window is that hour only
    assert list(M.event_windows(pd.Series([0.0, 1.0, 0.0], index=idx[:3]), 1.0, pad_h=0)) == [
        0, 1, 0]


def test_attach_observed():
    level = pd.Series([1.0, 2.0, NAN, 4.0, 5.0, 6.0], index=[_t(i) for i in range(6)])
    fc = pd.DataFrame({"model": "m", "valid_at": [_t(1), _t(2), _t(3), _t(9), _t(4), _t(5),
                                                  _t(0)],
                       "level": 0.0}, index=[10, 11, 12, 13, 14, 15, 16])
    censored = pd.Series([0.0, 0.0, 0.0, 1.0, NAN, 0.5], index=level.index)
    out = M.attach_observed(fc, level, censored)
    assert list(out.columns) == ["model", "valid_at", "level", "obs"]
    assert list(out.index) == list(fc.index) and "obs" not in fc.columns
    want = [2.0, NAN, NAN, NAN, 5.0, NAN, 1.0]   # level NaN; censored 1; unknown; NaN flag = 0
    assert all(_same(a, b) for a, b in zip(out["obs"], want, strict=True))
    plain = M.attach_observed(fc, level)
    assert all(_same(a, b) for a, b in zip(plain["obs"], [2.0, NAN, 4.0, NAN, 5.0, 6.0, 1.0],
                                           strict=True))
    # a censoring series that does not cover every valid time: the rest is measured
    part = M.attach_observed(fc, level, censored.iloc[:2])
    assert list(part["obs"].fillna(-1)) == [2.0, -1, 4.0, -1, 5.0, 6.0, 1.0]


def _frame(rng, models=("lgbm", "persistence", "gru"), n_issue=30):
    """A paired frame on a random level series, with NaN obs / level / band rows, obs exactly
    on q10, q90 and the high-water level, and valid times outside the events' index."""
    rows = []
    for model in models:
        for h in ((1, 3) if model != "gru" else (3, 6)):
            for T in range(n_issue):
                obs = float(rng.choice([0.5, 1.0, 2.0, 2.5, 3.0, NAN],
                                       p=[.2, .2, .2, .15, .15, .1]))
                lvl = float(rng.choice([obs + 0.5, obs - 0.25, obs, 3.0, NAN],
                                       p=[.3, .3, .15, .15, .1]))
                band = rng.choice(["none", "in", "lo", "hi", "out"])
                q10, q90 = {"none": (NAN, NAN), "in": (lvl - 1, lvl + 1), "lo": (obs, obs + 1),
                            "hi": (obs - 1, obs), "out": (obs + 0.1, obs + 1)}[band]
                rows.append((model, _t(T), _t(T + h), h, lvl, q10, q90, obs))
    return pd.DataFrame(rows, columns=["model", "issued_at", "valid_at", "horizon_h", "level",
                                       "q10", "q90", "obs"])


def _events(rng, n):
    # event ids on hours 0..n-1 only: later valid times are outside the index (no event)
    return pd.Series(rng.choice([0, 0, 1, 2], size=n), index=[_t(i) for i in range(n)])


def _oracle_lead(paired, events, hw):
    in_event = {t for t, v in events.items() if v > 0}
    out = []
    for m, h in sorted({(r.model, r.horizon_h) for r in paired.itertuples()}):
        g = [r for r in paired.itertuples() if r.model == m and r.horizon_h == h]
        o, s = [r.obs for r in g], [r.level for r in g]
        ge = [r for r in g if r.valid_at in in_event]
        n, rm, ma, ns, kg = _oracle_scores(o, s)
        ne, rme, mae, nse, kge = _oracle_scores([r.obs for r in ge], [r.level for r in ge])
        band = [r for r in g if not math.isnan(r.q10) and not math.isnan(r.obs)]
        high = [r for r in band if r.obs >= hw]

        def share(rs):
            return sum(r.q10 <= r.obs <= r.q90 for r in rs) / len(rs) if rs else NAN
        out.append({"model": m, "horizon_h": h, "n": n, "rmse": rm, "mae": ma, "nse": ns,
                    "kge": kg, "n_event": ne, "rmse_event": rme, "mae_event": mae,
                    "nse_event": nse, "kge_event": kge, "coverage": share(band),
                    "coverage_high": share(high)})
    # skill on the (issue, lead) pairs both the model and persistence have scored
    ref = {(r.horizon_h, r.valid_at): r.level for r in paired.itertuples()
           if r.model == "persistence" and math.isfinite(r.obs) and math.isfinite(r.level)}
    if any(r["model"] == "persistence" for r in out):
        for r in out:
            g = [(q.obs, q.level, ref[(q.horizon_h, q.valid_at)], q.valid_at in in_event)
                 for q in paired.itertuples()
                 if (q.model, q.horizon_h) == (r["model"], r["horizon_h"])
                 and math.isfinite(q.obs) and math.isfinite(q.level)
                 and (q.horizon_h, q.valid_at) in ref]
            for col, rows in (("skill", g), ("skill_event", [x for x in g if x[3]])):
                base = _oracle_scores([x[0] for x in rows], [x[2] for x in rows])[1]
                mine = _oracle_scores([x[0] for x in rows], [x[1] for x in rows])[1]
                r[col] = 1 - mine / base if rows and base > 0 else NAN
    return out


def _assert_rows(got: pd.DataFrame, want: list[dict]):
    assert len(got) == len(want)
    for (_, g), w in zip(got.iterrows(), want, strict=True):
        for k, v in w.items():
            if isinstance(v, float):
                assert _same(g[k], v), (k, g[k], v)
            else:
                assert g[k] == v, (k, g[k], v)


@pytest.mark.parametrize("seed", range(6))
def test_lead_scores_match_the_oracle(seed):
    rng = np.random.default_rng(100 + seed)
    paired = _frame(rng)
    events = _events(rng, 25)
    got = M.lead_scores(paired, events, 2.5)
    assert list(got.columns) == [*LEAD_COLS, "skill", "skill_event"]
    assert got["horizon_h"].dtype == "int64" and got["n"].dtype == "int64"
    assert got["n_event"].dtype == "int64"
    want = _oracle_lead(paired, events, 2.5)
    _assert_rows(got, want)
    # the event scores are not the all-hours scores
    assert not np.allclose(got["rmse"], got["rmse_event"], equal_nan=True)
    assert (got["n_event"] < got["n"]).all()
    # without persistence: no skill columns
    solo = M.lead_scores(paired[paired["model"] != "persistence"], events, 2.5)
    assert list(solo.columns) == LEAD_COLS
    _assert_rows(solo, [{k: v for k, v in r.items() if not k.startswith("skill")}
                        for r in want if r["model"] != "persistence"])


def test_lead_scores_hand_made():
    # one model, one horizon, four hours; the event window holds hours 1 and 2
    v = [_t(i) for i in range(4)]
    paired = pd.DataFrame({"model": "m", "horizon_h": 2, "valid_at": v,
                           "level": [1.0, 3.0, 2.0, 5.0], "obs": [1.0, 2.0, 2.0, 2.0],
                           "q10": [0.0, 2.0, NAN, 3.0], "q90": [2.0, 2.5, NAN, 4.0]})
    events = pd.Series([0, 1, 1, 0], index=v)
    row = M.lead_scores(paired, events, 2.0).iloc[0]
    assert (row["n"], row["n_event"]) == (4, 2)
    assert row["rmse"] == pytest.approx(math.sqrt((1 + 0 + 9) / 4))
    assert row["rmse_event"] == pytest.approx(math.sqrt(0.5)) and row["mae_event"] == 0.5
    assert row["mae"] == 1.0
    assert math.isnan(row["nse_event"]) and math.isnan(row["kge_event"])   # obs constant there
    assert row["coverage"] == pytest.approx(2 / 3)         # q10 <= obs <= q90 on hours 0, 1
    assert row["coverage_high"] == 0.5                      # high water: hours 1 and 3 (obs = 2)
    # no high-water hour, no band at all
    assert math.isnan(M.lead_scores(paired, events, 9.0).iloc[0]["coverage_high"])
    noband = M.lead_scores(paired.assign(q10=NAN, q90=NAN), events, 2.0).iloc[0]
    assert math.isnan(noband["coverage"]) and math.isnan(noband["coverage_high"])
    # no hour in any event window
    quiet = M.lead_scores(paired, events * 0, 2.0).iloc[0]
    assert quiet["n_event"] == 0 and math.isnan(quiet["rmse_event"])


def _oracle_peaks(paired, level, events):
    out = []
    ids = sorted({int(v) for v in events if v > 0})
    keys = sorted({(r.model, r.horizon_h) for r in paired.itertuples()})
    for m, h in keys:
        for k in ids:
            win = [t for t, v in events.items() if v == k]
            obs = [(level[t], t) for t in win if not math.isnan(level[t])]
            op = max(x for x, _ in obs)
            op_at = next(t for x, t in obs if x == op)
            fc = [(r.level, r.valid_at) for r in paired.itertuples()
                  if r.model == m and r.horizon_h == h and r.valid_at in set(win)
                  and not math.isnan(r.level)]
            if not fc:
                continue
            fp = max(x for x, _ in fc)
            fp_at = next(t for x, t in fc if x == fp)
            out.append({"model": m, "horizon_h": h, "event": k, "fc_peak_m": fp,
                        "fc_peak_at": fp_at, "obs_peak_m": op, "obs_peak_at": op_at,
                        "peak_error_m": fp - op, "peak_error_pct": 100 * (fp - op) / op,
                        "timing_error_h": (fp_at - op_at).total_seconds() / 3600})
    return out


@pytest.mark.parametrize("seed", range(4))
def test_peak_errors_match_the_oracle(seed):
    rng = np.random.default_rng(200 + seed)
    n = 40
    level = pd.Series(rng.choice([1.0, 2.0, 3.0, 4.0, NAN], size=n),
                      index=[_t(i) for i in range(n)])
    events = M.event_windows(level, 3.0, pad_h=2, min_gap_h=3)
    paired = _frame(rng, models=("gru", "lgbm"), n_issue=n)
    got = M.peak_errors(paired, level, events)
    assert list(got.columns) == PEAK_COLS
    want = _oracle_peaks(paired, level, events)
    assert len(want) > 2
    _assert_rows(got, want)


def test_peak_errors_hand_made_and_empty():
    v = [_t(i) for i in range(6)]
    level = pd.Series([1.0, 3.0, 4.0, 3.5, 1.0, 1.0], index=v)
    events = pd.Series([0, 1, 1, 1, 1, 0], index=v)
    paired = pd.DataFrame({"model": "m", "horizon_h": 1, "valid_at": v,
                           "level": [9.0, 2.0, 3.0, 5.0, 5.0, NAN], "obs": 0.0})
    row = M.peak_errors(paired, level, events).iloc[0]
    assert (row["event"], row["fc_peak_m"], row["obs_peak_m"]) == (1, 5.0, 4.0)
    assert (row["fc_peak_at"], row["obs_peak_at"]) == (v[3], v[2])
    assert row["peak_error_m"] == 1.0 and row["peak_error_pct"] == 25.0
    assert row["timing_error_h"] == 1.0                  # positive = late
    early = M.peak_errors(paired.assign(level=[9.0, 6.0, 3.0, 5.0, 5.0, NAN]), level, events)
    assert early.iloc[0]["timing_error_h"] == -1.0 and early.iloc[0]["peak_error_m"] == 2.0
    # no event, or no forecast in any window: an empty frame with the same columns
    for ev, p in ((events * 0, paired), (events, paired.assign(level=NAN))):
        empty = M.peak_errors(p, level, ev)
        assert empty.empty and list(empty.columns) == PEAK_COLS


def _oracle_ct(paired, thr):
    out = []
    for m, h in sorted({(r.model, r.horizon_h) for r in paired.itertuples()}):
        g = [r for r in paired.itertuples() if r.model == m and r.horizon_h == h
             and not math.isnan(r.obs) and not math.isnan(r.level)]
        if not g:
            continue
        hi = sum(r.obs >= thr and r.level >= thr for r in g)
        mi = sum(r.obs >= thr and r.level < thr for r in g)
        fa = sum(r.obs < thr and r.level >= thr for r in g)
        out.append({"model": m, "horizon_h": h, "hits": hi, "misses": mi, "false_alarms": fa,
                    "pod": hi / (hi + mi) if hi + mi else NAN,
                    "far": fa / (hi + fa) if hi + fa else NAN,
                    "csi": hi / (hi + mi + fa) if hi + mi + fa else NAN, "threshold_m": thr})
    return out


@pytest.mark.parametrize("seed", range(4))
def test_contingency_matches_the_oracle(seed):
    paired = _frame(np.random.default_rng(300 + seed))
    for thr in (2.0, 2.5, 9.0):
        got = M.contingency(paired, thr)
        assert list(got.columns) == CT_COLS
        assert all(got[c].dtype == "int64" for c in ("hits", "misses", "false_alarms"))
        _assert_rows(got, _oracle_ct(paired, thr))


def test_contingency_edge_values_and_nan_rows():
    rows = [  # model, obs, forecast
        ("hit", 2.0, 2.0), ("hit", 1.0, 3.0), ("hit", 3.0, 1.0), ("hit", 1.0, 1.0),
        ("never_fc", 2.5, 1.0), ("never_fc", 1.0, 1.0),      # forecasts never reach it
        ("never_obs", 1.0, 2.0), ("never_obs", 1.5, 1.0),    # observations never reach it
        ("quiet", 1.0, 1.0),                                 # nothing reaches it
        # NaN rows: a false alarm and a miss if they were counted
        ("quiet", NAN, 5.0), ("quiet", 5.0, NAN), ("never_fc", NAN, 5.0), ("hit", 5.0, NAN),
        ("nan_only", NAN, 5.0),
    ]
    paired = pd.DataFrame(rows, columns=["model", "obs", "level"]).assign(horizon_h=1)
    ct = M.contingency(paired, 2.0).set_index("model")
    assert list(ct.index) == ["hit", "never_fc", "never_obs", "quiet"]
    assert list(ct.loc["hit", ["hits", "misses", "false_alarms"]]) == [1, 1, 1]
    assert list(ct.loc["hit", ["pod", "far", "csi"]]) == pytest.approx([0.5, 0.5, 1 / 3])
    assert list(ct.loc["never_fc", ["hits", "misses", "false_alarms"]]) == [0, 1, 0]
    assert ct.loc["never_fc", "pod"] == 0.0 and ct.loc["never_fc", "csi"] == 0.0
    assert math.isnan(ct.loc["never_fc", "far"])
    assert list(ct.loc["never_obs", ["hits", "misses", "false_alarms"]]) == [0, 0, 1]
    assert math.isnan(ct.loc["never_obs", "pod"]) and ct.loc["never_obs", "far"] == 1.0
    assert ct.loc["never_obs", "csi"] == 0.0
    assert list(ct.loc["quiet", ["hits", "misses", "false_alarms"]]) == [0, 0, 0]
    assert ct.loc[["quiet"], ["pod", "far", "csi"]].isna().all().all()
    assert (ct["threshold_m"] == 2.0).all()


def _oracle_fwl(paired, level, thr, max_lead):
    vals, times = list(level), list(level.index)
    crossings = [times[i] for i in range(1, len(vals)) if vals[i] >= thr and vals[i - 1] < thr]
    out = []
    for m in sorted(set(paired["model"])):
        issues = {r.issued_at for r in paired.itertuples() if r.model == m and r.level >= thr}
        for tc in crossings:
            cand = [T for T in issues if tc - pd.Timedelta(hours=max_lead) <= T < tc]
            lead = (tc - min(cand)).total_seconds() / 3600 if cand else 0.0
            out.append({"model": m, "crossing_at": tc, "threshold_m": thr,
                        "warning_lead_h": lead})
    return out


@pytest.mark.parametrize("seed", range(4))
def test_first_warning_lead_matches_the_oracle(seed):
    rng = np.random.default_rng(400 + seed)
    n = 60
    level = pd.Series(rng.choice([1.0, 2.0, 3.0, NAN], size=n, p=[.4, .2, .3, .1]),
                      index=[_t(i) for i in range(n)])
    paired = _frame(rng, n_issue=n)
    for thr, lead in ((2.0, 6), (3.0, 3), (3.0, 12)):
        got = M.first_warning_lead(paired, level, thr, max_lead_h=lead)
        assert list(got.columns) == FWL_COLS and got["warning_lead_h"].dtype == "float64"
        want = _oracle_fwl(paired, level, thr, lead)
        assert len(want) > 3
        _assert_rows(got, want)
    assert M.first_warning_lead(paired, level, 2.0).equals(
        M.first_warning_lead(paired, level, 2.0, max_lead_h=6))


def test_first_warning_lead_boundaries():
    idx = [_t(i) for i in range(30)]
    # above from the first hour (no crossing there), down at 5, crossing at 10 and at 20
    lv = pd.Series([3.0] * 5 + [1.0] * 5 + [3.0] * 5 + [1.0, NAN, 1.0, 1.0, 1.0] + [2.0] * 10,
                   index=idx)

    def fc(model, issued, level=2.0):
        return {"model": model, "issued_at": idx[issued], "valid_at": idx[issued + 1],
                "horizon_h": 1, "level": level}
    paired = pd.DataFrame([
        fc("at_max", 4), fc("at_max", 14),          # exactly max lead (6 h) before each crossing
        fc("late", 10), fc("late", 20),             # issued at the crossing: too late
        fc("early", 3), fc("early", 13, 1.99),      # 7 h before; below the threshold
        fc("mixed", 8), fc("mixed", 9), fc("mixed", 16, NAN), fc("mixed", 17),
    ])
    got = M.first_warning_lead(paired, lv, 2.0, max_lead_h=6)
    assert list(got.columns) == FWL_COLS
    lead = {(r.model, r.crossing_at): r.warning_lead_h for r in got.itertuples()}
    assert set(got["crossing_at"]) == {idx[10], idx[20]}
    assert lead[("at_max", idx[10])] == 6.0 and lead[("at_max", idx[20])] == 6.0
    assert lead[("late", idx[10])] == 0.0 and lead[("late", idx[20])] == 0.0
    assert lead[("early", idx[10])] == 0.0 and lead[("early", idx[20])] == 0.0
    assert lead[("mixed", idx[10])] == 2.0 and lead[("mixed", idx[20])] == 3.0
    assert len(got) == 8 and (got["threshold_m"] == 2.0).all()
    # no crossing: an empty frame with the columns
    none = M.first_warning_lead(paired, lv, 9.0)
    assert none.empty and list(none.columns) == FWL_COLS


# survivors of the first mutation run (docs/mutation.md)

def test_scores_accept_lists_with_none_and_integer_arrays():
    assert M.rmse([1.0, None, 3.0], [2.0, 5.0, 3.0]) == pytest.approx(math.sqrt(0.5))
    assert M.mae([1.0, 2.0, 3.0], [2.0, None, 5.0]) == 1.5
    assert M.nse(np.array([1, 2, 3]), np.array([1, 2, 4])) == 0.5


def test_lead_scores_n_is_the_number_of_scored_pairs():
    # finite values whose difference overflows: still one scored pair, as rmse / mae see it
    v = [_t(0)]
    paired = pd.DataFrame({"model": "m", "horizon_h": 1, "valid_at": v, "level": [-1e308],
                           "obs": [1e308], "q10": NAN, "q90": NAN})
    with np.errstate(over="ignore"):
        row = M.lead_scores(paired, pd.Series([1], index=v), 2.0).iloc[0]
    assert (row["n"], row["n_event"]) == (1, 1) and row["mae"] == math.inf


def test_lead_scores_of_no_forecasts_has_the_columns():
    empty = pd.DataFrame({c: [] for c in ("model", "horizon_h", "valid_at", "level", "q10",
                                          "q90", "obs")})
    empty["valid_at"] = pd.DatetimeIndex([], tz="UTC")
    out = M.lead_scores(empty, pd.Series([0], index=[_t(0)]), 2.0)
    assert out.empty and list(out.columns) == LEAD_COLS


def test_integer_levels_and_dtypes():
    v = [_t(i) for i in range(4)]
    level = pd.Series([1, 3, 4, 1], index=v)                       # int64 levels
    out = M.attach_observed(pd.DataFrame({"valid_at": v}), level,
                            pd.Series([0, 1, 0, 0], index=v))
    assert out["obs"].dtype == "float64"
    assert all(_same(a, b) for a, b in zip(out["obs"], [1.0, NAN, 4.0, 1.0], strict=True))
    paired = pd.DataFrame({"model": "m", "horizon_h": 1, "valid_at": v,
                           "level": [1.0, 2.0, 5.0, 1.0]})
    pk = M.peak_errors(paired, level, pd.Series([0, 1, 1, 0], index=v))
    assert pk["event"].dtype == "int64" and pk["obs_peak_m"].dtype == "float64"
    assert pk["peak_error_pct"].iloc[0] == 25.0


def test_skill_is_on_the_pairs_both_models_scored():
    # persistence misses hour 2 (no level at its issue time) and lgbm hour 3: skill compares
    # them on hours 0 and 1 only, where lgbm's errors are 0.1 and persistence's 0.2
    v = [_t(i) for i in range(4)]
    obs = [1.0, 2.0, 3.0, 4.0]
    paired = pd.DataFrame({
        "model": ["lgbm"] * 4 + ["persistence"] * 4, "horizon_h": 1, "valid_at": v * 2,
        "level": [1.1, 2.1, 9.0, NAN, 1.2, 2.2, NAN, 4.0], "obs": obs * 2,
        "q10": NAN, "q90": NAN})
    sc = M.lead_scores(paired, pd.Series([1, 1, 1, 1], index=v), 2.0).set_index("model")
    assert sc.loc["lgbm", "skill"] == pytest.approx(0.5)
    assert sc.loc["lgbm", "skill_event"] == pytest.approx(0.5)
    assert sc.loc["persistence", "skill"] == 0.0
    # no common pair, or a perfect persistence: skill undefined
    only = paired.assign(level=[1.1, NAN, NAN, 4.1, NAN, 2.2, 3.0, NAN])
    assert list(M.lead_scores(only, pd.Series(1, index=v), 2.0)["skill"].fillna(-9)) == [-9, 0]
    perfect = paired.assign(level=[1.1, 2.1, 9.0, NAN, 1.0, 2.0, NAN, 4.0])
    sc = M.lead_scores(perfect, pd.Series(1, index=v), 2.0).set_index("model")
    assert math.isnan(sc.loc["lgbm", "skill"]) and math.isnan(sc.loc["persistence", "skill"])
