"""Edge cases and naive oracles for ``forecast.features`` (mutation testing, docs/mutation.md).

Each rule of the package docstring is checked at the exact boundary values of its constants
(``CRISIS_RISE_M``, ``CRISIS_RAIN_KNOWN``, ``CRISIS_SILENCE_RAIN_MM``, ``CRISIS_MAX_SILENCE``,
``CRISIS_NEAR_START_M``, ``CRISIS_TREND_WINDOW``, ``FRESH``, ``MIN_RAIN_WEIGHT``, the rain-sum
``min_periods``) and against independent per-hour / per-row implementations written from the
docstring (loops over plain Python values, no shared code with the module)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from forecast.catalogue import Gauge, River, load_catalogue
from forecast.errors import FrameError
from forecast.features import (
    API_DECAY_PER_H,
    CENSORED,
    CRISIS_MAX_SILENCE,
    CRISIS_NEAR_START_M,
    CRISIS_RAIN_KNOWN,
    CRISIS_RISE_M,
    CRISIS_SILENCE_RAIN_MM,
    CRISIS_TREND_WINDOW,
    FC_RAIN_FEATURES,
    FRESH,
    LAST_M,
    LAST_RISE_M,
    MIN_RAIN_WEIGHT,
    PAST_RAIN_FEATURES,
    SILENCE_COLUMNS,
    SILENT_H,
    UNEXPLAINED,
    archive_rain,
    build_features,
    catchment_rain,
    censored_column,
    crisis_level_to_hourly,
    extra_columns,
    feature_groups,
    level_to_hourly,
    perfect_rain,
    rain_to_hourly,
    river_hourly,
    silence_reason,
    targets,
)
from forecast.features.crisis import _silence_checks, _trend_into
from forecast.frames import Flag

H = pd.Timedelta(hours=1)
MIN = pd.Timedelta(minutes=1)
NS = pd.Timedelta(1, unit="ns")
T0 = pd.Timestamp("2024-07-01 00:00", tz="UTC")
START = 0.90
GOOD, FILLED, DOUBTFUL = int(Flag.GOOD), int(Flag.FILLED), int(Flag.DOUBTFUL)
UNRELIABLE, MISSING, BELOW = int(Flag.UNRELIABLE), int(Flag.MISSING), int(Flag.BELOW_START)
USABLE = {GOOD, FILLED, DOUBTFUL}

CAT = load_catalogue("config/rivers.yaml")
ITAYA = CAT.river("itaya")          # primary MIE-C-007 (板屋), start level 0.90 m, no upstream
KOTO = load_catalogue("config/reference_rivers.yaml").rivers[0]   # telemetry, dam release
UP = Gauge(code="UP-T", name_ja="上流", lat=33.9, lon=135.97, kind="telemetry")
UPC = Gauge(code="UP-C", name_ja="上流危機", lat=33.9, lon=135.97, kind="crisis",
            start_level_m=1.0)
ITAYA_UP = River.model_validate({**ITAYA.model_dump(), "gauges": (*ITAYA.gauges, UP, UPC),
                                 "upstream_gauges": ("UP-T", "UP-C")})


def _rows(times: Sequence[pd.Timestamp], values: Sequence[float],
          flags: Sequence[int] | int = GOOD) -> pd.DataFrame:
    flag = list(flags) if not isinstance(flags, int) else [flags] * len(times)
    return pd.DataFrame({"time": pd.DatetimeIndex(list(times)), "value": list(values),
                         "flag": flag})


def _hours(n: int, start: pd.Timestamp = T0) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="h", tz="UTC", name="time")


# ---------------------------------------------------------------------------------------------
# naive oracles (written from the package docstring)


def _naive_trend(t: list[pd.Timestamp], v: list[float], usable: list[bool],
                 window: pd.Timedelta) -> list[float]:
    out = []
    for i in range(len(t)):
        if not usable[i]:
            out.append(math.nan)
            continue
        prev = [v[j] for j in range(len(t))
                if usable[j] and j != i and t[i] - window <= t[j] < t[i]]
        out.append(v[i] - sum(prev) / len(prev) if prev else math.nan)
    return out


def _naive_crisis(rows: pd.DataFrame, start: float, index: pd.DatetimeIndex,
                  max_silence: pd.Timedelta = CRISIS_MAX_SILENCE,
                  near: float = CRISIS_NEAR_START_M) -> pd.DataFrame:
    recs = sorted(zip(pd.DatetimeIndex(rows["time"]), rows["value"].astype(float),
                      rows["flag"].astype(int), strict=True), key=lambda r: r[0])

    def usable(r: tuple[pd.Timestamp, float, int]) -> bool:
        return r[2] in USABLE and math.isfinite(r[1])

    def below(r: tuple[pd.Timestamp, float, int]) -> bool:
        return r[2] == BELOW or (usable(r) and r[1] < start)

    out = []
    for T in index:
        past = [r for r in recs if r[0] <= T]
        evidence = [r for r in past if usable(r) or below(r)]
        level, cens, silent_h, last_m, rise = math.nan, 0.0, math.nan, math.nan, math.nan
        if evidence and T - evidence[-1][0] < FRESH:
            e = evidence[-1]
            level, cens = (start, 1.0) if below(e) else (e[1], 0.0)
        elif past:
            r = past[-1]
            quiet = below(r) or (usable(r) and r[1] < start + near)
            if quiet and T - r[0] <= max_silence:
                level, cens = start, 1.0
                silent_h = (T - r[0]) / H
                if usable(r):
                    last_m = r[1]
                    prev = [q[1] for q in past
                            if usable(q) and r[0] - CRISIS_TREND_WINDOW <= q[0] < r[0]]
                    rise = r[1] - (sum(prev) / len(prev) if prev else start)
        out.append((level, cens, silent_h, last_m, rise))
    return pd.DataFrame(out, index=index,
                        columns=["level", "censored", "silent_h", "last_m", "last_rise_m"])


def _naive_silence(frame: pd.DataFrame, start: float | None) -> dict[str, list[object]]:
    """Per hour: silent, rising, hours, rain_mm, rain_known, rain_now, up_silent, unexplained."""
    n = len(frame)
    ups = [c for c in frame.columns if str(c).startswith("up_")
           and not str(c).endswith("_censored")]
    got: dict[str, list[object]] = {k: [] for k in
                                    ("silent", "rising", "hours", "rain_mm", "rain_known",
                                     "rain_now", "up_silent", "unexplained")}
    rain = [float(x) for x in frame["rain_mm"]]
    for i in range(n):
        sh = float(frame[SILENT_H].iloc[i]) if SILENT_H in frame.columns else math.nan
        cens = float(frame[CENSORED].iloc[i]) if CENSORED in frame.columns else 0.0
        silent = start is not None and math.isfinite(sh) and cens > 0  # NaN > 0 is False
        rise = float(frame[LAST_RISE_M].iloc[i]) if LAST_RISE_M in frame.columns else math.nan
        rising = silent and rise > CRISIS_RISE_M + 1e-9
        hours = max(-(-round(sh * 3600) // 3600), 1) if silent else 0
        span = [j for j in range(i - hours + 1, i + 1)]
        known = [j for j in span if j >= 0 and math.isfinite(rain[j])]
        rain_mm = sum(rain[j] for j in known)
        share = len(known) / hours if hours else 1.0
        now = math.isfinite(rain[i])
        up_silent = any(not math.isfinite(float(frame[c].iloc[i])) for c in ups)
        unexplained = silent and (rising or share < CRISIS_RAIN_KNOWN or not now
                                  or rain_mm >= CRISIS_SILENCE_RAIN_MM or up_silent)
        for k, x in (("silent", silent), ("rising", rising), ("hours", hours),
                     ("rain_mm", rain_mm), ("rain_known", share), ("rain_now", now),
                     ("up_silent", up_silent), ("unexplained", unexplained)):
            got[k].append(x)
    return got


def _naive_level(times: Sequence[pd.Timestamp], values: Sequence[float],
                 index: pd.DatetimeIndex) -> list[float]:
    out = []
    for T in index:
        fresh = [(t, v) for t, v in zip(times, values, strict=True)
                 if T - FRESH < t <= T and math.isfinite(v)]
        out.append(max(fresh)[1] if fresh else math.nan)
    return out


# ---------------------------------------------------------------------------------------------
# crisis.py: _trend_into


def test_trend_into_window_is_closed_left_open_right() -> None:
    t = pd.DatetimeIndex([T0, T0 + 10 * MIN, T0 + H, T0 + H + NS, T0 + 2 * H + NS]).asi8
    v = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    got = _trend_into(t, v, np.ones(5, dtype=bool))
    # row 2 (T0 + 1 h): T0, exactly one window before, is in; row 3 (1 ns later): T0 is out;
    # row 4 (T0 + 2 h + 1 ns): row 3 exactly one window before is in, row 2 (1 ns more) out
    want = [math.nan, 2.0 - 1.0, 4.0 - 1.5, 8.0 - (2.0 + 4.0) / 2, 16.0 - 8.0]
    np.testing.assert_allclose(got, want, equal_nan=True)


def test_trend_into_skips_unusable_rows_and_has_a_custom_window() -> None:
    t = pd.DatetimeIndex([T0 + k * 10 * MIN for k in range(6)]).asi8
    v = np.array([1.0, 100.0, 2.0, np.nan, 3.0, 5.0])
    usable = np.array([True, False, True, False, True, True])
    got = _trend_into(t, v, usable, window=pd.Timedelta(minutes=20))
    want = [math.nan, math.nan, 2.0 - 1.0, math.nan, 3.0 - 2.0, 5.0 - 3.0]
    np.testing.assert_allclose(got, want, equal_nan=True)
    none = _trend_into(t, v, np.zeros(6, dtype=bool))
    assert none.shape == (6,) and np.isnan(none).all()


@pytest.mark.parametrize("seed", range(6))
def test_trend_into_matches_naive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 40
    times = sorted(set(T0 + pd.Timedelta(minutes=int(m))
                       for m in rng.choice(np.arange(0, 600, 5), n, replace=False)))
    v = np.round(rng.uniform(0.5, 1.5, len(times)), 2)
    usable = rng.random(len(times)) < 0.7
    window = pd.Timedelta(minutes=int(rng.choice([30, 60, 90])))
    got = _trend_into(pd.DatetimeIndex(times).asi8, v, usable, window)
    want = _naive_trend(times, list(v), list(usable), window)
    np.testing.assert_allclose(got, want, equal_nan=True, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# crisis.py: crisis_level_to_hourly


def _random_crisis_rows(seed: int) -> pd.DataFrame:
    """Rows at 5-min multiples plus odd seconds over 14 h; values around the start level (to
    the centimetre, some NaN); every flag."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 45))
    secs = rng.choice(np.arange(0, 14 * 3600, 300), n, replace=False)
    secs = secs + rng.choice([0, 0, 0, 1, 299], n)              # a few just after a 5-min mark
    times = [T0 + pd.Timedelta(seconds=int(s)) for s in np.unique(secs)]
    v = np.round(START + rng.uniform(-0.3, 0.4, len(times)), 2)
    v[rng.random(len(times)) < 0.08] = np.nan
    flags = rng.choice([GOOD, FILLED, DOUBTFUL, UNRELIABLE, MISSING, BELOW], len(times),
                       p=[0.55, 0.1, 0.1, 0.08, 0.07, 0.1])
    return _rows(times, list(v), list(flags))


