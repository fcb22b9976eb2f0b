"""Convert the real data sets in ``../shared/data/real`` to the bring-your-own-data contract.

Each converter writes into ``out_dir``: ``OBS.csv`` and ``RAIN.csv`` (``station_id,time,value``,
ISO 8601 with the source's UTC offset; level m, rain mm over the interval ending at ``time``),
``CAT.yaml`` (valid under ``forecast.catalogue``) and ``FOLDS.csv``
(``fold,train_end,test_start,test_end``, time-ordered, flood events inside test spans), and
returns a ``Dataset`` describing them.

Only the benchmarks read the shared folder; the project never does. The catalogue schema only
accepts coordinates inside Japan, so the non-Japanese sites carry a placeholder coordinate
(marked ``provisional``; the real one is in the river's ``notes``). Thresholds outside Japan are
made up from level (or flow) quantiles and marked provisional. The BOM rivers, whose series is
streamflow, set ``target_transform`` in their catalogue entry (``BOM_TRANSFORM``;
``set_transform`` overrides it for experiments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from forecast.catalogue import load_catalogue

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
QUANTILES = (0.95, 0.98, 0.99, 0.995)
PLACEHOLDER = (34.7, 136.5)  # Mie; the schema refuses coordinates outside Japan
BOM_STATIONS = {"117002A": ("Black River at Bruce Highway, QLD", -19.2377, 146.6329, 255.2),
                "303203": ("Coal River at Baden, TAS", -42.435, 147.4533, 51.5),
                "405214": ("Delatite River at Tonga Bridge, VIC", -37.159, 146.11, 357.4)}
# Our model's target transform per BOM flow series, chosen on the 2018 and 2019 yearly folds
# (before the default 2020-2021 test years): event RMSE at leads 3/6 h, future rain none,
# raw vs log: 117002A 63.6/91.4 vs 69.3/91.8 m3/s (raw kept); 303203 0.56/1.86 vs 0.10/0.28;
# 405214 2.48/3.36 vs 2.07/3.27 (docs/benchmarks_accuracy.md).
BOM_TRANSFORM = {"117002A": "none", "303203": "log", "405214": "log"}
CALDER_LEVELS = {"mytholmroyd": "Mytholmroyd-level-15min-Qualified.csv",
                 "hebden_bridge": "Hebden-Bridge-level-15min-Qualified.csv",
                 "todmorden": "Todmorden-Callis-Bridge-level-15min-Qualified.csv",
                 "nutclough": "Nutclough-level-15min-Qualified.csv",
                 "dauber_bridge": "Mytholmroyd-Dauber-Bridge-level-15min-Qualified.csv"}
CALDER_RAIN = {"bacup": "Bacup-rainfall-15min-Qualified.csv",
               "gorple": "Gorple-rainfall-15min-Qualified.csv",
               "gorpley": "Gorpley-rainfall-15min-Qualified.csv",
               "walshaw_dean": "Walshaw-Dean-Lodge-rainfall-15min-Qualified.csv"}


@dataclass
class Dataset:
    """Paths of one converted data set plus what the benchmark needs to know about it."""

    name: str
    obs: Path
    rain: Path
    catalogue: Path
    folds: Path
    catalogue_no_upstream: Path | None = None  # same river without its upstream inputs
    obs_no_upstream: Path | None = None        # OBS.csv with the primary gauge only
    notes: list[str] = field(default_factory=list)


def _iso(times: pd.Series | pd.DatetimeIndex) -> pd.Series:
    """Aware timestamps -> ISO 8601 strings with their own offset, e.g. +09:00 (vectorised)."""
    s = pd.Series(pd.DatetimeIndex(times).strftime("%Y-%m-%dT%H:%M:%S%z"))
    return s.str[:-2] + ":" + s.str[-2:]


def _series(station: str, times: pd.Series | pd.DatetimeIndex, values: Any) -> pd.DataFrame:
    return pd.DataFrame({"station_id": station, "time": _iso(times).to_numpy(),
                         "value": np.asarray(values, dtype="float64")})


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False, float_format="%.4f", na_rep="")
    return path


def _folds(rows: list[tuple[str, str, str, str]], path: Path) -> Path:
    df = pd.DataFrame(rows, columns=["fold", "train_end", "test_start", "test_end"])
    df.to_csv(path, index=False)
    return path


def _gauge(code: str, name: str, lat: float, lon: float, *, provisional: bool = True
           ) -> dict[str, Any]:
    return {"code": code, "name_ja": name, "name_en": name, "lat": lat, "lon": lon,
            "kind": "telemetry", "source": "byod_csv", "provisional": provisional}


def _rain_gauge(code: str, name: str, weight: float) -> dict[str, Any]:
    return {"code": code, "name_ja": name, "name_en": name, "lat": PLACEHOLDER[0],
            "lon": PLACEHOLDER[1], "network": "other", "weight": weight,
            "source": "byod_csv", "provisional": True}


def quantile_thresholds(level: pd.Series) -> dict[str, Any]:
    """Provisional threshold ladder from the 95/98/99/99.5 % quantiles of a level/flow series.

    Rounded to 3 decimals and forced strictly increasing (the schema requires it).
    """
    q = [round(float(level.quantile(p)), 3) for p in QUANTILES]
    for i in range(1, len(q)):
        q[i] = max(q[i], round(q[i - 1] + 0.001, 3))
    return {"standby_m": q[0], "caution_m": q[1], "evacuation_m": q[2], "danger_m": q[3],
            "provisional": True}


def _river(rid: str, name: str, primary: dict[str, Any], upstream: list[dict[str, Any]],
           rain: list[dict[str, Any]], thresholds: dict[str, Any], area_km2: float,
           notes: str, qc_max: float = 30.0) -> dict[str, Any]:
    lat, lon = PLACEHOLDER
    return {
        "id": rid, "name_ja": name, "name_en": name, "system_ja": name, "system_en": name,
        "primary_gauge": primary["code"], "gauges": [primary, *upstream],
        "upstream_gauges": [g["code"] for g in upstream], "thresholds": thresholds,
        "rain_gauges": rain,
        "catchment": {"area_km2": area_km2, "provisional": True,
                      "polygon": [[lon - 0.1, lat - 0.1], [lon + 0.1, lat - 0.1],
                                  [lon, lat + 0.1]]},
        "qc": {"hard_min_m": -10.0, "hard_max_m": qc_max, "max_rise_m_per_h": qc_max,
               "max_fall_m_per_h": qc_max},
        "provisional": True, "notes": notes,
    }


def _catalogue(name: str, rivers: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(yaml.safe_dump({"name": name, "description": "benchmark conversion",
                                    "rivers": rivers}, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    load_catalogue(path)  # fail here, not in the benchmark, if the conversion is invalid
    return path


def _without_upstream(river: dict[str, Any]) -> dict[str, Any]:
    primary = next(g for g in river["gauges"] if g["code"] == river["primary_gauge"])
    return {**river, "gauges": [primary], "upstream_gauges": []}


def _primary_only(obs: pd.DataFrame, station: str, path: Path) -> Path:
    # the BYOD reader refuses stations the catalogue does not list
    return _write_csv(obs[obs["station_id"] == station], path)


# ---------------------------------------------------------------- 厚東川 (Kōtō River)
def koto(data: Path, out: Path) -> Dataset:
    """厚東川 at 持世寺: 10-min stage (0 = missing), dam 60-min rain, dam total release.

    Real thresholds 3.80/5.00/5.10/5.50 m. Folds: train until 2023-06-30 12:00 JST (June holds
    the early-June rain events), test 06-30 12:00 -> 07-06 (the 07-01 flood, peak 7.47 m),
    07-06 -> 07-20 (the 07-09 rise), 07-20 -> 08-02, each refitted on all earlier data.
    """
    out.mkdir(parents=True, exist_ok=True)
    src = data / "kotogawa_yamaguchi" / "kotogawa_jiseiji_level_kotogawa_dam_2023-06_2023-07.csv"
    df = pd.read_csv(src, encoding="utf-8-sig")
    t = pd.to_datetime(df["時刻"], format="%Y/%m/%d %H:%M").dt.tz_localize("Asia/Tokyo")
    stage = df["水位_水位"].astype(float)
    release = df["ダム_全放流量"].astype(float)
    dam_out = (df["ダム_貯水位"] == 0).to_numpy()  # dam logger outage: every dam column is 0
    rain = df["ダム_60分雨量"].astype(float).where(~dam_out)
    obs = pd.concat([_series("jiseiji", t, stage.where(stage != 0)),
                     _series("kotogawa_dam_release", t, release.where(~dam_out))])
    river = {
        "id": "koto", "name_ja": "厚東川", "name_en": "Koto River", "system_ja": "厚東川水系",
        "system_en": "Koto River system", "primary_gauge": "jiseiji",
        "gauges": [{**_gauge("jiseiji", "持世寺", 34.021, 131.236), "name_en": "Jiseiji"},
                   {**_gauge("kotogawa_dam_release", "厚東川ダム（全放流量）", 34.101, 131.231),
                    "name_en": "Kotogawa Dam release"}],
        "upstream_gauges": ["kotogawa_dam_release"],
        "thresholds": {"standby_m": 3.80, "caution_m": 5.00, "evacuation_m": 5.10,
                       "danger_m": 5.50},
        "rain_gauges": [{"code": "kotogawa_dam_rain", "name_ja": "厚東川ダム",
                         "name_en": "Kotogawa Dam", "lat": 34.101, "lon": 131.231,
                         "network": "prefecture", "weight": 1.0, "source": "byod_csv",
                         "provisional": True}],
        "catchment": {"area_km2": 360.0, "provisional": True,
                      "polygon": [[131.18, 34.02], [131.30, 34.02], [131.32, 34.20],
                                  [131.25, 34.30], [131.15, 34.22]]},
        "qc": {"hard_min_m": 0.5, "hard_max_m": 12.0, "max_rise_m_per_h": 2.5,
               "max_fall_m_per_h": 2.0},
    }
    folds = [("1", "2023-06-30T12:00:00+09:00", "2023-06-30T12:00:00+09:00",
              "2023-07-06T00:00:00+09:00"),
             ("2", "2023-07-06T00:00:00+09:00", "2023-07-06T00:00:00+09:00",
              "2023-07-20T00:00:00+09:00"),
             ("3", "2023-07-20T00:00:00+09:00", "2023-07-20T00:00:00+09:00",
              "2023-08-02T00:00:00+09:00")]
    return Dataset(
        "koto", _write_csv(obs, out / "OBS.csv"),
        _write_csv(_series("kotogawa_dam_rain", t, rain), out / "RAIN.csv"),
        _catalogue("koto", [river], out / "CAT.yaml"), _folds(folds, out / "FOLDS.csv"),
        _catalogue("koto_no_upstream", [_without_upstream(river)], out / "CAT_noup.yaml"),
        _primary_only(obs, "jiseiji", out / "OBS_noup.csv"),
        ["stage 0.0 and dam-logger zeros written as missing",
         "rain = dam trailing 60-min total at whole hours; release = dam total release (m3/s)"])


# ---------------------------------------------------------------- USGS 01037000 (Maine)
def usgs(data: Path, out: Path) -> Dataset:
    """USGS 01037000: hourly gage height (ft -> m) and ASOS hourly precipitation (mm).

    Times are local EDT (UTC-4) throughout. Thresholds: provisional 95/98/99/99.5 % stage
    quantiles. Folds train on everything before their test span (the first on seven weeks);
    the test spans cover the 2014-07-06, 2014-10-25 and 2015-10-01 events.
    """
    out.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(data / "usgs_01037000_maine" / "keag_small.csv")
    t = pd.to_datetime(df["datetime"]).dt.tz_localize("-04:00")
    level = df["65565_00065"].astype(float) * 0.3048
    prec = df["precip"].astype(float)
    prec = prec.where(prec >= 0)
    river = _river(
        "usgs_01037000", "USGS 01037000",
        _gauge("usgs_01037000", "USGS 01037000 (Maine)", *PLACEHOLDER), [],
        [_rain_gauge("usgs_asos", "ASOS precipitation", 1.0)], quantile_thresholds(level),
        300.0, "USGS NWIS 01037000, Maine, USA; coordinates are a placeholder; thresholds are "
        "stage quantiles, not NWS flood stages")
    folds = [("2014a", "2014-06-20T00:00:00-04:00", "2014-06-20T00:00:00-04:00",
              "2014-08-15T00:00:00-04:00"),
             ("2014b", "2014-08-15T00:00:00-04:00", "2014-08-15T00:00:00-04:00",
              "2014-11-02T00:00:00-04:00"),
             ("2015a", "2015-05-30T00:00:00-04:00", "2015-05-30T00:00:00-04:00",
              "2015-08-15T00:00:00-04:00"),
             ("2015b", "2015-08-15T00:00:00-04:00", "2015-08-15T00:00:00-04:00",
              "2015-11-02T00:00:00-04:00"),
             ("2016", "2016-05-29T00:00:00-04:00", "2016-05-29T00:00:00-04:00",
              "2016-06-24T00:00:00-04:00")]
    return Dataset(
        "usgs", _write_csv(_series("usgs_01037000", t, level), out / "OBS.csv"),
        _write_csv(_series("usgs_asos", t, prec), out / "RAIN.csv"),
        _catalogue("usgs", [river], out / "CAT.yaml"), _folds(folds, out / "FOLDS.csv"),
        notes=["gage height ft x 0.3048 -> m; times EDT (UTC-4)",
               "thresholds = 95/98/99/99.5 % stage quantiles (provisional)"])


# ---------------------------------------------------------------- BOM HRS (Australia)
def bom(data: Path, out: Path, station: str, test_years: tuple[int, ...] = (2019, 2020, 2021)
        ) -> Dataset:
    """BOM Hydrologic Reference Station ``station``: hourly streamflow (m3/s) used as the
    "level" series, and hourly catchment rainfall (mm).

    The time zone is not stated; read as local standard time (AEST, UTC+10). Thresholds:
    provisional 95/98/99/99.5 % flow quantiles (m3/s, written in the ``*_m`` fields). Rolling
    yearly folds: test year Y trains on everything before 1 January Y.
    """
    out.mkdir(parents=True, exist_ok=True)
    name, lat, lon, area = BOM_STATIONS[station]
    df = pd.read_csv(data / "bom_hrs_australia" / f"GR4H_climatedata_{station}_hr.csv",
                     index_col=0)
    t = pd.to_datetime(pd.Series(df.index), format="%d/%m/%Y %H:%M").dt.tz_localize("+10:00")
    flow = df["qt"].astype(float).reset_index(drop=True)
    sid = "bom_" + station.lower()
    river = _river(
        sid, name, _gauge(sid, name + " (streamflow)", *PLACEHOLDER), [],
        [_rain_gauge(sid + "_rain", name + " rainfall", 1.0)], quantile_thresholds(flow),
        area, f"BOM HRS {station} ({lat}, {lon}); the series is streamflow (m3/s), not stage; "
        "coordinates are a placeholder; thresholds are flow quantiles", qc_max=1e5)
    river["target_transform"] = BOM_TRANSFORM[station]
    folds = [(str(y), f"{y}-01-01T00:00:00+10:00", f"{y}-01-01T00:00:00+10:00",
              f"{y + 1}-01-01T00:00:00+10:00") for y in test_years]
    return Dataset(
        f"bom_{station}", _write_csv(_series(sid, t, flow), out / "OBS.csv"),
        _write_csv(_series(sid + "_rain", t, df["prec"].astype(float)), out / "RAIN.csv"),
        _catalogue(f"bom_{station}", [river], out / "CAT.yaml"),
        _folds(folds, out / "FOLDS.csv"),
        notes=["streamflow (m3/s) stands in for level: RMSE figures are in m3/s",
         "times read as AEST (UTC+10)", "thresholds = 95/98/99/99.5 % flow quantiles"])


# ---------------------------------------------------------------- EA Calder (UK)
def _ea(path: Path) -> tuple[pd.Series, pd.Series]:
    df = pd.read_csv(path)
    t = pd.to_datetime(df["dateTime"]).dt.tz_localize("UTC")
    return t, pd.to_numeric(df["value"], errors="coerce")


def calder(data: Path, out: Path) -> Dataset:
    """EA River Calder headwaters: 15-min levels at 5 gauges (Mytholmroyd is the forecast
    point; Hebden Bridge, Todmorden, Nutclough and Dauber Bridge are upstream inputs) and 4 rain
    gauges (equal weights). Times UTC. No flood in the record: a smoke test. Thresholds:
    provisional stage quantiles. Two weekly folds at the end of the four weeks.
    """
    out.mkdir(parents=True, exist_ok=True)
    folder = data / "ea_calder_uk"
    obs_parts, lv = [], {}
    for code, fname in CALDER_LEVELS.items():
        t, v = _ea(folder / fname)
        obs_parts.append(_series(code, t, v))
        lv[code] = v
    rain_parts = [_series(code, *_ea(folder / fname)) for code, fname in CALDER_RAIN.items()]
    gauges = [_gauge(c, c.replace("_", " ").title(), *PLACEHOLDER) for c in CALDER_LEVELS]
    rg = [_rain_gauge(c, c.replace("_", " ").title(), 0.25) for c in CALDER_RAIN]
    river = _river("calder", "River Calder at Mytholmroyd", gauges[0], gauges[1:], rg,
                   quantile_thresholds(lv["mytholmroyd"]), 100.0,
                   "EA Hydrology, West Yorkshire, UK; coordinates are placeholders; thresholds "
                   "are stage quantiles")
    folds = [("1", "2025-08-30T00:00:00+00:00", "2025-08-30T00:00:00+00:00",
              "2025-09-06T00:00:00+00:00"),
             ("2", "2025-09-06T00:00:00+00:00", "2025-09-06T00:00:00+00:00",
              "2025-09-13T12:00:00+00:00")]
    return Dataset(
        "calder", _write_csv(pd.concat(obs_parts), out / "OBS.csv"),
        _write_csv(pd.concat(rain_parts), out / "RAIN.csv"),
        _catalogue("calder", [river], out / "CAT.yaml"), _folds(folds, out / "FOLDS.csv"),
        _catalogue("calder_no_upstream", [_without_upstream(river)], out / "CAT_noup.yaml"),
        _primary_only(pd.concat(obs_parts), "mytholmroyd", out / "OBS_noup.csv"),
        ["15-min rain summed to hours by the BYOD reader", "smoke test: no flood, summer"])


CONVERTERS = ("koto", "usgs", "bom", "calder")


def set_transform(ds: Dataset, transform: str) -> None:
    """Rewrite the data set's catalogue(s) so every river uses ``transform`` (``none`` or
    ``log``) as its ``target_transform`` (an experiment switch; the converters choose)."""
    for path in (ds.catalogue, ds.catalogue_no_upstream):
        if path is None:
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for river in data["rivers"]:
            river["target_transform"] = transform
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                        encoding="utf-8")
        load_catalogue(path)


def transform_of(ds: Dataset) -> str:
    """The target transform our model uses on this data set (its catalogue's choice)."""
    return load_catalogue(ds.catalogue).rivers[0].target_transform or "none"


def convert(name: str, data: Path, out: Path, bom_years: tuple[int, ...] | None = None
            ) -> list[Dataset]:
    """Convert one data-set family (``CONVERTERS``); ``bom`` yields one Dataset per station
    (test years ``bom_years``, default ``bom``'s)."""
    if name == "koto":
        return [koto(data, out / "koto")]
    if name == "usgs":
        return [usgs(data, out / "usgs")]
    if name == "bom":
        return [bom(data, out / f"bom_{s}", s, *([bom_years] if bom_years else []))
                for s in BOM_STATIONS]
    if name == "calder":
        return [calder(data, out / "calder")]
    raise ValueError(f"unknown data set {name!r}; choose from {CONVERTERS}")
