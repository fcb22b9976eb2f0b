"""Sugawara four-tank rainfall-runoff model, vectorised across rivers, at an hourly step.

SIMULATED DATA. For river ``r`` at hour ``t`` (all depths in mm over the catchment):

    S1 += P;  actual ET taken from S1, then S2, then S3 (up to the potential ET)
    tank 1 (surface):    q1 = a11 max(S1 - h11, 0) + a12 max(S1 - h12, 0);  f1 = b1 S1
    tank 2 (interflow):  q2 = a2 max(S2 - h2, 0);  f2 = b2 S2
    tank 3 (shallow GW): q3 = a3 max(S3 - h3, 0);  f3 = b3 S3
    tank 4 (baseflow):   q4 = a4 S4
    S_i -= q_i + f_i;  S_{i+1} += f_i   (explicit: all outlets from the storages after ET)
    runoff q = q1 + q2 + q3 + q4
    channel routing (linear reservoir, lag k hours): C += q;  Q = (1 - e^{-1/k}) C;  C -= Q
    discharge m3/s = Q (mm/h) * area (km2) / 3.6

Outflow coefficients are per hour; each tank's coefficients sum to at most 1 so no tank can
go negative and mass is conserved exactly: sum(P) = sum(q) + sum(ET) + dS.

The time loop runs once over hours with arrays of shape ``(n_rivers,)``; nothing loops per
river per step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from forecast.catalogue import River
from forecast.errors import CatalogueError

FloatArray = NDArray[np.float64]

TANK_DEFAULTS: Final[dict[str, float]] = {
    # Surface tank: two side outlets (normal and flood runoff) and infiltration, per hour.
    "h11": 15.0, "a11": 0.09, "h12": 45.0, "a12": 0.20, "b1": 0.05,
    # Interflow tank.
    "h2": 15.0, "a2": 0.035, "b2": 0.015,
    # Shallow groundwater.
    "h3": 15.0, "a3": 0.006, "b3": 0.0025,
    # Deep groundwater (base flow).
    "a4": 0.0008,
}
"""Default tank parameters (mm, 1/h) for small steep Japanese catchments, hourly step."""

TANK_KEYS: Final = tuple(TANK_DEFAULTS)
OTHER_KEYS: Final = (
    "route_k_h",      # channel routing lag, hours (default from area)
    "rain_factor",    # multiplier on the catchment rain (default 1)
    "rating_a", "rating_b", "rating_h0",   # rating curve Q = a (h - h0)^b
    "upstream_fraction", "upstream_lead_h",  # secondary gauges
)
SIMULATION_KEYS: Final = TANK_KEYS + OTHER_KEYS
"""Keys accepted in ``River.simulation`` (anything else is refused with ``CatalogueError``)."""

_OUTLETS: Final = (("a11", "a12", "b1"), ("a2", "b2"), ("a3", "b3"), ("a4",))


def route_lag_h(area_km2: float) -> float:
    """Channel routing lag (hours) from catchment area: ~0.9 h at 10 km², ~3.5 h at 300 km²."""
    return float(0.35 * area_km2**0.4)


def river_parameters(river: River) -> dict[str, float]:
    """Tank, routing and rain parameters for ``river``: defaults, area rules, then overrides.

    Raises ``CatalogueError`` (naming the river and key) for an unknown override key or
    outlet coefficients that would drain a tank by more than its content in one hour.
    """
    params = dict(TANK_DEFAULTS)
    params["route_k_h"] = route_lag_h(river.catchment.area_km2)
    params["rain_factor"] = 1.0
    for key, value in river.simulation.items():
        if key not in SIMULATION_KEYS:
            raise CatalogueError(
                f"unknown simulation parameter; expected one of {', '.join(SIMULATION_KEYS)}",
                river=river.id, key=f"simulation.{key}",
            )
        params[key] = float(value)
    for names in _OUTLETS:
        total = sum(params[n] for n in names)
        if not 0.0 <= total <= 1.0 or any(params[n] < 0 for n in names):
            raise CatalogueError(
                f"outlet coefficients {names} must be >= 0 and sum to <= 1 per hour",
                river=river.id, key="simulation",
            )
    if params["route_k_h"] <= 0 or params["rain_factor"] <= 0:
        raise CatalogueError("route_k_h and rain_factor must be positive",
                             river=river.id, key="simulation")
    return params


def potential_et_mm_h(hours_ns: NDArray[np.int64]) -> FloatArray:
    """Potential evapotranspiration (mm/h) at hour ends ``hours_ns`` (int64 ns UTC).

    Seasonal sine: ~0.5 mm/day in January, ~3.3 mm/day in late July (≈ 680 mm/yr, typical of
    forested catchments in central Japan), spread over the daytime hours 06-18 JST only.
    """
    days = hours_ns.astype(np.float64) / 86_400e9
    doy = np.mod(days, 365.2425)
    daily = 1.9 + 1.4 * np.cos(2 * np.pi * (doy - 205.0) / 365.2425)
    hour_jst = (np.mod(days, 1.0) * 24.0 + 9.0) % 24.0
    return np.where((hour_jst > 6.0) & (hour_jst <= 18.0), daily / 12.0, 0.0)


@dataclass(frozen=True)
class TankRun:
    """Result of ``run_tanks``: all arrays are mm per hour per river, shape ``(T, R)``.

    ``runoff`` leaves the tanks, ``routed`` leaves the channel reservoir, ``et`` is actual
    evapotranspiration; storages are ``(5, R)``: tanks 1-4 and the channel reservoir (mm).
    """

    runoff: FloatArray
    routed: FloatArray
    et: FloatArray
    storage_start: FloatArray
    storage_end: FloatArray


def initial_storage(n: int) -> FloatArray:
    """A moderately wet start state (mm) for tanks 1-4 and the channel, shape ``(5, n)``."""
    state = np.zeros((5, n))
    state[1] = 10.0
    state[2] = 40.0
    state[3] = 150.0
    state[4] = 0.0
    return state


def run_tanks(rain_mm_h: FloatArray, pet_mm_h: FloatArray,
              params: Mapping[str, FloatArray | float],
              storage: FloatArray | None = None) -> TankRun:
    """Run the tank model over hourly rain ``(T, R)`` with potential ET ``(T,)`` (mm/h).

    ``params`` maps every ``TANK_KEYS`` name and ``route_k_h`` to a scalar or an ``(R,)`` array.
    ``storage`` is the ``(5, R)`` start state (default ``initial_storage``).
    """
    n_t, n_r = rain_mm_h.shape
    pet = np.asarray(pet_mm_h, dtype=np.float64).reshape(n_t)

    def p(name: str) -> FloatArray:
        return np.broadcast_to(np.asarray(params[name], dtype=np.float64), (n_r,)).copy()

    # Stack the four tanks as rows so that one numpy call serves all of them.
    zero = np.zeros(n_r)
    h = np.stack([p("h11"), p("h2"), p("h3"), zero])
    a = np.stack([p("a11"), p("a2"), p("a3"), p("a4")])
    b = np.stack([p("b1"), p("b2"), p("b3"), zero])
    h12, a12 = p("h12"), p("a12")
    c = 1.0 - np.exp(-1.0 / p("route_k_h"))
    start = initial_storage(n_r) if storage is None else np.array(storage, dtype=np.float64)
    s = start[:4].copy()
    ch = start[4].copy()
    runoff = np.empty((n_t, n_r))
    routed = np.empty((n_t, n_r))
    et = np.zeros((n_t, n_r))
    for t in range(n_t):
        s[0] += rain_mm_h[t]
        e = pet[t]
        if e > 0.0:   # PET is zero at night: skip the whole ET block then
            # ET drains tank 1, then 2, then 3 (the root zone); tank 4 is out of reach.
            e1 = np.minimum(e, s[0])
            e2 = np.minimum(e - e1, s[1])
            e3 = np.minimum(e - e1 - e2, s[2])
            s[0] -= e1
            s[1] -= e2
            s[2] -= e3
            et[t] = e1 + e2 + e3
        # Explicit scheme: every outlet sees the storage at the start of the hour.
        side = a * np.maximum(s - h, 0.0)
        side[0] += a12 * np.maximum(s[0] - h12, 0.0)
        down = b * s
        s -= side + down
        s[1:] += down[:3]
        q = side.sum(axis=0)
        runoff[t] = q
        ch += q
        out = c * ch
        ch -= out
        routed[t] = out
    end = np.vstack([s, ch[None, :]])
    return TankRun(runoff=runoff, routed=routed, et=et, storage_start=start, storage_end=end)


def discharge_m3s(runoff_mm_h: FloatArray, area_km2: FloatArray) -> FloatArray:
    """Convert specific runoff (mm/h over the catchment) to discharge (m³/s)."""
    return runoff_mm_h * area_km2 / 3.6