@pytest.mark.parametrize("seed", range(25))
def test_crisis_level_to_hourly_matches_naive(seed: int) -> None:
    rows = _random_crisis_rows(seed)
    rng = np.random.default_rng(1000 + seed)
    silence = pd.Timedelta(hours=int(rng.choice([1, 2, 3, 36])))
    near = float(rng.choice([0.0, 0.05, CRISIS_NEAR_START_M]))
    index = _hours(17)
    shuffled = rows.sample(frac=1.0, random_state=seed)            # any order is accepted
    got = crisis_level_to_hourly(shuffled, START, index, max_silence=silence, near_start_m=near)
    want = _naive_crisis(rows, START, index, silence, near)
    assert list(got.columns) == ["level", "censored", "silent_h", "last_m", "last_rise_m"]
    assert got.index.equals(index)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-9, rtol=0)
    default = crisis_level_to_hourly(shuffled, START, index)
    pd.testing.assert_frame_equal(default, _naive_crisis(rows, START, index),
                                  check_exact=False, atol=1e-9, rtol=0)


def test_freshness_is_thirty_minutes_open_on_the_old_side() -> None:
    at = T0 + 2 * H
    for age, fresh in ((FRESH, False), (FRESH - NS, True), (pd.Timedelta(0), True)):
        rows = _rows([at - 3 * H, at - age], [1.5, 1.4])
        got = crisis_level_to_hourly(rows, START, pd.DatetimeIndex([at]))
        assert bool(got["level"].iloc[0] == 1.4) is fresh
        assert got["censored"].iloc[0] == 0.0
        if not fresh:
            assert np.isnan(got["level"].iloc[0])        # silent at 1.4 m: a gap
    # a fresh below-start reading is censored, not silent: no silence columns
    got = crisis_level_to_hourly(_rows([at - FRESH + NS], [0.5]), START, pd.DatetimeIndex([at]))
    assert got.iloc[0].tolist()[:2] == [START, 1.0]
    assert got[["silent_h", "last_m", "last_rise_m"]].isna().all(axis=None)


@pytest.mark.parametrize(("value", "censored", "level"), [
    (START - 0.01, 1.0, START), (START, 0.0, START), (START + 0.01, 0.0, START + 0.01)])
def test_a_fresh_reading_is_below_start_only_strictly_below(value: float, censored: float,
                                                            level: float) -> None:
    at = T0 + H
    got = crisis_level_to_hourly(_rows([at], [value]), START, pd.DatetimeIndex([at]))
    assert (got["censored"].iloc[0], got["level"].iloc[0]) == (censored, level)


@pytest.mark.parametrize(("above", "quiet"), [
    (CRISIS_NEAR_START_M - 0.01, True), (CRISIS_NEAR_START_M, False),
    (CRISIS_NEAR_START_M + 0.01, False), (0.0, True), (-0.2, True)])
def test_silence_after_a_near_start_reading(above: float, quiet: bool) -> None:
    value = 1.0 + above          # start 1.0: exact sums at the boundary
    at = T0 + 3 * H
    got = crisis_level_to_hourly(_rows([T0 + H], [value]), 1.0, pd.DatetimeIndex([at]))
    row = got.iloc[0]
    if quiet:
        assert (row["level"], row["censored"], row["silent_h"]) == (1.0, 1.0, 2.0)
        assert row["last_m"] == value
        assert row["last_rise_m"] == pytest.approx(value - 1.0)   # lone: from the start level
    else:
        assert np.isnan(row["level"]) and row["censored"] == 0.0
        assert row[["silent_h", "last_m", "last_rise_m"]].isna().all()


@pytest.mark.parametrize(("age", "censored"), [
    (CRISIS_MAX_SILENCE, 1.0), (CRISIS_MAX_SILENCE + NS, 0.0), (CRISIS_MAX_SILENCE - H, 1.0)])
def test_max_silence_is_inclusive(age: pd.Timedelta, censored: float) -> None:
    at = T0 + 40 * H
    for rows in (_rows([at - age], [0.5]), _rows([at - age], [math.nan], BELOW)):
        got = crisis_level_to_hourly(rows, START, pd.DatetimeIndex([at]))
        assert got["censored"].iloc[0] == censored
        assert bool(got["level"].iloc[0] == START) is (censored == 1.0)
        if censored:
            assert got["silent_h"].iloc[0] == pytest.approx(age / H)
    got = crisis_level_to_hourly(_rows([at - 3 * H], [0.5]), START, pd.DatetimeIndex([at]),
                                 max_silence=3 * H)
    assert got["censored"].iloc[0] == 1.0
    got = crisis_level_to_hourly(_rows([at - 3 * H], [0.5]), START, pd.DatetimeIndex([at]),
                                 max_silence=3 * H - NS)
    assert got["censored"].iloc[0] == 0.0


@pytest.mark.parametrize("flag", [MISSING, UNRELIABLE])
def test_an_unusable_row_after_the_evidence_ends_the_low_water(flag: int) -> None:
    at = T0 + 5 * H
    rows = _rows([T0 + H, T0 + 2 * H], [0.5, 0.4], [GOOD, flag])
    got = crisis_level_to_hourly(rows, START, pd.DatetimeIndex([T0 + H + 40 * MIN, at]))
    assert got["censored"].tolist() == [1.0, 0.0]
    assert got["level"].iloc[0] == START and np.isnan(got["level"].iloc[1])
    # the same rows with the unusable one fresh: still no reading, and not censored either
    got = crisis_level_to_hourly(rows, START, pd.DatetimeIndex([T0 + 2 * H + 10 * MIN]))
    assert got["censored"].iloc[0] == 0.0 and np.isnan(got["level"].iloc[0])


def test_good_flag_nan_value_and_doubtful_filled_readings() -> None:
    at = T0 + 2 * H
    # a GOOD row without a value is no evidence: the older below-start reading still speaks
    rows = _rows([T0 + H, at - 5 * MIN], [0.5, math.nan], [GOOD, GOOD])
    got = crisis_level_to_hourly(rows, START, pd.DatetimeIndex([at]))
    want = _naive_crisis(rows, START, pd.DatetimeIndex([at]))
    pd.testing.assert_frame_equal(got, want)
    assert np.isnan(got["level"].iloc[0]) and got["censored"].iloc[0] == 0.0
    for flag in (FILLED, DOUBTFUL):
        got = crisis_level_to_hourly(_rows([at], [1.7], flag), START, pd.DatetimeIndex([at]))
        assert got["level"].iloc[0] == 1.7
    for flag in (UNRELIABLE, MISSING):
        got = crisis_level_to_hourly(_rows([at], [1.7], flag), START, pd.DatetimeIndex([at]))
        assert np.isnan(got["level"].iloc[0]) and got["censored"].iloc[0] == 0.0


