"""Catchment rainfall from JMA grids: weights, cache, NaN handling, rain-vintage frames.

References: a naive per-cell / per-sub-point loop with its own ray-casting point-in-polygon
test, and the numpy run-length oracle for the real Typhoon Noru forecast over Mie.
"""

from __future__ import annotations

import dataclasses
import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast import frames
from forecast.catalogue import Catchment, Cell
from forecast.ingest import grib2, gridrain, rle
from forecast.ingest.grib2 import JMA_1KM, Window

DATA = Path(__file__).resolve().parents[1] / "data" / "jma-grib2"
NORU = "Z__C_RJTD_20170807001000_SRF_GPV_Ggis1km_Prr60lv_Fper10min_FH01-06_grib2.bin"
ANAL = "Z__C_RJTD_20210817090000_SRF_GPV_Ggis1km_Prr60lv_ANAL_grib2.bin"
MIE = Window(1524, 1716, 1424, 1520)      # 33.7-35.3N, 135.8-137.0E
# vertices off the sub-point lattice, so no sub-point sits exactly on an edge (where two
# correct point-in-polygon tests may disagree)
SMALL = ((136.3013, 34.5027), (136.3617, 34.4911), (136.3893, 34.5309), (136.3321, 34.5683),
         (136.2907, 34.5419))


@cache
def mie(name: str) -> grib2.RainGrid:
    return grib2.read_rain_grib(DATA / name, window=MIE)


def _inside(x: float, y: float, poly: tuple[tuple[float, float], ...]) -> bool:
    hit, j = False, len(poly) - 1
    for i in range(len(poly)):
        (xi, yi), (xj, yj) = poly[i], poly[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            hit = not hit
        j = i
    return hit


def _naive_mean(rain: grib2.RainGrid, poly: tuple[tuple[float, float], ...], k: int = 10
                ) -> tuple[np.ndarray, np.ndarray]:
    g, w = JMA_1KM, rain.window   # the geometry the weights are built on
    lons = [p[0] for p in poly]
    lats = [p[1] for p in poly]
    means, fracs = [], []
    for field in rain.values:
        num = den = total = 0.0
        for row in range(w.row0, w.row1):
            lat_c = g.lat_first - row * g.dlat
            if lat_c + g.dlat < min(lats) or lat_c - g.dlat > max(lats):
                continue
            for col in range(w.col0, w.col1):
                lon_c = g.lon_first + col * g.dlon
                if lon_c + g.dlon < min(lons) or lon_c - g.dlon > max(lons):
                    continue
                n_in = sum(
                    _inside(lon_c + ((b + 0.5) / k - 0.5) * g.dlon,
                            lat_c - ((a + 0.5) / k - 0.5) * g.dlat, poly)
                    for a in range(k) for b in range(k)
                )
                weight = n_in / k**2 * math.cos(math.radians(lat_c))
                total += weight
                value = float(field[row - w.row0, col - w.col0])
                if weight > 0 and not math.isnan(value):
                    num += weight * value
                    den += weight
        means.append(num / den if den else math.nan)
        fracs.append(den / total)
    return np.array(means), np.array(fracs)


def test_polygon_mean_matches_naive_loop_with_missing_cells() -> None:
    rain = mie(NORU)
    values = rain.values.copy()
    # knock out cells around the polygon's middle in two fields
    row = round((JMA_1KM.lat_first - 34.53) / JMA_1KM.dlat) - MIE.row0
    col = round((136.34 - JMA_1KM.lon_first) / JMA_1KM.dlon) - MIE.col0
    values[0, row - 1:row + 2, col - 1:col + 2] = np.nan
    values[3, row - 5:row + 5, col - 3:col + 1] = np.nan
    rain = dataclasses.replace(rain, values=values)
    ws = gridrain.build_weights({"small": Catchment(area_km2=30.0, polygon=SMALL)})
    got, frac = gridrain.catchment_means(rain, ws)
    want, want_frac = _naive_mean(rain, SMALL)
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-9)
    np.testing.assert_allclose(frac[:, 0], want_frac, rtol=1e-9)
    assert frac[0, 0] < 1.0 and frac[3, 0] < frac[0, 0] and frac[1, 0] == pytest.approx(1.0)


