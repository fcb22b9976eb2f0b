"""A pooled LightGBM model across rivers, for rivers whose own record is short.

River attributes (catchment area, event threshold) and the level relative to that threshold
are added as features, so one set of per-lead models serves several rivers; river-specific
upstream inputs (``up_*`` columns and their changes) are left out, as rivers have different
ones. ``forecast.training.train_all(pooled=True)`` judges this model against each short-record
river's own model on the same backtest folds and registers whichever is better for that river;
a registered pooled version is a ``PooledLeadModels``: the pooled models plus that river's
attributes, so it predicts from the river's ordinary feature rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Final

import pandas as pd

from forecast.errors import InsufficientDataError
from forecast.modelling.lgbm import LeadModels, LgbmSettings

ATTRIBUTE_COLUMNS: Final = ("attr_area_km2", "attr_threshold_m", "level_rel_m")


def pool_columns_of(columns: Sequence[str]) -> list[str]:
    """Feature names without the river-specific upstream inputs (``up_*``, ``d_up_*``)."""
    return [c for c in columns if not str(c).startswith(("up_", "d_up_"))]


def pool_columns(X: pd.DataFrame) -> pd.DataFrame:
    """Feature rows without the river-specific upstream inputs (``pool_columns_of``)."""
    return X.loc[:, pool_columns_of(list(X.columns))]


def add_river_attributes(X: pd.DataFrame, *, area_km2: float, threshold_m: float) -> pd.DataFrame:
    """Pooled feature rows: ``pool_columns(X)`` plus ``attr_area_km2`` (km²),
    ``attr_threshold_m`` (the river's event threshold, m) and ``level_rel_m`` = level -
    threshold (m)."""
    out = pool_columns(X).copy()
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
    Predict through ``PooledLeadModels.for_river`` (or ``add_river_attributes``).
    """
    xs = [add_river_attributes(X, area_km2=area, threshold_m=thr) for X, _, area, thr in
          parts.values()]
    ys = [Y for _, Y, _, _ in parts.values()]
    if not xs:
        raise InsufficientDataError("pooled model: no rivers given")
    return LeadModels.train(pd.concat(xs), pd.concat(ys), high_water_m=0.0, settings=settings,
                            name="pooled(" + ",".join(parts) + ")")


@dataclass
class PooledLeadModels(LeadModels):
    """Pooled models bound to one river's attributes (``area_km2``, ``threshold_m``):
    ``predict`` takes that river's ordinary feature rows."""

    attributes: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_river(cls, models: LeadModels, *, area_km2: float,
                  threshold_m: float) -> PooledLeadModels:
        state = {f.name: getattr(models, f.name) for f in fields(LeadModels) if f.init}
        return cls(**state, attributes={"area_km2": float(area_km2),
                                        "threshold_m": float(threshold_m)})

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        return super().predict(add_river_attributes(X, **self.attributes))