def test_no_rows_and_hours_before_the_first_row() -> None:
    index = _hours(4)
    empty = crisis_level_to_hourly(_rows([], []), START, index)
    assert empty["level"].isna().all() and (empty["censored"] == 0.0).all()
    assert empty[["silent_h", "last_m", "last_rise_m"]].isna().all(axis=None)
    assert empty["censored"].dtype == np.float64
    only_missing = crisis_level_to_hourly(_rows([T0], [math.nan], MISSING), START, index)
    assert only_missing["level"].isna().all() and (only_missing["censored"] == 0.0).all()
    late = crisis_level_to_hourly(_rows([T0 + 2 * H + 30 * MIN], [0.5]), START, index)
    assert late["censored"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert late["level"].isna().tolist() == [True, True, True, False]
    assert late["silent_h"].iloc[3] == pytest.approx(0.5)


def test_silence_columns_of_a_reading_with_a_trend() -> None:
    at = T0 + 4 * H
    times = [T0 + H + 30 * MIN, T0 + H + 40 * MIN, T0 + H + 50 * MIN, T0 + 2 * H]
    rows = _rows(times, [0.99, 0.97, 0.95, 0.93])
    got = crisis_level_to_hourly(rows, START, pd.DatetimeIndex([at, T0 + 2 * H + 20 * MIN]))
    row = got.iloc[0]
    assert (row["level"], row["censored"], row["silent_h"], row["last_m"]) == (
        START, 1.0, 2.0, 0.93)
    assert row["last_rise_m"] == pytest.approx(0.93 - np.mean([0.99, 0.97, 0.95]))
    assert got["level"].iloc[1] == 0.93 and np.isnan(got["silent_h"].iloc[1])


# ---------------------------------------------------------------------------------------------
# crisis.py: _silence_checks (the silence rule) on hand-made river frames


def _frame(n: int, *, silent_h: Sequence[float] | None = None,
           censored: Sequence[float] | None = None, rise: Sequence[float] | None = None,
           rain: Sequence[float] | None = None, **ups: Sequence[float]) -> pd.DataFrame:
    nan = [math.nan] * n
    f = pd.DataFrame({"level_m": START, CENSORED: censored if censored is not None else [1.0] * n,
                      "rain_mm": rain if rain is not None else [0.0] * n}, index=_hours(n))
    for code, vals in ups.items():
        f["up_" + code] = vals
        f["up_" + code + "_censored"] = 0.0
    f[UNEXPLAINED] = 0.0
    f[SILENT_H] = silent_h if silent_h is not None else nan
    f[LAST_M] = 0.95
    f[LAST_RISE_M] = rise if rise is not None else nan
    return f


def _check(frame: pd.DataFrame, start: float | None = START) -> None:
    got = _silence_checks(frame, start)
    want = _naive_silence(frame, start)
    for name in want:
        np.testing.assert_allclose(np.asarray(getattr(got, name), dtype=float),
                                   np.asarray(want[name], dtype=float), atol=1e-9,
                                   err_msg=name)
    assert got.silent.dtype == bool and got.unexplained.dtype == bool
    assert got.up_silent.dtype == bool and got.up_silent.shape == (len(frame),)


@pytest.mark.parametrize("seed", range(30))
def test_silence_checks_match_naive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    pick = rng.choice
    silent_h = pick([math.nan, 0.0, 1 / 6, 0.5, 1.0, 1 + 1e-5, 2.0, 2.5, 3 + 5 / 6, 6.0, 12.0,
                     30.0], n)
    censored = pick([1.0, 1.0, 1.0, 0.0, math.nan], n)
    rise = pick([math.nan, -0.3, 0.0, CRISIS_RISE_M, CRISIS_RISE_M + 5e-10,
                 CRISIS_RISE_M + 2e-9, 0.03, 0.5], n)
    rain = pick([math.nan, 0.0, 0.0, 0.0, 0.5, 1.0, 2.5, 4.0, 10.0], n)
    ups = {code: list(pick([1.0, 1.0, 1.0, math.nan], n))
           for code in ["A", "B"][: int(rng.integers(0, 3))]}
    frame = _frame(n, silent_h=list(silent_h), censored=list(censored), rise=list(rise),
                   rain=list(rain), **ups)
    _check(frame)
    _check(frame, None)
    _check(frame.drop(columns=[SILENT_H]))
    _check(frame.drop(columns=[LAST_RISE_M, CENSORED]))


@pytest.mark.parametrize(("rise", "rising"), [
    (CRISIS_RISE_M, False), (CRISIS_RISE_M + 5e-10, False), (CRISIS_RISE_M + 1e-9, False),
    (CRISIS_RISE_M + 2e-9, True),
    (0.021, True), (-0.5, False), (math.nan, False)])
def test_rise_boundary_is_two_centimetres(rise: float, rising: bool) -> None:
    assert CRISIS_RISE_M == 0.02
    got = _silence_checks(_frame(3, silent_h=[math.nan, 1.0, 2.0], rise=[rise] * 3), START)
    assert got.rising.tolist() == [False, rising, rising]
    assert got.unexplained.tolist() == [False, rising, rising]


@pytest.mark.parametrize(("known", "hours", "unexplained"), [
    (3, 4, False), (2, 3, True), (6, 8, False), (5, 7, True), (1, 1, False), (3, 3, False)])
def test_rain_known_share_boundary_is_75_percent(known: int, hours: int,
                                                 unexplained: bool) -> None:
    """``hours`` hours of silence ending at the last row; rain missing for the oldest hours
    but the latest one (which must be known)."""
    assert CRISIS_RAIN_KNOWN == 0.75
    n = hours + 2
    rain = [0.0] * (n - known) + [0.0] * known
    for j in range(n - hours, n - known):
        rain[j] = math.nan
    silent = [math.nan] * (n - 1) + [hours - 0.5]
    got = _silence_checks(_frame(n, silent_h=silent, rain=rain), START)
    assert got.hours[-1] == hours
    assert got.rain_known[-1] == pytest.approx(known / hours)
    assert bool(got.unexplained[-1]) is unexplained
    assert got.rain_now[-1]


@pytest.mark.parametrize(("mm", "unexplained"), [
    (CRISIS_SILENCE_RAIN_MM, True), (CRISIS_SILENCE_RAIN_MM - 0.01, False), (10.5, True),
    (0.0, False)])
def test_rain_boundary_is_ten_millimetres(mm: float, unexplained: bool) -> None:
    assert CRISIS_SILENCE_RAIN_MM == 10.0
    # half of it in each of the last two hours; a wet hour before the silence does not count
    rain = [50.0, 0.0, mm / 2, mm / 2]
    got = _silence_checks(_frame(4, silent_h=[math.nan, math.nan, math.nan, 2.0],
                                 rain=rain), START)
    assert got.hours.tolist() == [0, 0, 0, 2]
    assert got.rain_mm[-1] == pytest.approx(mm)
    assert bool(got.unexplained[-1]) is unexplained


@pytest.mark.parametrize(("silent_h", "hours"), [
    (0.0, 1), (1 / 6, 1), (1.0, 1), (1.0 + 1 / 3600, 2), (1.0 + 0.4 / 3600, 1), (2.0, 2),
    (5 + 5 / 6, 6), (6.0, 6), (35.9, 36)])
def test_silence_hours_are_the_frame_hours_since_the_evidence(silent_h: float,
                                                              hours: int) -> None:
    n = 40
    got = _silence_checks(_frame(n, silent_h=[math.nan] * (n - 1) + [silent_h]), START)
    assert got.hours[-1] == hours
    assert got.hours[:-1].tolist() == [0] * (n - 1)


def test_hours_before_the_frame_count_as_unknown_rain() -> None:
    # 4 h of silence in a 3-row frame: 1 of 4 hours unknown (75 %: explained); 5 h: 60 %
    got = _silence_checks(_frame(3, silent_h=[math.nan, math.nan, 4.0]), START)
    assert got.rain_known[-1] == 0.75 and not got.unexplained[-1]
    got = _silence_checks(_frame(3, silent_h=[math.nan, math.nan, 5.0]), START)
    assert got.rain_known[-1] == pytest.approx(0.6) and got.unexplained[-1]
    # rain before the frame start is not added
    got = _silence_checks(_frame(2, silent_h=[math.nan, 3.0], rain=[4.0, 4.0]), START)
    assert got.rain_mm[-1] == 8.0


def test_the_latest_hour_needs_known_rain_and_upstream_values() -> None:
    got = _silence_checks(_frame(8, silent_h=[math.nan] * 7 + [7.0],
                                 rain=[0.0] * 7 + [math.nan]), START)
    assert got.rain_known[-1] == pytest.approx(6 / 7) and not got.rain_now[-1]
    assert got.unexplained.tolist() == [False] * 7 + [True]
    f = _frame(3, silent_h=[1.0, 2.0, 3.0], A=[1.0, math.nan, 1.0], B=[1.0, 1.0, 1.0])
    f["up_A_censored"] = [0.0, 1.0, math.nan]           # markers are not inputs
    got = _silence_checks(f, START)
    assert got.up_silent.tolist() == [False, True, False]
    assert got.unexplained.tolist() == [False, True, False]
    # not silent (not censored): nothing is unexplained, whatever else holds
    f = _frame(2, silent_h=[1.0, 1.0], censored=[0.0, math.nan], rise=[0.5, 0.5],
               rain=[math.nan, 20.0], A=[math.nan, math.nan])
    got = _silence_checks(f, START)
    assert not got.silent.any() and not got.unexplained.any() and not got.rising.any()
    assert got.hours.tolist() == [0, 0]


# ---------------------------------------------------------------------------------------------
# crisis.py: silence_reason, the exact lines operators read

WHO = "crisis gauge 板屋 (MIE-C-007, 板屋川)"
GUESS = "not read as low water (level held at the start level 0.90 m is a guess)"


def _reason_frame() -> pd.DataFrame:
    """Row 5 (2024-07-01 05:00 UTC = 14:00 JST): silent 2 h 15 min after 0.95 m, rising 5 cm,
    rain unknown for 1 of the 3 hours, 12 mm since, upstream A silent; rows after it differ."""
    f = _frame(8, silent_h=[math.nan, math.nan, math.nan, 0.25, 1.25, 2.25, 3.25, 4.25],
               rise=[0.05] * 8, rain=[0.0, 0.0, 0.0, math.nan, 6.0, 6.0, math.nan, 90.0],
               A=[1.0] * 5 + [math.nan, 1.0, math.nan], B=[2.0] * 8)
    f.loc[f.index[:3], CENSORED] = 0.0
    f.loc[f.index[:3], "level_m"] = 1.2
    return f


def test_silence_reason_names_every_reason_in_order() -> None:
    f = _reason_frame()
    at = T0 + 5 * H
    want = (f"{WHO} silent 2 h since 0.95 m at 2024-07-01 11:45 JST after rising +0.05 m over "
            "the hour before; and the river's rain gauges are silent too (catchment rain "
            "unknown for 1 of 3 h; data outage?); while 12 mm of rain fell over the catchment; "
            f"and upstream A silent too (data outage?); {GUESS}")
    assert silence_reason(f, ITAYA, at) == want
    # a naive time is UTC; an aware one is converted
    assert silence_reason(f, ITAYA, pd.Timestamp("2024-07-01 05:00")) == want
    assert silence_reason(f, ITAYA, pd.Timestamp("2024-07-01 14:00", tz="Asia/Tokyo")) == want


def test_silence_reason_single_reasons() -> None:
    f = _frame(4, silent_h=[math.nan, math.nan, 0.5, 1.5], rise=[0.0] * 4,
               rain=[0.0, 0.0, 0.0, 0.0])
    f.loc[f.index[:2], CENSORED] = 0.0
    assert silence_reason(f, ITAYA, T0 + 3 * H) is None               # explained
    assert silence_reason(f, ITAYA, T0 + 2 * H) is None
    assert silence_reason(f, ITAYA, T0 + H) is None                   # a reading
    rising = f.assign(**{LAST_RISE_M: 0.03})
    assert silence_reason(rising, ITAYA, T0 + 2 * H) == (
        f"{WHO} silent 30 min since 0.95 m at 2024-07-01 10:30 JST after rising +0.03 m over "
        f"the hour before; {GUESS}")
    wet = f.assign(rain_mm=[0.0, 0.0, 0.0, 10.4])
    assert silence_reason(wet, ITAYA, T0 + 3 * H) == (
        f"{WHO} silent 2 h since 0.95 m at 2024-07-01 10:30 JST while 10 mm of rain fell over "
        f"the catchment; {GUESS}")
    now = f.assign(rain_mm=[0.0, 0.0, 0.0, math.nan], **{LAST_M: math.nan})
    assert silence_reason(now, ITAYA, T0 + 3 * H) == (
        f"{WHO} silent 2 h since a below-start report at 2024-07-01 10:30 JST and the river's "
        "rain gauges are silent too (catchment rain unknown for 1 of 2 h, the latest hour "
        f"included; data outage?); {GUESS}")
    up = f.assign(up_A=[1.0, 1.0, 1.0, math.nan], up_B=math.nan, up_C=5.0)
    assert silence_reason(up, ITAYA, T0 + 3 * H) == (
        f"{WHO} silent 2 h since 0.95 m at 2024-07-01 10:30 JST and upstream A, B silent too "
        f"(data outage?); {GUESS}")
    # an hour the frame itself marks unexplained is never called explained here
    marked = f.assign(**{UNEXPLAINED: [0.0, 0.0, 0.0, 1.0]})
    assert silence_reason(marked, ITAYA, T0 + 3 * H) == (
        f"{WHO} silent 2 h since 0.95 m at 2024-07-01 10:30 JST ; {GUESS}")
    assert silence_reason(marked, ITAYA, T0 + 2 * H) is None


def test_silence_reason_without_a_row_a_level_or_silence_columns() -> None:
    f = _frame(4, silent_h=[math.nan, math.nan, 0.5, 1.5])
    assert silence_reason(f, ITAYA, T0 + 4 * H) == (
        f"{WHO}: the river frame has no row for 2024-07-01 13:00 JST")
    assert silence_reason(f, ITAYA, T0 + 30 * MIN) == (
        f"{WHO}: the river frame has no row for 2024-07-01 09:30 JST")
    gap = f.assign(level_m=[1.0, math.nan, START, START])
    assert silence_reason(gap, ITAYA, T0 + H) == (
        f"{WHO}: no usable level at 2024-07-01 10:00 JST (a gap, not read as low water)")
    bare = f.drop(columns=[SILENT_H])
    assert silence_reason(bare, ITAYA, T0 + 2 * H) == (
        f"{WHO}: level censored at 2024-07-01 11:00 JST but the river frame has no silence "
        "columns (not built by river_hourly), so it is not read as low water")
    # a telemetry gauge: censored only by a hand-made frame, never read as low water
    koto = "gauge 持世寺 (jiseiji, 厚東川)"
    assert silence_reason(f, KOTO, T0 + 2 * H) == (
        f"{koto}: level censored at 2024-07-01 11:00 JST but the river frame has no silence "
        "columns (not built by river_hourly), so it is not read as low water")
    assert silence_reason(f.assign(**{CENSORED: 0.0}), KOTO, T0 + 2 * H) is None
    assert silence_reason(gap, KOTO, T0 + H) == (
        f"{koto}: no usable level at 2024-07-01 10:00 JST (a gap, not read as low water)")
    # without a censoring column the level is a reading
    assert silence_reason(f.drop(columns=[CENSORED, UNEXPLAINED]), ITAYA, T0 + 2 * H) is None


@pytest.mark.parametrize(("hours", "text", "since"), [
    (0.5, "30 min", "09:30"), (59 / 60, "59 min", "09:01"), (1.0, "1 h", "09:00"),
    (1.5, "2 h", "08:30"), (2.0, "2 h", "08:00")])
def test_silence_reason_durations(hours: float, text: str, since: str) -> None:
    f = _frame(2, silent_h=[math.nan, hours], rain=[0.0, 30.0])
    got = silence_reason(f, ITAYA, T0 + H)
    since_text = since if "-" in since else f"2024-07-01 {since}"
    assert got == (f"{WHO} silent {text} since 0.95 m at {since_text} JST while 30 mm of rain "
                   f"fell over the catchment; {GUESS}")


def test_silence_reason_counts_hours_before_the_frame_as_unknown() -> None:
    f = _frame(2, silent_h=[math.nan, 35.0], rain=[0.0, 30.0])
    assert silence_reason(f, ITAYA, T0 + H) == (
        f"{WHO} silent 35 h since 0.95 m at 2024-06-29 23:00 JST and the river's rain gauges "
        "are silent too (catchment rain unknown for 33 of 35 h; data outage?); while 30 mm of "
        f"rain fell over the catchment; {GUESS}")


# ---------------------------------------------------------------------------------------------
# hourly.py


def _naive_rain(times: Sequence[pd.Timestamp], values: Sequence[float],
                index: pd.DatetimeIndex) -> list[float]:
    t = sorted(times)
    diffs = [(b - a) / MIN for a, b in itertools.pairwise(t)]
    step = float(np.median(diffs)) if diffs else 60.0
    need = max(1, round(60.0 / step))
    out = []
    for T in index:
        got = [v for ti, v in zip(times, values, strict=True)
               if T - H < ti <= T and math.isfinite(v)]
        out.append(sum(got) if len(got) >= need else math.nan)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_level_to_hourly_matches_naive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    secs = np.unique(rng.choice(np.arange(0, 8 * 3600, 60 * int(rng.choice([1, 5, 10]))), n))
    secs = secs + rng.choice([0, 0, 1], len(secs))
    times = [T0 + pd.Timedelta(seconds=int(x)) for x in secs]
    v = np.round(rng.uniform(0, 3, len(times)), 3)
    v[rng.random(len(times)) < 0.2] = np.nan
    s = pd.Series(v, index=pd.DatetimeIndex(times)).sample(frac=1.0, random_state=seed)
    index = _hours(10, T0 - H)
    got = level_to_hourly(s, index)
    assert got.index.equals(index) and got.dtype == np.float64
    np.testing.assert_array_equal(got.to_numpy(), _naive_level(times, list(v), index))
    default = level_to_hourly(s)
    want_index = pd.date_range(min(times).floor("h"), max(times).ceil("h"), freq="h")
    assert list(default.index) == list(want_index)
    np.testing.assert_array_equal(default.to_numpy(), _naive_level(times, list(v), want_index))


def test_level_to_hourly_edges() -> None:
    at = T0 + 2 * H
    one = pd.Series([1.0], index=pd.DatetimeIndex([at]))
    assert level_to_hourly(one, pd.DatetimeIndex([at])).tolist() == [1.0]    # first reading
    for age, used in ((FRESH, False), (FRESH - NS, True)):
        s = pd.Series([1.0, 2.0], index=pd.DatetimeIndex([at - age, at + 10 * MIN]))
        assert level_to_hourly(s, pd.DatetimeIndex([at])).isna().tolist() == [not used]
    # a stale first reading stays stale although a later one exists
    s = pd.Series([1.0, 2.0], index=pd.DatetimeIndex([T0, T0 + 90 * MIN]))
    assert level_to_hourly(s, pd.DatetimeIndex([T0 + H])).isna().tolist() == [True]
    # an older reading is used when the fresher one is NaN
    s = pd.Series([1.0, math.nan], index=pd.DatetimeIndex([at - 20 * MIN, at - 5 * MIN]))
    assert level_to_hourly(s, pd.DatetimeIndex([at])).tolist() == [1.0]
    empty = level_to_hourly(pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float))
    assert empty.empty and empty.dtype == np.float64
    nan = pd.Series([math.nan, math.nan], index=pd.DatetimeIndex([T0 + 10 * MIN, T0 + 2 * H]))
    got = level_to_hourly(nan, _hours(5))
    assert got.index.equals(_hours(5)) and got.isna().all() and got.dtype == np.float64
    got = level_to_hourly(nan)
    assert list(got.index) == list(pd.date_range(T0, T0 + 2 * H, freq="h"))
    assert got.isna().all() and got.dtype == np.float64
    ints = pd.Series([1, 2], index=pd.DatetimeIndex([T0, T0 + H]))
    assert level_to_hourly(ints).tolist() == [1.0, 2.0]


