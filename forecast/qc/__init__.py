"""Quality control of observations: pure functions, the same in training and in the live cycle.

Vocabulary from operational platforms (Delft-FEWS validation rules). Each reading keeps one
``flag`` (``forecast.frames.Flag``) and the ``qc_rule`` that set it:

=============== ========== =================================================================
qc_rule         flag       condition (levels in m, ``QCLimits`` of the gauge's river)
=============== ========== =================================================================
missing_value   MISSING    NaN value that the source had not flagged unusable
hard_min/max    UNRELIABLE value < ``hard_min_m`` or > ``hard_max_m`` (rain: < 0 mm, > hard max)
spike           UNRELIABLE departs from *both* neighbours by > ``spike_m`` in opposite
                           directions (up-then-down or down-then-up), neighbours within 30 min
soft_min/max    DOUBTFUL   outside ``soft_min_m``/``soft_max_m`` (rain: > soft max)
datum_jump      DOUBTFUL   step > ``datum_jump_m`` between consecutive readings, flat for 6 h
                           before and after (``rules.datum_jumps`` documents the heuristic)
rate_of_rise    DOUBTFUL   rise since the previous reading > ``max_rise_m_per_h`` x actual hours
rate_of_fall    DOUBTFUL   fall since the previous reading > ``max_fall_m_per_h`` x actual hours
stuck           DOUBTFUL   identical value for more than ``stuck_hours`` (rain: non-zero only)
gap_fill        FILLED     new row, linear interpolation across a hole <= ``max_fill_h`` (levels)
=============== ========== =================================================================

A value exactly at a limit passes. Rules run in order on the readings still worth examining:
source-unusable and NaN readings are never examined; hard-limit readings are removed before
the spike rule; spikes are removed before the rate, stuck and datum-jump rules (so one bad
reading does not condemn its good neighbour too).

Worst flag wins. When several rules fire, the reading keeps the worst flag and the name of the
*first* rule (in the table order above, the source's own rule first) that gave that flag; rule
names are not joined, so ``qc_rule`` stays one short token a dashboard can filter on.

Source flags are preserved: a reading the source marked UNRELIABLE, MISSING or BELOW_START
(e.g. ``mlit:$``, ``crisis:below_start``) keeps its flag and rule and is never overwritten or
filled; a source DOUBTFUL reading is still examined and may become UNRELIABLE.

Idempotent: rows carrying one of our rule names (``QC_RULES``) are reset before the rules run
and earlier ``gap_fill`` rows are dropped, so ``qc(qc(x)) == qc(x)`` and a stored frame can be
re-checked after the limits change.

Stuck levels: we do not model how much a level "should" vary; any run longer than
``stuck_hours`` is DOUBTFUL, which keeps it usable: a cm-quantised low-flow level can really be
flat for half a day, while a frozen logger is worth an operator's look.

Look-ahead (matters for training/live consistency): hard, soft, rate and stuck verdicts use only
the reading and earlier ones. ``spike`` needs the next reading, ``gap_fill`` the reading after
the hole and ``datum_jump`` six hours after the step, so verdicts for the newest ~6 h may still
change when the next cycle re-runs QC; the cycle should re-check at least the last 6 h + 30 min.
"""

from forecast.qc.frame import USABLE_FLAGS, apply_qc, qc_levels, qc_rain, usable
from forecast.qc.series import QC_RULES, RULE_NAMES, RainLimits

__all__ = [
    "QC_RULES",
    "RULE_NAMES",
    "USABLE_FLAGS",
    "RainLimits",
    "apply_qc",
    "qc_levels",
    "qc_rain",
    "usable",
]
