"""HTML report: files written, one hydrograph per flood event, tables against naive figures,
SIMULATED label only for simulated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.catalogue import load_catalogue
from forecast.modelling.report import BacktestRun, write_report

ROOT = Path(__file__).resolve().parent.parent.parent


def _run(simulated: bool) -> BacktestRun:
    river = load_catalogue(ROOT / "config" / "reference_rivers.yaml").river("koto")
    idx = pd.date_range("2023-06-01", periods=24 * 20, freq="h", tz="UTC", name="time")
    t = np.arange(len(idx))
    # two floods above the 3.80 m standby level, far enough apart not to merge
    level = (2.5 + 4.5 * np.exp(-0.5 * ((t - 150) / 6.0) ** 2)
             + 2.0 * np.exp(-0.5 * ((t - 350) / 5.0) ** 2))
    rain = np.where((t % 200 > 130) & (t % 200 < 145), 12.0, 0.0)
    hourly = pd.DataFrame({"level_m": level, "rain_mm": rain}, index=idx)
    issued = idx[24:-6]
    rng = np.random.default_rng(0)
    rows = []
    for model, err in (("lgbm", 0.05), ("persistence", None)):
        for h in range(1, 7):
            obs_v = hourly["level_m"].reindex(issued + pd.Timedelta(hours=h)).to_numpy()
            pt = (obs_v + rng.normal(0, err, len(issued)) if err
                  else hourly["level_m"].reindex(issued).to_numpy())
            rows.append(pd.DataFrame({
                "fold": "1", "model": model, "issued_at": issued,
                "valid_at": issued + pd.Timedelta(hours=h), "horizon_h": h, "level": pt,
                "q10": pt - 0.1, "q50": pt, "q90": pt + 0.1, "model_variant": "full"}))
    return BacktestRun(river=river, hourly=hourly, forecasts=pd.concat(rows, ignore_index=True),
                       threshold_m=3.8, future_rain="perfect", simulated=simulated)


@pytest.mark.parametrize("simulated", [False, True])
def test_report_files_events_and_tables(tmp_path: Path, simulated: bool) -> None:
    run = _run(simulated)
    index = write_report(run, tmp_path)
    html = index.read_text(encoding="utf-8")
    # naive event count: runs of hours at or above the threshold
    above = (run.hourly["level_m"] >= run.threshold_m).to_numpy().astype(int)
    n_events = int((np.diff(np.concatenate([[0], above])) == 1).sum())
    assert n_events == 2
    pngs = sorted(p.name for p in tmp_path.glob("event_*.png"))
    assert pngs == [f"event_{k}.png" for k in range(1, n_events + 1)]
    for name in ["overview.png", *pngs, "scores.csv", "peaks.csv", "thresholds.csv",
                 "forecasts.csv"]:
        assert (tmp_path / name).stat().st_size > 0
        assert f'"{name}"' in html            # linked from the index
    for ja in ("水防団待機水位", "氾濫注意水位", "避難判断水位", "氾濫危険水位"):
        assert ja in html
    assert ("SIMULATED DATA" in html) == simulated
    assert "警報" not in html.replace("警報/注意報", "")
    scores = pd.read_csv(tmp_path / "scores.csv")
    fc = run.forecasts
    level = run.hourly["level_m"]

    def rmse(model: str, h: int) -> float:  # naive: loop-free but independent of metrics.py
        sel = fc[(fc["horizon_h"] == h) & (fc["model"] == model)]
        o = level.reindex(pd.DatetimeIndex(sel["valid_at"])).to_numpy()
        f = sel["level"].to_numpy()
        ok = np.isfinite(o) & np.isfinite(f)
        return float(np.sqrt(np.mean((f[ok] - o[ok]) ** 2)))

    for h in (1, 6):
        row = scores[(scores["model"] == "lgbm") & (scores["horizon_h"] == h)].iloc[0]
        assert row["rmse"] == pytest.approx(rmse("lgbm", h), rel=1e-9)
        assert row["skill"] == pytest.approx(1 - rmse("lgbm", h) / rmse("persistence", h),
                                             rel=1e-9)
    peaks = pd.read_csv(tmp_path / "peaks.csv")
    assert set(peaks["event"]) == {1, 2}


def test_report_first_warning_lead_times(tmp_path: Path) -> None:
    run = _run(False)
    write_report(run, tmp_path)
    w = pd.read_csv(tmp_path / "warnings.csv")
    standby = w[w["threshold"] == "standby_m"].set_index("model")
    # the level crosses 3.80 m upwards twice; persistence can never warn before a crossing,
    # near-perfect forecasts (noise 0.05 m) reach it a few hours ahead
    assert standby.loc["persistence", "crossings"] == 2 == standby.loc["lgbm", "crossings"]
    assert standby.loc["persistence", "warned"] == 0
    assert standby.loc["persistence", "median_lead_h"] == 0
    assert standby.loc["lgbm", "warned"] == 2 and standby.loc["lgbm", "min_lead_h"] >= 3
    assert "First-warning lead time" in (tmp_path / "index.html").read_text(encoding="utf-8")
