"""A synthetic Mie-like catalogue for tests and benchmarks (SIMULATED; no real river in it).

Used where ``config/rivers.yaml`` is not needed or not yet available: rivers are placed at
random inside Mie's bounding box, with 10-400 km² catchments, a telemetry primary gauge, some
upstream telemetry or crisis gauges, 1-3 rain gauges from a shared pool (so neighbouring rivers
share gauges, as they share AMeDAS stations in reality) and an increasing threshold ladder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forecast.catalogue import Catalogue, parse_catalogue


def synthetic_catalogue(n_rivers: int = 38, *, seed: int = 0,
                        crisis_share: float = 0.3) -> Catalogue:
    """Catalogue of ``n_rivers`` synthetic rivers (ids ``sim01``...); deterministic in ``seed``.

    Roughly ``crisis_share`` of the rivers get an upstream crisis gauge and a few of those a
    crisis primary gauge; thresholds (m) and areas (km²) are plausible, not real.
    """
    rng = np.random.default_rng(seed)
    n_pool = max(1, round(n_rivers * 1.6))
    pool = [
        {"code": f"simrain{i:03d}", "name_ja": f"模擬雨量{i}", "lat": float(lat),
         "lon": float(lon), "network": "amedas" if i % 3 == 0 else "prefecture"}
        for i, (lat, lon) in enumerate(zip(rng.uniform(33.75, 35.2, n_pool),
                                           rng.uniform(135.9, 136.95, n_pool), strict=True))
    ]
    pool_lat = np.array([p["lat"] for p in pool])
    pool_lon = np.array([p["lon"] for p in pool])
    rivers: list[dict[str, Any]] = []
    for i in range(n_rivers):
        rid = f"sim{i + 1:02d}"
        lat, lon = float(rng.uniform(33.8, 35.15)), float(rng.uniform(135.95, 136.9))
        area = float(np.clip(np.exp(rng.normal(np.log(60.0), 0.9)), 10.0, 400.0))
        standby = float(np.round(rng.uniform(1.2, 3.5), 2))
        steps = np.round(np.cumsum(rng.uniform(0.3, 1.0, 3)), 2)
        crisis_primary = i % 12 == 5
        crisis_up = rng.random() < crisis_share
        gauges: list[dict[str, Any]] = [{
            "code": f"{rid}_main", "name_ja": f"模擬{i + 1}号", "lat": lat, "lon": lon,
            "kind": "crisis" if crisis_primary else "telemetry",
            **({"start_level_m": standby - 0.8} if crisis_primary else {}),
        }]
        if crisis_up or i % 4 == 0:
            up: dict[str, Any] = {"code": f"{rid}_up", "name_ja": f"模擬{i + 1}号上流",
                                  "lat": lat + 0.03, "lon": lon - 0.03,
                                  "kind": "crisis" if crisis_up else "telemetry"}
            if crisis_up:
                up["start_level_m"] = 1.0
                up["overflow_level_m"] = 2.8
            gauges.append(up)
        d = np.hypot(pool_lat - lat, (pool_lon - lon) * 0.82)
        k = int(rng.integers(1, 4))
        nearest = np.argsort(d)[:k]
        w = np.round(rng.dirichlet(np.ones(k) * 3), 3)
        w[-1] = round(1.0 - float(w[:-1].sum()), 3)
        rain_gauges = [{**pool[j], "weight": float(wj)}
                       for j, wj in zip(nearest, w, strict=True)]
        half = float(np.sqrt(area) / 111.0 / 2)
        rivers.append({
            "id": rid, "name_ja": f"模擬川{i + 1}", "name_en": f"Simulated River {i + 1}",
            "system_ja": "模擬水系", "primary_gauge": f"{rid}_main", "gauges": gauges,
            "thresholds": {"standby_m": standby, "caution_m": standby + float(steps[0]),
                           "evacuation_m": standby + float(steps[1]),
                           "danger_m": standby + float(steps[2]), "provisional": True},
            "rain_gauges": rain_gauges,
            "catchment": {"area_km2": round(area, 1), "provisional": True,
                          "polygon": [[lon - half, lat - half], [lon + half, lat - half],
                                      [lon + half, lat + half], [lon - half, lat + half]]},
            "provisional": True, "notes": "synthetic river for simulation tests",
        })
    return parse_catalogue({"name": "synthetic-mie", "rivers": rivers,
                            "description": "SIMULATED synthetic rivers; not real"})
