"""Bring-your-own-data backtest: CSV files in, FORECASTS.csv out (the contract reviewers use).

``forecast backtest --catalogue CAT.yaml --observations OBS.csv --rain RAIN.csv
--folds FOLDS.csv --future-rain {none,perfect,archive} [--rain-forecasts RF.csv]
--out FORECASTS.csv``

Input files (UTF-8, comma separated, one header row; "row N" in errors = line N of the file,
the header being line 1):

* ``OBS.csv`` ``station_id,time,value``: level (m) at each river's ``primary_gauge`` and the
  values of its ``upstream_gauges`` (upstream levels, dam release m3/s). Any step (10 min,
  15 min, hourly); sub-hourly series are resampled (last reading in (T-30 min, T]). An empty
  value is a missing reading.
* ``RAIN.csv`` ``station_id,time,value``: rain (mm) over the hour ending at ``time`` at the
  river's ``rain_gauges`` (weights from the catalogue). Rows off the whole hour are ignored, so
  a gauge reporting a trailing 60-minute total every 10 minutes works as is.
* ``FOLDS.csv`` ``fold,train_end,test_start,test_end``: train_end <= test_start < test_end; test
  spans must not overlap. Each fold trains on issue times whose inputs and targets lie strictly
  before train_end and forecasts at every whole hour in [test_start, test_end) with an observed
  level.
* ``RF.csv`` (``archive`` mode only): ``station_id,issued_at,valid_at,value`` (a rain gauge's
  forecast) or ``catchment_id,issued_at,valid_at,value`` (catchment_id = river id): rain (mm)
  over the hour ending at ``valid_at`` as forecast at ``issued_at``. Station forecasts are
  combined with the catalogue weights. The latest forecast issued at or before each issue time
  is used.

All times are ISO 8601 with a UTC offset (``2023-07-01T04:00:00+09:00``). Output
``FORECASTS.csv``: ``river_id,issued_at,valid_at,horizon_h,level,q10,q50,q90`` (times in UTC
with ``+00:00``), one row per issue time and lead 1..6.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.catalogue import Catalogue, River, load_catalogue
from forecast.errors import ForecastError, InputFileError, InsufficientDataError
from forecast.features import CENSORED, FUTURE_RAIN_MODES, LEADS, FutureRain, river_hourly
from forecast.frames import LEVEL, RAIN, RELEASE
from forecast.modelling.backtest import Fold, backtest_river, fold_test_times
from forecast.modelling.backtest import summary_table as summary_table  # re-exported for the CLI
from forecast.modelling.lgbm import LgbmSettings, with_transform
from forecast.modelling.metrics import attach_observed, event_windows, lead_scores
from forecast.modelling.report import BacktestRun, write_report

OUT_COLUMNS = ("river_id", "issued_at", "valid_at", "horizon_h", "level", "q10", "q50", "q90")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")


@dataclass
class BacktestResult:
    """What a BYOD backtest produced.

    ``forecasts``: the FORECASTS.csv rows (our model); ``all_forecasts``: every model with
    ``fold`` and ``model`` columns; ``scores``: ``metrics.lead_scores`` per river (``river_id``
    column); ``failures``: river id -> message for rivers that could not be backtested;
    ``runs``: river id -> what its HTML report is made from (``write_reports``).
    """

    forecasts: pd.DataFrame
    all_forecasts: pd.DataFrame
    scores: pd.DataFrame
    failures: dict[str, str] = field(default_factory=dict)
    out_path: Path | None = None
    runs: dict[str, BacktestRun] = field(default_factory=dict)


def _read_csv(path: Path, required: Sequence[str], *, alternatives: Sequence[str] = ()
              ) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        raise InputFileError(f"cannot read the file ({exc}); it must be a UTF-8 CSV with the "
                             f"header {','.join(required)}", file=str(path)) from exc
    df.columns = [c.strip() for c in df.columns]
    for col in required:
        if col not in df.columns and not any(a in df.columns for a in alternatives):
            raise InputFileError(
                f"missing column; the header must be {','.join(required)} (got "
                f"{','.join(df.columns)})", file=str(path), column=col)
    return df


def _times(df: pd.DataFrame, col: str, path: Path) -> pd.Series:
    raw = df[col].str.strip()
    bad = ~raw.str.contains(_OFFSET)
    parsed = pd.to_datetime(raw.where(~bad), format="ISO8601", utc=True, errors="coerce")
    bad |= parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFileError(
            f"time {raw.iloc[i]!r} is not ISO 8601 with a UTC offset; write e.g. "
            "2023-07-01T04:00:00+09:00", file=str(path), row=i + 2, column=col)
    return parsed


def _values(df: pd.DataFrame, path: Path) -> pd.Series:
    raw = df["value"].str.strip()
    num = pd.to_numeric(raw.where(raw != ""), errors="coerce")
    bad = num.isna() & (raw != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFileError(f"value {raw.iloc[i]!r} is not a number (leave it empty when "
                             "missing)", file=str(path), row=i + 2, column="value")
    return num.astype("float64")


def read_series(path: str | Path, known: set[str], key: str = "station_id",
                time_col: str = "time", *, unique: bool = True) -> pd.DataFrame:
    """Read an OBS/RAIN-style CSV into ``station_id, time (UTC), value``; validate it."""
    p = Path(path)
    df = _read_csv(p, (key, time_col, "value"))
    st = df[key].str.strip()
    unknown = ~st.isin(known)
    if unknown.any():
        i = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InputFileError(f"{key} {st.iloc[i]!r} is not in the catalogue for this file; "
                             f"expected one of {sorted(known)}", file=str(p), row=i + 2,
                             column=key)
    out = pd.DataFrame({"station_id": st, "time": _times(df, time_col, p),
                        "value": _values(df, p)})
    dup = out.duplicated(["station_id", "time"], keep="first")
    if unique and dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputFileError(f"duplicate ({key}, {time_col}) = ({out['station_id'].iloc[i]}, "
                             f"{out['time'].iloc[i]}); keep one row per station and time",
                             file=str(p), row=i + 2)
    return out


def read_folds(path: str | Path) -> list[Fold]:
    """Read FOLDS.csv (``fold,train_end,test_start,test_end``) and check its logic."""
    p = Path(path)
    cols = ("fold", "train_end", "test_start", "test_end")
    df = _read_csv(p, cols)
    if df.empty:
        raise InputFileError("no folds; add at least one row", file=str(p))
    t = {c: _times(df, c, p) for c in cols[1:]}
    folds = []
    for i in range(len(df)):
        f = Fold(df["fold"].iloc[i].strip(), t["train_end"].iloc[i], t["test_start"].iloc[i],
                 t["test_end"].iloc[i])
        if not f.train_end <= f.test_start < f.test_end:
            raise InputFileError("need train_end <= test_start < test_end", file=str(p),
                                 row=i + 2)
        folds.append(f)
    order = sorted(range(len(folds)), key=lambda k: folds[k].test_start)
    for a, b in itertools.pairwise(order):
        if folds[b].test_start < folds[a].test_end:
            raise InputFileError(f"test span overlaps fold {folds[a].fold!r}; test spans must "
                                 "not overlap", file=str(p), row=b + 2)
    return folds


def _observations(obs: pd.DataFrame, rain: pd.DataFrame, cat: Catalogue) -> pd.DataFrame:
    variable: dict[str, str] = {}
    for river in cat.rivers:
        for g in river.gauges:
            variable[g.code] = RELEASE if "放流" in g.name_ja or "release" in g.code else LEVEL
        variable[river.primary_gauge] = LEVEL
    rain = rain[rain["time"] == rain["time"].dt.floor("h")]
    o = obs.assign(variable=obs["station_id"].map(variable).fillna(LEVEL))
    r = rain.assign(variable=RAIN)
    both = pd.concat([o, r], ignore_index=True)
    both["flag"] = np.where(both["value"].isna(), 4, 0).astype("int8")
    return both


def read_rain_forecasts(path: str | Path, cat: Catalogue) -> pd.DataFrame:
    """RF.csv -> rain-vintage frame (``forecast.frames.RAIN_VINTAGE_COLUMNS``) per river."""
    p = Path(path)
    head = _read_csv(p, ("issued_at", "valid_at", "value"))
    key = "station_id" if "station_id" in head.columns else "catchment_id"
    if key not in head.columns:
        raise InputFileError("needs a station_id or catchment_id column", file=str(p),
                             column="station_id")
    known = ({g.code for r in cat.rivers for g in r.rain_gauges} if key == "station_id"
             else set(cat.ids))
    df = read_series(p, known, key=key, time_col="issued_at", unique=False).rename(
        columns={"station_id": "key", "time": "issued_at"})
    df["valid_at"] = _times(_read_csv(p, ("valid_at",)), "valid_at", p)
    dup = df.duplicated(["key", "issued_at", "valid_at"])
    if dup.any():
        raise InputFileError("duplicate (id, issued_at, valid_at)", file=str(p),
                             row=int(np.flatnonzero(dup.to_numpy())[0]) + 2)
    if key == "catchment_id":
        parts = [df.rename(columns={"key": "catchment_id"})]
    else:
        parts = []
        for r in cat.rivers:
            w = {g.code: g.weight for g in r.rain_gauges}
            d = df[df["key"].isin(list(w))].dropna(subset=["value"])
            wt = d["key"].map(w)
            d = d.assign(w=wt, wv=d["value"] * wt)
            # weights renormalised over the gauges that sent a forecast for that hour
            g = d.groupby(["issued_at", "valid_at"])[["wv", "w"]].sum()
            parts.append(pd.DataFrame({
                "catchment_id": r.id, "issued_at": g.index.get_level_values(0),
                "valid_at": g.index.get_level_values(1),
                "value": (g["wv"] / g["w"]).to_numpy()}))
    out = pd.concat(parts, ignore_index=True)
    out["product"] = "user_csv"
    return out[["product", "catchment_id", "issued_at", "valid_at", "value"]]


def _river_backtest(river: River, obs: pd.DataFrame, folds: Sequence[Fold], folds_path: str,
                    future_rain: FutureRain, vintages: pd.DataFrame | None,
                    models: Sequence[str], settings: LgbmSettings | None
                    ) -> tuple[BacktestRun, pd.DataFrame]:
    hourly = river_hourly(obs, river)
    for i, f in enumerate(folds):
        if not len(fold_test_times(hourly, f)):
            raise InputFileError(
                f"fold {f.fold!r}: river {river.id} has no observed level at "
                f"{river.primary_gauge} in [{f.test_start}, {f.test_end}); move the test span "
                "or drop the fold", file=folds_path, row=i + 2)
    hw = river.thresholds.ladder()[0][1]
    fc = backtest_river(hourly, folds, river_id=river.id, high_water_m=hw,
                        future_rain=future_rain, vintages=vintages,
                        settings=with_transform(settings, river.target_transform),
                        models=models)
    paired = attach_observed(fc, hourly[LEVEL], hourly.get(CENSORED))
    scores = lead_scores(paired, event_windows(hourly[LEVEL], hw), hw)
    scores.insert(0, "river_id", river.id)
    return BacktestRun(river=river, hourly=hourly, forecasts=fc, threshold_m=hw,
                       future_rain=future_rain), scores


def run_backtest_files(
    catalogue_path: str | Path,
    observations_path: str | Path,
    rain_path: str | Path,
    folds_path: str | Path,
    future_rain: str,
    out_path: str | Path | None,
    rain_forecasts_path: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    models: Sequence[str] = ("lgbm", "persistence"),
    settings: LgbmSettings | None = None,
) -> BacktestResult:
    """Run the BYOD backtest (module docstring) and write FORECASTS.csv to ``out_path``.

    Raises ``InputFileError`` for unusable files and, when every river fails, the first
    river's error; otherwise failed rivers are listed in ``BacktestResult.failures``.
    """
    if future_rain not in FUTURE_RAIN_MODES:
        raise InputFileError(f"future rain mode must be one of {FUTURE_RAIN_MODES}")
    if future_rain == "archive" and rain_forecasts_path is None:
        raise InputFileError("--future-rain archive needs --rain-forecasts RF.csv")
    mode: FutureRain = future_rain  # type: ignore[assignment]
    say = progress or (lambda _msg: None)
    cat = load_catalogue(catalogue_path)
    obs_known = {r.primary_gauge for r in cat.rivers} | {
        c for r in cat.rivers for c in r.upstream_gauges}
    rain_known = {g.code for r in cat.rivers for g in r.rain_gauges}
    obs = read_series(observations_path, obs_known)
    rain = read_series(rain_path, rain_known)
    folds = read_folds(folds_path)
    vintages = (read_rain_forecasts(rain_forecasts_path, cat)
                if mode == "archive" and rain_forecasts_path is not None else None)
    long_obs = _observations(obs, rain, cat)
    runs: dict[str, BacktestRun] = {}
    scores: list[pd.DataFrame] = []
    failures: dict[str, str] = {}
    errors: list[ForecastError] = []
    for river in cat.rivers:
        if not (long_obs["station_id"] == river.primary_gauge).any():
            failures[river.id] = f"no observations for primary gauge {river.primary_gauge}"
            errors.append(InsufficientDataError(f"river {river.id}: {failures[river.id]}"))
            continue
        say(f"river {river.id}: backtesting {len(folds)} fold(s), future rain {mode}")
        try:
            run, sc = _river_backtest(river, long_obs, folds, str(folds_path), mode, vintages,
                                      models, settings)
        except ForecastError as exc:
            failures[river.id] = str(exc)
            errors.append(exc)
            say(f"river {river.id}: FAILED: {exc}")
            continue
        runs[river.id] = run
        scores.append(sc)
    if not runs:
        raise errors[0]
    all_fc = pd.concat([r.forecasts for r in runs.values()], ignore_index=True)
    ours = all_fc[all_fc["model"] == "lgbm"].loc[:, list(OUT_COLUMNS)].reset_index(drop=True)
    result = BacktestResult(ours, all_fc, pd.concat(scores, ignore_index=True), failures,
                            runs=runs)
    if out_path is not None:
        write_forecasts(ours, out_path)
        result.out_path = Path(out_path)
    return result


def write_reports(result: BacktestResult, out_dir: str | Path) -> dict[str, Path]:
    """Write one HTML report per backtested river into ``out_dir/<river>/`` (hydrographs of
    each flood event, metric tables per lead against the baselines; ``report.write_report``).
    Returns river id -> its ``index.html``; ``InputFileError`` when a directory is not
    writable."""
    pages: dict[str, Path] = {}
    for rid, run in result.runs.items():
        try:
            pages[rid] = write_report(run, Path(out_dir) / rid)
        except OSError as exc:
            raise InputFileError(f"cannot write the report of river {rid} ({exc.strerror})",
                                 file=str(Path(out_dir) / rid)) from exc
    return pages


def write_forecasts(forecasts: pd.DataFrame, path: str | Path) -> None:
    """Write FORECASTS.csv (``OUT_COLUMNS``; times ISO 8601 UTC; levels to 1 mm)."""
    out = forecasts.loc[:, list(OUT_COLUMNS)].copy()
    for c in ("issued_at", "valid_at"):
        out[c] = pd.DatetimeIndex(out[c]).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    try:
        out.to_csv(path, index=False, float_format="%.3f")
    except OSError as exc:
        raise InputFileError(f"cannot write output ({exc.strerror})", file=str(path)) from exc


__all__ = ["LEADS", "OUT_COLUMNS", "BacktestResult", "read_folds", "read_rain_forecasts",
           "read_series", "run_backtest_files", "write_forecasts", "write_reports"]
