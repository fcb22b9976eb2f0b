"""Physically based SIMULATED demo data for any river catalogue (``forecast simulate``).

No real series for the Mie rivers is public, so demos and end-to-end tests run on a documented
simulation (docs/simulation.md): seasonal stochastic rain at every rain gauge → Sugawara tank
model per river → rating curve to stage → realistic gauge behaviour (noise, faults, crisis-gauge
silence, late data) → simulated catchment rain forecasts. Everything it returns is labelled
"SIMULATED" in ``SimulatedData.meta``.

Entry points::

    simulate(catalogue, start, end, *, seed=0, storms=()) -> SimulatedData
    simulate_river(river, start, end, seed=0, *, storms=()) -> SimulatedData
    ForcedStorm(start, kind="typhoon", mean_mm_h=FORCED_TYPHOON_MM_H, duration_h=None, peak=0.6)
"""

from forecast.simulate.engine import LABEL, NOTICE, SimulatedData, simulate, simulate_river
from forecast.simulate.rain import FORCED_TYPHOON_MM_H, ForcedStorm

__all__ = ["FORCED_TYPHOON_MM_H", "LABEL", "NOTICE", "ForcedStorm", "SimulatedData", "simulate",
           "simulate_river"]
