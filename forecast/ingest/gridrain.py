"""Catchment rainfall from JMA 1 km rain grids: area weights once, weighted means per hour.

A catchment's rain is the area-weighted mean of the grid cells covering its polygon. The
weight of a cell is the fraction of the cell inside the polygon (estimated on a
``subdivisions`` x ``subdivisions`` lattice of sub-points per cell, since shapely is not a
dependency) times its relative area (cos latitude), normalised to sum to 1. A catalogue cell
list (``Catchment.cells``) is used as given instead of the polygon.

Weights are computed once per (polygon, grid) and cached in a ``WeightCache`` (in memory, and
as ``.npz`` files when given a directory). The means for all catchments and all fields are
one gather + segmented sum (a sparse matrix product written with numpy) over the cut-out
window. Cells without data (NaN) are left out and the remaining weights renormalised; the
fraction of weight that had data is reported as ``valid_fraction``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecast import frames
from forecast.catalogue import Catchment
from forecast.errors import GribError
from forecast.ingest import rle
from forecast.ingest.grib2 import JMA_1KM, LatLonGrid, RainGrid, Window

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_CACHE_VERSION = 1   # bump when the weighting rule changes, so stale .npz files are ignored


@dataclass(frozen=True)
class CellWeights:
    """Cells (full-grid row, col) of one catchment and their weights (sum 1)."""

    rows: I64
    cols: I64
    weights: F64


def polygon_weights(polygon: Sequence[tuple[float, float]], grid: LatLonGrid = JMA_1KM, *,
                    subdivisions: int = 10) -> CellWeights:
    """Area weights of the cells of ``grid`` covered by a (lon, lat) polygon (degrees).

    A cell's weight is (share of its sub-points inside the polygon) x cos(latitude),
    normalised over the catchment. A polygon smaller than the sub-point spacing gets the cell
    holding its vertex mean, weight 1.
    """
    verts = np.asarray(polygon, dtype=np.float64)
    if verts.ndim != 2 or verts.shape[0] < 3 or verts.shape[1] != 2:
        raise ValueError("polygon needs at least 3 (lon, lat) vertices")
    lon_min, lat_min = verts.min(axis=0)
    lon_max, lat_max = verts.max(axis=0)
    # Rows/cols whose cell extent (centre +- half a step) meets the polygon's bounding box.
    r0 = max(int(np.floor((grid.lat_first - lat_max) / grid.dlat + 0.5)), 0)
    r1 = min(int(np.floor((grid.lat_first - lat_min) / grid.dlat + 0.5)) + 1, grid.ny)
    c0 = max(int(np.floor((lon_min - grid.lon_first) / grid.dlon + 0.5)), 0)
    c1 = min(int(np.floor((lon_max - grid.lon_first) / grid.dlon + 0.5)) + 1, grid.nx)
    if r0 >= r1 or c0 >= c1:
        raise ValueError("polygon lies outside the grid")
    k = subdivisions
    sub = (np.arange(k) + 0.5) / k - 0.5          # sub-point offsets in cell units
    lats = (grid.lat_first - (np.arange(r0, r1)[:, None] + sub[None, :]) * grid.dlat).ravel()
    lons = (grid.lon_first + (np.arange(c0, c1)[:, None] + sub[None, :]) * grid.dlon).ravel()
    lon_mesh, lat_mesh = np.meshgrid(lons, lats)
    from matplotlib.path import Path as MplPath  # only when weights are built (not cached)

    inside = MplPath(verts).contains_points(np.column_stack([lon_mesh.ravel(), lat_mesh.ravel()]))
    share = inside.reshape(r1 - r0, k, c1 - c0, k).mean(axis=(1, 3))
    rr, cc = np.nonzero(share > 0)
    if rr.size == 0:
        centre = verts.mean(axis=0)
        row = int(np.clip(np.rint((grid.lat_first - centre[1]) / grid.dlat), 0, grid.ny - 1))
        col = int(np.clip(np.rint((centre[0] - grid.lon_first) / grid.dlon), 0, grid.nx - 1))
        return CellWeights(np.array([row]), np.array([col]), np.array([1.0]))
    rows, cols = rr + r0, cc + c0
    w = share[rr, cc] * np.cos(np.radians(grid.lat_first - rows * grid.dlat))
    return CellWeights(rows.astype(np.int64), cols.astype(np.int64), w / w.sum())


def _cells_weights(catchment: Catchment) -> CellWeights:
    w = np.array([c.weight for c in catchment.cells], dtype=np.float64)
    return CellWeights(np.array([c.row for c in catchment.cells], dtype=np.int64),
                       np.array([c.col for c in catchment.cells], dtype=np.int64), w / w.sum())


class WeightCache:
    """Catchment weights by key (hash of polygon or cell list, grid and lattice size).

    Kept in memory; with ``directory`` also written to / read from ``<key>.npz`` there, so
    a restarted service does not recompute them.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._memory: dict[str, CellWeights] = {}

    def get(self, catchment: Catchment, grid: LatLonGrid = JMA_1KM, *,
            subdivisions: int = 10) -> CellWeights:
        """Weights of one catchment on ``grid``, computed on first use."""
        key = weights_key(catchment, grid, subdivisions)
        if key in self._memory:
            return self._memory[key]
        found = self._load(key)
        if found is None:
            found = (_cells_weights(catchment) if catchment.cells
                     else polygon_weights(catchment.polygon, grid, subdivisions=subdivisions))
            self._save(key, found)
        self._memory[key] = found
        return found

    def _load(self, key: str) -> CellWeights | None:
        if self.directory is None:
            return None
        path = self.directory / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                return CellWeights(z["rows"].astype(np.int64), z["cols"].astype(np.int64),
                                   z["weights"].astype(np.float64))
        except (OSError, KeyError, ValueError):   # absent or damaged: recompute
            return None

    def _save(self, key: str, w: CellWeights) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f"{key}.tmp.npz"
        np.savez(tmp, rows=w.rows, cols=w.cols, weights=w.weights)
        tmp.replace(self.directory / f"{key}.npz")   # atomic: readers never see half a file


