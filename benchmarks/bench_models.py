"""Benchmark of the forecasting core (a script, not a test).

Part A: train 38 rivers x 6 leads (linear base + one L2 booster + conformal P10/P90 band each)
on five years of hourly synthetic rain-runoff data; report wall time, peak memory and the time
to predict all rivers at one issue time after loading the saved models.
Part A2 (peer, ``--skip-peer`` to skip): Nixtla mlforecast doing the same training on the same
38 synthetic rivers x 5 years: direct strategy (``fit(max_horizon=6)``), LightGBM, lags 1..24 h
of the level, the target differenced once, and as exogenous inputs the rain sums over 6/12/24/48
h and the upstream column, all ending 6 h before the valid time so every input of leads 1..6 h
is known at the issue time (the ``strong``/``none`` convention of benchmarks/realdata/peers.py).
P10/P50/P90 come from mlforecast's documented route for intervals: conformal prediction
(``prediction_intervals=PredictionIntervals(n_windows, h=6)``, ``predict(level=[80])``, the
80 % interval being P10-P90 around the point forecast). Two set-ups, each in a fresh
subprocess so its peak memory is measured like Part A's (the process's own peak RSS and the
largest worker's): one global model over all rivers (how mlforecast is normally used; one
process, LightGBM and mlforecast with ``--peer-threads`` threads, default 1 like our
``num_threads``: on this shared 2-core machine 2 threads were 2-10x slower, see
docs/benchmarks.md) and one model set per river like ours (``--workers`` processes, one thread
each).
Part B: BYOD backtest on the real 厚東川 data (tests/data/kotogawa) with folds that put the
2023-07-01 flood (and the 07-08..10 rise) in test periods, modes none and perfect; RMSE on all
hours / event windows, skill vs persistence and P10-P90 coverage on high-water hours at leads
1, 3, 6 for our model ("lgbm"), persistence, AR(2) and SARIMAX; then two ablations in mode
none: linear base only (no trees) and trees only (no linear base, the previous model).

    python benchmarks/bench_models.py [--rivers 38] [--years 5] [--skip-a] [--skip-peer]
                                      [--skip-b]
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forecast.features import LEADS, build_features, targets  # noqa: E402
from forecast.modelling.backtest import summary_table  # noqa: E402
from forecast.modelling.lgbm import LeadModels, LgbmSettings  # noqa: E402
from forecast.modelling.persist import load, save  # noqa: E402
from forecast.pipeline.backtest_files import run_backtest_files  # noqa: E402

PEER_INTERVAL = 80  # mlforecast's lo-80 / hi-80 = P10 / P90
PEER_MODES = ("global", "per-river")

KOTO = (ROOT / "tests" / "data" / "kotogawa"
        / "kotogawa_jiseiji_level_kotogawa_dam_2023-06_2023-07.csv")
CAT = ROOT / "config" / "reference_rivers.yaml"


def synthetic_river(hours: int, seed: int) -> pd.DataFrame:
    """Simple rain-runoff generator: seasonal storms -> two linear reservoirs -> stage."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2019-01-01", periods=hours, freq="h", tz="UTC", name="time")
    doy = idx.dayofyear.to_numpy()
    p_storm = 0.004 + 0.01 * np.exp(-(((doy - 190) / 40.0) ** 2))
    starts = rng.random(hours) < p_storm
    rain = np.convolve(starts * rng.gamma(2.0, 6.0, hours), np.ones(8) / 2.0)[:hours]
    rain *= rng.random(hours) < 0.8
    k1, k2 = 0.9 + 0.05 * rng.random(), 0.97 + 0.02 * rng.random()
    q = 0.6 * lfilter([1 - k1], [1, -k1], rain) + 0.4 * lfilter([1 - k2], [1, -k2], rain)
    level = 0.5 + rng.uniform(0.5, 2) * np.sqrt(q) + rng.normal(0, 0.005, hours)
    up = lfilter([1 - 0.8], [1, -0.8], np.roll(rain, 1)) * 10
    return pd.DataFrame({"level_m": level, "rain_mm": rain, "up_gauge": up}, index=idx)