@pytest.mark.parametrize(("step_min", "seed"), [(10, 0), (10, 1), (15, 2), (60, 3), (180, 4),
                                                (5, 5), (30, 6)])
def test_rain_to_hourly_matches_naive(step_min: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    times = list(pd.date_range(T0 + step_min * MIN, periods=int(600 / step_min) + 2,
                               freq=f"{step_min}min", tz="UTC"))
    keep = rng.random(len(times)) > 0.1
    times = [t for t, k in zip(times, keep, strict=True) if k]
    v = np.round(rng.gamma(0.5, 2.0, len(times)), 1)
    v[rng.random(len(times)) < 0.1] = np.nan
    s = pd.Series(v, index=pd.DatetimeIndex(times))
    index = _hours(14)
    got = rain_to_hourly(s, index)
    assert got.index.equals(index) and got.dtype == np.float64
    np.testing.assert_allclose(got.to_numpy(), _naive_rain(times, list(v), index),
                               equal_nan=True, atol=1e-9)
    default = rain_to_hourly(s)
    want_index = pd.date_range(min(times).floor("h"), max(times).ceil("h"), freq="h")
    assert list(default.index) == list(want_index)
    np.testing.assert_allclose(default.to_numpy(), _naive_rain(times, list(v), want_index),
                               equal_nan=True, atol=1e-9)


def test_rain_to_hourly_edges() -> None:
    # a single reading is an hourly one; the reading at exactly T belongs to the hour ending T
    one = pd.Series([2.0], index=pd.DatetimeIndex([T0 + H]))
    assert rain_to_hourly(one, _hours(3)).tolist()[1] == 2.0
    six = pd.Series([1.0] * 6, index=pd.date_range(T0 + 10 * MIN, T0 + H, freq="10min"))
    assert rain_to_hourly(six, _hours(3)).tolist()[1] == 6.0
    five = six.iloc[1:]                     # one 10-min reading short: unknown
    assert np.isnan(rain_to_hourly(five, _hours(3)).iloc[1])
    empty = rain_to_hourly(pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float))
    assert empty.empty and empty.dtype == np.float64
    ints = pd.Series([1, 2], index=pd.DatetimeIndex([T0, T0 + H]))
    assert rain_to_hourly(ints).dtype == np.float64


