"""LightGBM direct multi-lead models: one model per lead h and quantile, predicting the change
``level(T+h) - level(T)`` (m) from the feature rows of ``forecast.features``.

Design decisions (see the benchmark figures in the project README):

* **Point forecast = an L2 model** of the change (Newton steps reach flood-sized changes in a
  few rounds). ``point="p50"`` uses the median instead (compared in the benchmark).
* **Quantiles P10/P50/P90** are pinball-loss boosters *started from the L2 centre* (LightGBM's
  built-in quantile objective refuses monotone constraints, and plain pinball boosting from a
  constant is far too slow to reach flood-sized changes). Non-crossing is enforced by sorting
  the three values per row (the order statistics of monotone functions stay monotone, so this
  keeps the rain monotonicity).
* **Monotone constraints** +1 on every past and forecast rain feature: more rain never lowers a
  forecast quantile.
* **Early stopping** on a time-ordered validation tail (the last ``valid_fraction`` of rows).
  The same tail calibrates the P10-P90 band (split-conformal, CQR): the band is widened or
  narrowed by the score quantile that gives ``coverage`` on high-water rows of the tail (all
  rows of the tail when it holds fewer than ``MIN_CAL_ROWS`` high-water rows).
* **High-water weighting**: rows whose current or target level is at or above ``high_water_m``
  weigh ``high_water_weight``; dry, steady rows can be subsampled (``quiet_keep``) for speed.
* **Fallback variants** trained alongside (``VARIANTS``): each drops a group of inputs
  (forecast rain, past rain, upstream inputs). At predict time each row uses the variant with
  the fewest dropped groups that covers the groups missing in that row; the output records the
  variant and the inputs used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Final, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from forecast.errors import InsufficientDataError, ModelError
from forecast.features import LEADS, feature_groups
from forecast.modelling.quantile import conformal_adjust, pinball_metric, pinball_objective

QUANTILES: Final = (0.1, 0.5, 0.9)
MIN_TRAIN_ROWS: Final = 168  # one week of hourly rows
# variant name -> groups it drops; "level_only" is always trained and always covers.
VARIANTS: Final[dict[str, frozenset[str]]] = {
    "full": frozenset(),
    "no_fc": frozenset({"fc"}),
    "no_upstream": frozenset({"upstream"}),
    "no_upstream_fc": frozenset({"upstream", "fc"}),
    "no_rain": frozenset({"rain", "fc"}),
    "level_only": frozenset({"rain", "fc", "upstream"}),
}
# a row misses a group when this column of the group is NaN
_GROUP_KEY: Final = {"fc": "rain_fc_1h", "rain": "rain_1h"}


@dataclass(frozen=True)
class LgbmSettings:
    """Training settings (all serialised with the model)."""

    leads: tuple[int, ...] = LEADS
    num_leaves: int = 15
    learning_rate: float = 0.08
    num_rounds: int = 300
    early_stopping_rounds: int = 30
    min_data_in_leaf: int = 20
    valid_fraction: float = 0.2
    num_threads: int = 1  # OpenMP threads spin under shared load: 1 was faster (README)
    high_water_weight: float = 3.0
    quiet_keep: float = 1.0
    fallbacks: bool = True
    calibrate: bool = True
    coverage: float = 0.8
    point: Literal["p50", "l2"] = "l2"
    seed: int = 0


def _params(s: LgbmSettings, objective: str, alpha: float | None) -> dict[str, object]:
    p: dict[str, object] = {
        "objective": objective, "learning_rate": s.learning_rate, "num_leaves": s.num_leaves,
        "min_data_in_leaf": s.min_data_in_leaf, "num_threads": s.num_threads, "verbose": -1,
        "seed": s.seed, "deterministic": True, "force_row_wise": True,
        "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1,
        "monotone_constraints_method": "intermediate", "max_bin": 127,
    }
    if alpha is not None:
        p["alpha"] = alpha
    return p


def _monotone(features: Sequence[str]) -> list[int]:
    g = feature_groups(features)
    rainy = set(g["rain"]) | set(g["fc"])
    return [1 if f in rainy else 0 for f in features]


def _variant_features(features: Sequence[str], variant: str) -> list[str]:
    g = feature_groups(features)
    drop = {c for grp in VARIANTS[variant] for c in g[grp]}
    return [f for f in features if f not in drop]


def _applicable_variants(features: Sequence[str], fallbacks: bool) -> list[str]:
    """Variants whose feature sets differ from each other for these features."""
    if not fallbacks:
        return ["full"]
    seen: dict[tuple[str, ...], str] = {}
    for v in VARIANTS:
        seen.setdefault(tuple(_variant_features(features, v)), v)
    return list(seen.values())


def missing_groups(X: pd.DataFrame) -> pd.DataFrame:
    """Boolean frame (rows of X; columns fc, rain, upstream): is the group missing in the row?"""
    g = feature_groups(list(X.columns))
    out = pd.DataFrame(False, index=X.index, columns=["fc", "rain", "upstream"])
    for grp, key in _GROUP_KEY.items():
        if key in X.columns:
            out[grp] = X[key].isna().to_numpy()
    ups = [c for c in g["upstream"] if not c.startswith("d_")]
    if ups:
        out["upstream"] = X[ups].isna().any(axis=1).to_numpy()
    return out


@dataclass
class LeadModels:
    """Trained per-lead quantile boosters for one river (or a pooled set of rivers)."""

    settings: LgbmSettings
    features: list[str]
    high_water_m: float
    boosters: dict[str, lgb.Booster] = field(default_factory=dict)   # key "h{lead}/{variant}/{q}"
    band_adjust: dict[str, float] = field(default_factory=dict)     # key "h{lead}/{variant}"
    variants: list[str] = field(default_factory=list)
    init: dict[str, float] = field(default_factory=dict)      # per booster: start (scaled)
    scale: dict[str, float] = field(default_factory=dict)     # per lead: target scale (m)

    @classmethod
    def train(
        cls,
        X: pd.DataFrame,
        Y: pd.DataFrame,
        *,
        high_water_m: float,
        settings: LgbmSettings | None = None,
        name: str = "",
    ) -> LeadModels:
        """Train from feature rows X and targets Y (``dh_{h}h`` columns, m), both indexed by
        issue time. ``high_water_m`` is the level (m) from which an hour counts as high water.
        Raises ``InsufficientDataError`` (naming ``name``) when too few complete rows exist.
        """
        s = settings or LgbmSettings()
        features = list(X.columns)
        order = np.argsort(X.index.to_numpy(), kind="stable")
        X, Y = X.iloc[order], Y.iloc[order]
        self = cls(settings=s, features=features, high_water_m=float(high_water_m))
        self.variants = _applicable_variants(features, s.fallbacks)
        for lead in s.leads:
            y = Y[f"dh_{lead}h"].to_numpy(dtype="float64")
            ok = ~np.isnan(y) & X["level_m"].notna().to_numpy()
            if ok.sum() < MIN_TRAIN_ROWS:
                raise InsufficientDataError(
                    f"{name or 'river'}: only {int(ok.sum())} usable training rows for lead "
                    f"{lead} h (need {MIN_TRAIN_ROWS}); supply a longer clean record"
                )
            self._train_lead(X.loc[ok], y[ok], lead)
        return self

    def _weights(self, X: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        level = X["level_m"].to_numpy(dtype="float64")
        # pooled models carry each river's own threshold as a column
        hw = (X["attr_threshold_m"].to_numpy(dtype="float64") if "attr_threshold_m" in X
              else self.high_water_m)
        high = (level >= hw) | (level + y >= hw)
        w = np.where(high, self.settings.high_water_weight, 1.0)
        return w, high

    def _train_lead(self, X: pd.DataFrame, y: np.ndarray, lead: int) -> None:
        s = self.settings
        w, high = self._weights(X, y)
        keep = np.ones(len(y), dtype=bool)
        if s.quiet_keep < 1.0:
            # dry spells away from high water carry little information per row
            wet = X.get("rain_48h", pd.Series(0.0, index=X.index)).fillna(0.0) > 1.0
            quiet = ~high & ~wet.to_numpy()
            rng = np.random.default_rng(s.seed + lead)
            keep = ~quiet | (rng.random(len(y)) < s.quiet_keep)
        n_val = max(1, int(len(y) * s.valid_fraction))
        tr = keep.copy()
        tr[-n_val:] = False
        val = np.zeros(len(y), dtype=bool)
        val[-n_val:] = True
        # Targets are standardised so the pinball steps (bounded by the learning rate) suit
        # rivers whose hourly changes are centimetres as well as metres.
        scale = max(float(np.std(y[tr])), 1e-3)
        self.scale[f"h{lead}"] = scale
        ys = y / scale
        for variant in self.variants:
            feats = _variant_features(self.features, variant)
            Xv = X[feats].to_numpy(dtype="float64")
            mono = _monotone(feats)
            fit = _Fitter(s, Xv, ys, w, tr, val, feats, mono, f"h{lead}/{variant}")
            # L2 centre first (Newton steps reach flood-sized changes quickly), then each
            # quantile as a monotone pinball-loss correction started from that centre.
            centre, _ = fit.one(None, None)
            self.boosters[f"h{lead}/{variant}/l2"] = centre
            base = np.asarray(centre.predict(Xv, num_iteration=centre.best_iteration),
                              dtype="float64")
            preds: dict[str, np.ndarray] = {}
            for q in QUANTILES:
                key = f"h{lead}/{variant}/q{round(q * 100)}"
                booster, init = fit.one(q, base)
                self.boosters[key] = booster
                self.init[key] = init
                preds[f"q{round(q * 100)}"] = self._boost(lead, variant, key.split("/")[-1],
                                                          Xv[val])
            qs = np.sort(np.column_stack([preds["q10"], preds["q50"], preds["q90"]]), axis=1)
            self.band_adjust[f"h{lead}/{variant}"] = (
                conformal_adjust(qs, y[val], high[val], s.coverage) if s.calibrate else 0.0)

    # ------------------------------------------------------------------ prediction
    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Forecast rows for feature rows X (index = issue time, UTC).

        Returns a long frame: ``issued_at, horizon_h, level, q10, q50, q90`` (m, absolute
        levels = current level + predicted change), ``model_variant`` and ``inputs`` (the
        input groups used, comma separated). Rows without a current level give NaN forecasts.
        """
        X = X.reindex(columns=self.features)
        chosen = self._choose_variants(missing_groups(X))
        level = X["level_m"].to_numpy(dtype="float64")
        arr = X.to_numpy(dtype="float64")
        col = {f: i for i, f in enumerate(self.features)}
        leads = self.settings.leads
        n, m = len(X), len(leads)
        res = np.full((4, n, m), np.nan)   # point, q10, q50, q90 as changes (m)
        for variant in self.variants:
            rows = np.flatnonzero(chosen == variant)
            if not len(rows):
                continue
            cols = np.array([col[f] for f in _variant_features(self.features, variant)])
            Xv = arr[np.ix_(rows, cols)]
            for j, lead in enumerate(leads):
                centre = _raw(self.boosters[f"h{lead}/{variant}/l2"], Xv)
                raw = [self._boost(lead, variant, k, Xv, centre) for k in ("q10", "q50", "q90")]
                qs = np.sort(np.column_stack(raw), axis=1)
                adj = self.band_adjust.get(f"h{lead}/{variant}", 0.0)
                qs[:, 0] = np.minimum(qs[:, 0] - adj, qs[:, 1])
                qs[:, 2] = np.maximum(qs[:, 2] + adj, qs[:, 1])
                res[1:, rows, j] = qs.T
                res[0, rows, j] = (centre * self.scale[f"h{lead}"]
                                   if self.settings.point == "l2" else qs[:, 1])
        res += level[None, :, None]
        return pd.DataFrame({
            "issued_at": pd.DatetimeIndex(X.index).repeat(m),
            "horizon_h": np.tile(np.asarray(leads, dtype="int64"), n),
            "level": res[0].ravel(), "q10": res[1].ravel(), "q50": res[2].ravel(),
            "q90": res[3].ravel(), "model_variant": np.repeat(chosen, m),
            "inputs": np.repeat(_inputs_used(chosen, self.features), m),
        })

    def _boost(self, lead: int, variant: str, key: str, Xv: np.ndarray,
               centre: np.ndarray | None = None) -> np.ndarray:
        """Prediction (m) of one booster; quantiles add the L2 centre (raw, scaled units)."""
        name = f"h{lead}/{variant}/{key}"
        raw = _raw(self.boosters[name], Xv)
        if key != "l2":  # quantiles are corrections on top of the L2 centre
            if centre is None:
                centre = _raw(self.boosters[f"h{lead}/{variant}/l2"], Xv)
            raw += self.init[name] + centre
        return raw * self.scale[f"h{lead}"]

    def _choose_variants(self, missing: pd.DataFrame) -> np.ndarray:
        # rows no trained variant covers (fallbacks off) use the last, most reduced one
        chosen = np.full(len(missing), self.variants[-1], dtype=object)
        todo = np.ones(len(missing), dtype=bool)
        miss = {g: missing[g].to_numpy() for g in missing.columns}
        # VARIANTS is ordered from fewest to most dropped groups; first cover wins.
        for v in self.variants:
            covers = np.ones(len(missing), dtype=bool)
            for g, m in miss.items():
                if g not in VARIANTS[v]:
                    covers &= ~m
            take = todo & covers
            chosen[take] = v
            todo &= ~take
        return chosen

    # ------------------------------------------------------------------ persistence
    def to_strings(self) -> tuple[dict[str, object], dict[str, str]]:
        """(metadata JSON-able dict, {booster key: LightGBM text model})."""
        meta: dict[str, object] = {
            "format": 1, "settings": asdict(self.settings), "features": self.features,
            "high_water_m": self.high_water_m, "variants": self.variants,
            "band_adjust": self.band_adjust, "init": self.init, "scale": self.scale,
            "lightgbm": lgb.__version__,
        }
        return meta, {k: b.model_to_string() for k, b in self.boosters.items()}

    @classmethod
    def from_strings(cls, meta: Mapping[str, object], models: Mapping[str, str]) -> LeadModels:
        """Inverse of ``to_strings``."""
        raw = dict(meta["settings"])  # type: ignore[call-overload]
        raw["leads"] = tuple(raw["leads"])
        self = cls(settings=LgbmSettings(**raw), features=list(meta["features"]),  # type: ignore[call-overload]
                   high_water_m=float(meta["high_water_m"]))  # type: ignore[arg-type]
        self.variants = list(meta["variants"])  # type: ignore[call-overload]
        self.band_adjust = {str(k): float(v) for k, v in
                            dict(meta["band_adjust"]).items()}  # type: ignore[call-overload]
        self.init = {str(k): float(v) for k, v in dict(meta["init"]).items()}  # type: ignore[call-overload]
        self.scale = {str(k): float(v) for k, v in dict(meta["scale"]).items()}  # type: ignore[call-overload]
        self.boosters = {k: lgb.Booster(model_str=s) for k, s in models.items()}
        return self


