"""A pooled LightGBM model across rivers, for rivers whose own record is too short.

River attributes (catchment area, lowest threshold) and the level relative to that threshold
are added as features, so one set of per-lead models serves several rivers. Drop river-specific
``up_*`` columns before pooling rivers with different upstream inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from forecast.errors import InsufficientDataError
from forecast.modelling.lgbm import LeadModels, LgbmSettings


def add_river_attributes(X: pd.DataFrame, *, area_km2: float, threshold_m: float) -> pd.DataFrame:
    """Feature rows plus river attributes for a pooled model across rivers.

    Adds ``attr_area_km2``, ``attr_threshold_m`` (lowest alert threshold, m) and
    ``level_rel_m`` = level - threshold, so one model can serve rivers with short records.
    """
    out = X.copy()
    out["attr_area_km2"] = float(area_km2)
    out["attr_threshold_m"] = float(threshold_m)
    out["level_rel_m"] = out["level_m"] - float(threshold_m)
    return out


def train_pooled(
    parts: Mapping[str, tuple[pd.DataFrame, pd.DataFrame, float, float]],
    *,
    settings: LgbmSettings | None = None,
) -> LeadModels:
    """One model for several rivers: ``parts[river_id] = (X, Y, area_km2, threshold_m)``.

    Rows are stacked in issue-time order (so the validation tail is the most recent period of
    every river); high water is judged per row against that river's ``attr_threshold_m``.
    Predict with ``add_river_attributes`` applied to the feature rows in the same way.
    """
    xs = [add_river_attributes(X, area_km2=area, threshold_m=thr) for X, _, area, thr in
          parts.values()]
    ys = [Y for _, Y, _, _ in parts.values()]
    if not xs:
        raise InsufficientDataError("pooled model: no rivers given")
    return LeadModels.train(pd.concat(xs), pd.concat(ys), high_water_m=0.0, settings=settings,
                            name="pooled(" + ",".join(parts) + ")")