def weights_key(catchment: Catchment, grid: LatLonGrid, subdivisions: int) -> str:
    """Stable hash of what the weights depend on (shape, grid, lattice, rule version)."""
    shape: object = ([[c.row, c.col, c.weight] for c in catchment.cells] if catchment.cells
                     else [[round(x, 7), round(y, 7)] for x, y in catchment.polygon])
    g = [round(v, 7) for v in (grid.lat_first, grid.lon_first, grid.dlat, grid.dlon)]
    blob = json.dumps([_CACHE_VERSION, shape, g, grid.ny, grid.nx, subdivisions])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class WeightSet:
    """Weights of several catchments over one window, ready for ``catchment_means``.

    ``cell[starts[i]:starts[i+1]]`` are catchment i's flat cell indices inside ``window``
    and ``weight[...]`` their weights (sum 1 per catchment).
    """

    ids: tuple[str, ...]
    grid: LatLonGrid
    window: Window
    cell: I64
    weight: F64
    starts: I64


def build_weights(catchments: Mapping[str, Catchment], grid: LatLonGrid = JMA_1KM, *,
                  cache: WeightCache | None = None, subdivisions: int = 10) -> WeightSet:
    """Weights of every catchment (keyed by catchment id, i.e. river id) on one window.

    The window is the smallest rectangle holding every weighted cell; decode the rain with
    ``read_rain_grib(..., window=weights.window)`` to convert only those cells.
    """
    if not catchments:
        raise ValueError("no catchments given")
    cache = cache or WeightCache()
    per = [cache.get(c, grid, subdivisions=subdivisions) for c in catchments.values()]
    rows = np.concatenate([w.rows for w in per])
    cols = np.concatenate([w.cols for w in per])
    window = Window(int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
    width = window.col1 - window.col0
    sizes = np.array([w.rows.size for w in per])
    return WeightSet(
        ids=tuple(catchments), grid=grid, window=window,
        cell=(rows - window.row0) * width + (cols - window.col0),
        weight=np.concatenate([w.weights for w in per]),
        starts=np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64),
    )


def catchment_means(rain: RainGrid, weights: WeightSet) -> tuple[F64, F64]:
    """Catchment mean rain (mm/h) and valid fraction (0-1), both shaped (n_fields, n_catchments).

    NaN cells are dropped and the other weights renormalised; a catchment with no valid cell
    gets NaN and valid fraction 0. ``GribError`` if the rain is on another grid;
    ``ValueError`` if it was decoded on a window that misses some catchment cells.
    """
    if not rain.grid.same_as(weights.grid):
        raise GribError(f"grid {rain.grid} differs from the catchment weights' grid "
                        f"{weights.grid}", source=rle.SOURCE, location=rain.source)
    rw, ww = rain.window, weights.window
    if not (rw.row0 <= ww.row0 and ww.row1 <= rw.row1 and rw.col0 <= ww.col0
            and ww.col1 <= rw.col1):
        raise ValueError(f"rain window {rw} does not cover the catchments' window {ww}")
    cut = rain.values[:, ww.row0 - rw.row0:ww.row1 - rw.row0, ww.col0 - rw.col0:ww.col1 - rw.col0]
    vals = cut.reshape(cut.shape[0], -1)[:, weights.cell].astype(np.float64)  # (fields, nnz)
    valid = ~np.isnan(vals)
    w_valid = np.where(valid, weights.weight, 0.0)
    total = np.add.reduceat(np.where(valid, vals, 0.0) * weights.weight, weights.starts, axis=1)
    covered = np.add.reduceat(w_valid, weights.starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(covered > 0, total / covered, np.nan)
    return mean, covered


def catchment_rain(rain: RainGrid, weights: WeightSet) -> pd.DataFrame:
    """Rain-vintage frame (``forecast.frames`` columns) plus ``valid_fraction`` (0-1).

    product = ``rain.kind.product_name``; issued_at = forecast initial time, or for analyses
    the valid time; valid_at = end of the hour; value = catchment mean rain in mm over that
    hour (= mm/h), NaN when no cell had data. ``frames.rain_vintages`` drops
    ``valid_fraction``; keep it where coverage matters.
    """
    mean, covered = catchment_means(rain, weights)
    n_fields, n_catch = mean.shape
    valid_at = pd.DatetimeIndex(rain.valid_at).tz_convert("UTC")
    frame = pd.DataFrame({
        "product": rain.kind.product_name,
        "catchment_id": np.tile(np.array(weights.ids, dtype=object), n_fields),
        "issued_at": pd.DatetimeIndex([rain.issued_at] * (n_fields * n_catch)).tz_convert("UTC"),
        "valid_at": valid_at.repeat(n_catch),
        "value": mean.ravel(),
    })
    out = frames.rain_vintages(frame)
    out["valid_fraction"] = covered.ravel()
    return out
