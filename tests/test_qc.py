"""Tests for forecast.qc: each rule at and just over its limit, irregular steps, the worst-flag
rule, gap filling, source flags, idempotence, a real flood, and an oracle comparison against a
naive per-reading loop (written independently below) on random faulty series."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.catalogue import QCLimits, load_catalogue
from forecast.errors import FrameError
from forecast.frames import LEVEL, RAIN, Flag
from forecast.frames import observations as frames_observations
from forecast.qc import QC_RULES, RainLimits, apply_qc, qc_levels, qc_rain, rules, series, usable
from forecast.qc.rules import EPS as EPS_QC

ROOT = Path(__file__).resolve().parent.parent
KOTO = ROOT / "tests/data/kotogawa/kotogawa_jiseiji_level_kotogawa_dam_2023-06_2023-07.csv"
T0 = pd.Timestamp("2023-07-01", tz="UTC")
LIM = QCLimits(hard_min_m=0.0, hard_max_m=10.0, soft_min_m=0.2, soft_max_m=8.0,
               max_rise_m_per_h=3.0, max_fall_m_per_h=2.0, spike_m=1.0, stuck_hours=12.0,
               max_fill_h=1.0, datum_jump_m=0.5)


def frame(values, minutes=None, *, station="S1", variable=LEVEL, flags=None, rules=None,
          step_min=10):
    """Observations frame; ``minutes`` after T0 (default: regular ``step_min`` steps)."""
    n = len(values)
    if minutes is None:
        minutes = np.arange(n) * step_min
    return pd.DataFrame({
        "station_id": station, "variable": variable,
        "time": T0 + pd.to_timedelta(np.asarray(minutes, dtype=float), unit="min"),
        "value": np.asarray(values, dtype=float),
        "flag": np.asarray(flags if flags is not None else [0] * n, dtype="int8"),
        "qc_rule": rules if rules is not None else [""] * n,
        "provisional": False,
    })


def verdict(out):
    return list(zip(out["flag"].astype(int), out["qc_rule"], strict=True))


def wiggle(n, seed=0, base=1.0, amp=0.05):
    """A level that varies gently (never stuck, never fast)."""
    rng = np.random.default_rng(seed)
    return base + amp * np.sin(np.arange(n) / 7.0) + rng.uniform(-0.004, 0.004, n)


# --- hard / soft limits ---------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (10.0, (Flag.DOUBTFUL, "soft_max")),      # at hard max: passes hard, over soft max 8
    (10.01, (Flag.UNRELIABLE, "hard_max")),
    (0.0, (Flag.DOUBTFUL, "soft_min")),       # at hard min: passes hard, under soft min 0.2
    (-0.01, (Flag.UNRELIABLE, "hard_min")),
    (8.0, (Flag.GOOD, "")),                   # exactly at soft max
    (8.01, (Flag.DOUBTFUL, "soft_max")),
    (0.2, (Flag.GOOD, "")),
    (0.19, (Flag.DOUBTFUL, "soft_min")),
])
def test_hard_and_soft_limits(value, expected):
    # a long constant run of the same value would be "stuck" only after 12 h: keep it short
    limits = LIM.model_copy(update={"spike_m": 100.0, "max_rise_m_per_h": 1e6,
                                    "max_fall_m_per_h": 1e6, "datum_jump_m": 100.0})
    out = qc_levels(frame([value] * 3), limits)
    assert verdict(out) == [(int(expected[0]), expected[1])] * 3


# --- spikes ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("excursion", "flagged"), [
    (1.0, False),    # exactly spike_m
    (1.01, True),    # just over
    (-1.0, False),
    (-1.01, True),   # a dropout (down then up) counts too
])
def test_spike_limit(excursion, flagged):
    limits = LIM.model_copy(update={"max_rise_m_per_h": 1e6, "max_fall_m_per_h": 1e6})
    v = [2.0, 2.0, 2.0 + excursion, 2.0, 2.0]
    out = qc_levels(frame(v), limits)
    assert bool(out["qc_rule"].iloc[2] == "spike") is flagged
    assert bool(out["flag"].iloc[2] == Flag.UNRELIABLE) is flagged
    assert set(out["qc_rule"].iloc[[0, 1, 3, 4]]) == {""}


def test_step_in_one_direction_is_not_a_spike():
    limits = LIM.model_copy(update={"max_rise_m_per_h": 1e6})
    out = qc_levels(frame([2.0, 2.0, 3.5, 5.0, 5.0]), limits)
    assert "spike" not in set(out["qc_rule"])


def test_spike_needs_close_neighbours():
    # same excursion, but the readings are 2 h apart: a poorly sampled peak, judged by rate only
    out = qc_levels(frame([2.0, 2.0, 7.0, 2.0, 2.0], [0, 120, 240, 360, 480]), LIM)
    assert "spike" not in set(out["qc_rule"])
    assert out["qc_rule"].iloc[2] == "" and out["qc_rule"].iloc[3] == "rate_of_fall"


def test_spike_does_not_condemn_its_neighbour_by_rate():
    out = qc_levels(frame([2.0, 2.0, 9.0, 2.0, 2.0]), LIM)
    assert verdict(out)[2] == (int(Flag.UNRELIABLE), "spike")
    assert [r for i, r in enumerate(out["qc_rule"]) if i != 2] == [""] * 4


# --- rate of rise / fall (actual time differences) ------------------------------------------

@pytest.mark.parametrize(("dv", "minutes", "rule"), [
    (0.5, 10, ""),              # 3.0 m/h exactly
    (0.51, 10, "rate_of_rise"),
    (1.0, 20, ""),              # irregular step: 1 m over 20 min is 3 m/h
    (1.01, 20, "rate_of_rise"),
    (1.0, 10, "rate_of_rise"),
    (-1.0, 30, ""),             # 2.0 m/h fall exactly
    (-1.01, 30, "rate_of_fall"),
    (-0.34, 10, "rate_of_fall"),
    (-6.0, 180, ""),            # long gap: 6 m over 3 h is 2 m/h
])
def test_rate_uses_actual_time_step(dv, minutes, rule):
    limits = LIM.model_copy(update={"spike_m": 100.0, "datum_jump_m": 100.0, "max_fill_h": 0.0})
    base = 6.5
    out = qc_levels(frame([base, base + dv, base + dv + 0.01], [0, minutes, minutes + 10]),
                    limits)
    assert out["qc_rule"].iloc[1] == rule
    assert out["flag"].iloc[1] == (Flag.DOUBTFUL if rule else Flag.GOOD)
    assert out["qc_rule"].iloc[0] == ""   # the later reading of the pair carries the flag


# --- stuck ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("run_h", "n_flagged"), [(12.0, 0), (12 + 1 / 6, 1), (14.0, 12)])
def test_stuck_after_period_and_causal(run_h, n_flagged):
    n_run = round(run_h * 6) + 1                       # readings spanning run_h hours
    v = np.r_[wiggle(20), np.full(n_run, 1.5), wiggle(20, seed=1)]
    out = qc_levels(frame(v), LIM)
    stuck = out["qc_rule"].eq("stuck").to_numpy()
    assert stuck.sum() == n_flagged
    # causal: only the tail of the run, never its first 12 h
    assert not stuck[20:20 + 73].any()
    assert (out.loc[stuck, "flag"] == Flag.DOUBTFUL).all()


# --- datum jump -----------------------------------------------------------------------------

def _flat_then_step(step_m, hold_h=8.0, seed=3):
    rng = np.random.default_rng(seed)
    n_before, n_after = 7 * 6, round(hold_h * 6)
    noise = rng.uniform(-0.01, 0.01, n_before + n_after)
    v = np.r_[np.full(n_before, 1.2), np.full(n_after, 1.2 + step_m)] + noise
    return v, n_before


@pytest.mark.parametrize(("step_m", "flagged"), [(0.45, False), (0.53, True), (-0.8, True)])
def test_datum_jump(step_m, flagged):
    v, i = _flat_then_step(step_m)
    out = qc_levels(frame(v), LIM)
    rules = out["qc_rule"].to_numpy()
    if flagged:
        # the step reading and the 6 h that confirmed it; nothing before, nothing after
        assert set(rules[i:i + 37]) == {"datum_jump"} and rules[i + 37:].tolist().count(
            "datum_jump") == 0
        assert "datum_jump" not in set(rules[:i])
    else:
        assert "datum_jump" not in set(rules)


def test_datum_jump_exactly_at_limit_not_flagged():
    v = np.r_[np.full(42, 1.25), np.full(48, 1.75)]
    v += np.tile([0.0, 0.01], 45)
    v[42] = v[41] + 0.5
    out = qc_levels(frame(v), LIM.model_copy(update={"stuck_hours": 100.0}))
    assert "datum_jump" not in set(out["qc_rule"])


def test_datum_jump_needs_persistence():
    # a step that lasts only 4 h, or whose 6 h are not yet observed, is not (yet) a datum jump
    v, _ = _flat_then_step(0.8, hold_h=4.0)
    v = np.r_[v, np.full(30, 1.2)]
    assert "datum_jump" not in set(qc_levels(frame(v), LIM)["qc_rule"])
    v, _ = _flat_then_step(0.8, hold_h=5.0)
    assert "datum_jump" not in set(qc_levels(frame(v), LIM)["qc_rule"])


def test_datum_jump_beats_rate_on_tie():
    v, i = _flat_then_step(0.9)             # 0.9 m in 10 min also trips rate_of_rise
    out = qc_levels(frame(v), LIM)
    assert verdict(out)[i] == (int(Flag.DOUBTFUL), "datum_jump")


# --- flood rise ------------------------------------------------------------------------------

def test_synthetic_flood_rise_not_flagged():
    # 1.2 m -> 6.5 m in 4 h (peak rise ~2 m/h), slower recession, plus gentle noise
    h = np.arange(0, 48, 1 / 6)
    rising = 1.2 + 5.3 * np.exp(-(((h - 10) / 2.5) ** 2))
    level = np.where(h < 10, rising, 1.2 + 5.3 * np.exp(-(h - 10) / 8))
    out = qc_levels(frame(np.round(level, 2)), LIM)
    assert set(out["qc_rule"]) == {""}


def test_real_flood_kotogawa_not_flagged():
    """持世寺 2023-07-01: 3.8 → 7.47 m in ~10 h, up to 0.27 m per 10 min; the 4 zero rows
    of 07-03 are logger dropouts (README) and must be the only unreliable readings."""
    cat = load_catalogue(ROOT / "config/reference_rivers.yaml")
    raw = pd.read_csv(KOTO, encoding="utf-8-sig")
    t = pd.to_datetime(raw["時刻"]).dt.tz_localize("Asia/Tokyo").dt.tz_convert("UTC")
    obs = pd.DataFrame({"station_id": "jiseiji", "variable": LEVEL, "time": t,
                        "value": raw["水位_水位"]})
    out = apply_qc(obs, cat)
    flood = out[(out["time"] >= "2023-06-30T06:00Z") & (out["time"] < "2023-07-02T12:00Z")]
    assert len(flood) > 300 and flood["value"].max() == pytest.approx(7.47)
    assert set(flood["qc_rule"]) == {""}
    bad = out[out["flag"] == Flag.UNRELIABLE]
    assert (bad["value"] == 0.0).all() and len(bad) == 4
    assert set(bad["qc_rule"]) == {"hard_min"}
    assert len(out) == len(obs)   # no holes in this file, so nothing is filled


# --- worst flag -----------------------------------------------------------------------------

def test_worst_flag_wins_and_first_rule_name_kept():
    # 9.5 m is over soft max (DOUBTFUL) and a spike (UNRELIABLE): spike wins
    out = qc_levels(frame([7.5, 7.5, 9.5, 7.5, 7.5]), LIM)
    assert verdict(out)[2] == (int(Flag.UNRELIABLE), "spike")
    # 8.6 is over soft max and rises 1.1 m in 10 min: both DOUBTFUL, soft_max named first
    out = qc_levels(frame([7.5, 7.5, 8.6, 8.6, 8.6]), LIM.model_copy(update={"spike_m": 5.0}))
    assert verdict(out)[2] == (int(Flag.DOUBTFUL), "soft_max")


# --- gap fill -------------------------------------------------------------------------------

@pytest.mark.parametrize(("missing", "filled"), [(1, True), (6, True), (7, False)])
def test_gap_fill_up_to_max_fill(missing, filled):
    minutes = np.r_[np.arange(5) * 10, (np.arange(5) + 5 + missing) * 10]
    v = np.r_[np.linspace(1.0, 1.04, 5), np.linspace(1.2, 1.24, 5)]
    out = qc_levels(frame(v, minutes), LIM)
    fills = out[out["flag"] == Flag.FILLED]
    assert len(fills) == (missing if filled else 0)
    assert set(fills["qc_rule"]) <= {"gap_fill"}
    if filled:
        t = (fills["time"] - T0).dt.total_seconds().to_numpy() / 60
        assert np.allclose(np.diff(t), 10.0) and t[0] == 50
        expect = 1.04 + (1.2 - 1.04) * (t - 40) / ((5 + missing) * 10 - 40)
        np.testing.assert_allclose(fills["value"], expect)
    assert out["time"].is_monotonic_increasing


def test_gap_fill_respects_existing_unusable_rows_and_rain_is_not_filled():
    v = [1.0, 1.01, np.nan, 1.02, 1.03]
    minutes = [0, 10, 20, 40, 50]          # 30 min absent; 20 min is a source MISSING row
    out = qc_levels(frame(v, minutes, flags=[0, 0, 4, 0, 0],
                          rules=["", "", "telemetry:missing", "", ""]), LIM)
    assert verdict(out)[2] == (int(Flag.MISSING), "telemetry:missing")
    fills = out[out["flag"] == Flag.FILLED]
    assert list((fills["time"] - T0).dt.total_seconds() / 60) == [30.0]
    rain = qc_rain(frame([0.5, 1.0, 1.5], [0, 10, 40], variable=RAIN))
    assert len(rain) == 3


def test_gap_fill_uses_inferred_step_for_hourly_series():
    out = qc_levels(frame([1.0, 1.1, 1.2, 1.4], [0, 60, 120, 240]), LIM, step=None)
    fills = out[out["flag"] == Flag.FILLED]
    assert list((fills["time"] - T0).dt.total_seconds() / 60) == [180.0]
    assert fills["value"].iloc[0] == pytest.approx(1.3)


# --- source flags ---------------------------------------------------------------------------

def test_source_flags_preserved():
    v = [1.0, 50.0, 1.0, 99.0, 1.0, 1.0, 20.0, 1.0]
    flags = [0, int(Flag.UNRELIABLE), 0, int(Flag.MISSING), 0, int(Flag.BELOW_START),
             int(Flag.DOUBTFUL), 0]
    rules = ["", "src:bad", "", "mlit:$", "", "crisis:below_start", "amedas:flag=5", ""]
    out = qc_levels(frame(v, flags=flags, rules=rules), LIM)
    got = verdict(out)
    assert got[1] == (int(Flag.UNRELIABLE), "src:bad")
    assert got[3] == (int(Flag.MISSING), "mlit:$")
    assert got[5] == (int(Flag.BELOW_START), "crisis:below_start")
    assert got[6] == (int(Flag.UNRELIABLE), "hard_max")   # a source DOUBTFUL is still examined
    # the untouched readings are not judged against the unusable ones (no rate/spike verdicts)
    assert [got[i] for i in (0, 2, 4)] == [(0, "")] * 3
    assert verdict(out)[7] == (0, "")


def test_nan_value_becomes_missing():
    out = qc_levels(frame([1.0, np.nan, 1.0]), LIM)
    assert verdict(out)[1] == (int(Flag.MISSING), "missing_value")


# --- rain -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("mm", "expected"), [
    (-0.5, (Flag.UNRELIABLE, "hard_min")), (0.0, (Flag.GOOD, "")),
    (50.0, (Flag.GOOD, "")), (50.5, (Flag.DOUBTFUL, "soft_max")),
    (150.0, (Flag.DOUBTFUL, "soft_max")), (150.5, (Flag.UNRELIABLE, "hard_max")),
])
def test_rain_limits_10min(mm, expected):
    out = qc_rain(frame([0.0, mm, 0.0], variable=RAIN))
    assert verdict(out)[1] == (int(expected[0]), expected[1])


def test_rain_hourly_limits_and_stuck():
    hourly = qc_rain(frame([0.0, 100.0, 130.0, 0.0], variable=RAIN, step_min=60), step=None)
    assert verdict(hourly)[1:3] == [(0, ""), (int(Flag.DOUBTFUL), "soft_max")]
    # non-zero value repeated > 6 h is stuck; zero for days is not
    v = np.r_[np.zeros(300), np.full(40, 0.5), np.zeros(5)]
    out = qc_rain(frame(v, variable=RAIN))
    stuck = np.flatnonzero(out["qc_rule"].eq("stuck"))
    assert list(stuck) == list(range(300 + 37, 340))
    assert RainLimits().for_step(3 * 3600 * 10**9) == (600.0, 360.0)


# --- many stations, catalogue, usable, errors -----------------------------------------------

def test_apply_qc_uses_catalogue_limits_per_gauge():
    cat = load_catalogue(ROOT / "config/reference_rivers.yaml")   # jiseiji: hard_max 12 m
    lv = wiggle(10, base=12.0)
    parts = [frame(lv, station="jiseiji"), frame(lv, station="elsewhere"),
             frame([0.0, -1.0, 3.0], station="kotogawa_dam_rain", variable=RAIN),
             frame([5.0, np.nan, 5.0], station="kotogawa_dam_release", variable="release_m3s")]
    obs = pd.concat(parts[::-1], ignore_index=True).sample(frac=1.0, random_state=1)
    out = apply_qc(obs, cat)
    by = {k: g for k, g in out.groupby("station_id")}
    assert (by["jiseiji"]["value"] > 12.0).sum() > 0
    assert set(by["jiseiji"].loc[by["jiseiji"]["value"] > 12.0, "qc_rule"]) == {"hard_max"}
    assert set(by["elsewhere"]["qc_rule"]) == {""}       # default limits: 30 m
    assert verdict(by["kotogawa_dam_rain"])[1] == (int(Flag.UNRELIABLE), "hard_min")
    assert verdict(by["kotogawa_dam_release"])[1] == (int(Flag.MISSING), "missing_value")
    assert list(out.columns) == ["station_id", "variable", "time", "value", "flag", "qc_rule",
                                 "provisional"]
    assert out.groupby(["station_id", "variable"])["time"].apply(
        lambda s: s.is_monotonic_increasing).all()


def test_usable():
    df = frame([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, np.nan], flags=[0, 1, 2, 3, 4, 5, 0])
    assert usable(df).tolist() == [True, True, True, False, False, False, False]


def test_errors_and_empty():
    with pytest.raises(FrameError, match="duplicate time"):
        qc_levels(frame([1.0, 1.1], [0, 0]), LIM)
    with pytest.raises(FrameError, match="one station"):
        qc_levels(pd.concat([frame([1.0]), frame([1.0], station="S2")]), LIM)
    with pytest.raises(FrameError, match="level_m"):
        qc_levels(frame([1.0], variable=RAIN), LIM)
    empty = qc_levels(frame([]), LIM)
    assert len(empty) == 0 and str(empty["time"].dtype) == "datetime64[ns, UTC]"


# --- oracle: a naive loop, written from the rule descriptions -------------------------------

def naive_levels(times_min, values, flags, rules, lim, step_min=10):
    """Per-reading loops: the rules exactly as documented, no vectorisation."""
    n = len(values)
    tol = 1e-9
    out = [(f, r) for f, r in zip(flags, rules, strict=True)]

    def hit(i, f, r):
        if f > out[i][0]:
            out[i] = (f, r)

    examinable = []
    for i in range(n):
        if flags[i] <= 2:
            if math.isnan(values[i]):
                hit(i, 4, "missing_value")
            else:
                examinable.append(i)
    kept = []
    for i in examinable:
        if values[i] < lim.hard_min_m - tol:
            hit(i, 3, "hard_min")
        elif values[i] > lim.hard_max_m + tol:
            hit(i, 3, "hard_max")
        else:
            kept.append(i)
    spikes = set()
    for j in range(1, len(kept) - 1):
        a, b, c = kept[j - 1], kept[j], kept[j + 1]
        if times_min[b] - times_min[a] > 30 or times_min[c] - times_min[b] > 30:
            continue
        up = values[b] - values[a] > lim.spike_m + tol and values[b] - values[c] > lim.spike_m + tol
        dn = values[a] - values[b] > lim.spike_m + tol and values[c] - values[b] > lim.spike_m + tol
        if up or dn:
            spikes.add(b)
    for i in kept:
        if i in spikes:
            hit(i, 3, "spike")
    for i in kept:
        if lim.soft_min_m is not None and values[i] < lim.soft_min_m - tol:
            hit(i, 2, "soft_min")
        if lim.soft_max_m is not None and values[i] > lim.soft_max_m + tol:
            hit(i, 2, "soft_max")
    s = [i for i in kept if i not in spikes]
    tt = [times_min[i] for i in s]
    vv = [values[i] for i in s]
    jumps = set()
    for j in range(1, len(s)):
        if abs(vv[j] - vv[j - 1]) <= lim.datum_jump_m + tol or tt[j] - tt[j - 1] > 24 * 60:
            continue
        if tt[-1] < tt[j] + 360:
            continue
        after = [k for k in range(len(s)) if tt[j] <= tt[k] <= tt[j] + 360]
        before = [k for k in range(len(s)) if tt[j - 1] - 360 <= tt[k] <= tt[j - 1]]
        if len(after) < 3 or len(before) < 3:
            continue
        wa, wb = [vv[k] for k in after], [vv[k] for k in before]
        flat = 0.2 * lim.datum_jump_m
        if statistics.pstdev(wa) > flat or statistics.pstdev(wb) > flat:
            continue
        direction = 1 if vv[j] > vv[j - 1] else -1
        if (statistics.fmean(wa) - statistics.fmean(wb)) * direction > lim.datum_jump_m / 2:
            jumps.update(after)
    for k in sorted(jumps):
        hit(s[k], 2, "datum_jump")
    for j in range(1, len(s)):
        dt_h = (tt[j] - tt[j - 1]) / 60
        if vv[j] - vv[j - 1] > lim.max_rise_m_per_h * dt_h + tol:
            hit(s[j], 2, "rate_of_rise")
        if vv[j - 1] - vv[j] > lim.max_fall_m_per_h * dt_h + tol:
            hit(s[j], 2, "rate_of_fall")
    for j in range(len(s)):
        start = j
        while start > 0 and abs(vv[start - 1] - vv[start]) <= tol:
            start -= 1
        if (tt[j] - tt[start]) / 60 > lim.stuck_hours:
            hit(s[j], 2, "stuck")
    # gap fill between consecutive usable readings after QC
    fills = []
    anchors = [i for i in range(n) if out[i][0] <= 2 and not math.isnan(values[i])]
    for a, b in itertools.pairwise(anchors):
        ta, tb = times_min[a], times_min[b]
        if tb - ta - step_min > lim.max_fill_h * 60:
            continue
        k = 1
        while ta + k * step_min <= tb - step_min / 2:
            tf = ta + k * step_min
            if all(abs(tf - x) >= step_min / 2 for x in times_min):
                fills.append((tf, values[a] + (values[b] - values[a]) * (tf - ta) / (tb - ta)))
            k += 1
    return out, fills


def random_series(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(150, 400))
    # mostly 10-min steps, some irregular (crisis-gauge-like) steps and gaps
    steps = rng.choice([10, 10, 10, 10, 10, 10, 20, 5, 30, 40, 60, 70, 130, 400], size=n)
    minutes = np.cumsum(steps).astype(float)
    v = 1.5 + np.cumsum(rng.normal(0, 0.08, n))
    v = np.round(v, 2)
    # faults: spikes, dropouts, stuck runs, a datum jump, out-of-range, NaN
    for i in rng.integers(1, n - 1, 6):
        v[i] += rng.choice([-1, 1]) * rng.uniform(0.8, 3.0)
    a = int(rng.integers(0, n - 90))
    v[a:a + 85] = v[a]
    b = int(rng.integers(0, n - 100))
    v[b:b + 90] = np.round(v[b] + rng.normal(0, 0.01, 90), 2)
    v[b + 45:b + 90] += rng.choice([-0.8, 0.8])
    v[rng.integers(0, n, 3)] = rng.choice([-6.0, 40.0])
    v[rng.integers(0, n, 3)] = np.nan
    flags = np.zeros(n, dtype=int)
    rules = np.array([""] * n, dtype=object)
    src = rng.integers(0, n, 8)
    flags[src] = rng.choice([2, 3, 4, 5], size=8)
    rules[src] = "src:x"
    return minutes, v, flags, rules


@pytest.mark.parametrize("seed", range(25))
def test_oracle_against_naive_loop(seed):
    minutes, v, flags, rules = random_series(seed)
    lim = QCLimits(hard_min_m=-5.0, hard_max_m=30.0, soft_min_m=0.3, soft_max_m=2.5, spike_m=0.7,
                   max_rise_m_per_h=1.5, max_fall_m_per_h=1.0, stuck_hours=12.0,
                   max_fill_h=1.0, datum_jump_m=0.5)
    out = qc_levels(frame(v, minutes, flags=flags, rules=list(rules)), lim)
    expect, fills = naive_levels(list(minutes), list(v), list(flags), list(rules), lim)
    orig = out[out["qc_rule"] != "gap_fill"]
    assert verdict(orig) == [(int(f), r) for f, r in expect]
    got_fills = out[out["qc_rule"] == "gap_fill"]
    got_t = ((got_fills["time"] - T0).dt.total_seconds() / 60).tolist()
    assert got_t == pytest.approx([f[0] for f in fills])
    np.testing.assert_allclose(got_fills["value"], [f[1] for f in fills], atol=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_idempotent(seed):
    minutes, v, flags, rules = random_series(100 + seed)
    cat = load_catalogue(ROOT / "config/reference_rivers.yaml")
    rain = frame(np.where(np.arange(200) % 50 < 40, 0.5, 0.0), station="r", variable=RAIN)
    obs = pd.concat([frame(v, minutes, flags=flags, rules=list(rules), station="jiseiji"),
                     frame(v, minutes, station="other"), rain], ignore_index=True)
    once = apply_qc(obs, cat)
    twice = apply_qc(once, cat)
    pd.testing.assert_frame_equal(once, twice)
    assert set(once["qc_rule"]) - {""} - {"src:x"} <= QC_RULES


def test_order_independent_and_input_untouched():
    cat = load_catalogue(ROOT / "config/reference_rivers.yaml")
    parts = []
    for k, station in enumerate(["zz", "jiseiji", "aa"]):
        minutes, v, flags, rules = random_series(200 + k)
        parts.append(frame(v, minutes, flags=flags, rules=list(rules), station=station))
    grouped = pd.concat(parts, ignore_index=True)          # grouped, not alphabetical
    shuffled = grouped.sample(frac=1.0, random_state=7)
    before = shuffled.copy()
    a = apply_qc(grouped, cat)
    b = apply_qc(shuffled, cat)
    pd.testing.assert_frame_equal(shuffled, before)        # the caller's frame is not modified
    key = ["station_id", "variable", "time"]
    pd.testing.assert_frame_equal(a.sort_values(key, ignore_index=True),
                                  b.sort_values(key, ignore_index=True))
    assert list(dict.fromkeys(a["station_id"])) == ["zz", "jiseiji", "aa"]
    a.loc[:, "value"] = -1.0
    assert (grouped["value"] != -1.0).any()                # no shared memory


def test_minimal_frame_is_normalised():
    # only the four required columns, int64 flags absent, a None rule: frames.observations path
    obs = pd.DataFrame({"station_id": ["S1"] * 4, "variable": LEVEL,
                        "time": T0 + pd.to_timedelta([0, 10, 20, 30], unit="min"),
                        "value": [1.0, 1.0, 40.0, 1.0]})
    out = qc_levels(obs, LIM)
    assert verdict(out)[2] == (int(Flag.UNRELIABLE), "hard_max")
    assert out["flag"].dtype == np.int8
    obs2 = frame([1.0, 1.0, 1.0], rules=[None, "", None])
    assert set(qc_levels(obs2, LIM)["qc_rule"]) == {""}


# --- rule primitives on short series and exact tolerance boundaries -------------------------
# (added after mutation testing, docs/mutation.md: 3-reading spikes, 2-reading rates, datum-jump
# windows at the series start, values exactly EPS beyond a limit, output dtypes and copies)

NS_MIN = 60_000_000_000


def ns(minutes):
    return (np.asarray(minutes, dtype=np.int64) * NS_MIN).astype(np.int64)


@pytest.mark.parametrize(("v", "expected"), [
    ([2.0, 5.0, 2.0], [False, True, False]),          # three readings: the middle one can spike
    ([2.0, -1.0, 2.0], [False, True, False]),
    ([2.0, 5.0], [False, False]),                     # two readings: never
    ([2.0, 2.0, 2.0, 5.0], [False, False, False, False]),
    ([0.0, 1.0 + EPS_QC, 0.0], [False, False, False]),  # exactly spike + EPS on both sides
    ([0.0, 1.0 + EPS_QC, -1.0], [False, False, False]),  # left at the limit, right over
    ([-1.0, 1.0 + EPS_QC, 0.0], [False, False, False]),  # right at the limit, left over
    ([0.0, -(1.0 + EPS_QC), 1.0], [False, False, False]),
    ([1.0, -(1.0 + EPS_QC), 0.0], [False, False, False]),
    ([0.0, 1.0 + 1e-6, 0.0], [False, True, False]),
    ([0.0, -(1.0 + 1e-6), 0.0], [False, True, False]),
])
def test_spikes_short_series_and_exact_limit(v, expected):
    v = np.asarray(v, dtype=float)
    assert rules.spikes(ns(np.arange(len(v)) * 10), v, 1.0, 0.5).tolist() == expected


@pytest.mark.parametrize(("v", "minutes", "rise", "fall"), [
    ([1.0, 5.0], [0, 10], [False, True], [False, False]),    # two readings are enough
    ([5.0, 1.0], [0, 10], [False, False], [False, True]),
    ([1.0], [0], [False], [False]),
    ([0.0, 3.0 + EPS_QC], [0, 60], [False, False], [False, False]),   # exactly rate + EPS
    ([0.0, -(2.0 + EPS_QC)], [0, 60], [False, False], [False, False]),
    ([0.0, 3.0 + 1e-6], [0, 60], [False, True], [False, False]),
    ([0.0, -(2.0 + 1e-6)], [0, 60], [False, False], [False, True]),
])
def test_rates_short_series_and_exact_limit(v, minutes, rise, fall):
    r, f = rules.rates(ns(minutes), np.asarray(v, dtype=float), 3.0, 2.0)
    assert (r.tolist(), f.tolist()) == (rise, fall)


@pytest.mark.parametrize(("v", "expected"), [
    ([5.0, 5.0, 5.0], [0, 0, 0]),                     # a run from the very first reading
    ([5.0, 5.0, 6.0, 6.0], [0, 0, 2, 2]),
    ([0.0, EPS_QC, 2 * EPS_QC + 1e-12], [0, 0, 2]),   # a difference of exactly EPS is "equal"
    ([7.0], [0]),
    ([], []),
])
def test_run_starts(v, expected):
    assert rules.run_starts(np.asarray(v, dtype=float)).tolist() == expected


def test_stuck_single_reading_and_run_from_the_start():
    assert rules.stuck(ns([0]), np.array([1.0]), 1.0).tolist() == [False]
    assert rules.stuck(ns([]), np.zeros(0), 1.0).tolist() == []
    got = rules.stuck(ns([0, 30, 60, 70, 80]), np.full(5, 2.0), 1.0)
    assert got.tolist() == [False, False, False, True, True]   # from the first reading on
    out = qc_levels(frame([1.5]), LIM)
    assert verdict(out) == [(0, "")]


def naive_datum_jumps(minutes, v, jump, persist_min, max_gap_min, flat_std, min_count):
    """rules.datum_jumps as documented, one candidate at a time (times in minutes)."""
    n = len(v)
    flagged = [False] * n
    for j in range(1, n):
        if abs(v[j] - v[j - 1]) <= jump + 1e-9 or minutes[j] - minutes[j - 1] > max_gap_min:
            continue
        if minutes[-1] < minutes[j] + persist_min:
            continue
        after = [k for k in range(n) if minutes[j] <= minutes[k] <= minutes[j] + persist_min]
        before = [k for k in range(n)
                  if minutes[j - 1] - persist_min <= minutes[k] <= minutes[j - 1]]
        if len(after) < min_count or len(before) < min_count:
            continue
        wa, wb = [v[k] for k in after], [v[k] for k in before]
        if statistics.pstdev(wa) > flat_std or statistics.pstdev(wb) > flat_std:
            continue
        sign = 1 if v[j] > v[j - 1] else -1
        if (statistics.fmean(wa) - statistics.fmean(wb)) * sign > jump / 2:
            for k in after:
                flagged[k] = True
    return flagged


@pytest.mark.parametrize("seed", range(40))
def test_datum_jumps_against_naive_loop(seed):
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(2, 40))
    minutes = np.cumsum(rng.choice([10, 10, 10, 20, 60, 200, 400], size=n)) - 10
    # flat stretches with steps (some at the very start or end), small noise
    level = np.repeat(rng.choice([1.0, 1.6, 2.4, 0.9], size=n // 4 + 1), 4)[:n]
    v = np.round(level + rng.normal(0, 0.02, n), 3)
    min_count = int(rng.integers(1, 4))
    persist = int(rng.choice([30, 60, 120, 360]))
    max_gap = int(rng.choice([30, 200, 1440]))
    flat = float(rng.choice([0.02, 0.05, 0.1]))
    got = rules.datum_jumps(ns(minutes), v, 0.5, persist_h=persist / 60, max_gap_h=max_gap / 60,
                            flat_std=flat, min_count=min_count)
    assert got.dtype == np.bool_
    assert got.tolist() == naive_datum_jumps(minutes.tolist(), v.tolist(), 0.5, persist,
                                             max_gap, flat, min_count)


def _jump(v, minutes, **kw):
    args = {"jump": 1.0, "persist_h": 0.5, "max_gap_h": 1.0, "flat_std": 10.0, "min_count": 1}
    args.update(kw)
    return rules.datum_jumps(ns(minutes), np.asarray(v, dtype=float), **args).tolist()


def test_datum_jumps_exact_edges():
    m8 = np.arange(8) * 10
    # shift exactly jump / 2 (all sums exact in binary): not a jump; just over: a jump
    assert _jump([0, 0, 0, 0, 2, 0, 0, 0], m8) == [False] * 8
    assert _jump([0, 0, 0, 0, 2, 0, 0, 0.25], m8) == [False] * 4 + [True] * 4
    # perfectly flat windows (sd exactly 0) pass a flat_std of 0
    assert _jump([0, 0, 0, 0, 1.5, 1.5, 1.5, 1.5], m8, flat_std=0.0) == [False] * 4 + [True] * 4
    # a step of exactly jump + EPS is not a candidate
    at = 1.0 + EPS_QC
    assert _jump([0, 0, 0, at, at, at, at], m8[:7]) == [False] * 7
    assert _jump([0, 0, 0, at + 1e-6, at, at, at], m8[:7]) == [False] * 3 + [True] * 4
    # a before-window that starts at the first reading and is not flat (sd 0.15 > 0.1)
    assert _jump([0, 0.3, 0, 0.3, 2, 2, 2, 2], m8, flat_std=0.1) == [False] * 8
    assert _jump([0, 0.1, 0, 0.1, 2, 2, 2, 2], m8, flat_std=0.1) == [False] * 4 + [True] * 4
    # the step may span exactly max_gap_h; the after-window ends exactly at the last reading
    assert _jump([0, 0, 0, 3, 3, 3, 3], [0, 10, 20, 80, 90, 100, 110], max_gap_h=1.0) == [
        False] * 3 + [True] * 4
    assert _jump([0, 0, 0, 3, 3, 3], [0, 10, 20, 30, 40, 50]) == [False] * 6   # 10 min short
    assert _jump([0, 0, 0, 3, 3, 3, 3], [0, 10, 20, 81, 91, 101, 111]) == [False] * 7  # gap
    # two readings, the before-window starting at the first reading, windows of one reading
    assert _jump([0, 3], [0, 30], persist_h=0.0) == [False, True]
    assert _jump([0, 3], [0, 30], persist_h=0.0, min_count=2) == [False, False]
    assert _jump([5.0], [0]) == [False]


def test_datum_jump_window_at_series_start():
    # the step comes exactly 6 h after the first reading: the before-window starts at index 0
    rng = np.random.default_rng(5)
    v = np.r_[np.full(37, 1.2), np.full(40, 1.73)] + rng.uniform(-0.005, 0.005, 77)
    out = qc_levels(frame(v), LIM)
    rules_ = out["qc_rule"].to_numpy()
    assert set(rules_[37:74]) == {"datum_jump"} and "datum_jump" not in set(rules_[:37])
    assert "datum_jump" not in set(rules_[74:])


def test_datum_jump_confirmed_exactly_six_hours_after():
    v, i = _flat_then_step(0.8, hold_h=6.0)       # 36 readings after the step: 6 h - 10 min
    assert "datum_jump" not in set(qc_levels(frame(v), LIM)["qc_rule"])
    v = np.r_[v, v[-1]]                            # one more: the 6 h are observed exactly
    rules_ = qc_levels(frame(v), LIM)["qc_rule"].to_numpy()
    assert set(rules_[i:]) == {"datum_jump"} and len(rules_) - i == 37


# --- level and rain limits exactly EPS beyond the limit -------------------------------------

@pytest.mark.parametrize(("value", "rule"), [
    (0.0 - EPS_QC, "soft_min"),            # hard min - EPS still passes the hard limit
    (10.0 + EPS_QC, "soft_max"),
    (0.2 - EPS_QC, ""),                    # soft min - EPS still passes the soft limit
    (8.0 + EPS_QC, ""),
])
def test_level_limits_exactly_eps_beyond(value, rule):
    limits = LIM.model_copy(update={"spike_m": 100.0, "max_rise_m_per_h": 1e6,
                                    "max_fall_m_per_h": 1e6, "datum_jump_m": 100.0})
    out = qc_levels(frame([value] * 3), limits)
    assert out["qc_rule"].tolist() == [rule] * 3


@pytest.mark.parametrize(("mm", "expected"), [
    (-EPS_QC, (Flag.GOOD, "")), (150.0 + EPS_QC, (Flag.DOUBTFUL, "soft_max")),
    (50.0 + EPS_QC, (Flag.GOOD, "")),
])
def test_rain_limits_exactly_eps_beyond(mm, expected):
    out = qc_rain(frame([0.0, mm, 0.0], variable=RAIN))
    assert verdict(out)[1] == (int(expected[0]), expected[1])


def test_rain_stuck_needs_more_than_eps_and_skips_unusable_readings():
    tiny = qc_rain(frame(np.full(50, EPS_QC), variable=RAIN))
    assert "stuck" not in set(tiny["qc_rule"])
    # a source-unreliable reading with another value does not break the run of 0.5 mm
    v = np.full(50, 0.5)
    v[20] = 99.0
    flags = [0] * 50
    flags[20] = int(Flag.UNRELIABLE)
    rules_ = ["src:bad" if f else "" for f in flags]
    out = qc_rain(frame(v, variable=RAIN, flags=flags, rules=rules_))
    assert np.flatnonzero(out["qc_rule"].eq("stuck")).tolist() == list(range(37, 50))
    assert verdict(out)[20] == (int(Flag.UNRELIABLE), "src:bad")


def test_rain_step_limits_and_inference():
    assert RainLimits().for_step(600_000_000_000) == (150.0, 50.0)
    assert RainLimits().for_step(600_000_000_001) == (200.0, 120.0)
    # hourly rain with the default 10-min step uses the 10-min limits, with step=None hourly
    hourly = frame([0.0, 100.0, 0.0], variable=RAIN, step_min=60)
    assert verdict(qc_rain(hourly))[1] == (int(Flag.DOUBTFUL), "soft_max")
    assert verdict(qc_rain(hourly, step=None))[1] == (0, "")
    # a single reading has no interval: step=None falls back to 10 minutes
    assert verdict(qc_rain(frame([100.0], variable=RAIN), step=None)) == [
        (int(Flag.DOUBTFUL), "soft_max")]


# --- series layer: dtypes, no aliasing, gap-fill edges --------------------------------------

def test_series_outputs_are_int8_and_do_not_alias_the_input():
    flag = np.zeros(4, dtype=np.int8)
    t, v = ns([0, 10, 20, 30]), np.array([1.0, 50.0, 1.0, 1.0])
    for out in (series.level_flags(t, v, flag, LIM),
                series.rain_flags(t, v, flag, RainLimits(), 600_000_000_000),
                series.other_flags(v, flag)):
        assert out[0].dtype == np.int8 and out[1].dtype == np.int8
        assert not np.shares_memory(out[0], flag)
    assert series.level_flags(t, v, flag, LIM)[0].tolist() == [0, 3, 0, 0]
    assert flag.tolist() == [0, 0, 0, 0]


def _fill(minutes, v, *, step=10, max_fill_h=1.0, flags=None, prov=None):
    n = len(v)
    out = series.gap_fill(ns(minutes), np.asarray(v, dtype=float),
                          np.asarray(flags if flags is not None else [0] * n, dtype=np.int8),
                          np.asarray(prov if prov is not None else [False] * n, dtype=bool),
                          step * NS_MIN, max_fill_h)
    assert [a.dtype for a in out] == [np.dtype(np.int64), np.dtype(np.float64), np.dtype(bool)]
    assert len({len(a) for a in out}) == 1
    return (out[0] // NS_MIN).tolist(), out[1].tolist(), out[2].tolist()


def test_gap_fill_edges():
    assert _fill([0, 30], [1.0, 1.3]) == ([10, 20], pytest.approx([1.1, 1.2]), [False, False])
    assert _fill([0, 14], [1.0, 1.0]) == ([], [], [])         # 1.4 steps: no room for a fill
    assert _fill([0, 16], [1.0, 1.6]) == ([10], pytest.approx([1.375]), [False])
    assert _fill([0, 30], [1.0, 1.3], max_fill_h=0.0) == ([], [], [])
    assert _fill([0], [1.0]) == ([], [], [])
    assert _fill([0, 10, 20], [1.0, 1.0, 1.0]) == ([], [], [])
    with np.errstate(all="raise"):
        assert _fill([0, 30], [1.0, 1.3], step=0) == ([], [], [])
    # odd steps (in ns): candidates up to t1 - step/2 exactly, never on or next to t1
    for t1, step, expected in [(3, 1, [1, 2]), (4, 3, []), (5, 3, [3]), (6, 3, [3])]:
        got = series.gap_fill(np.array([0, t1], dtype=np.int64), np.array([1.0, 2.0]),
                              np.zeros(2, np.int8), np.zeros(2, bool), step, 1.0)
        assert got[0].tolist() == expected, (t1, step)
    # provisional when either anchor is; only the anchors of that hole count
    assert _fill([0, 30, 60], [1.0, 1.3, 1.6], prov=[True, False, False])[2] == [True, True,
                                                                                 False, False]
    assert _fill([0, 30, 60], [1.0, 1.3, 1.6], prov=[False, False, True])[2] == [False, False,
                                                                                 True, True]
    # an unusable row off the grid blocks the candidates within half a step on either side
    # (20 is 4 min after the row at 16, then 4 min before the row at 24)
    assert _fill([0, 16, 40], [1.0, 9.0, 1.4], flags=[0, int(Flag.UNRELIABLE), 0])[0] == [10, 30]
    assert _fill([0, 24, 40], [1.0, 9.0, 1.4], flags=[0, int(Flag.MISSING), 0])[0] == [10, 30]


# --- frame layer ----------------------------------------------------------------------------

def test_default_step_is_ten_minutes_and_step_none_infers():
    hourly = frame([1.0, 1.1], [0, 60])
    fills = qc_levels(hourly, LIM)
    assert ((fills["time"] - T0).dt.total_seconds() / 60).tolist() == [0, 10, 20, 30, 40, 50, 60]
    assert len(qc_levels(hourly, LIM, step=None)) == 2       # one interval: hourly, no hole
    # the most common interval, not the smallest, is the inferred step
    out = qc_levels(frame([1.0, 1.0, 1.1, 1.2, 1.4], [0, 5, 65, 125, 245]), LIM, step=None)
    assert ((out.loc[out["qc_rule"] == "gap_fill", "time"] - T0).dt.total_seconds() / 60
            ).tolist() == [185.0]
    assert qc_levels(frame([1.0]), LIM, step=None)["qc_rule"].tolist() == [""]
    # apply_qc passes its step on
    cat = load_catalogue(ROOT / "config/reference_rivers.yaml")
    assert len(apply_qc(hourly, cat)) == 2 and len(apply_qc(hourly, cat, step="10min")) == 7


def test_infer_step_one_nanosecond():
    from forecast.qc.frame import _infer_step
    assert _infer_step(np.array([0, 1, 2, 3, 5], dtype=np.int64)) == 1
    assert _infer_step(np.array([7], dtype=np.int64)) == 600_000_000_000


def test_apply_qc_default_level_limits_and_other_variables_unchecked():
    cat = load_catalogue(ROOT / "config/reference_rivers.yaml")
    obs = pd.concat([frame([1.0, 40.0, 1.0], station="unknown_gauge"),
                     frame([5.0, -1.0, 500.0], station="dam", variable="release_m3s")],
                    ignore_index=True)
    out = apply_qc(obs, cat)
    assert verdict(out[out["station_id"] == "unknown_gauge"])[1] == (int(Flag.UNRELIABLE),
                                                                      "hard_max")
    assert set(out.loc[out["station_id"] == "dam", "qc_rule"]) == {""}


def test_rechecked_after_limits_change():
    # a stored frame re-checked with other limits equals a check of the raw readings
    v = [1.0, 1.0, 9.0, 1.0, 1.0, 1.0, 11.0, 1.0]
    raw = frame(v, flags=[0, 0, 0, 0, 0, int(Flag.FILLED), 0, 0],
                rules=["", "", "", "", "", "src:interp", "", ""])
    strict = qc_levels(raw, LIM)
    assert verdict(strict)[2] == (int(Flag.UNRELIABLE), "spike")
    lax = LIM.model_copy(update={"spike_m": 20.0, "hard_max_m": 50.0, "soft_max_m": 20.0,
                                 "max_rise_m_per_h": 1e3, "max_fall_m_per_h": 1e3})
    pd.testing.assert_frame_equal(qc_levels(strict, lax), qc_levels(raw, lax))
    assert set(qc_levels(strict, lax)["qc_rule"]) == {"", "src:interp"}
    # a source FILLED row is the source's, not one of our fills: it stays
    assert verdict(qc_levels(strict, lax))[5] == (int(Flag.FILLED), "src:interp")


def test_output_dtypes_and_no_shared_memory_without_fills():
    obs = frames_observations(frame([1.0, 1.0, 40.0, 1.0], [0, 10, 20, 30]))
    out = qc_levels(obs, LIM)
    assert out.dtypes.astype(str).to_dict() == {
        "station_id": "object", "variable": "object", "time": "datetime64[ns, UTC]",
        "value": "float64", "flag": "int8", "qc_rule": "object", "provisional": "bool"}
    for col in obs.columns:
        assert not np.shares_memory(out[col].to_numpy(), obs[col].to_numpy()), col


def test_fast_path_validation():
    good = frames_observations(frame([1.0, 1.0]))
    bad_var = good.assign(variable="bogus")
    with pytest.raises(FrameError, match=r"unknown variables \['bogus'\]"):
        qc_levels(bad_var, LIM)
    for flag in (9, -1):
        with pytest.raises(FrameError, match=r"flags outside forecast\.frames\.Flag$"):
            qc_levels(good.assign(flag=np.int8(flag)), LIM)
    naive = good.assign(time=good["time"].dt.tz_localize(None))
    with pytest.raises(FrameError):
        qc_levels(naive, LIM)


def test_error_messages():
    many = pd.concat([frame([1.0], station=f"S{i}") for i in range(5)])
    with pytest.raises(FrameError, match=(r"expected one station, got 5 \(\['S0', 'S1', 'S2'\]"
                                          r"\.\.\.\); use forecast\.qc\.apply_qc for many "
                                          r"stations$")):
        qc_levels(many, LIM)
    with pytest.raises(FrameError, match=r"station S1 level_m: duplicate time "
                                         r"2023-07-01T00:10:00\+00:00$"):
        qc_levels(frame([1.0, 1.1, 1.2], [0, 10, 10]), LIM)


def test_unsorted_input_and_variable_order_per_station():
    # times going back within one block are sorted
    fwd = frame(wiggle(12))
    pd.testing.assert_frame_equal(qc_levels(fwd.iloc[::-1], LIM), qc_levels(fwd, LIM))
    # blocks already grouped keep their order, even when variables come in another order
    cat = load_catalogue(ROOT / "config/reference_rivers.yaml")
    obs = pd.concat([frame([0.5] * 3, station="a", variable=RAIN),
                     frame(wiggle(3), station="a"),
                     frame(wiggle(3), station="b"),
                     frame([0.5] * 3, station="b", variable=RAIN)], ignore_index=True)
    out = apply_qc(obs, cat)
    assert list(zip(out["station_id"], out["variable"], strict=True)) == list(
        zip(obs["station_id"], obs["variable"], strict=True))


def test_fills_take_their_own_station_and_provisional():
    cat = load_catalogue(ROOT / "config/reference_rivers.yaml")
    a = frame(wiggle(4), station="a")
    b = frame([1.0, 1.3], [0, 30], station="b").assign(provisional=True)
    out = apply_qc(pd.concat([a, b], ignore_index=True), cat, step="10min")
    fills = out[out["qc_rule"] == "gap_fill"]
    assert fills["station_id"].tolist() == ["b", "b"]
    assert fills["variable"].tolist() == [LEVEL, LEVEL]
    assert fills["provisional"].tolist() == [True, True]
    # the block before is the same station's rain: the fills are still levels
    rain = frame([0.5, 0.0], station="b", variable=RAIN)
    out = apply_qc(pd.concat([rain, b], ignore_index=True), cat, step="10min")
    fills = out[out["qc_rule"] == "gap_fill"]
    assert fills["variable"].tolist() == [LEVEL, LEVEL]