def test_catchment_rain_weights_and_the_half_weight_boundary() -> None:
    assert MIN_RAIN_WEIGHT == 0.5
    idx = _hours(5)
    g = pd.DataFrame({"a": [1.0, 1.0, math.nan, math.nan, math.nan],
                      "b": [3.0, math.nan, 3.0, 3.0, math.nan],
                      "c": [5.0, math.nan, math.nan, 5.0, math.nan]}, index=idx)
    got = catchment_rain(g, [0.25, 0.25, 0.5])
    # hour 0: all; 1: a only (0.25 < 0.5 of 1.0); 2: b only; 3: b + c (0.75); 4: none
    want = [(0.25 * 1 + 0.25 * 3 + 0.5 * 5) / 1.0, math.nan, math.nan,
            (0.25 * 3 + 0.5 * 5) / 0.75, math.nan]
    np.testing.assert_allclose(got.to_numpy(), want, equal_nan=True)
    assert got.name == "rain_mm" and got.index.equals(idx) and got.dtype == np.float64
    half = catchment_rain(g[["a", "b"]], [0.5, 0.5])      # exactly half the weight: kept
    np.testing.assert_allclose(half.to_numpy(), [2.0, 1.0, 3.0, 3.0, math.nan], equal_nan=True)
    unnorm = catchment_rain(g[["a", "b"]], [0.2, 0.2])    # weights need not sum to 1
    np.testing.assert_allclose(unnorm.to_numpy(), [2.0, 1.0, 3.0, 3.0, math.nan],
                               equal_nan=True)
    below = catchment_rain(g[["a", "b"]], [0.49, 0.51])   # a alone holds less than half
    assert np.isnan(below.iloc[1]) and below.iloc[2] == 3.0