def _raw(b: lgb.Booster, Xv: np.ndarray) -> np.ndarray:
    return np.asarray(b.predict(Xv, num_iteration=b.best_iteration or None, num_threads=1),
                      dtype="float64")


@dataclass
class _Fitter:
    """Fits boosters on one (lead, variant) data set with early stopping on the tail."""

    s: LgbmSettings
    X: np.ndarray
    y: np.ndarray
    w: np.ndarray
    tr: np.ndarray
    val: np.ndarray
    feats: list[str]
    mono: list[int]
    name: str

    def one(self, alpha: float | None, base: np.ndarray | None) -> tuple[lgb.Booster, float]:
        """L2 booster (alpha None) or a pinball correction started at ``base`` plus the
        residual quantile; returns the booster and that constant (0 for L2)."""
        s, tr, val = self.s, self.tr, self.val
        params = _params(s, "regression", None)
        params["monotone_constraints"] = self.mono
        params["metric"] = "l2"
        init = 0.0
        start_tr = start_val = None
        if alpha is not None and base is not None:
            init = float(np.quantile(self.y[tr] - base[tr], alpha))
            params["objective"] = pinball_objective(alpha)
            params["metric"] = "None"
            start_tr, start_val = base[tr] + init, base[val] + init
        dtr = lgb.Dataset(self.X[tr], self.y[tr], weight=self.w[tr], feature_name=self.feats,
                          init_score=start_tr)
        dval = lgb.Dataset(self.X[val], self.y[val], weight=self.w[val], reference=dtr,
                           init_score=start_val)
        try:
            booster = lgb.train(
                params, dtr, num_boost_round=s.num_rounds, valid_sets=[dval],
                feval=pinball_metric(alpha) if alpha is not None else None,
                callbacks=[lgb.early_stopping(s.early_stopping_rounds, verbose=False)],
            )
        except lgb.basic.LightGBMError as exc:
            raise ModelError(f"LightGBM failed for {self.name}: {exc}") from exc
        return booster, init


def _inputs_used(chosen: np.ndarray, features: Sequence[str]) -> np.ndarray:
    g = feature_groups(features)
    present = [grp for grp in ("rain", "fc", "upstream") if g[grp]]
    labels = {
        v: ",".join(["level", *[p for p in present if p not in VARIANTS[v]]]) for v in VARIANTS
    }
    return np.array([labels[v] for v in chosen], dtype=object)

