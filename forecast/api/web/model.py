"""What the page shows, computed from the pipeline's read views: each river's current and
forecast level on its ladder, and the hydrograph's geometry (drawn server-side as SVG by the
template: no chart library, nothing to run in the browser)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pandas as pd

from forecast.alerts.rules import river_ladder
from forecast.catalogue import AlertLevel, River
from forecast.pipeline import views
from forecast.pipeline.context import Context

JST = timezone(timedelta(hours=9), "JST")
STALE_AFTER = timedelta(minutes=60)


def jst(t: datetime | pd.Timestamp | None, fmt: str = "%m/%d %H:%M") -> str:
    """A time for people: JST, e.g. ``07/01 09:30``."""
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return "—"
    return pd.Timestamp(t).tz_convert(JST).strftime(fmt)


def level_of(river: River, value: float | None) -> AlertLevel | None:
    """The highest level of the river's ladder at or below ``value`` (None: below all)."""
    if value is None or math.isnan(value):
        return None
    got = None
    for lv, m in river_ladder(river):
        if value >= m:
            got = lv
    return got


@dataclass
class RiverState:
    river: River
    observed_m: float | None
    observed_at: datetime | None
    observed_level: AlertLevel | None
    forecast_peak_m: float | None
    forecast_level: AlertLevel | None
    issued_at: datetime | None
    low_confidence: bool
    reasons: list[str]
    model_version: str | None
    age: timedelta | None
    run: pd.DataFrame = field(repr=False)

    @property
    def worst(self) -> int:
        return max(int(self.observed_level or 0), int(self.forecast_level or 0))

    @property
    def stale(self) -> bool:
        return self.age is None or self.age > STALE_AFTER


def river_states(ctx: Context, rivers: list[River] | None = None) -> list[RiverState]:
    """Each river's current observed level (the newest reading in the last 24 h at its
    primary gauge) and its latest forecast run."""
    now = ctx.clock.now()
    rivers = list(ctx.catalogue.rivers) if rivers is None else rivers
    latest = views.latest_forecasts(ctx)
    out = []
    for r in rivers:
        obs = views.level_observations(ctx, r.gauge.code, now - timedelta(hours=24),
                                       now + timedelta(seconds=1))
        obs = obs[obs["value"].notna()]
        if len(obs):
            value, at = float(obs["value"].iloc[-1]), obs["time"].iloc[-1].to_pydatetime()
        else:
            value, at = None, None
        run = latest[latest["river_id"] == r.id].sort_values("horizon_h")
        peak = float(run["q50"].max()) if len(run) else None
        first = run.iloc[0] if len(run) else None
        out.append(RiverState(
            river=r, observed_m=value, observed_at=at, observed_level=level_of(r, value),
            forecast_peak_m=peak, forecast_level=level_of(r, peak),
            issued_at=first["issued_at"].to_pydatetime() if first is not None else None,
            low_confidence=bool(first["low_confidence"]) if first is not None else False,
            reasons=list(first["reasons"]) if first is not None else [],
            model_version=str(first["model_version"]) if first is not None else None,
            age=(now - at) if at is not None else None, run=run))
    return out