def _koto_obs(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t10 = pd.date_range(T0 + 7 * MIN, periods=60, freq="10min", tz="UTC")
    th = pd.date_range(T0, periods=12, freq="h", tz="UTC")
    parts = [
        pd.DataFrame({"station_id": "jiseiji", "variable": "level_m", "time": t10,
                      "value": np.round(rng.uniform(1, 3, 60), 2)}),
        pd.DataFrame({"station_id": "kotogawa_dam_release", "variable": "release_m3s",
                      "time": t10, "value": np.round(rng.uniform(5, 50, 60), 1)}),
        pd.DataFrame({"station_id": "kotogawa_dam_rain", "variable": "rain_mm", "time": th,
                      "value": np.round(rng.gamma(0.4, 3, 12), 1)}),
        # noise that must not be read: other stations, daily series, another variable
        pd.DataFrame({"station_id": "kotogawa_dam_release", "variable": "rain_mm_daily",
                      "time": th, "value": 999.0}),
        pd.DataFrame({"station_id": "jiseiji", "variable": "discharge_m3s", "time": t10,
                      "value": 777.0}),
        pd.DataFrame({"station_id": "other", "variable": "level_m", "time": t10,
                      "value": 555.0}),
    ]
    obs = pd.concat(parts, ignore_index=True)
    obs["flag"] = rng.choice([GOOD, FILLED, DOUBTFUL, UNRELIABLE, MISSING], len(obs),
                             p=[0.6, 0.1, 0.1, 0.1, 0.1])
    return obs.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize("seed", range(4))
def test_river_hourly_telemetry_matches_naive(seed: int) -> None:
    obs = _koto_obs(seed)
    # a duplicate time: the last row wins (an UNRELIABLE copy of a reading hides it)
    dup = obs[(obs["station_id"] == "jiseiji") & (obs["variable"] == "level_m")].iloc[[0]]
    obs = pd.concat([obs, dup.assign(value=dup["value"] + 1.0, flag=GOOD)], ignore_index=True)
    h = river_hourly(obs, KOTO, start=T0 + 10 * MIN, end=T0 + 9 * H + 5 * MIN)
    index = pd.date_range(T0, T0 + 10 * H, freq="h", tz="UTC", name="time")
    assert h.index.equals(index) and h.index.name == "time"
    assert list(h.columns) == ["level_m", CENSORED, "rain_mm", "up_kotogawa_dam_release",
                               "up_kotogawa_dam_release_censored", *SILENCE_COLUMNS]

    def series(code: str, var: str) -> tuple[list[pd.Timestamp], list[float]]:
        sel = obs[(obs["station_id"] == code) & (obs["variable"] == var)]
        last = sel.drop_duplicates("time", keep="last")
        vals = [v if f in USABLE else math.nan
                for v, f in zip(last["value"], last["flag"], strict=True)]
        return list(pd.DatetimeIndex(last["time"])), vals

    lt, lv = series("jiseiji", "level_m")
    np.testing.assert_array_equal(h["level_m"].to_numpy(), _naive_level(lt, lv, index))
    ut, uv = series("kotogawa_dam_release", "release_m3s")
    np.testing.assert_array_equal(h["up_kotogawa_dam_release"].to_numpy(),
                                  _naive_level(ut, uv, index))
    rt, rv = series("kotogawa_dam_rain", "rain_mm")
    np.testing.assert_allclose(h["rain_mm"].to_numpy(), _naive_rain(rt, rv, index),
                               equal_nan=True)
    assert (h[CENSORED] == 0.0).all() and (h["up_kotogawa_dam_release_censored"] == 0.0).all()
    assert (h[UNEXPLAINED] == 0.0).all()
    assert h[[SILENT_H, LAST_M, LAST_RISE_M]].isna().all(axis=None)
    # default span: the level observations' (any flag)
    d = river_hourly(obs, KOTO)
    assert d.index[0] == min(lt).floor("h") and d.index[-1] == max(lt).ceil("h")
    e = river_hourly(obs, KOTO, start=T0 + 3 * H)
    assert e.index[0] == T0 + 3 * H and e.index[-1] == max(lt).ceil("h")
    s = river_hourly(obs, KOTO, end=T0 + 3 * H)
    assert s.index[0] == min(lt).floor("h") and s.index[-1] == T0 + 3 * H


def test_river_hourly_needs_level_observations() -> None:
    obs = _koto_obs(0)
    no_level = obs[obs["variable"] != "level_m"]
    with pytest.raises(FrameError, match=r"^river koto: no level_m observations for jiseiji$"):
        river_hourly(no_level, KOTO)
    with pytest.raises(FrameError, match="no level_m observations"):
        river_hourly(no_level, KOTO, start=T0)
    h = river_hourly(no_level, KOTO, start=T0, end=T0 + 2 * H)     # explicit span: all NaN
    assert h["level_m"].isna().all() and len(h) == 3


def test_river_hourly_crisis_primary_and_upstream_gauges() -> None:
    c = ITAYA.primary_gauge
    t10 = pd.date_range(T0 + 10 * MIN, periods=12, freq="10min", tz="UTC")
    lvl = np.linspace(1.3, 0.95, 12)
    parts = [
        pd.DataFrame({"station_id": c, "variable": "level_m", "time": t10, "value": lvl,
                      "flag": GOOD}),
        pd.DataFrame({"station_id": c, "variable": "level_m_daily_mean", "time": T0 + 6 * H,
                      "value": [3.0], "flag": GOOD}),          # daily: never read
        pd.DataFrame({"station_id": "UP-C", "variable": "level_m", "time": [T0 + H],
                      "value": [0.4], "flag": GOOD}),
        pd.DataFrame({"station_id": "UP-T", "variable": "level_m", "time": t10,
                      "value": 0.4, "flag": GOOD}),
    ]
    parts += [pd.DataFrame({"station_id": g.code, "variable": "rain_mm",
                            "time": _hours(12), "value": 0.0, "flag": GOOD})
              for g in ITAYA.rain_gauges]
    obs = pd.concat(parts, ignore_index=True)
    h = river_hourly(obs, ITAYA_UP, start=T0, end=T0 + 8 * H)
    assert list(h.columns) == ["level_m", CENSORED, "rain_mm", "up_UP-T", "up_UP-T_censored",
                               "up_UP-C", "up_UP-C_censored", *SILENCE_COLUMNS]
    assert np.isnan(h["level_m"].iloc[0]) and h["level_m"].iloc[1:3].tolist() == [lvl[5], lvl[11]]
    assert h[CENSORED].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert h[UNEXPLAINED].tolist() == [0.0] * 3 + [1.0] * 6        # upstream UP-T silent
    assert h[SILENT_H].iloc[3] == 1.0 and h[LAST_M].iloc[3] == lvl[11]
    assert h[LAST_RISE_M].iloc[3] == pytest.approx(lvl[11] - np.mean(lvl[5:11]))
    # upstream crisis gauge: censored at its start level; telemetry upstream: as read
    assert h["up_UP-C"].tolist()[1:4] == [1.0, 1.0, 1.0]
    assert h["up_UP-C_censored"].tolist()[1:4] == [1.0, 1.0, 1.0]
    assert np.isnan(h["up_UP-C"].iloc[0]) and h["up_UP-C_censored"].iloc[0] == 0.0
    assert h["up_UP-T"].tolist()[1:3] == [0.4, 0.4] and np.isnan(h["up_UP-T"].iloc[3])
    assert (h["up_UP-T_censored"] == 0.0).all()
    # a telemetry primary with a start level is not a crisis gauge: never censored
    tele = River.model_validate({**ITAYA.model_dump(), "gauges": (
        ITAYA.gauge.model_copy(update={"kind": "telemetry"}),)})
    ht = river_hourly(obs, tele, start=T0, end=T0 + 8 * H)
    assert (ht[CENSORED] == 0.0).all() and ht["level_m"].iloc[3:].isna().all()
    assert (ht[UNEXPLAINED] == 0.0).all() and ht[SILENT_H].isna().all()


def test_river_hourly_crisis_rows_last_duplicate_wins_in_any_order() -> None:
    c = ITAYA.primary_gauge
    rows = pd.DataFrame({"station_id": c, "variable": "level_m",
                         "time": [T0 + H, T0 + H, T0 + 20 * MIN],
                         "value": [0.5, 1.4, 1.0], "flag": [GOOD, GOOD, GOOD]})
    rain = pd.DataFrame({"station_id": [g.code for g in ITAYA.rain_gauges],
                         "variable": "rain_mm", "time": T0, "value": 0.0, "flag": GOOD})
    h = river_hourly(pd.concat([rows, rain], ignore_index=True), ITAYA, start=T0,
                     end=T0 + 2 * H)
    assert h["level_m"].iloc[1] == 1.4 and h[CENSORED].iloc[1] == 0.0
    assert np.isnan(h["level_m"].iloc[2])          # silent at 1.4 m: a gap
    flipped = rows.assign(value=[1.4, 0.5, 1.0])
    h = river_hourly(pd.concat([flipped, rain], ignore_index=True), ITAYA, start=T0,
                     end=T0 + 2 * H)
    assert h[CENSORED].tolist() == [0.0, 1.0, 1.0] and h["level_m"].iloc[2] == START


# ---------------------------------------------------------------------------------------------
# rows.py


def _random_hourly(seed: int, n: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = _hours(n, pd.Timestamp("2023-12-30 20:00", tz="UTC"))      # across a year end
    level = np.round(1.0 + np.cumsum(rng.normal(0, 0.05, n)), 3)
    level[rng.random(n) < 0.1] = np.nan
    rain = np.round(rng.gamma(0.4, 3.0, n), 1)
    rain[rng.random(n) < float(rng.choice([0.1, 0.3, 0.6]))] = np.nan
    up = np.round(rng.uniform(5, 9, n), 2)
    up[rng.random(n) < 0.1] = np.nan
    f = pd.DataFrame({"level_m": level, CENSORED: (rng.random(n) < 0.2).astype(float),
                      "rain_mm": rain, "up_X": up,
                      "up_X_censored": (rng.random(n) < 0.3).astype(float),
                      "up_Y": np.round(rng.uniform(0, 1, n), 2)}, index=idx)
    f[UNEXPLAINED] = (rng.random(n) < 0.2).astype(float)
    return f


def _naive_features(f: pd.DataFrame, issue: pd.DatetimeIndex) -> pd.DataFrame:
    pos = {t: i for i, t in enumerate(f.index)}
    lv = [float(x) for x in f["level_m"]]
    rain = [float(x) for x in f["rain_mm"]]
    cens = [float(x) for x in f[CENSORED]] if CENSORED in f.columns else [0.0] * len(f)
    api, a = [], 0.0
    for r in rain:
        a = (0.0 if math.isnan(r) else r) + API_DECAY_PER_H * a
        api.append(a)
    ups = [c for c in f.columns if c.startswith("up_") and not c.endswith("_censored")]
    rows = []
    for T in issue:
        row: dict[str, float] = {}
        i = pos.get(T)

        def back(col: list[float], k: int, i: int | None = i) -> float:
            return col[i] - col[i - k] if i is not None and i >= k else math.nan

        row["level_m"] = lv[i] if i is not None else math.nan
        row[CENSORED] = cens[i] if i is not None else math.nan
        for k in (1, 2, 3, 6):
            row[f"d_level_{k}h"] = back(lv, k)
        for k, need in ((1, 1), (3, 2), (6, 4), (12, 9), (24, 18), (48, 36)):
            win = [r for r in rain[max(0, (i or 0) - k + 1):(i or 0) + 1] if not math.isnan(r)]
            row[f"rain_{k}h"] = sum(win) if i is not None and len(win) >= need else math.nan
        row["api"] = api[i] if i is not None and not math.isnan(row["rain_24h"]) else math.nan
        for c in ups:
            x = [float(v) for v in f[c]]
            row[c] = x[i] if i is not None else math.nan
            cc = c + "_censored"
            xc = [float(v) for v in f[cc]] if cc in f.columns else [0.0] * len(f)
            row[cc] = xc[i] if i is not None else math.nan
            for k in (1, 3):
                row[f"d_{c}_{k}h"] = back(x, k)
        doy = T.dayofyear
        row["doy_sin"] = math.sin(2 * math.pi * doy / 365.25)
        row["doy_cos"] = math.cos(2 * math.pi * doy / 365.25)
        row["hour_jst"] = float((T.hour + 9) % 24)
        rows.append(row)
    return pd.DataFrame(rows, index=pd.DatetimeIndex(issue, name="issued_at"))


@pytest.mark.parametrize("seed", range(6))
def test_build_features_matches_naive(seed: int) -> None:
    f = _random_hourly(seed)
    issue = pd.DatetimeIndex([*f.index[::3], f.index[-1] + 5 * H, f.index[0] - 2 * H])
    got = build_features(f, list(issue))
    want = _naive_features(f, issue)
    assert list(got.columns) == [
        "level_m", CENSORED, "d_level_1h", "d_level_2h", "d_level_3h", "d_level_6h",
        "rain_1h", "rain_3h", "rain_6h", "rain_12h", "rain_24h", "rain_48h", "api",
        "up_X", "up_X_censored", "d_up_X_1h", "d_up_X_3h",
        "up_Y", "up_Y_censored", "d_up_Y_1h", "d_up_Y_3h", "doy_sin", "doy_cos", "hour_jst"]
    assert got.index.name == "issued_at" and got.index.equals(want.index)
    pd.testing.assert_frame_equal(got, want[list(got.columns)], check_exact=False, rtol=1e-12,
                                  atol=1e-9)
    assert (got.dtypes == np.float64).all()
    # integer-valued columns are read as floats
    ints = f.assign(level_m=np.arange(len(f)), rain_mm=1, up_Y=np.arange(len(f)) * 2)
    gi = build_features(ints, issue[:5])
    pd.testing.assert_frame_equal(gi, _naive_features(ints.astype(float), issue[:5])[
        list(gi.columns)], check_exact=False, rtol=1e-12, atol=1e-9)


def test_rain_sums_need_three_quarters_of_the_window() -> None:
    idx = _hours(48)
    for k, need in ((3, 2), (6, 4), (12, 9), (24, 18), (48, 36)):
        for known, ok in ((need, True), (need - 1, False)):
            rain = np.full(48, np.nan)
            rain[48 - known:] = 1.0
            f = pd.DataFrame({"level_m": 1.0, "rain_mm": rain}, index=idx)
            x = build_features(f, [idx[-1]])
            val = float(x[f"rain_{k}h"].iloc[0])
            assert (val == known) if ok else np.isnan(val), (k, known)
    f = pd.DataFrame({"level_m": 1.0, "rain_mm": [math.nan, 2.0]}, index=_hours(2))
    x = build_features(f, list(_hours(2)))
    assert np.isnan(x["rain_1h"].iloc[0]) and x["rain_1h"].iloc[1] == 2.0
    assert x["api"].isna().all()                            # rain_24h unknown: API masked


def test_api_decays_by_095_per_hour() -> None:
    idx = _hours(30)
    rain = np.zeros(30)
    rain[0] = 10.0
    rain[5] = math.nan                                      # a missing hour counts as dry
    f = pd.DataFrame({"level_m": 1.0, "rain_mm": rain}, index=idx)
    x = build_features(f, list(idx))
    want = [10.0 * 0.95 ** i if i >= 18 else math.nan for i in range(30)]
    np.testing.assert_allclose(x["api"].to_numpy(), want, equal_nan=True, rtol=1e-12)


def test_calendar_features() -> None:
    t = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 14:00", "2024-01-01 15:00",
                          "2024-07-01 23:00", "2024-12-31 00:00"], tz="UTC")
    f = pd.DataFrame({"level_m": 1.0, "rain_mm": 0.0},
                     index=pd.date_range(t[0], t[-1], freq="h", tz="UTC"))
    x = build_features(f, t)
    assert x["hour_jst"].tolist() == [9.0, 23.0, 0.0, 8.0, 9.0]
    doy = np.array([1, 1, 1, 183, 366])
    np.testing.assert_allclose(x["doy_sin"], np.sin(2 * np.pi * doy / 365.25), rtol=1e-12)
    np.testing.assert_allclose(x["doy_cos"], np.cos(2 * np.pi * doy / 365.25), rtol=1e-12)
    assert x["doy_sin"].iloc[0] == pytest.approx(0.0172020, abs=1e-6)   # 1 Jan
    assert x["doy_cos"].iloc[0] == pytest.approx(0.9998520, abs=1e-6)
    assert x["doy_sin"].iloc[3] == pytest.approx(-0.0064509, abs=1e-6)  # 1 July (leap year)
    assert x["doy_cos"].iloc[3] == pytest.approx(-0.9999792, abs=1e-6)