def _train_one(args: tuple[int, int, LgbmSettings]
               ) -> tuple[int, dict[str, object], dict[str, str], pd.DataFrame]:
    i, hours, settings = args
    h = synthetic_river(hours, i)
    X = build_features(h, h.index, future_rain="perfect")
    Y = targets(h, h.index)
    m = LeadModels.train(X, Y, high_water_m=float(h["level_m"].quantile(0.97)),
                         settings=settings, name=f"synthetic{i}")
    meta, texts = m.to_strings()
    return i, meta, texts, X.iloc[[-10]]


def part_a(n_rivers: int, years: int, settings: LgbmSettings, workers: int
           ) -> dict[str, float]:
    hours = int(years * 365.25 * 24)
    print(f"== Part A: {n_rivers} rivers x {years} y hourly ({hours} h), settings {settings}")
    t0 = time.perf_counter()
    # one worker process per core, each LightGBM single-threaded (see lgbm.LgbmSettings)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(_train_one, [(i, hours, settings) for i in range(n_rivers)]))
    models = {i: LeadModels.from_strings(meta, texts) for i, meta, texts, _ in done}
    feats = {i: x for i, _, _, x in done}
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_b = sum(len(m.boosters) for m in models.values())
    rss_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"  train wall time {wall:.1f} s with {workers} worker processes, {n_b} boosters, "
          f"peak RSS parent {rss:.0f} MB, largest worker {rss_kids:.0f} MB")
    with tempfile.TemporaryDirectory() as d:
        for i, m in models.items():
            save(m, Path(d) / f"r{i}")
        t1 = time.perf_counter()
        loaded = {i: load(Path(d) / f"r{i}") for i in models}
        t_load = time.perf_counter() - t1
        for i in loaded:  # warm-up
            loaded[i].predict(feats[i])
        t2 = time.perf_counter()
        for i in loaded:
            loaded[i].predict(feats[i])
        t_pred = time.perf_counter() - t2
    print(f"  load {t_load:.2f} s; predict all {n_rivers} rivers at one issue time: "
          f"{1000 * t_pred:.0f} ms")
    return {"wall_s": wall, "predict_ms": 1000 * t_pred, "rss_parent_mb": rss,
            "rss_worker_mb": rss_kids}