def test_shares_add_up_to_the_polygon_area() -> None:
    tri = ((136.0, 34.0), (136.3, 34.05), (136.1, 34.3))
    w = gridrain.polygon_weights(tri, subdivisions=20)
    # undo the normalisation with the per-cell cos(lat) factor to get shares back
    cos = np.cos(np.radians(JMA_1KM.lat_first - w.rows * JMA_1KM.dlat))
    shares = w.weights / cos
    shares = shares / shares.max()    # interior cells have share 1
    x = [p[0] for p in tri]
    y = [p[1] for p in tri]
    area = 0.5 * abs(x[0] * (y[1] - y[2]) + x[1] * (y[2] - y[0]) + x[2] * (y[0] - y[1]))
    assert shares.sum() * JMA_1KM.dlat * JMA_1KM.dlon == pytest.approx(area, rel=0.01)
    assert w.weights.sum() == pytest.approx(1.0)


def test_cell_aligned_box_takes_whole_cells_only() -> None:
    g = JMA_1KM
    box = ((g.lon_first + 99.5 * g.dlon, g.lat_first - 200.5 * g.dlat),
           (g.lon_first + 104.5 * g.dlon, g.lat_first - 200.5 * g.dlat),
           (g.lon_first + 104.5 * g.dlon, g.lat_first - 196.5 * g.dlat),
           (g.lon_first + 99.5 * g.dlon, g.lat_first - 196.5 * g.dlat))
    w = gridrain.polygon_weights(box)
    assert sorted(set(w.rows.tolist())) == [197, 198, 199, 200]
    assert sorted(set(w.cols.tolist())) == [100, 101, 102, 103, 104]
    assert w.rows.size == 20


def test_tiny_polygon_falls_back_to_one_cell() -> None:
    tiny = ((136.5, 34.5), (136.5001, 34.5), (136.5, 34.5001))
    w = gridrain.polygon_weights(tiny)
    assert w.weights.tolist() == [1.0]


def test_explicit_cell_list_is_used_as_given() -> None:
    rain = mie(ANAL)
    cells = (Cell(row=1600, col=1450, weight=0.5), Cell(row=1601, col=1450, weight=0.25),
             Cell(row=1600, col=1451, weight=0.25))
    ws = gridrain.build_weights({"c": Catchment(area_km2=3.0, cells=cells, polygon=SMALL)})
    got, _ = gridrain.catchment_means(rain, ws)
    v = rain.values[0]
    want = (0.5 * v[1600 - MIE.row0, 1450 - MIE.col0] + 0.25 * v[1601 - MIE.row0, 1450 - MIE.col0]
            + 0.25 * v[1600 - MIE.row0, 1451 - MIE.col0])
    assert got[0, 0] == pytest.approx(float(want))


def test_batched_means_equal_one_catchment_at_a_time() -> None:
    rain = mie(NORU)
    rng = np.random.default_rng(3)
    polys = {}
    for i in range(38):
        lon, lat = 135.9 + rng.random() * 1.0, 33.8 + rng.random() * 1.4
        r = 0.02 + 0.06 * rng.random()
        ang = np.sort(rng.random(6)) * 2 * np.pi
        polys[f"r{i:02d}"] = Catchment(area_km2=100.0, polygon=tuple(
            (float(lon + r * np.cos(a)), float(lat + r * np.sin(a))) for a in ang))
    cache = gridrain.WeightCache()
    batched, _ = gridrain.catchment_means(rain, gridrain.build_weights(polys, cache=cache))
    for j, (cid, c) in enumerate(polys.items()):
        single, _ = gridrain.catchment_means(rain, gridrain.build_weights({cid: c}, cache=cache))
        np.testing.assert_allclose(batched[:, j], single[:, 0], rtol=1e-12)


def test_all_missing_catchment_is_nan_with_zero_coverage() -> None:
    rain = mie(ANAL)
    rain = dataclasses.replace(rain, values=np.full_like(rain.values, np.nan))
    ws = gridrain.build_weights({"small": Catchment(area_km2=30.0, polygon=SMALL)})
    frame = gridrain.catchment_rain(rain, ws)
    assert frame["value"].isna().all() and (frame["valid_fraction"] == 0).all()