def test_future_rain_modes_and_checks() -> None:
    f = _random_hourly(7, n=30)
    it = pd.DatetimeIndex(f.index[[2, 5, 20]])
    base = build_features(f, it)
    perfect = build_features(f, it, future_rain="perfect")
    assert list(perfect.columns) == [*base.columns, *FC_RAIN_FEATURES]
    pd.testing.assert_frame_equal(perfect[list(FC_RAIN_FEATURES)],
                                  perfect_rain(f, it).rename_axis("issued_at"))
    rain = f["rain_mm"].tolist()
    for j, T in enumerate(it):
        i = list(f.index).index(T)
        tot = 0.0
        for h in range(1, 7):
            tot += rain[i + h]                                  # NaN propagates
            assert perfect[f"rain_fc_{h}h"].iloc[j] == pytest.approx(tot, nan_ok=True)
    vint = pd.DataFrame({"product": "p", "catchment_id": ["r1", "r1", "r2"],
                         "issued_at": [it[0], it[0], it[0]],
                         "valid_at": [it[0] + H, it[0] + 2 * H, it[0] + H],
                         "value": [1.0, 2.0, 50.0]})
    arch = build_features(f, it, future_rain="archive", vintages=vint, catchment_id="r1")
    assert list(arch.columns) == list(perfect.columns)
    assert arch["rain_fc_1h"].tolist()[0] == 1.0 and arch["rain_fc_2h"].tolist()[0] == 3.0
    assert np.isnan(arch["rain_fc_3h"].iloc[0])
    dflt = build_features(f, it, future_rain="archive", vintages=vint)   # catchment "": none
    assert dflt[list(FC_RAIN_FEATURES)].isna().all(axis=None)
    with pytest.raises(FrameError, match=r"^future_rain='archive' needs a rain-vintage frame$"):
        build_features(f, it, future_rain="archive")
    with pytest.raises(FrameError, match=r"^future_rain must be one of \('archive', 'perfect', "
                       r"'none'\), got 'later'$"):
        build_features(f, it, future_rain="later")  # type: ignore[arg-type]


def test_perfect_rain_is_the_observed_rain_after_t() -> None:
    idx = _hours(10)
    f = pd.DataFrame({"level_m": 1.0, "rain_mm": [float(2 ** i) for i in range(10)]}, index=idx)
    got = perfect_rain(f, idx[[1, 5]])
    assert got.index.equals(idx[[1, 5]]) and list(got.columns) == list(FC_RAIN_FEATURES)
    assert got.iloc[0].tolist() == [4.0, 12.0, 28.0, 60.0, 124.0, 252.0]
    assert got.iloc[1].tolist()[:4] == [64.0, 192.0, 448.0, 960.0]
    assert got.iloc[1, 4:].isna().all()


def test_archive_rain_edges() -> None:
    it = _hours(3)
    cols = list(FC_RAIN_FEATURES)
    empty = pd.DataFrame({"product": [], "catchment_id": [], "issued_at": [], "valid_at": [],
                          "value": []})
    for v in (empty, pd.DataFrame({"product": "p", "catchment_id": ["x"], "issued_at": [it[0]],
                                   "valid_at": [it[0] + H], "value": [1.0]})):
        got = archive_rain(v, "koto", it)
        assert got.index.equals(it) and list(got.columns) == cols
        assert got.isna().all(axis=None) and (got.dtypes == np.float64).all()
    # a vintage issued after T is not used; before the first vintage everything is NaN;
    # of duplicate (issued_at, valid_at) rows the last counts
    v = pd.DataFrame({"product": "p", "catchment_id": "k",
                      "issued_at": [it[1], it[1], it[1]], "valid_at": [it[1] + H] * 2
                      + [it[1] + 2 * H], "value": [5.0, 7.0, 1.0]})
    got = archive_rain(v, "k", it)
    assert got.iloc[0].isna().all()
    assert got.iloc[1].tolist()[:2] == [7.0, 8.0] and got.iloc[1, 2:].isna().all()
    assert got.iloc[2, 0] == 1.0 and got.iloc[2, 1:].isna().all()   # its 2nd step
    none = archive_rain(v, "k", pd.DatetimeIndex([], tz="UTC"))
    assert none.empty and list(none.columns) == cols


def test_targets_match_naive_and_skip_unexplained_hours() -> None:
    f = _random_hourly(11, n=40)
    it = pd.DatetimeIndex(f.index[[0, 7, 30, 36, 39]])
    for leads in ((1, 2, 3, 4, 5, 6), (2, 5)):
        y = targets(f, it, leads=leads)
        assert list(y.columns) == [f"dh_{h}h" for h in leads]
        assert y.index.name == "issued_at" and y.index.equals(it)
        lv, un = f["level_m"].tolist(), f[UNEXPLAINED].tolist()
        for j, T in enumerate(it):
            i = list(f.index).index(T)
            for h in leads:
                want = (lv[i + h] - lv[i] if i + h < len(f) and un[i + h] == 0.0
                        else math.nan)
                assert y[f"dh_{h}h"].iloc[j] == pytest.approx(want, nan_ok=True)
    assert targets(f, it).shape == (5, 6)
    ints = f.assign(level_m=np.arange(40))
    assert targets(ints.drop(columns=[UNEXPLAINED]), it[:1])["dh_2h"].iloc[0] == 2.0


