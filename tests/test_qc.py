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
from forecast.qc import QC_RULES, RainLimits, apply_qc, qc_levels, qc_rain, usable

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
