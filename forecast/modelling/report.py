"""Hydrologist's HTML report of a backtest / training run: ``write_report(result, out_dir)``.

Writes into ``out_dir``:

* ``index.html`` -- the page linking everything (Jinja2 template ``templates/report.html.j2``);
  a red SIMULATED banner when the data came from the simulator;
* ``overview.png`` -- the whole test span: observed level, our P50 and P10–P90 band at the
  display lead, threshold lines, catchment rain bars on a second (inverted) axis;
* ``event_<k>.png`` -- the same hydrograph for each flood event (window = run of hours at or
  above the event threshold +/- ``metrics.EVENT_PAD_H``);
* ``scores.csv`` (per model and lead: RMSE, MAE, NSE, KGE on all hours and in event windows,
  band coverage, skill vs persistence), ``peaks.csv`` (peak and timing errors per event),
  ``thresholds.csv`` (POD/FAR/CSI per threshold and lead), ``warnings.csv`` (first-warning
  lead time per threshold: observed up-crossings, how many were forecast in advance, median
  and minimum lead) and ``forecasts.csv``.

Times on the page and the plots are JST (what staff read); files keep UTC. Threshold names are
the official Japanese ones (``catalogue.THRESHOLD_LABELS``); the plots use them when a CJK font
is installed and the English names otherwise (the page always shows both).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from forecast.catalogue import THRESHOLD_LABELS, River
from forecast.features import CENSORED, FutureRain
from forecast.frames import LEVEL, RAIN
from forecast.modelling import metrics

DISPLAY_LEAD_H: Final = 3
MAX_EVENT_PLOTS: Final = 20
JST: Final = "Asia/Tokyo"
SCORE_COLUMNS: Final = ("n", "rmse", "mae", "nse", "kge", "n_event", "rmse_event", "nse_event",
                        "coverage", "coverage_high", "skill", "skill_event")
_CJK_HINTS: Final = ("CJK", "IPA", "Noto Sans JP", "Takao", "Hiragino", "Yu Gothic",
                     "MS Gothic", "VL Gothic", "Source Han")
_TEMPLATES: Final = Path(__file__).with_name("templates")


@dataclass
class BacktestRun:
    """What a report is made from.

    ``hourly``: the river frame (``level_m`` m, ``rain_mm`` mm/h; hourly UTC index).
    ``forecasts``: long frame from ``backtest.backtest_river`` (``model``, ``issued_at``,
    ``valid_at``, ``horizon_h``, ``level``, ``q10``, ``q50``, ``q90``; our model is ``lgbm``).
    ``threshold_m``: level (m) defining flood events and high-water hours.
    ``simulated``: label everything SIMULATED.
    """

    river: River
    hourly: pd.DataFrame
    forecasts: pd.DataFrame
    threshold_m: float
    future_rain: FutureRain = "none"
    simulated: bool = False
    title: str = ""


@dataclass
class Scores:
    """The verification tables of a run (see ``forecast.modelling.metrics``)."""

    leads: pd.DataFrame
    peaks: pd.DataFrame
    thresholds: pd.DataFrame
    events: pd.Series
    warnings: pd.DataFrame   # per threshold and model: crossings, warned, median lead (h)


def score(run: BacktestRun) -> Scores:
    """Per-lead scores (all models), peak errors and POD/FAR/CSI per threshold of a run."""
    level = run.hourly[LEVEL]
    events = metrics.event_windows(level, run.threshold_m)
    paired = metrics.attach_observed(run.forecasts, level, run.hourly.get(CENSORED))
    leads = metrics.lead_scores(paired, events, run.threshold_m)
    peaks = metrics.peak_errors(paired, level, events)
    tables = [metrics.contingency(paired, v).assign(threshold=n)
              for n, v in run.river.thresholds.ladder()]
    thresholds = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return Scores(leads, peaks, thresholds, events, _warnings(run, paired))


def _warnings(run: BacktestRun, paired: pd.DataFrame) -> pd.DataFrame:
    """First-warning lead time per threshold and model over the observed up-crossings in the
    test span: ``crossings``, ``warned`` (forecast at or above it before the crossing) and the
    median and minimum lead (h; a missed crossing counts 0)."""
    level = run.hourly[LEVEL]
    t0, t1 = paired["issued_at"].min(), paired["valid_at"].max()
    span = level[(level.index > t0) & (level.index <= t1)]
    rows = []
    for name, v in run.river.thresholds.ladder():
        w = metrics.first_warning_lead(paired, span, v)
        for model, g in w.groupby("model"):
            lead = g["warning_lead_h"]
            rows.append({"threshold": name, "threshold_m": v, "model": model,
                         "crossings": len(g), "warned": int((lead > 0).sum()),
                         "median_lead_h": float(lead.median()),
                         "min_lead_h": float(lead.min())})
    return pd.DataFrame(rows, columns=["threshold", "threshold_m", "model", "crossings",
                                       "warned", "median_lead_h", "min_lead_h"])


def _cjk_font() -> str | None:
    for f in font_manager.fontManager.ttflist:
        if any(h in f.name for h in _CJK_HINTS):
            return str(f.name)
    return None


def _label(name: str, value: float, cjk: bool) -> str:
    ja, en = THRESHOLD_LABELS.get(name, (name, name))
    return f"{ja if cjk else en} {value:.2f} m"


def hydrograph(run: BacktestRun, t0: pd.Timestamp, t1: pd.Timestamp, path: Path, *,
               lead_h: int = DISPLAY_LEAD_H, title: str = "") -> None:
    """PNG of [t0, t1] (UTC): observed level, our P50 and P10–P90 band ``lead_h`` hours
    ahead (plotted at valid time), threshold lines, rain bars (mm/h, inverted second axis)."""
    font = _cjk_font()
    h = run.hourly.loc[(run.hourly.index >= t0) & (run.hourly.index <= t1)]
    fc = run.forecasts
    fc = fc[(fc["model"] == "lgbm") & (fc["horizon_h"] == lead_h)
            & (fc["valid_at"] >= t0) & (fc["valid_at"] <= t1)].sort_values("valid_at")
    fig = Figure(figsize=(10, 4.8), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    tj = pd.DatetimeIndex(h.index).tz_convert(JST).tz_localize(None)
    ax.plot(tj, h[LEVEL].to_numpy(), color="black", lw=1.6, label="observed level")
    if len(fc):
        vj = pd.DatetimeIndex(fc["valid_at"]).tz_convert(JST).tz_localize(None)
        ax.fill_between(vj, fc["q10"].to_numpy(dtype="float64"),
                        fc["q90"].to_numpy(dtype="float64"), color="tab:blue", alpha=0.25,
                        label=f"P10–P90, {lead_h} h ahead")
        ax.plot(vj, fc["q50"].to_numpy(dtype="float64"), color="tab:blue", lw=1.3,
                label=f"P50, {lead_h} h ahead")
    colours = ("tab:green", "gold", "tab:orange", "tab:red")
    top = ax.get_ylim()[1]
    # the lowest threshold always shows; higher ones when they are near the plotted levels
    for i, ((name, v), c) in enumerate(zip(run.river.thresholds.ladder(), colours,
                                           strict=False)):
        if i == 0 or v <= top + 1.0:
            ax.axhline(v, color=c, ls="--", lw=1.0, label=_label(name, v, font is not None))
    ax.set_ylabel("water level (m)")
    ax.set_xlabel("time (JST)")
    ax2 = ax.twinx()
    rain = h[RAIN].fillna(0.0).to_numpy(dtype="float64")
    ax2.bar(tj, rain, width=1 / 24, color="tab:cyan", alpha=0.6, align="edge")
    ax2.set_ylim(max(float(rain.max()), 1.0) * 3.0, 0.0)   # bars hang from the top
    ax2.set_ylabel("catchment rain (mm/h)")
    label = " — SIMULATED DATA" if run.simulated else ""
    ax.set_title(f"{run.river.name_en} ({run.river.id}){label}: {title}", fontsize=10)
    if run.simulated:
        ax.text(0.5, 0.5, "SIMULATED", transform=ax.transAxes, fontsize=40, color="red",
                alpha=0.15, ha="center", va="center", rotation=20)
    legend = ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    if font is not None:
        for t in legend.get_texts():
            t.set_fontfamily(font)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "–" if not np.isfinite(v) else f"{v:.3f}"
    return str(v)


def _table(df: pd.DataFrame, cols: list[str]) -> dict[str, Any]:
    cols = [c for c in cols if c in df.columns]
    return {"columns": cols, "rows": [[_fmt(v) for v in row] for row in
                                      df[cols].itertuples(index=False, name=None)]}


def _jst(t: Any) -> str:
    return f"{pd.Timestamp(t).tz_convert(JST):%Y-%m-%d %H:%M} JST"


def write_report(result: BacktestRun, out_dir: str | Path) -> Path:
    """Write the report (see the module docstring) into ``out_dir``; returns ``index.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sc = score(result)
    fc = result.forecasts
    span0, span1 = pd.Timestamp(fc["issued_at"].min()), pd.Timestamp(fc["valid_at"].max())
    hydrograph(result, span0, span1, out / "overview.png", title="whole test span")
    events = []
    ev_ids = sc.events.loc[(sc.events.index >= span0) & (sc.events.index <= span1)]
    for k in [int(e) for e in pd.unique(ev_ids[ev_ids > 0])][:MAX_EVENT_PLOTS]:
        hours = sc.events.index[sc.events.to_numpy() == k]
        lvl = result.hourly.loc[hours, LEVEL]
        name = f"event_{k}.png"
        hydrograph(result, hours.min(), hours.max(), out / name,
                   title=f"flood event {k}, peak {lvl.max():.2f} m")
        pk = sc.peaks[(sc.peaks["event"] == k) & (sc.peaks["model"] == "lgbm")]
        events.append({"id": k, "png": name, "start": _jst(hours.min()), "end": _jst(hours.max()),
                       "peak_m": f"{lvl.max():.2f}", "peak_at": _jst(lvl.idxmax()),
                       "table": _table(pk, ["horizon_h", "fc_peak_m", "peak_error_m",
                                            "peak_error_pct", "timing_error_h"])})
    sc.leads.to_csv(out / "scores.csv", index=False)
    sc.peaks.to_csv(out / "peaks.csv", index=False)
    sc.thresholds.to_csv(out / "thresholds.csv", index=False)
    sc.warnings.to_csv(out / "warnings.csv", index=False)
    fc.to_csv(out / "forecasts.csv", index=False)
    leads = sorted(int(h) for h in sc.leads["horizon_h"].unique()) if len(sc.leads) else []
    per_lead = [{"lead": h, "table": _table(sc.leads[sc.leads["horizon_h"] == h],
                                            ["model", *SCORE_COLUMNS])} for h in leads]
    ladder = [{"ja": THRESHOLD_LABELS[n][0], "en": THRESHOLD_LABELS[n][1], "m": f"{v:.2f}"}
              for n, v in result.river.thresholds.ladder()]
    env = Environment(loader=FileSystemLoader(_TEMPLATES),
                      autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        river=result.river, title=result.title or f"Backtest report: {result.river.name_ja}",
        simulated=result.simulated, future_rain=result.future_rain,
        threshold_m=f"{result.threshold_m:.2f}", span=(_jst(span0), _jst(span1)),
        models=sorted(fc["model"].unique()), folds=sorted(fc["fold"].astype(str).unique())
        if "fold" in fc.columns else [], ladder=ladder, per_lead=per_lead, events=events,
        thresholds=_table(sc.thresholds, ["threshold", "model", "horizon_h", "hits", "misses",
                                          "false_alarms", "pod", "far", "csi"]),
        warnings=_table(sc.warnings, ["threshold", "threshold_m", "model", "crossings", "warned",
                                      "median_lead_h", "min_lead_h"]),
        lead_h=DISPLAY_LEAD_H)
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