@pytest.mark.parametrize(("frame", "message"), [
    (pd.DataFrame({"level_m": [1.0], "rain_mm": [0.0]}, index=[0]),
     "river frame needs a tz-aware UTC DatetimeIndex"),
    (pd.DataFrame({"level_m": [1.0], "rain_mm": [0.0]},
                  index=pd.DatetimeIndex(["2024-01-01"])),
     "river frame needs a tz-aware UTC DatetimeIndex"),
    (pd.DataFrame({"level_m": [1.0], "rain_mm": [0.0]},
                  index=pd.DatetimeIndex(["2024-01-01"], tz="Asia/Tokyo")),
     "river frame needs a tz-aware UTC DatetimeIndex"),
    (pd.DataFrame({"level_m": [1.0, 1.0], "rain_mm": [0.0, 0.0]},
                  index=pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 02:00"], tz="UTC")),
     "river frame index must be regular hourly (use river_hourly)"),
    (pd.DataFrame({"level_m": [1.0]}, index=pd.DatetimeIndex(["2024-01-01"], tz="UTC")),
     "river frame needs columns 'level_m' and 'rain_mm'"),
    (pd.DataFrame({"rain_mm": [1.0]}, index=pd.DatetimeIndex(["2024-01-01"], tz="UTC")),
     "river frame needs columns 'level_m' and 'rain_mm'"),
])
def test_river_frame_checks(frame: pd.DataFrame, message: str) -> None:
    for fn in (build_features, targets):
        with pytest.raises(FrameError) as err:
            fn(frame, [pd.Timestamp("2024-01-01", tz="UTC")])
        assert str(err.value) == message


def test_issue_time_checks() -> None:
    f = pd.DataFrame({"level_m": [1.0, 2.0], "rain_mm": 0.0}, index=_hours(2))
    for bad, message in (
            ([pd.Timestamp("2024-07-01 00:00")], "issue times must be tz-aware UTC"),
            (pd.DatetimeIndex(["2024-07-01 09:00"], tz="Asia/Tokyo"),
             "issue times must be tz-aware UTC"),
            ([T0 + 30 * MIN], "issue times must be whole hours"),
            (pd.DatetimeIndex([T0, T0 + NS]), "issue times must be whole hours")):
        for fn in (build_features, targets):
            with pytest.raises(FrameError) as err:
                fn(f, bad)
            assert str(err.value) == message
    assert len(build_features(f, pd.DatetimeIndex([], tz="UTC"))) == 0
    assert len(targets(f, pd.DatetimeIndex([], tz="UTC"))) == 0
    x = build_features(f, pd.DatetimeIndex([T0 + H]))
    assert x["level_m"].tolist() == [2.0] and x["d_level_1h"].tolist() == [1.0]
    one = pd.DataFrame({"level_m": [3.0], "rain_mm": 0.0}, index=_hours(1))
    assert build_features(one, [T0])["level_m"].tolist() == [3.0]


def test_feature_groups() -> None:
    names = ["level_m", CENSORED, "d_level_1h", *PAST_RAIN_FEATURES, *FC_RAIN_FEATURES,
             "up_A", "up_A_censored", "d_up_A_1h", "doy_sin", "hour_jst", "rain_fc_7h",
             "d_level_up_x", "xup_"]
    got = feature_groups(names)
    assert got == {
        "base": ["level_m", CENSORED, "d_level_1h", "doy_sin", "hour_jst", "rain_fc_7h",
                 "d_level_up_x", "xup_"],
        "rain": list(PAST_RAIN_FEATURES),
        "fc": list(FC_RAIN_FEATURES),
        "upstream": ["up_A", "up_A_censored", "d_up_A_1h"]}
    assert feature_groups([]) == {"base": [], "rain": [], "fc": [], "upstream": []}


# ---------------------------------------------------------------------------------------------
# columns.py


def test_column_helpers() -> None:
    f = pd.DataFrame({"level_m": [1.0, 2.0], "up_A": 1.0, "up_A_censored": [1.0, math.nan],
                      "xup_B": 1.0, "up_C": 2.0, 5: 3.0}, index=_hours(2))
    assert extra_columns(f) == ["up_A", "up_C"]
    got = censored_column(f, "up_A_censored")
    assert got.tolist() == [1.0, 0.0] and got.dtype == np.float64
    ints = censored_column(f.assign(up_A_censored=[1, 0]), "up_A_censored")
    assert ints.dtype == np.float64
    none = censored_column(f, CENSORED)
    assert none.tolist() == [0.0, 0.0] and none.index.equals(f.index)
    assert none.dtype == np.float64


# ---------------------------------------------------------------------------------------------
# survivors of the first mutation run (docs/mutation.md)


def test_two_rows_in_reverse_order_are_sorted() -> None:
    rows = _rows([T0 + H, T0], [0.5, 1.5])
    got = crisis_level_to_hourly(rows, START, _hours(3))
    assert got["level"].tolist()[0] == 1.5 and got["censored"].tolist() == [0.0, 1.0, 1.0]


def test_crisis_rows_are_the_level_rows_of_the_gauge_and_dtypes() -> None:
    c = ITAYA.primary_gauge
    obs = pd.DataFrame({"station_id": c, "variable": ["level_m", "level_m", "discharge_m3s"],
                        "time": [T0, T0 + H, T0 + 3 * H], "value": [1.5, 0.95, 4.0],
                        "flag": GOOD})
    rain = pd.DataFrame({"station_id": [g.code for g in ITAYA.rain_gauges] * 2,
                         "variable": ["rain_mm", "rain_mm", "level_m", "level_m"],
                         "time": [T0, T0, T0 + 4 * H, T0 + 4 * H], "value": [0.0, 0.0, 9.0, 9.0],
                         "flag": GOOD})
    h = river_hourly(pd.concat([obs, rain], ignore_index=True), ITAYA, start=T0, end=T0 + 4 * H)
    assert h[CENSORED].tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]       # the discharge is not read
    assert h["level_m"].tolist()[2:] == [START] * 3
    assert np.isnan(h["rain_mm"].iloc[4])                          # a level is not rain
    assert (h.dtypes == np.float64).all()
    ht = river_hourly(_koto_obs(0), KOTO, start=T0, end=T0 + 3 * H)
    assert (ht.dtypes == np.float64).all()


def test_duplicate_crisis_rows_do_not_count_twice_in_the_trend() -> None:
    c = ITAYA.primary_gauge
    rows = pd.DataFrame({"station_id": c, "variable": "level_m",
                         "time": [T0 + 20 * MIN, T0 + H, T0 + H],
                         "value": [1.0, 1.4, 0.5], "flag": GOOD})
    rain = pd.DataFrame({"station_id": [g.code for g in ITAYA.rain_gauges],
                         "variable": "rain_mm", "time": T0, "value": 0.0, "flag": GOOD})
    h = river_hourly(pd.concat([rows, rain], ignore_index=True), ITAYA, start=T0,
                     end=T0 + 2 * H)
    assert h[LAST_RISE_M].iloc[2] == pytest.approx(0.5 - 1.0)


def test_rain_series_of_two_readings_uses_their_step() -> None:
    two = pd.Series([1.0, 2.0], index=pd.DatetimeIndex([T0 + 50 * MIN, T0 + H]))
    assert np.isnan(rain_to_hourly(two, _hours(2)).iloc[1])        # 2 of 6 readings
    hourly = pd.Series([1.0, 2.0], index=pd.DatetimeIndex([T0, T0 + H]))
    assert rain_to_hourly(hourly, _hours(2)).tolist() == [1.0, 2.0]


def test_naive_span_is_utc() -> None:
    h = river_hourly(_koto_obs(0), KOTO, start=pd.Timestamp("2024-07-01 00:30"),
                     end=pd.Timestamp("2024-07-01 03:00"))
    assert str(h.index.tz) == "UTC" and h.index[0] == T0 and len(h) == 4


def test_default_catchment_id_is_empty() -> None:
    f = pd.DataFrame({"level_m": 1.0, "rain_mm": 0.0}, index=_hours(3))
    vint = pd.DataFrame({"product": "p", "catchment_id": [""], "issued_at": [T0],
                         "valid_at": [T0 + H], "value": [4.0]})
    x = build_features(f, [T0], future_rain="archive", vintages=vint)
    assert x["rain_fc_1h"].tolist() == [4.0]


def test_silence_reason_boundaries_and_a_telemetry_gauge_with_a_start_level() -> None:
    # rain known for exactly 75 % and 10 mm exactly: only the rain is named
    f = _frame(5, silent_h=[math.nan, math.nan, math.nan, math.nan, 3.5],
               rain=[0.0, math.nan, 5.0, 0.0, 5.0])
    assert silence_reason(f, ITAYA, T0 + 4 * H) == (
        f"{WHO} silent 4 h since 0.95 m at 2024-07-01 09:30 JST while 10 mm of rain fell over "
        f"the catchment; {GUESS}")
    tele = River.model_validate({**ITAYA.model_dump(), "gauges": (
        ITAYA.gauge.model_copy(update={"kind": "telemetry"}),)})
    assert silence_reason(f, tele, T0 + 4 * H) == (
        "gauge 板屋 (MIE-C-007, 板屋川): level censored at 2024-07-01 13:00 JST but the river "
        "frame has no silence columns (not built by river_hourly), so it is not read as low "
        "water")
