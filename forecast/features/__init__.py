"""Feature rows for the lead-time models: one row per (river, issue time T), known at T.

Pure and vectorised: no clock, no I/O. Three steps:

1. ``river_hourly(obs, river)`` turns the long observations frame (``forecast.frames``) into a
   regular hourly *river frame* (index: hourly UTC ``DatetimeIndex``; columns ``level_m`` at the
   primary gauge and its 0/1 ``level_censored``, ``rain_mm`` = weighted catchment rain over the
   hour ending at the index, one ``up_<code>`` column (with ``up_<code>_censored``) per
   upstream input such as an upstream level or a dam release, and last the primary gauge's
   silence columns ``level_unexplained``, ``level_silent_h``, ``level_last_m`` and
   ``level_last_rise_m`` (below); these are not features).
   Values whose QC flag is not GOOD/FILLED/DOUBTFUL become NaN before anything else, except
   left-censored crisis-gauge hours (below).
2. ``build_features(hourly, issue_times, future_rain=..., vintages=...)`` computes the feature
   rows. Every past-looking feature is a causal rolling/shift of the river frame, so a row at T
   reads only hours <= T; forecast rain comes from the latest vintage issued at or before T
   (``archive``), from observed rain after T (``perfect``, an upper bound for backtests only) or
   is left out (``none``).
3. ``targets(hourly, issue_times)`` gives the level change ``level(T+h) - level(T)`` (m); NaN
   when the level at T+h is a guess (``level_unexplained`` = 1), so nothing learns from it.

Resampling (sub-hourly input -> hourly): a level (or any instantaneous value such as a dam
release) is the *last reading in (T-30 min, T]* -- the freshest value an operator has at T, and
no older than half an hour; rain is the *sum over the hour (T-1 h, T]*, NaN unless every
expected sub-interval reading is present. Gaps stay NaN: nothing is interpolated here (QC decides
what may be filled, and marks it FILLED).

Crisis-management gauges (危機管理型水位計, ``Gauge.kind == "crisis"``) measure only above their
observation start level (観測開始水位, ``Gauge.start_level_m``): below it they send a heartbeat
about once a day or nothing, and the store may hold ``Flag.BELOW_START`` rows
(``forecast.ingest.crisis.censor_below_start``, or the source's own status). Such an hour is
*left-censored* -- the level is at or below the start level -- not missing. The river frame
gives it the start level (an upper bound) and marks it in a 0/1 column (``level_censored`` for
the primary gauge, ``up_<code>_censored`` for an upstream crisis gauge; 0 for telemetry gauges).
An hour is censored when the freshest evidence at or before it says "below start": a
``BELOW_START`` row or a usable reading below the start level in (T-30 min, T] (readings below
the start level are not trusted as measurements: they become the start level too), or, with no
usable reading in that half hour (*censored by silence*), a below-start reading, a reading less
than ``CRISIS_NEAR_START_M`` above the start level (the gauge goes quiet as the level falls
through it) or a ``BELOW_START`` row, at most ``CRISIS_MAX_SILENCE`` old with nothing (no row of
any flag) after it. Anything else without a reading -- the gauge went silent well above its
start level, a MISSING/UNRELIABLE row, a longer silence -- stays NaN (a gap).
(``censor_below_start`` in ingest is stricter: silence after any reading at or above the start
level is MISSING there.)

Silence is not low water without evidence: an outage (the source or the whole feed down, or a
gauge that stops in a flood) is silent too. So every hour of the *primary* gauge censored by
silence is also classified, from what is known at T, as *explained* (really below the start
level) or *unexplained*. It is explained only when all of these hold:

* the last evidence says below or near the start level (the censoring rule above) and the
  level was not rising into the silence: ``level_last_rise_m`` -- the last reading minus the
  mean of the usable readings in the ``CRISIS_TREND_WINDOW`` (1 h) before it, or minus the
  start level when there is none (the gauge was quiet, so the level came up from below it; a
  below-start heartbeat gives a negative value; NaN for a ``BELOW_START`` row, which counts as
  not rising) -- is at most ``CRISIS_RISE_M`` (0.02 m, twice the gauges' ~1 cm noise);
* the catchment rain over the hours since the last evidence (every hour of the frame in
  (last evidence, T]; hours before the frame count as unknown) is known -- ``rain_mm`` present
  for at least ``CRISIS_RAIN_KNOWN`` (75 %) of them and for the hour ending at T itself; if the
  rain gauges are silent too, now or for long, it is an outage -- and small: below
  ``CRISIS_SILENCE_RAIN_MM`` (10 mm, see that constant);
* the river's other inputs (every ``up_<code>`` column) have a value at T: none is silent too.

An unexplained hour keeps ``level_m`` = start level and ``level_censored`` = 1 (the live cycle
can still issue a forecast, marked low-confidence) and gets ``level_unexplained`` = 1;
``targets`` gives NaN there and backtests already skip censored targets, so a guessed level is
never learnt from nor scored. ``silence_reason(hourly, river, at)`` gives operators the reason
in one line (None for a reading or an explained hour). ``level_unexplained`` is 0 for telemetry
gauges, readings, freshly censored hours and gaps (a gap is NaN already). The silence columns
``level_silent_h`` (hours since the last evidence), ``level_last_m`` (its reading, m; NaN for a
``BELOW_START`` row) and ``level_last_rise_m`` (m) are set on the hours censored by silence only
(NaN elsewhere) and let ``silence_reason`` re-derive the verdict from the river frame alone.
Upstream crisis gauges are censored but not classified; for the check above an upstream input
is silent when its column is NaN (an upstream crisis gauge censored at its start level is not).
Every rule looks back only, so features and silence columns at T still read only data <= T.

Issue times must be whole hours (UTC) here (``pipeline.cycle`` shifts a half-hour issue time onto
the grid); the JMA half-hourly rain vintages are still used as
issued, since the vintage chosen is the latest one issued at or before T.

Layout: ``columns`` (names, constants, column helpers), ``crisis`` (censoring and the silence
rule), ``hourly`` (the river frame), ``rows`` (feature rows and targets); everything public is
re-exported here.
"""

