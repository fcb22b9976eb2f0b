"""QC of one station's series held as numpy arrays: rule order, worst-flag merge, gap filling.

The DataFrame layer (``forecast.qc.frame``) splits a frame by station/variable and calls
``level_flags`` / ``rain_flags`` / ``other_flags`` on each slice, then ``gap_fill`` for levels.
Arrays in: ``t`` int64 ns (strictly increasing), ``v`` float64 (NaN = no value), ``flag`` int8
(the *source* flag, previous QC verdicts already stripped). Arrays out: the new flag and a rule
code per reading; code 0 keeps the source's own ``qc_rule`` text, code k > 0 means
``RULE_NAMES[k]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from forecast.catalogue import QCLimits
from forecast.frames import Flag
from forecast.qc import rules
from forecast.qc.rules import EPS, NS_PER_H, BoolArray, FloatArray, IntArray

Int8Array = npt.NDArray[np.int8]

# Tie order: when two rules give the same (worst) flag, the one listed first keeps its name; the
# source's own rule (code 0) comes before all of them. Specific rules precede generic ones
# (a datum jump also trips the rate rule; "datum_jump" is the more useful name).
RULE_NAMES: Final = (
    "", "missing_value", "hard_min", "hard_max", "spike", "soft_min", "soft_max",
    "datum_jump", "rate_of_rise", "rate_of_fall", "stuck", "gap_fill",
)
QC_RULES: Final = frozenset(RULE_NAMES[1:])
"""Every ``qc_rule`` value this module writes (source rules are prefixed, e.g. ``mlit:$``)."""
_CODE: Final = {name: np.int8(i) for i, name in enumerate(RULE_NAMES)}

SPIKE_MAX_GAP_H: Final = 0.5
"""Both neighbours of a spike must be this close (h); coarser series are judged by rate only."""
DATUM_PERSIST_H: Final = 6.0
"""A datum jump must hold, flat, for this long (h) before it is flagged."""
DATUM_MAX_GAP_H: Final = 24.0
"""A datum step may span a gap this long (h): re-surveys often happen during an outage."""
DATUM_FLAT_FRACTION: Final = 0.2
"""Flat = standard deviation <= this fraction of ``datum_jump_m`` on both sides of the step."""
DATUM_MIN_COUNT: Final = 3
"""Readings needed in each window to call it flat."""

_USABLE_MAX: Final = int(Flag.DOUBTFUL)  # GOOD, FILLED and DOUBTFUL sort below UNRELIABLE


@dataclass(frozen=True)
class RainLimits:
    """Rain-gauge limits (mm per accumulation interval, hours).

    The 10-minute limits apply to series whose step is at most 10 minutes; coarser series use
    the hourly limits multiplied by the step in hours (at least 1). 150 mm/10 min and 200 mm/h
    lie well above Japan's records (about 50 mm/10 min and 153 mm/h), so only impossible values
    are UNRELIABLE; 50 mm/10 min and 120 mm/h are rare enough to be worth a look (DOUBTFUL).
    ``stuck_hours``: a *non-zero* amount repeated for longer than this is DOUBTFUL (a tipping
    bucket or logger repeating its last value); long runs of zero are ordinary dry weather.
    """

    hard_max_mm_10min: float = 150.0
    soft_max_mm_10min: float = 50.0
    hard_max_mm_1h: float = 200.0
    soft_max_mm_1h: float = 120.0
    stuck_hours: float = 6.0

    def for_step(self, step_ns: int) -> tuple[float, float]:
        """(hard, soft) maximum in mm per reading for a series of this step."""
        if step_ns <= 600_000_000_000:
            return self.hard_max_mm_10min, self.soft_max_mm_10min
        scale = max(1.0, step_ns / NS_PER_H)
        return self.hard_max_mm_1h * scale, self.soft_max_mm_1h * scale


class _Verdict:
    """Running worst-flag merge: a rule only overrides a strictly better flag."""

    def __init__(self, flag: Int8Array) -> None:
        self.flag = flag.astype(np.int8, copy=True)
        self.code = np.zeros(len(flag), dtype=np.int8)

    def apply(self, mask: BoolArray, flag: Flag, rule: str) -> None:
        upd = mask & (self.flag < int(flag))
        self.flag[upd] = int(flag)
        self.code[upd] = _CODE[rule]

    def at(self, idx: IntArray, mask: BoolArray, flag: Flag, rule: str) -> None:
        """Apply a mask computed on the sub-series ``idx`` of the readings."""
        full = np.zeros(len(self.flag), dtype=bool)
        full[idx[mask]] = True
        self.apply(full, flag, rule)


def _start(v: FloatArray, flag: Int8Array) -> tuple[_Verdict, BoolArray]:
    """Verdict seeded with the source flags, and the readings the rules may examine."""
    verdict = _Verdict(flag)
    open_ = flag <= _USABLE_MAX
    missing = np.isnan(v)
    # NaN must never pass as GOOD; a source UNRELIABLE/MISSING/BELOW_START keeps its own rule
    verdict.apply(open_ & missing, Flag.MISSING, "missing_value")
    return verdict, open_ & ~missing


def level_flags(
    t: IntArray, v: FloatArray, flag: Int8Array, limits: QCLimits
) -> tuple[Int8Array, Int8Array]:
    """Level (m) rules in order: hard limits, spikes, soft limits, datum jump, rates, stuck.

    Hard-limit and spike readings are removed before the later rules look at neighbours, so one
    bad reading does not also condemn the good reading after it through the rate rule.
    """
    verdict, valid = _start(v, flag)
    below = valid & (v < limits.hard_min_m - EPS)
    above = valid & (v > limits.hard_max_m + EPS)
    verdict.apply(below, Flag.UNRELIABLE, "hard_min")
    verdict.apply(above, Flag.UNRELIABLE, "hard_max")
    idx = np.flatnonzero(valid & ~below & ~above)
    spike = rules.spikes(t[idx], v[idx], limits.spike_m, SPIKE_MAX_GAP_H)
    verdict.at(idx, spike, Flag.UNRELIABLE, "spike")
    if limits.soft_min_m is not None:
        verdict.at(idx, v[idx] < limits.soft_min_m - EPS, Flag.DOUBTFUL, "soft_min")
    if limits.soft_max_m is not None:
        verdict.at(idx, v[idx] > limits.soft_max_m + EPS, Flag.DOUBTFUL, "soft_max")
    idx = idx[~spike]
    ts, vs = t[idx], v[idx]
    jump = rules.datum_jumps(
        ts, vs, limits.datum_jump_m, persist_h=DATUM_PERSIST_H, max_gap_h=DATUM_MAX_GAP_H,
        flat_std=DATUM_FLAT_FRACTION * limits.datum_jump_m, min_count=DATUM_MIN_COUNT,
    )
    verdict.at(idx, jump, Flag.DOUBTFUL, "datum_jump")
    rise, fall = rules.rates(ts, vs, limits.max_rise_m_per_h, limits.max_fall_m_per_h)
    verdict.at(idx, rise, Flag.DOUBTFUL, "rate_of_rise")
    verdict.at(idx, fall, Flag.DOUBTFUL, "rate_of_fall")
    verdict.at(idx, rules.stuck(ts, vs, limits.stuck_hours), Flag.DOUBTFUL, "stuck")
    return verdict.flag, verdict.code


def rain_flags(
    t: IntArray, v: FloatArray, flag: Int8Array, limits: RainLimits, step_ns: int
) -> tuple[Int8Array, Int8Array]:
    """Rain (mm per interval) rules: negative and above-hard → UNRELIABLE, above-soft and stuck
    non-zero → DOUBTFUL. No spike or rate rule: rain is intermittent by nature."""
    verdict, valid = _start(v, flag)
    hard, soft = limits.for_step(step_ns)
    below = valid & (v < -EPS)
    above = valid & (v > hard + EPS)
    verdict.apply(below, Flag.UNRELIABLE, "hard_min")
    verdict.apply(above, Flag.UNRELIABLE, "hard_max")
    verdict.apply(valid & (v > soft + EPS), Flag.DOUBTFUL, "soft_max")
    idx = np.flatnonzero(valid & ~below & ~above)
    vs = v[idx]
    stuck = rules.stuck(t[idx], vs, limits.stuck_hours) & (vs > EPS)
    verdict.at(idx, stuck, Flag.DOUBTFUL, "stuck")
    return verdict.flag, verdict.code


def other_flags(v: FloatArray, flag: Int8Array) -> tuple[Int8Array, Int8Array]:
    """Discharge, dam release, inflow: no limits in the catalogue yet; only NaN → MISSING."""
    verdict, _ = _start(v, flag)
    return verdict.flag, verdict.code


def gap_fill(
    t: IntArray, v: FloatArray, flag: Int8Array, prov: BoolArray, step_ns: int, max_fill_h: float
) -> tuple[IntArray, FloatArray, BoolArray]:
    """Linear interpolation across short holes between usable readings (after QC).

    A hole between two consecutive usable readings at ``t0 < t1`` is filled when it is at most
    ``max_fill_h`` long, the hole being ``t1 - t0 - step`` (missing steps x step: with a 10-min
    step and 1 h, up to six missing readings). New readings go at ``t0 + k*step`` (``t0 + k*step
    <= t1 - step/2``) and only where the frame has no row within half a step: a row that exists
    but is unusable (UNRELIABLE, MISSING, BELOW_START) is kept as it is, never overwritten. Fills
    are provisional when either anchor is. Returns (times, values, provisional) of new rows.
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, bool))
    if max_fill_h <= 0 or step_ns <= 0:
        return empty
    a = np.flatnonzero((flag <= _USABLE_MAX) & ~np.isnan(v))
    if len(a) < 2:
        return empty
    ta = t[a]
    dt = np.diff(ta)
    # candidates t0 + k*step, k = 1..count, k*step <= dt - step/2 (doubled: exact for odd steps)
    count = (2 * dt - step_ns) // (2 * step_ns)
    max_hole = round(max_fill_h * NS_PER_H)
    gap = np.flatnonzero((count >= 1) & (dt - step_ns <= max_hole))
    if len(gap) == 0:
        return empty
    count = count[gap]
    g = np.repeat(gap, count)
    k = np.arange(len(g), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count) + 1
    t0, t1 = ta[g], ta[g + 1]
    tf = t0 + k * step_ns
    # nearest existing row of any flag: never put a fill next to a row already there
    pos = np.searchsorted(t, tf)
    d_next = np.abs(t[np.minimum(pos, len(t) - 1)] - tf)
    d_prev = np.abs(tf - t[np.maximum(pos - 1, 0)])
    keep = 2 * np.minimum(d_next, d_prev) >= step_ns
    v0, v1 = v[a][g], v[a][g + 1]
    vf = v0 + (v1 - v0) * ((tf - t0) / (t1 - t0))
    pf = prov[a][g] | prov[a][g + 1]
    return tf[keep], vf[keep], pf[keep]