def test_noru_over_mie_against_the_oracle() -> None:
    """The Typhoon Noru forecast rains heavily on Mie: check our means against the oracle."""
    g = JMA_1KM
    box = ((g.lon_first + (MIE.col0 - 0.5) * g.dlon, g.lat_first - (MIE.row1 - 0.5) * g.dlat),
           (g.lon_first + (MIE.col1 - 0.5) * g.dlon, g.lat_first - (MIE.row1 - 0.5) * g.dlat),
           (g.lon_first + (MIE.col1 - 0.5) * g.dlon, g.lat_first - (MIE.row0 - 0.5) * g.dlat),
           (g.lon_first + (MIE.col0 - 0.5) * g.dlon, g.lat_first - (MIE.row0 - 0.5) * g.dlat))
    ws = gridrain.build_weights({"mie_box": Catchment(area_km2=20000.0, polygon=box)})
    assert ws.window == MIE
    frame = gridrain.catchment_rain(mie(NORU), ws)

    layout, levels = rle.decode_levels((DATA / NORU).read_bytes(), NORU)
    cos = np.cos(np.radians(g.lats(MIE)))[:, None] * np.ones(MIE.col1 - MIE.col0)
    for k, (field, lev) in enumerate(zip(layout.fields, levels, strict=True)):
        values = rle.level_table(field)[lev].reshape(layout.nj, layout.ni)
        box_vals = values[MIE.row0:MIE.row1, MIE.col0:MIE.col1]
        assert not np.isnan(box_vals).any()        # Mie is inside radar cover
        box_mean = float((box_vals * cos).sum() / cos.sum())
        national = float(np.nanmean(values))
        assert frame["value"].iloc[k] == pytest.approx(box_mean, rel=1e-5)
        assert frame["valid_fraction"].iloc[k] == pytest.approx(1.0)
        # "substantial": Mie is far wetter than the average radar-covered cell of Japan
        assert box_mean > 5 * national


def test_frame_contract_for_forecast_and_analysis() -> None:
    ws = gridrain.build_weights({
        "a": Catchment(area_km2=30.0, polygon=SMALL),
        "b": Catchment(area_km2=30.0, polygon=tuple((x - 0.3, y) for x, y in SMALL)),
    })
    fc = gridrain.catchment_rain(mie(NORU), ws)
    frames.rain_vintages(fc)   # raises on a broken contract
    assert set(fc["product"]) == {"jma_quick_srf_forecast"}
    assert (fc["issued_at"] == pd.Timestamp("2017-08-07 00:10", tz="UTC")).all()
    assert fc["catchment_id"].tolist() == ["a", "b"] * 6
    hours = (fc["valid_at"] - fc["issued_at"]) / pd.Timedelta(hours=1)
    assert hours.tolist() == [h for h in range(1, 7) for _ in range(2)]

    an = gridrain.catchment_rain(mie(ANAL), ws)
    frames.rain_vintages(an)
    assert set(an["product"]) == {"jma_analysis"}
    assert (an["issued_at"] == an["valid_at"]).all()


def test_weight_cache_memory_and_disk(tmp_path: Path) -> None:
    c = Catchment(area_km2=30.0, polygon=SMALL)
    first = gridrain.WeightCache(tmp_path)
    w1 = first.get(c)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and first.get(c) is w1
    # a new process reads the file: plant a marker in it to prove it is read, not recomputed
    np.savez(files[0], rows=w1.rows, cols=w1.cols, weights=w1.weights * 0 + 0.123)
    assert np.all(gridrain.WeightCache(tmp_path).get(c).weights == 0.123)
    files[0].write_bytes(b"damaged")
    np.testing.assert_allclose(gridrain.WeightCache(tmp_path).get(c).weights, w1.weights)
    other = Catchment(area_km2=30.0, polygon=tuple((x, y + 0.01) for x, y in SMALL))
    assert gridrain.weights_key(other, JMA_1KM, 10) != gridrain.weights_key(c, JMA_1KM, 10)


def test_rain_window_must_cover_the_catchments() -> None:
    ws = gridrain.build_weights({"far": Catchment(area_km2=300.0, polygon=(
        (131.18, 34.02), (131.30, 34.02), (131.25, 34.20)))})
    with pytest.raises(ValueError, match="does not cover"):
        gridrain.catchment_means(mie(ANAL), ws)


@pytest.fixture(autouse=True, scope="module")
def _free() -> object:
    yield
    mie.cache_clear()