from __future__ import annotations

from forecast.features.columns import (
    API_DECAY_PER_H,
    CALENDAR_FEATURES,
    CENSORED,
    CENSORED_SUFFIX,
    CRISIS_MAX_SILENCE,
    CRISIS_NEAR_START_M,
    CRISIS_RAIN_KNOWN,
    CRISIS_RISE_M,
    CRISIS_SILENCE_RAIN_MM,
    CRISIS_TREND_WINDOW,
    EXTRA_CHANGE_H,
    FC_RAIN_FEATURES,
    FRESH,
    FUTURE_RAIN_MODES,
    JST_OFFSET_H,
    LAST_M,
    LAST_RISE_M,
    LEADS,
    LEVEL_CHANGE_H,
    LEVEL_FEATURES,
    MIN_RAIN_WEIGHT,
    PAST_RAIN_FEATURES,
    RAIN_SUM_H,
    SILENCE_COLUMNS,
    SILENT_H,
    UNEXPLAINED,
    UP_PREFIX,
    USABLE_FLAGS,
    FutureRain,
    censored_column,
    extra_columns,
)
from forecast.features.crisis import crisis_level_to_hourly, silence_reason
from forecast.features.hourly import (
    catchment_rain,
    level_to_hourly,
    rain_to_hourly,
    river_hourly,
    rivers_hourly,
)
from forecast.features.rows import (
    archive_rain,
    build_features,
    build_features_many,
    feature_groups,
    perfect_rain,
    targets,
)

__all__ = [
    "API_DECAY_PER_H",
    "CALENDAR_FEATURES",
    "CENSORED",
    "CENSORED_SUFFIX",
    "CRISIS_MAX_SILENCE",
    "CRISIS_NEAR_START_M",
    "CRISIS_RAIN_KNOWN",
    "CRISIS_RISE_M",
    "CRISIS_SILENCE_RAIN_MM",
    "CRISIS_TREND_WINDOW",
    "EXTRA_CHANGE_H",
    "FC_RAIN_FEATURES",
    "FRESH",
    "FUTURE_RAIN_MODES",
    "JST_OFFSET_H",
    "LAST_M",
    "LAST_RISE_M",
    "LEADS",
    "LEVEL_CHANGE_H",
    "LEVEL_FEATURES",
    "MIN_RAIN_WEIGHT",
    "PAST_RAIN_FEATURES",
    "RAIN_SUM_H",
    "SILENCE_COLUMNS",
    "SILENT_H",
    "UNEXPLAINED",
    "UP_PREFIX",
    "USABLE_FLAGS",
    "FutureRain",
    "archive_rain",
    "build_features",
    "build_features_many",
    "catchment_rain",
    "censored_column",
    "crisis_level_to_hourly",
    "extra_columns",
    "feature_groups",
    "level_to_hourly",
    "perfect_rain",
    "rain_to_hourly",
    "river_hourly",
    "rivers_hourly",
    "silence_reason",
    "targets",
]
