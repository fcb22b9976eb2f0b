"""Builds the page's offline base layer (``static/geo/mie-land.geojson``) from Natural Earth.

Run by hand when the source changes (not at run time)::

    npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz
    python -m forecast.api.web.basemap package/land-10m.json

It decodes the TopoJSON land polygons (Natural Earth 1:10m land, public domain; world-atlas
is ISC), clips them to a box around Mie Prefecture (Sutherland-Hodgman) and rounds the
coordinates to 3 decimals (about 100 m), dropping repeated points. See ``static/geo/README.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BBOX = (134.9, 33.2, 137.9, 35.8)   # lon_min, lat_min, lon_max, lat_max
OUT = Path(__file__).resolve().parent / "static" / "geo" / "mie-land.geojson"

Ring = list[tuple[float, float]]


def _arcs(topo: dict[str, Any]) -> list[Ring]:
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    out: list[Ring] = []
    for arc in topo["arcs"]:
        x = y = 0
        pts: Ring = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            pts.append((x * sx + tx, y * sy + ty))
        out.append(pts)
    return out


def _ring(arcs: list[Ring], refs: list[int]) -> Ring:
    pts: Ring = []
    for i in refs:
        a = arcs[i] if i >= 0 else list(reversed(arcs[~i]))
        pts.extend(a if not pts else a[1:])
    return pts


def _clip(ring: Ring, box: tuple[float, float, float, float]) -> Ring:
    """Sutherland-Hodgman: the ring clipped to the box, one edge at a time."""
    pts = ring
    for axis, bound, keep_above in ((0, box[0], True), (0, box[2], False),
                                    (1, box[1], True), (1, box[3], False)):
        if not pts:
            break
        src, pts = pts, []
        prev = src[-1]
        for cur in src:
            cur_in = cur[axis] >= bound if keep_above else cur[axis] <= bound
            prev_in = prev[axis] >= bound if keep_above else prev[axis] <= bound
            if cur_in != prev_in:
                pts.append(_at_x(prev, cur, bound) if axis == 0 else _at_y(prev, cur, bound))
            if cur_in:
                pts.append(cur)
            prev = cur
    return pts


def _at_x(p: tuple[float, float], q: tuple[float, float], x: float) -> tuple[float, float]:
    t = (x - p[0]) / (q[0] - p[0])
    return (x, p[1] + t * (q[1] - p[1]))


def _at_y(p: tuple[float, float], q: tuple[float, float], y: float) -> tuple[float, float]:
    t = (y - p[1]) / (q[1] - p[1])
    return (p[0] + t * (q[0] - p[0]), y)


def _round(ring: Ring) -> list[list[float]]:
    out: list[list[float]] = []
    for x, y in ring:
        p = [round(x, 3), round(y, 3)]
        if not out or p != out[-1]:
            out.append(p)
    if out and out[0] != out[-1]:
        out.append(out[0])
    return out


def build(topo: dict[str, Any]) -> dict[str, Any]:
    arcs = _arcs(topo)
    polygons: list[list[list[list[float]]]] = []
    for geom in topo["objects"]["land"]["geometries"]:
        polys = geom["arcs"] if geom["type"] == "MultiPolygon" else [geom["arcs"]]
        for poly in polys:
            rings = [_round(_clip(_ring(arcs, refs), BBOX)) for refs in poly]
            if rings and len(rings[0]) >= 4:
                polygons.append([r for r in rings if len(r) >= 4])
    return {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": polygons},
        "properties": {"name": "land (Natural Earth 1:10m, clipped to Mie)",
                       "source": "Natural Earth 1:10m land via world-atlas 2.0.2",
                       "bbox": list(BBOX)}}]}


def main(argv: list[str]) -> int:
    topo = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    OUT.write_text(json.dumps(build(topo), separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
