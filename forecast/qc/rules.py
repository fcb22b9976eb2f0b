"""Vectorised QC rule primitives on one series of *usable* readings.

Every function takes ``t`` (int64 nanoseconds since the epoch, strictly increasing) and ``v``
(float64, finite) for the readings a rule may look at, and returns a boolean mask of the readings
the rule condemns. No Python loop runs per reading: differences, prefix sums and
``searchsorted`` do the work, so a year of 10-minute data takes milliseconds.

A value *exactly* at a limit passes; the comparison allows ``EPS`` of floating-point noise so
that e.g. a rise of 0.50 m in 10 minutes against 3.0 m/h is "at the limit", not "just over".
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

NS_PER_H: Final = 3_600_000_000_000
EPS: Final = 1e-9
"""Tolerance (m, mm, or m per step) below which a difference counts as "at the limit"."""


def _ns(hours: float) -> float:
    return hours * NS_PER_H


def spikes(t: IntArray, v: FloatArray, spike: float, max_gap_h: float) -> BoolArray:
    """Readings that depart from *both* neighbours by more than ``spike`` in opposite directions.

    Up-then-down (a peak) and down-then-up (a dropout, e.g. a logger writing 0) both count.
    Both neighbours must lie within ``max_gap_h`` hours: across a long gap a large excursion is
    as likely a real, poorly sampled flood peak, so the rate rules judge it instead. The first
    and last readings have one neighbour only and are never spikes.
    """
    out = np.zeros(len(v), dtype=bool)
    if len(v) < 3:
        return out
    left = v[1:-1] - v[:-2]
    right = v[1:-1] - v[2:]
    near = (np.diff(t)[:-1] <= _ns(max_gap_h)) & (np.diff(t)[1:] <= _ns(max_gap_h))
    lim = spike + EPS
    out[1:-1] = near & (((left > lim) & (right > lim)) | ((left < -lim) & (right < -lim)))
    return out


def rates(
    t: IntArray, v: FloatArray, max_rise_per_h: float, max_fall_per_h: float
) -> tuple[BoolArray, BoolArray]:
    """(rise, fall) masks: the change from the previous reading exceeds the rate over the
    *actual* time between them (irregular series and gaps are judged fairly: 1 m over a 2 h gap
    is 0.5 m/h). The later reading of the pair is the one flagged."""
    rise = np.zeros(len(v), dtype=bool)
    fall = np.zeros(len(v), dtype=bool)
    if len(v) < 2:
        return rise, fall
    dv = np.diff(v)
    dt_h = np.diff(t) / NS_PER_H
    rise[1:] = dv > max_rise_per_h * dt_h + EPS
    fall[1:] = -dv > max_fall_per_h * dt_h + EPS
    return rise, fall


def run_starts(v: FloatArray) -> IntArray:
    """For each reading, the index of the first reading of its run of equal values (±EPS)."""
    n = len(v)
    idx = np.arange(n, dtype=np.int64)
    if n == 0:
        return idx
    change = np.ones(n, dtype=bool)
    change[1:] = np.abs(np.diff(v)) > EPS
    return np.maximum.accumulate(np.where(change, idx, 0))


def stuck(t: IntArray, v: FloatArray, stuck_h: float) -> BoolArray:
    """Readings inside a run of identical values that has lasted more than ``stuck_h`` hours.

    Causal on purpose: a reading is flagged only once the run *up to it* exceeds the period, so
    the flags a live cycle computes at T equal those a training run computes on the full
    history (the first ``stuck_h`` hours of the run stay GOOD in both).
    """
    if len(v) == 0:
        return np.zeros(0, dtype=bool)
    start = run_starts(v)
    return np.asarray((t - t[start]) > _ns(stuck_h), dtype=bool)


def _window_stats(
    s1: FloatArray, s2: FloatArray, lo: IntArray, hi: IntArray
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Mean, standard deviation and count of readings [lo, hi) from prefix sums."""
    n = (hi - lo).astype(np.int64)
    safe = np.maximum(n, 1)
    mean = (s1[hi] - s1[lo]) / safe
    var = np.maximum((s2[hi] - s2[lo]) / safe - mean * mean, 0.0)
    return mean, np.sqrt(var), n


def datum_jumps(
    t: IntArray,
    v: FloatArray,
    jump: float,
    *,
    persist_h: float,
    max_gap_h: float,
    flat_std: float,
    min_count: int,
) -> BoolArray:
    """Readings that start, and confirm, a persistent step change (a datum/offset jump).

    Heuristic: between two consecutive readings (at most ``max_gap_h`` apart) the level changes
    by more than ``jump``; the readings in the ``persist_h`` hours before the step and in the
    ``persist_h`` hours from it on are each *flat* (standard deviation <= ``flat_std``, at least
    ``min_count`` readings, the after-window fully observed), and the means of the two windows
    differ by more than ``jump / 2`` in the direction of the step. A flood rise fails the test:
    its steps are spread over many readings and the level keeps moving (rises further, peaks,
    recedes), so the after-window is not flat. The step reading and the ``persist_h`` hours that
    confirmed it are flagged; later readings are the gauge's new normal until the catalogue datum
    is fixed. Limits: a gate operation or weir change that really steps the level is flagged
    too (it is only DOUBTFUL), and a jump hidden inside a flood is not detected.
    """
    n = len(v)
    out = np.zeros(n, dtype=bool)
    if n < 2:
        return out
    dv = np.diff(v)
    cand = np.flatnonzero((np.abs(dv) > jump + EPS) & (np.diff(t) <= _ns(max_gap_h))) + 1
    if len(cand) == 0:
        return out
    c = v - v.mean()  # centring keeps the prefix sums of squares well conditioned
    s1 = np.concatenate(([0.0], np.cumsum(c)))
    s2 = np.concatenate(([0.0], np.cumsum(c * c)))
    persist = np.int64(round(_ns(persist_h)))
    after_hi = np.searchsorted(t, t[cand] + persist, side="right").astype(np.int64)
    before_lo = np.searchsorted(t, t[cand - 1] - persist, side="left").astype(np.int64)
    m_after, sd_after, n_after = _window_stats(s1, s2, cand, after_hi)
    m_before, sd_before, n_before = _window_stats(s1, s2, before_lo, cand)
    shift = (m_after - m_before) * np.sign(dv[cand - 1])
    ok = (
        (t[-1] >= t[cand] + persist)
        & (n_after >= min_count)
        & (n_before >= min_count)
        & (sd_after <= flat_std)
        & (sd_before <= flat_std)
        & (shift > jump / 2)
    )
    if not ok.any():
        return out
    # mark [cand, after_hi) for the confirmed jumps with a difference array (windows may overlap)
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, cand[ok], 1)
    np.add.at(marks, after_hi[ok], -1)
    return np.asarray(np.cumsum(marks[:n]) > 0, dtype=bool)
