"""QC on canonical observations frames: ``qc_levels``, ``qc_rain``, ``apply_qc``, ``usable``.

All functions are pure (no clock, no I/O) and return a new frame with the canonical columns
(``forecast.frames.OBS_COLUMNS``), never sharing memory with the input: the rows of each
station/variable are contiguous and in time order (blocks keep the input's order when it was
already grouped like that, otherwise they are sorted by station_id, variable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import pandas as pd

from forecast import frames
from forecast.catalogue import Catalogue, QCLimits
from forecast.errors import FrameError
from forecast.frames import LEVEL, RAIN, Flag
from forecast.qc.series import (
    QC_RULES,
    RULE_NAMES,
    Int8Array,
    RainLimits,
    gap_fill,
    level_flags,
    other_flags,
    rain_flags,
)

USABLE_FLAGS: Final = frozenset({int(Flag.GOOD), int(Flag.FILLED), int(Flag.DOUBTFUL)})
_NAMES: Final = np.asarray(RULE_NAMES, dtype=object)

# What to run on one station/variable slice: LEVEL limits, RAIN limits, or None (NaN check only)
Resolver = Callable[[str, str], QCLimits | RainLimits | None]


def usable(obs: pd.DataFrame) -> pd.Series:
    """Boolean Series (same index as ``obs``): the reading may feed features and models.

    GOOD, FILLED and DOUBTFUL readings with a value are usable; UNRELIABLE, MISSING and
    BELOW_START (and any NaN value) are not. Needs the ``flag`` and ``value`` columns.
    """
    return obs["flag"].isin(list(USABLE_FLAGS)) & obs["value"].notna()


def qc_levels(obs: pd.DataFrame, limits: QCLimits, *, step: str | None = "10min") -> pd.DataFrame:
    """QC one station's ``level_m`` series (m) against its ``QCLimits``.

    ``obs``: canonical observations frame (one station, variable ``level_m``; any order).
    ``step``: the nominal reporting step used to place gap fills (``None``: the most common
    interval in the series). Returns the frame with ``flag``/``qc_rule`` set by the rules of
    ``forecast.qc`` and ``Flag.FILLED`` rows (``qc_rule`` ``gap_fill``) added in short holes.
    Raises ``FrameError`` for several stations, another variable or duplicate times.
    """
    df = _single(obs, LEVEL)
    return _run(df, lambda _s, _v: limits, step)


def qc_rain(
    obs: pd.DataFrame, limits: RainLimits | None = None, *, step: str | None = "10min"
) -> pd.DataFrame:
    """QC one rain gauge's ``rain_mm`` series (mm per interval ending at ``time``).

    ``step`` is the accumulation interval (``None``: the most common interval); it selects the
    10-minute or hourly limits of ``RainLimits``. Rain is never gap-filled (an accumulation
    cannot be interpolated). Raises ``FrameError`` like ``qc_levels``.
    """
    df = _single(obs, RAIN)
    rain = limits or RainLimits()
    return _run(df, lambda _s, _v: rain, step)


def apply_qc(
    obs: pd.DataFrame,
    catalogue: Catalogue,
    *,
    step: str | None = None,
    rain_limits: RainLimits | None = None,
) -> pd.DataFrame:
    """QC a frame of many stations and variables.

    Levels use the ``qc`` limits of the river that owns the gauge (gauge code = ``station_id``;
    a level station unknown to the catalogue gets the default ``QCLimits()``); rain uses
    ``rain_limits`` (default ``RainLimits()``) for every rain station; discharge, release and
    inflow only get NaN → MISSING. Daily series (``frames.DAILY_VARIABLES``: daily means and
    totals) pass through with their source flags and only NaN → MISSING: the hourly level and
    rain rules (limits per reading, rates, spikes, stuck runs, gap fills) do not apply to them.
    ``step`` ``None`` infers each series' step (most common
    interval), so hourly MLIT and 10-minute telemetry can share one frame. Returns the
    canonical frame with updated ``flag``/``qc_rule`` plus FILLED rows.
    """
    level_limits = {g.code: r.qc for r in catalogue.rivers for g in r.gauges}
    default, rain = QCLimits(), rain_limits or RainLimits()

    def resolve(station: str, variable: str) -> QCLimits | RainLimits | None:
        if variable in frames.DAILY_VARIABLES:
            return None               # daily means/totals: no hourly rule applies
        if variable == LEVEL:
            return level_limits.get(station, default)
        return rain if variable == RAIN else None

    return _run(_canonical(obs), resolve, step)


def _single(obs: pd.DataFrame, variable: str) -> pd.DataFrame:
    df = _canonical(obs)
    stations = df["station_id"].unique()
    if len(stations) > 1:
        raise FrameError(
            f"expected one station, got {len(stations)} ({sorted(stations)[:3]}...); "
            "use forecast.qc.apply_qc for many stations"
        )
    others = set(df["variable"].unique()) - {variable}
    if others:
        raise FrameError(f"expected only {variable!r} rows, got {sorted(others)}")
    return df


def _infer_step(t: np.ndarray) -> int:
    d = np.diff(t)
    d = d[d > 0]
    if len(d) == 0:
        return 600_000_000_000
    vals, counts = np.unique(d, return_counts=True)
    return int(vals[np.argmax(counts)])


def _canonical(obs: pd.DataFrame) -> pd.DataFrame:
    """Validate ``obs``; a frame already in canonical dtypes is checked without being copied
    (``frames.observations`` copies and re-types 2 M rows in about a second)."""
    dtypes = obs.dtypes
    canonical = (
        all(c in obs.columns for c in frames.OBS_COLUMNS)
        and str(dtypes["time"]) == "datetime64[ns, UTC]"
        and dtypes["value"] == np.float64
        and dtypes["flag"] == np.int8
        and dtypes["provisional"] == np.bool_
        and all(dtypes[c] == np.dtype(object) for c in ("station_id", "variable", "qc_rule"))
    )
    if not canonical:
        return frames.observations(obs)
    unknown = set(obs["variable"].unique()) - frames.VARIABLES
    if unknown:
        raise FrameError(f"observations frame has unknown variables {sorted(unknown)}")
    flag = obs["flag"].to_numpy()
    if len(flag) and (flag.min() < 0 or flag.max() > max(Flag)):
        raise FrameError("observations frame has flags outside forecast.frames.Flag")
    return obs


def _group_heads(station: np.ndarray, variable: np.ndarray, t: np.ndarray) -> np.ndarray | None:
    """Start index of each (station, variable) block, or None if the rows are not sorted by
    station/variable block and time (a key seen in two blocks, or time going back in one).
    Comparing neighbours is much cheaper than hashing 2 M strings."""
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64)
    change = (station[1:] != station[:-1]) | (variable[1:] != variable[:-1])
    heads = np.concatenate(([0], np.flatnonzero(change) + 1)).astype(np.int64)
    keys = list(zip(station[heads], variable[heads], strict=True))
    if len(set(keys)) < len(keys) or (np.diff(t)[~change] < 0).any():
        return None
    return heads


def _run(df: pd.DataFrame, resolve: Resolver, step: str | None) -> pd.DataFrame:
    """Strip earlier QC verdicts, run the rules per station/variable, add gap fills."""
    flag = df["flag"].to_numpy(np.int8).copy()
    rule_code, rule_names = pd.factorize(df["qc_rule"].to_numpy(object))
    rule = np.asarray(rule_names, dtype=object)[rule_code]  # NaN (code -1) → "" below
    rule[rule_code < 0] = ""
    # Idempotence: our own verdicts from an earlier run are undone (fills dropped, flags reset)
    # so qc(qc(x)) recomputes exactly qc(x); source flags/rules (prefixed, e.g. "mlit:$") stay.
    ours_codes = [i for i, name in enumerate(rule_names) if name in QC_RULES]
    ours = np.isin(rule_code, ours_codes)
    fill_code = [i for i, name in enumerate(rule_names) if name == "gap_fill"]
    keep = ~(np.isin(rule_code, fill_code) & (flag == int(Flag.FILLED)))
    flag[ours] = int(Flag.GOOD)
    rule[ours] = ""
    # copies: the result must never share memory with the caller's frame
    station = df["station_id"].to_numpy(object, copy=True)
    variable = df["variable"].to_numpy(object, copy=True)
    t = df["time"].to_numpy("datetime64[ns]").view(np.int64)
    v = df["value"].to_numpy(np.float64, copy=True)
    prov = df["provisional"].to_numpy(bool, copy=True)
    if not keep.all():
        station, variable, t, v = station[keep], variable[keep], t[keep], v[keep]
        flag, rule, prov = flag[keep], rule[keep], prov[keep]
    heads = _group_heads(station, variable, t)
    if heads is None:
        # not sorted by (station, variable, time): sort, permuting the object columns too
        st_code, _ = pd.factorize(station)
        var_code, _ = pd.factorize(variable)
        order = np.lexsort((t, var_code, st_code))
        station, variable, t, v = station[order], variable[order], t[order], v[order]
        flag, rule, prov = flag[order], rule[order], prov[order]
        heads = _group_heads(station, variable, t)
        assert heads is not None
    new_flag = flag.copy()
    code = np.zeros(len(flag), dtype=np.int8)
    fills: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    step_ns = None if step is None else int(pd.Timedelta(step).value)

    ends = np.append(heads[1:], len(t)) if len(heads) else heads
    for lo, hi in zip(heads, ends, strict=True):
        s, var = str(station[lo]), str(variable[lo])
        tg, vg, fg = t[lo:hi], v[lo:hi], flag[lo:hi]
        if (np.diff(tg) == 0).any():
            dup = pd.Timestamp(int(tg[1:][np.diff(tg) == 0][0]), tz="UTC")
            raise FrameError(f"station {s} {var}: duplicate time {dup.isoformat()}")
        sg = step_ns if step_ns is not None else _infer_step(tg)
        limits = resolve(s, var)
        out: tuple[Int8Array, Int8Array]
        if isinstance(limits, QCLimits):
            out = level_flags(tg, vg, fg, limits)
            tf, vf, pf = gap_fill(tg, vg, out[0], prov[lo:hi], sg, limits.max_fill_h)
            if len(tf):
                fills.append((lo + np.searchsorted(tg, tf), tf, vf, pf))
        elif isinstance(limits, RainLimits):
            out = rain_flags(tg, vg, fg, limits, sg)
        else:
            out = other_flags(vg, fg)
        new_flag[lo:hi], code[lo:hi] = out

    rule = np.where(code == 0, rule, _NAMES[code])
    if fills:
        # fills are in (group, time) order already: np.insert keeps the frame sorted; a fill
        # always follows its first anchor, so row pos - 1 is of the same station/variable
        pos = np.concatenate([f[0] for f in fills])
        n = len(pos)
        station = np.insert(station, pos, station[pos - 1])
        variable = np.insert(variable, pos, variable[pos - 1])
        t = np.insert(t, pos, np.concatenate([f[1] for f in fills]))
        v = np.insert(v, pos, np.concatenate([f[2] for f in fills]))
        prov = np.insert(prov, pos, np.concatenate([f[3] for f in fills]))
        new_flag = np.insert(new_flag, pos, np.full(n, int(Flag.FILLED), dtype=np.int8))
        rule = np.insert(rule, pos, np.full(n, "gap_fill", dtype=object))
    return pd.DataFrame({
        "station_id": station,
        "variable": variable,
        "time": pd.DatetimeIndex(t.view("datetime64[ns]")).tz_localize("UTC"),
        "value": v,
        "flag": new_flag.astype(np.int8, copy=False),
        "qc_rule": rule.astype(object, copy=False),
        "provisional": prov.astype(bool, copy=False),
    }, copy=False)
