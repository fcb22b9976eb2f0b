"""Forecast verification: pure functions on arrays and long forecast frames.

Definitions (documented here because reviewers compare numbers across tools):

* RMSE, MAE (m); NSE = 1 - SSE / sum((o - mean(o))^2); KGE (2009) = 1 - sqrt((r-1)^2 +
  (sd_f/sd_o - 1)^2 + (mean_f/mean_o - 1)^2). Pairs with a NaN on either side are dropped.
* Skill vs persistence = 1 - RMSE_model / RMSE_persistence on the same (issue, lead) pairs.
* **Flood event**: a maximal run of hours with observed level >= the river's lowest threshold
  (or, without thresholds, >= the ``EVENT_QUANTILE`` quantile of the observed level); runs
  separated by a dip below it shorter than ``EVENT_MIN_GAP_H`` hours are one event. Its
  **window** is the event +/- ``EVENT_PAD_H`` hours; an hour within reach of two events belongs
  to the nearer (so a double-peaked rise is two events, each judged on its own peak). Event
  scores use forecasts whose *valid* time falls in a window.
* **Peak error** per event and lead: max forecast (point) over valid times in the window minus
  the observed peak (m and % of the peak); **timing error** = time of the forecast max minus
  time of the observed max (h, positive = late).
* **POD/FAR/CSI** per threshold and lead on valid hours: observed >= thr vs forecast >= thr.
* **First-warning lead time** per observed up-crossing at t_c (first hour >= thr after an hour
  below): t_c - the earliest issue time T in [t_c - max lead, t_c) at which any lead's point
  forecast reached the threshold; 0 when no forecast did (missed).
* **Coverage** = share of observations inside [q10, q90], on all hours and on high-water hours
  (observed level >= the event threshold).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

EVENT_QUANTILE: Final = 0.95
EVENT_PAD_H: Final = 12
EVENT_MIN_GAP_H: Final = 6   # a shorter dip below the threshold does not end an event


def _pairs(obs: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o = np.asarray(obs, dtype="float64")
    s = np.asarray(sim, dtype="float64")
    ok = np.isfinite(o) & np.isfinite(s)
    return o[ok], s[ok]


def _varies(x: np.ndarray) -> bool:
    """Not all equal (a constant series' ``sum((x - mean)^2)`` is rounding noise, not 0)."""
    return bool(len(x) and (x != x[0]).any())


def rmse(obs: np.ndarray, sim: np.ndarray) -> float:
    """Root-mean-square error (units of the input); NaN for no pairs."""
    o, s = _pairs(obs, sim)
    return float(np.sqrt(np.mean((s - o) ** 2))) if len(o) else float("nan")


def mae(obs: np.ndarray, sim: np.ndarray) -> float:
    """Mean absolute error; NaN for no pairs."""
    o, s = _pairs(obs, sim)
    return float(np.mean(np.abs(s - o))) if len(o) else float("nan")


def nse(obs: np.ndarray, sim: np.ndarray) -> float:
    """Nash-Sutcliffe efficiency; NaN when observations do not vary."""
    o, s = _pairs(obs, sim)
    if not _varies(o):
        return float("nan")
    return float(1.0 - np.sum((s - o) ** 2) / np.sum((o - o.mean()) ** 2))


def kge(obs: np.ndarray, sim: np.ndarray) -> float:
    """Kling-Gupta efficiency (2009); NaN when undefined."""
    o, s = _pairs(obs, sim)
    if len(o) < 2 or not _varies(o) or not _varies(s) or o.mean() == 0:
        return float("nan")
    r = float(np.corrcoef(o, s)[0, 1])
    return float(1 - np.sqrt((r - 1) ** 2 + (s.std() / o.std() - 1) ** 2
                             + (s.mean() / o.mean() - 1) ** 2))


def event_threshold(level: pd.Series, lowest_threshold_m: float | None) -> float:
    """The level (m) that defines flood events and high-water hours."""
    if lowest_threshold_m is not None:
        return float(lowest_threshold_m)
    return float(level.quantile(EVENT_QUANTILE))


def event_windows(level: pd.Series, threshold_m: float, pad_h: int = EVENT_PAD_H,
                  min_gap_h: int = EVENT_MIN_GAP_H) -> pd.Series:
    """Event id (1, 2, ...) per hour of ``level`` (hourly UTC index), 0 outside any window.

    An event is a run of hours at or above ``threshold_m``; runs separated by fewer than
    ``min_gap_h`` hours below it are one event. Its window is its hours +/- ``pad_h``; an hour
    within ``pad_h`` of two events belongs to the nearer one (the earlier on a tie), so the union
    of the windows is the exceedance hours dilated by ``pad_h``.
    """
    above = (level >= threshold_m).to_numpy()
    n = len(above)
    if not above.any():
        return pd.Series(0, index=level.index, dtype="int64")
    pos = np.flatnonzero(above)
    # event id of each exceedance hour: a new event where the dry gap is >= min_gap_h hours
    gap = np.diff(pos) - 1
    ev_of = np.concatenate([[1], 1 + np.cumsum(gap >= min_gap_h)])
    i = np.arange(n)
    k_next = np.searchsorted(pos, i, side="left")          # first exceedance hour >= i
    k_prev = k_next - 1 + above.astype("int64")             # last exceedance hour <= i
    d_prev = np.where(k_prev >= 0, i - pos[np.clip(k_prev, 0, None)], n + pad_h + 1)
    d_next = np.where(k_next < len(pos), pos[np.clip(k_next, None, len(pos) - 1)] - i,
                      n + pad_h + 1)
    use_prev = d_prev <= d_next
    k = np.where(use_prev, k_prev, k_next)
    ids = np.where(np.minimum(d_prev, d_next) <= pad_h, ev_of[np.clip(k, 0, len(pos) - 1)], 0)
    return pd.Series(ids, index=level.index, dtype="int64")


def attach_observed(forecasts: pd.DataFrame, level: pd.Series,
                    censored: pd.Series | None = None) -> pd.DataFrame:
    """Forecast frame plus ``obs`` = observed level (m) at ``valid_at`` (NaN if unknown).

    A left-censored level (crisis gauge at or below its start level; the river frame holds the
    start level there) is no measurement, so ``obs`` is NaN and the pair is not scored where
    ``censored`` (0/1 series on the level's index: the river frame's ``level_censored``; None
    when the frame has none) is 1 at ``valid_at``.
    """
    out = forecasts.copy()
    valid = pd.DatetimeIndex(out["valid_at"])
    obs = level.reindex(valid).to_numpy(dtype="float64", copy=True)
    if censored is not None:
        obs[censored.reindex(valid).fillna(0.0).to_numpy(dtype="float64") > 0] = np.nan
    out["obs"] = obs
    return out


_LEAD_COLUMNS: Final = ["model", "horizon_h", "n", "rmse", "mae", "nse", "kge", "n_event",
                        "rmse_event", "mae_event", "nse_event", "kge_event", "coverage",
                        "coverage_high"]


def lead_scores(paired: pd.DataFrame, events: pd.Series, high_water_m: float) -> pd.DataFrame:
    """Per (model, horizon_h): n, rmse/mae/nse/kge on all hours and in event windows
    (``_event``), coverage of [q10, q90] on all and on high-water hours, and skill vs the
    ``persistence`` model on the same pairs (when ``paired`` holds it).

    ``paired``: forecasts with ``model``, ``horizon_h``, ``valid_at``, ``level``, ``q10``,
    ``q90``, ``obs`` (see ``attach_observed``).
    """
    ev = events.reindex(pd.DatetimeIndex(paired["valid_at"])).fillna(0).to_numpy() > 0
    df = paired.assign(_ev=ev)
    rows = []
    for (model, h), g in df.groupby(["model", "horizon_h"], sort=True):
        o, s = g["obs"].to_numpy(), g["level"].to_numpy()
        e = g["_ev"].to_numpy()
        scored = np.isfinite(o) & np.isfinite(s)      # the pairs _pairs keeps
        inside = (o >= g["q10"].to_numpy()) & (o <= g["q90"].to_numpy())
        has_band = g["q10"].notna().to_numpy() & np.isfinite(o)
        hw = has_band & (o >= high_water_m)
        rows.append({
            "model": model, "horizon_h": int(str(h)), "n": int(scored.sum()),
            "rmse": rmse(o, s), "mae": mae(o, s), "nse": nse(o, s), "kge": kge(o, s),
            "n_event": int(scored[e].sum()), "rmse_event": rmse(o[e], s[e]),
            "mae_event": mae(o[e], s[e]), "nse_event": nse(o[e], s[e]),
            "kge_event": kge(o[e], s[e]),
            "coverage": float(inside[has_band].mean()) if has_band.any() else float("nan"),
            "coverage_high": float(inside[hw].mean()) if hw.any() else float("nan"),
        })
    out = pd.DataFrame(rows, columns=_LEAD_COLUMNS)
    if "persistence" in set(out["model"]):
        # on the (issue, lead) pairs both have scored: (horizon_h, valid_at) names the issue
        ok = df[np.isfinite(df["obs"].to_numpy()) & np.isfinite(df["level"].to_numpy())]
        ref = ok.loc[ok["model"] == "persistence", ["horizon_h", "valid_at", "level"]]
        both = ok.merge(ref.drop_duplicates(["horizon_h", "valid_at"]),
                        on=["horizon_h", "valid_at"], suffixes=("", "_ref"))
        skill = {}
        for (model, h), g in both.groupby(["model", "horizon_h"]):
            o, s, p = (g[c].to_numpy() for c in ("obs", "level", "level_ref"))
            e = g["_ev"].to_numpy()
            skill[(model, int(str(h)))] = (_skill(o, s, p), _skill(o[e], s[e], p[e]))
        keys = list(zip(out["model"], out["horizon_h"], strict=True))
        out["skill"] = [skill.get(k, (np.nan, np.nan))[0] for k in keys]
        out["skill_event"] = [skill.get(k, (np.nan, np.nan))[1] for k in keys]
    return out


def _skill(obs: np.ndarray, sim: np.ndarray, ref: np.ndarray) -> float:
    """1 - RMSE(sim) / RMSE(ref) on the same pairs; NaN without pairs or when ref is perfect."""
    base = rmse(obs, ref)
    return 1.0 - rmse(obs, sim) / base if base > 0 else float("nan")


def peak_errors(paired: pd.DataFrame, level: pd.Series, events: pd.Series) -> pd.DataFrame:
    """Per (model, horizon_h, event): observed peak (m, time), forecast peak in the window,
    ``peak_error_m``, ``peak_error_pct`` and ``timing_error_h`` (forecast minus observed)."""
    obs_peak = level.groupby(events).agg(["max", "idxmax"]).drop(index=0, errors="ignore")
    ev = events.reindex(pd.DatetimeIndex(paired["valid_at"])).fillna(0).astype("int64")
    df = paired.assign(event=ev.to_numpy())
    df = df[(df["event"] > 0) & df["level"].notna()]
    if df.empty:
        return pd.DataFrame(columns=["model", "horizon_h", "event", "fc_peak_m", "fc_peak_at",
                                     "obs_peak_m", "obs_peak_at", "peak_error_m",
                                     "peak_error_pct", "timing_error_h"])
    best = df.loc[df.groupby(["model", "horizon_h", "event"])["level"].idxmax()]
    out = pd.DataFrame({
        "model": best["model"].to_numpy(), "horizon_h": best["horizon_h"].to_numpy(),
        "event": best["event"].to_numpy(), "fc_peak_m": best["level"].to_numpy(),
        "fc_peak_at": best["valid_at"].to_numpy(),
    })
    out["obs_peak_m"] = out["event"].map(obs_peak["max"]).to_numpy(dtype="float64")
    out["obs_peak_at"] = pd.DatetimeIndex(out["event"].map(obs_peak["idxmax"]))
    out["peak_error_m"] = out["fc_peak_m"] - out["obs_peak_m"]
    out["peak_error_pct"] = 100.0 * out["peak_error_m"] / out["obs_peak_m"]
    out["timing_error_h"] = (
        (pd.DatetimeIndex(out["fc_peak_at"]) - pd.DatetimeIndex(out["obs_peak_at"]))
        / pd.Timedelta(hours=1)
    )
    return out.sort_values(["model", "horizon_h", "event"]).reset_index(drop=True)


def contingency(paired: pd.DataFrame, threshold_m: float) -> pd.DataFrame:
    """Per (model, horizon_h): hits, misses, false_alarms, pod, far, csi for ``threshold_m``."""
    d = paired[paired["obs"].notna() & paired["level"].notna()]
    o = d["obs"].to_numpy() >= threshold_m
    f = d["level"].to_numpy() >= threshold_m
    t = pd.DataFrame({"model": d["model"].to_numpy(), "horizon_h": d["horizon_h"].to_numpy(),
                      "hits": o & f, "misses": o & ~f, "false_alarms": ~o & f})
    out = t.groupby(["model", "horizon_h"], as_index=False)[
        ["hits", "misses", "false_alarms"]].sum()
    hi, mi, fa = (out[c].astype("float64") for c in ("hits", "misses", "false_alarms"))
    with np.errstate(invalid="ignore", divide="ignore"):
        out["pod"] = hi / (hi + mi)
        out["far"] = fa / (hi + fa)
        out["csi"] = hi / (hi + mi + fa)
    out["threshold_m"] = threshold_m
    return out


def first_warning_lead(paired: pd.DataFrame, level: pd.Series, threshold_m: float,
                       max_lead_h: int = 6) -> pd.DataFrame:
    """Per model and observed up-crossing of ``threshold_m``: ``crossing_at`` and
    ``warning_lead_h`` (0 = not forecast in time); see the module docstring."""
    lv = level.to_numpy()
    prev = np.concatenate([[np.nan], lv[:-1]])
    crossings = level.index[(lv >= threshold_m) & (prev < threshold_m)]
    warned = paired[paired["level"] >= threshold_m]
    first_issue = warned.groupby(["model", "issued_at"]).size().reset_index()[["model",
                                                                                "issued_at"]]
    rows = []
    for model in sorted(paired["model"].unique()):
        issues = pd.DatetimeIndex(first_issue.loc[first_issue["model"] == model, "issued_at"])
        for tc in crossings:
            lo = tc - pd.Timedelta(hours=max_lead_h)
            cand = issues[(issues >= lo) & (issues < tc)]
            lead = (tc - cand.min()) / pd.Timedelta(hours=1) if len(cand) else 0.0
            rows.append({"model": model, "crossing_at": tc, "threshold_m": threshold_m,
                         "warning_lead_h": float(lead)})
    return pd.DataFrame(rows, columns=["model", "crossing_at", "threshold_m", "warning_lead_h"])