def age_text(age: timedelta | None, w: dict[str, str]) -> str:
    if age is None:
        return w["no_data"]
    minutes = max(0, int(age.total_seconds() // 60))
    if minutes < 120:
        return w["ago_min"].format(n=minutes)
    return w["ago_h"].format(n=minutes // 60)


# --- hydrograph geometry (SVG user units) ---------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """The drawing's size in SVG units: a wide one for desks, a narrow one for phones (the
    same font size then reads at the phone's width)."""

    width: float = 960.0
    height: float = 460.0
    left: float = 52.0
    right: float = 14.0
    rain_top: float = 18.0
    rain_h: float = 90.0
    level_top: float = 132.0
    level_bottom: float = 428.0


DESK = Frame()
PHONE = Frame(width=440.0, height=420.0, left=40.0, right=8.0, rain_h=70.0, level_top=110.0,
              level_bottom=390.0)


def _fmt(v: float) -> str:
    return f"{v:.1f}"


@dataclass
class Hydrograph:
    width: float
    height: float
    observed: str                 # SVG path data ("" when nothing to draw)
    p50: str
    band: str
    thresholds: list[dict[str, Any]]
    rain_obs: list[dict[str, str]]
    rain_fc: list[dict[str, str]]
    rain_max_mm: float
    y_ticks: list[dict[str, str]]
    x_ticks: list[dict[str, str]]
    issue_x: str | None
    plot: dict[str, str]


def hydrograph(ctx: Context, state: RiverState, hours: int = 24,
               f: Frame = DESK) -> Hydrograph:
    """Observed level (10-min readings), P50 with the P10–P90 band from the latest run,
    the threshold lines, observed catchment rain and the newest forecast-rain vintage as
    hourly bars, over ``hours`` before the issue time (or now) to the run's last lead."""
    river = state.river
    now = ctx.clock.now()
    anchor = state.issued_at or now
    start = anchor - timedelta(hours=hours)
    run = state.run
    end = (run["valid_at"].max().to_pydatetime() if len(run) else anchor + timedelta(hours=6))
    end = max(end, now)
    obs = views.level_observations(ctx, river.gauge.code, start, now + timedelta(seconds=1))
    rain = views.catchment_rain(ctx, river.id, start, min(now, end))
    fc_rain = views.forecast_rain(ctx, river.id, anchor) if state.issued_at else None

    ladder = river_ladder(river)
    values = [v for v in obs["value"].dropna()] + [m for _, m in ladder]
    if len(run):
        values += list(run["q10"].dropna()) + list(run["q90"].dropna())
    lo, hi = min(values), max(values)
    pad = max(0.2, (hi - lo) * 0.08)
    lo, hi = math.floor((lo - pad) * 2) / 2, math.ceil((hi + pad) * 2) / 2

    t0, t1 = pd.Timestamp(start).value, pd.Timestamp(end).value
    x0, x1 = f.left, f.width - f.right

    def x(t: Any) -> float:
        return float(x0 + (pd.Timestamp(t).value - t0) / (t1 - t0) * (x1 - x0))

    def y(v: float) -> float:
        return float(f.level_bottom - (v - lo) / (hi - lo) * (f.level_bottom - f.level_top))

    # observed: one path, broken where readings are missing for more than 30 min
    parts: list[str] = []
    prev: pd.Timestamp | None = None
    for t, v in zip(obs["time"], obs["value"], strict=True):
        if v is None or math.isnan(v):
            prev = None
            continue
        cmd = "L" if prev is not None and (t - prev) <= pd.Timedelta(minutes=30) else "M"
        parts.append(f"{cmd}{_fmt(x(t))},{_fmt(y(float(v)))}")
        prev = t
    p50 = band = ""
    if len(run) and state.issued_at is not None:
        known = obs[(obs["time"] <= pd.Timestamp(state.issued_at)) & obs["value"].notna()]
        pts = ([(state.issued_at, float(known["value"].iloc[-1]))] if len(known) else [])
        leads = [(t, float(q)) for t, q in zip(run["valid_at"], run["q50"], strict=True)]
        p50 = " ".join(f"{'M' if i == 0 else 'L'}{_fmt(x(t))},{_fmt(y(v))}"
                       for i, (t, v) in enumerate(pts + leads))
        upper = [(t, float(q)) for t, q in zip(run["valid_at"], run["q90"], strict=True)]
        lower = [(t, float(q)) for t, q in zip(run["valid_at"], run["q10"], strict=True)]
        ring = pts + upper + list(reversed(lower))
        band = " ".join(f"{'M' if i == 0 else 'L'}{_fmt(x(t))},{_fmt(y(v))}"
                        for i, (t, v) in enumerate(ring)) + " Z"
    thresholds = []
    last_label = math.inf
    for lv, m in ladder:   # rising: labels above their line, never on top of each other
        label = min(y(m) - 4, last_label - 15)
        last_label = label
        thresholds.append({"key": lv.key, "name_ja": lv.name_ja, "short_ja": lv.short_ja,
                           "level": int(lv), "colour": lv.colour, "m": f"{m:.2f}",
                           "y": _fmt(y(m)), "label_y": _fmt(label)})

    bar_w = (x1 - x0) * 3.6e12 / (t1 - t0) * 0.8   # 80 % of an hour
    rain_values = [float(v) for v in rain.dropna()]
    fc_values = ([float(v) for v in fc_rain["value"].dropna()]
                 if fc_rain is not None and len(fc_rain) else [])
    rmax = max([5.0, *rain_values, *fc_values])
    rmax = math.ceil(rmax / 5) * 5

    def bars(series: list[tuple[Any, float]], kind: str) -> list[dict[str, str]]:
        out = []
        for t, v in series:
            if v is None or math.isnan(v) or not start < pd.Timestamp(t) <= end:
                continue
            h = max(v / rmax * f.rain_h, 1.0 if v > 0 else 0.0)
            out.append({"x": _fmt(x(t) - bar_w), "y": _fmt(f.rain_top), "w": _fmt(bar_w),
                        "h": _fmt(h), "mm": f"{v:.1f}", "kind": kind, "t": jst(t)})
        return out

    rain_obs = bars(list(rain.items()), "obs")
    rain_fc = bars(list(zip(fc_rain["valid_at"], fc_rain["value"], strict=True))
                   if fc_rain is not None else [], "fc")
    step = 0.5 if hi - lo <= 4 else 1.0
    y_ticks = []
    v = math.ceil(lo / step) * step
    while v <= hi + 1e-9:
        y_ticks.append({"y": _fmt(y(v)), "label": f"{v:.1f}"})
        v += step
    every = (3 if hours <= 24 else 6) * (1 if f.width > 600 else 2)
    x_ticks = []
    t = pd.Timestamp(start).tz_convert(JST).ceil("h")
    while t <= pd.Timestamp(end):
        if t.hour % every == 0:
            x_ticks.append({"x": _fmt(x(t)),
                            "label": t.strftime("%H:%M" if t.hour else "%m/%d")})
        t += pd.Timedelta(hours=1)
    return Hydrograph(
        width=f.width, height=f.height, observed=" ".join(parts), p50=p50, band=band,
        thresholds=thresholds, rain_obs=rain_obs, rain_fc=rain_fc, rain_max_mm=rmax,
        y_ticks=y_ticks, x_ticks=x_ticks,
        issue_x=_fmt(x(state.issued_at)) if state.issued_at else None,
        plot={"x0": _fmt(x0), "x1": _fmt(x1), "top": _fmt(f.level_top),
              "bottom": _fmt(f.level_bottom), "rain_top": _fmt(f.rain_top),
              "rain_bottom": _fmt(f.rain_top + f.rain_h), "label_x": _fmt(x0 + 6),
              "rain_label_y": _fmt(f.rain_top + f.rain_h + 14)})


def utc(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()