# ------------------------------------------------------------------ Part A2: mlforecast
def _peer_frames(i: int, hours: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """mlforecast long frames of synthetic river ``i``: the training rows and the exogenous
    rows of the 6 hours after the last one (the issue time), all computable at that time."""
    from benchmarks.realdata.peers import NONE_SHIFT_H, peer_inputs

    h = synthetic_river(hours, i)
    level, exog = peer_inputs(h, "strong", "none")  # rain sums ending NONE_SHIFT_H h before
    up = np.r_[h["up_gauge"].to_numpy(dtype="float64"), np.full(len(level) - hours, np.nan)]
    exog[f"up_gauge_lag{NONE_SHIFT_H}"] = pd.Series(up, index=exog.index).shift(NONE_SHIFT_H)
    df = pd.DataFrame({"unique_id": f"r{i}", "ds": level.index, "y": level.to_numpy()})
    df = pd.concat([df, exog.reset_index(drop=True)], axis=1)
    return df.iloc[:hours], df.iloc[hours:].drop(columns="y").reset_index(drop=True)


def _peer_fit(train: pd.DataFrame, threads: int, windows: int) -> object:
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.target_transforms import Differences
    from mlforecast.utils import PredictionIntervals

    from benchmarks.realdata.peers import LAGS

    fc = MLForecast(models={"lgbm": lgb.LGBMRegressor(random_state=0, verbose=-1,
                                                        n_jobs=threads)},
                    freq="h", lags=list(range(1, LAGS + 1)),
                    target_transforms=[Differences([1])], num_threads=threads)
    fc.fit(train, max_horizon=max(LEADS), static_features=[],
           prediction_intervals=PredictionIntervals(n_windows=windows, h=max(LEADS)))
    return fc


def _peer_predict(fc: object, future: pd.DataFrame) -> pd.DataFrame:
    out: pd.DataFrame = fc.predict(max(LEADS), X_df=future,  # type: ignore[attr-defined]
                                   level=[PEER_INTERVAL])
    return out


def _peer_train_one(args: tuple[int, int, int]) -> tuple[int, bytes, pd.DataFrame]:
    i, hours, windows = args
    train, future = _peer_frames(i, hours)
    return i, pickle.dumps(_peer_fit(train, 1, windows)), future


def peer_child(mode: str, n_rivers: int, years: int, workers: int, windows: int,
               threads: int) -> None:
    """Run one mlforecast set-up in this (fresh) process and print its figures as JSON."""
    hours = int(years * 365.25 * 24)
    t0 = time.perf_counter()
    if mode == "global":
        frames = [_peer_frames(i, hours) for i in range(n_rivers)]
        train = pd.concat([f[0] for f in frames], ignore_index=True)
        future = pd.concat([f[1] for f in frames], ignore_index=True)
        del frames
        fc = _peer_fit(train, threads, windows)
        n_rows, n_feat = len(train), train.shape[1] - 3
        del train
        wall = time.perf_counter() - t0
        _peer_predict(fc, future)  # warm-up
        t1 = time.perf_counter()
        pred = _peer_predict(fc, future)
        t_pred = time.perf_counter() - t1
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = list(pool.map(_peer_train_one,
                                 [(i, hours, windows) for i in range(n_rivers)]))
        models = {i: pickle.loads(b) for i, b, _ in done}
        futures = {i: f for i, _, f in done}
        wall = time.perf_counter() - t0
        n_rows, n_feat = n_rivers * hours, futures[0].shape[1] - 2
        for i in models:  # warm-up
            _peer_predict(models[i], futures[i])
        t1 = time.perf_counter()
        pred = pd.concat([_peer_predict(models[i], futures[i]) for i in models])
        t_pred = time.perf_counter() - t1
    cols = ["lgbm", f"lgbm-lo-{PEER_INTERVAL}", f"lgbm-hi-{PEER_INTERVAL}"]
    if pred.shape[0] != n_rivers * max(LEADS) or pred[cols].isna().any().any():
        raise RuntimeError(f"mlforecast {mode}: expected {n_rivers * max(LEADS)} complete "
                           f"forecast rows, got {pred.shape[0]}")
    res = {"mode": mode, "wall_s": wall, "predict_ms": 1000 * t_pred, "rows": n_rows,
           "exog": n_feat,
           "rss_parent_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    print("PEER_RESULT " + json.dumps(res))


def part_a2(n_rivers: int, years: int, workers: int, windows: int, threads: int,
            modes: tuple[str, ...] = PEER_MODES) -> dict[str, dict[str, float]]:
    import mlforecast

    print(f"== Part A2: mlforecast {mlforecast.__version__} on the same {n_rivers} rivers x "
          f"{years} y: direct (max_horizon={max(LEADS)}), LightGBM, lags 1..24, "
          f"Differences([1]), conformal P10/P90 (n_windows={windows}, h={max(LEADS)})")
    out: dict[str, dict[str, float]] = {}
    for mode in modes:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--peer-child", mode,
               "--rivers", str(n_rivers), "--years", str(years), "--workers", str(workers),
               "--peer-windows", str(windows), "--peer-threads", str(threads)]
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [x for x in run.stdout.splitlines() if x.startswith("PEER_RESULT ")]
        if run.returncode != 0 or not lines:
            print(f"  {mode}: failed (exit {run.returncode})\n{run.stderr[-2000:]}")
            continue
        r = json.loads(lines[-1].removeprefix("PEER_RESULT "))
        how = (f"1 process, {threads} thread(s)" if mode == "global"
               else f"{workers} worker processes, 1 thread each")
        print(f"  {mode}: train wall time {r['wall_s']:.1f} s ({how}; {r['rows']} rows, "
              f"{r['exog']} exogenous + 24 lag features), peak RSS parent "
              f"{r['rss_parent_mb']:.0f} MB, largest worker {r['rss_worker_mb']:.0f} MB; "
              f"predict all {n_rivers} rivers at one issue time: {r['predict_ms']:.0f} ms")
        out[mode] = r
    return out


def koto_files(out: Path) -> tuple[Path, Path]:
    df = pd.read_csv(KOTO, encoding="utf-8-sig")
    t = pd.to_datetime(df["時刻"], format="%Y/%m/%d %H:%M").dt.tz_localize("Asia/Tokyo")
    iso = t.map(lambda x: x.isoformat())

    def rows(col: str, sid: str, zero_missing: bool) -> pd.DataFrame:
        v = df[col].astype(float)
        return pd.DataFrame({"station_id": sid, "time": iso,
                             "value": v.where(v != 0) if zero_missing else v})

    obs = pd.concat([rows("水位_水位", "jiseiji", True),
                     rows("ダム_全放流量", "kotogawa_dam_release", True)])
    rain = rows("ダム_60分雨量", "kotogawa_dam_rain", False)
    rain.loc[(df["ダム_貯水位"] == 0).to_numpy(), "value"] = np.nan
    obs.to_csv(out / "obs.csv", index=False)
    rain.to_csv(out / "rain.csv", index=False)
    return out / "obs.csv", out / "rain.csv"


def part_b(settings: LgbmSettings) -> None:
    print("== Part B: BYOD backtest, real 厚東川 (持世寺) data")
    with tempfile.TemporaryDirectory() as d:
        obs, rain = koto_files(Path(d))
        folds = Path(d) / "folds.csv"
        folds.write_text(
            "fold,train_end,test_start,test_end\n"
            "1,2023-06-30T12:00:00+09:00,2023-06-30T12:00:00+09:00,2023-07-04T00:00:00+09:00\n"
            "2,2023-07-06T00:00:00+09:00,2023-07-06T00:00:00+09:00,2023-07-13T00:00:00+09:00\n")
        for mode in ("none", "perfect"):
            t0 = time.perf_counter()
            res = run_backtest_files(CAT, obs, rain, folds, mode, Path(d) / f"fc_{mode}.csv",
                                     models=("lgbm", "persistence", "ar2", "sarimax"),
                                     settings=settings)
            print(f"-- future rain {mode} ({time.perf_counter() - t0:.1f} s)")
            print(summary_table(res.scores))
        for label, change in (("linear base only", {"trees": False}),
                               ("trees only", {"linear_base": False})):
            ablation = LgbmSettings(**{**settings.__dict__, **change})
            res = run_backtest_files(CAT, obs, rain, folds, "none", None,
                                     models=("lgbm", "persistence"), settings=ablation)
            print(f"-- future rain none, {label}")
            print(summary_table(res.scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rivers", type=int, default=38)
    ap.add_argument("--years", type=float, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quiet-keep", type=float, default=0.3)
    ap.add_argument("--fallbacks", action="store_true")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-peer", action="store_true", help="skip Part A2 (mlforecast)")
    ap.add_argument("--peer-modes", default=",".join(PEER_MODES),
                    help="Part A2 set-ups, comma-separated: global, per-river")
    ap.add_argument("--peer-windows", type=int, default=2,
                    help="conformal windows of mlforecast's PredictionIntervals (default 2)")
    ap.add_argument("--peer-threads", type=int, default=1,
                    help="threads of the global mlforecast model (LightGBM n_jobs and "
                         "mlforecast num_threads; default 1)")
    ap.add_argument("--peer-child", choices=PEER_MODES, help=argparse.SUPPRESS)
    ap.add_argument("--skip-b", action="store_true")
    a = ap.parse_args()
    if a.peer_child:
        peer_child(a.peer_child, a.rivers, int(a.years), a.workers, a.peer_windows,
                   a.peer_threads)
        return
    if not a.skip_a:
        part_a(a.rivers, int(a.years), LgbmSettings(num_threads=a.threads,
                                                    quiet_keep=a.quiet_keep,
                                                    fallbacks=a.fallbacks), a.workers)
    if not a.skip_peer:
        modes = tuple(m.strip() for m in a.peer_modes.split(",") if m.strip())
        part_a2(a.rivers, int(a.years), a.workers, a.peer_windows, a.peer_threads, modes)
    if not a.skip_b:
        part_b(LgbmSettings())


if __name__ == "__main__":
    main()
