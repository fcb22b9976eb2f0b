"""Names, constants and column helpers of the river frame and the feature rows (rules in the
package docstring, ``forecast.features``)."""

from __future__ import annotations

from typing import Final, Literal

import pandas as pd

from forecast.frames import Flag

FutureRain = Literal["archive", "perfect", "none"]
FUTURE_RAIN_MODES: Final = ("archive", "perfect", "none")
LEADS: Final = (1, 2, 3, 4, 5, 6)
USABLE_FLAGS: Final = frozenset({int(Flag.GOOD), int(Flag.FILLED), int(Flag.DOUBTFUL)})

LEVEL_CHANGE_H: Final = (1, 2, 3, 6)
RAIN_SUM_H: Final = (1, 3, 6, 12, 24, 48)
EXTRA_CHANGE_H: Final = (1, 3)
API_DECAY_PER_H: Final = 0.95  # antecedent precipitation index decay (half-life ~13.5 h)
MIN_RAIN_WEIGHT: Final = 0.5   # catchment rain needs gauges holding >= half the weight
UP_PREFIX: Final = "up_"
CENSORED: Final = "level_censored"     # 0/1: primary level left-censored at the start level
CENSORED_SUFFIX: Final = "_censored"   # ``up_<code>_censored``: same for an upstream gauge
UNEXPLAINED: Final = "level_unexplained"  # 0/1: censored by silence that nothing explains
SILENT_H: Final = "level_silent_h"      # h since the primary crisis gauge's last evidence
LAST_M: Final = "level_last_m"          # m, that evidence's reading (NaN: a BELOW_START row)
LAST_RISE_M: Final = "level_last_rise_m"  # m, trend into the silence (NaN: no earlier reading)
SILENCE_COLUMNS: Final = (UNEXPLAINED, SILENT_H, LAST_M, LAST_RISE_M)
CRISIS_MAX_SILENCE: Final = pd.Timedelta(hours=36)
"""Longest silence after a below-start crisis reading still read as low water; the same value
as ``forecast.ingest.crisis.MAX_SILENCE`` (features may not import ingest)."""
CRISIS_NEAR_START_M: Final = 0.10
"""A crisis gauge silent right after a reading less than this above its start level has fallen
below it (the usual way it goes quiet on a recession); after a higher reading silence is a gap."""
CRISIS_SILENCE_RAIN_MM: Final = 10.0
"""Catchment rain (mm) since a crisis gauge's last evidence below which its silence is still read
as low water. 10 mm is one hour at the bottom of JMA's やや強い雨 class (10-20 mm/h) over the
whole silence: on the small catchments crisis gauges watch (a few to a few tens of km2) that can
start a rise. In a simulated year (2023, seed 3) every rise through the start level came after
at least 18 mm in the 24 h before it (鹿化川, 7 km2: 18-36 mm; 板屋川, 25 km2: 99-132 mm). A
low value errs the safe way: more silences are shown as a data problem (about 7 % of 板屋川's
and 2 % of 鹿化川's hours in the tests' simulation), none as safe. One value for every river
until per-river values come from the catalogue."""
CRISIS_RAIN_KNOWN: Final = 0.75
"""Share of the hours since the last evidence that must have catchment rain: fewer, and the rain
is not known (the rain gauges are silent too: an outage). The same share the rain-sum features
need (``min_periods`` = 75 % of the window)."""
CRISIS_TREND_WINDOW: Final = pd.Timedelta(hours=1)
"""The trend into a silence is the last reading minus the mean of the usable readings in the
hour before it (above its start level a crisis gauge reports every 10 min: up to 6 readings)."""
CRISIS_RISE_M: Final = 0.02
"""A trend above this (m) is a rise into the silence: twice the ~1 cm surface fluctuation and
reporting resolution of these gauges, so noise on a flat or falling level is not a rise."""
FRESH: Final = pd.Timedelta(minutes=30)  # an instantaneous reading is used for half an hour
JST_OFFSET_H: Final = 9

PAST_RAIN_FEATURES: Final = (*(f"rain_{k}h" for k in RAIN_SUM_H), "api")
FC_RAIN_FEATURES: Final = tuple(f"rain_fc_{h}h" for h in LEADS)
LEVEL_FEATURES: Final = ("level_m", CENSORED, *(f"d_level_{k}h" for k in LEVEL_CHANGE_H))
CALENDAR_FEATURES: Final = ("doy_sin", "doy_cos", "hour_jst")


def extra_columns(hourly: pd.DataFrame) -> list[str]:
    """The ``up_<code>`` input columns of a river frame (not their ``_censored`` markers)."""
    return [c for c in hourly.columns
            if str(c).startswith(UP_PREFIX) and not str(c).endswith(CENSORED_SUFFIX)]


def censored_column(hourly: pd.DataFrame, column: str) -> pd.Series:
    """A 0/1 censoring column of a river frame; all 0 when the frame has none (telemetry)."""
    if column in hourly.columns:
        return hourly[column].fillna(0.0).astype("float64")
    return pd.Series(0.0, index=hourly.index)
