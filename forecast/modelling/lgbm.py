"""LightGBM direct multi-lead models: one model per lead h predicting the change
``level(T+h) - level(T)`` (m) from the feature rows of ``forecast.features``, with a linear base
under the trees and conformal P10/P50/P90 bands.

Design decisions (see the benchmark figures in the project README):

* **Linear base + trees.** Per lead and variant, a ridge regression of the change on a
  physically motivated subset of inputs (``linear.linear_columns``: level changes, past rain
  sums and API, forecast rain up to the lead, upstream changes) with *non-negative rain
  coefficients*; an L2 LightGBM booster is then started from it (``init_score``) and learns
  only the residual. Trees alone cannot extrapolate beyond the changes seen in training (the
  厚東川 2023-07-01 flood was twice the largest June rise); the linear part can.
* **Monotone in rain**: linear rain coefficients >= 0 and LightGBM monotone constraints +1 on
  every past and forecast rain feature, so more rain never lowers the point forecast; the
  bands keep this (``quantile``).
* **Bands** (``quantile.fit_band``): P10/P90 = point + multipliers x a non-negative spread
  model, calibrated split-conformally on the time-ordered validation tail, per regime (high
  water / normal). One booster per lead and variant instead of four.
* **Early stopping** on that tail (the last ``valid_fraction`` of rows). The linear base is
  fitted on all training rows (the tail holds the most recent, often largest, events).
* **High-water weighting**: rows whose current or target level is at or above ``high_water_m``
  weigh ``high_water_weight``; dry, steady rows can be subsampled (``quiet_keep``) for speed.
* **Fallback variants** trained alongside (``VARIANTS``): each drops a group of inputs
  (forecast rain, past rain, upstream inputs). At predict time each row uses the variant with
  the fewest dropped groups that covers the groups missing in that row; the output records the
  variant and the inputs used.
* **Target transform** (``transform="log"``, for flow-like series such as discharge in m3/s
  whose rises scale with the current value): the models work on ``z = log(level + offset)``
  (level columns of X and the targets; rain and upstream inputs untouched) with
  ``offset = log_scale x mean(level - min) - min`` over the training rows, so the training
  minimum maps to ``log(log_scale x mean excess)`` instead of ``-inf`` (zero flows). Rows
  weigh ``(level + offset)^2`` on top of the high-water weight, so the z-space L2 loss
  approximates the level-space one (a log model fitted unweighted was worse in m3/s on all
  three BOM catchments: it spends its fit on relative changes at low flow). The models
  predict the change of z per lead and ``predict`` returns levels ``exp(z_T + dz) - offset``
  clipped to [training minimum, minimum + 3 x training range] (``LogTransform``). The map is
  non-decreasing, so bands stay ordered and more rain still never lowers a quantile;
  high-water weighting and regimes compare levels, not z. Meant for flows: on stage series it
  was far worse (docs/benchmarks_accuracy.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import pandas as pd

from forecast.errors import InsufficientDataError, ManifestError, ModelError
from forecast.features import LEADS, feature_groups
from forecast.modelling.linear import (
    LinearFit,
    StackedLinear,
    fit_nonneg_ridge,
    is_rain,
    linear_columns,
)
from forecast.modelling.quantile import Band, StackedBand, fit_band
from forecast.modelling.trees import TextBooster, lightgbm_version

if TYPE_CHECKING:
    from typing import TypeAlias

    import lightgbm as lgb

    Booster: TypeAlias = lgb.Booster | TextBooster
    """A booster trained in this process (``lightgbm``) or loaded from its text model."""

# The ``lightgbm`` package (which imports scikit-learn and SciPy) is imported by training
# only; loaded models predict through ``trees.TextBooster``.

FORMAT: Final = 2   # models saved before ``transform`` existed load as transform="none"
QUANTILES: Final = (0.1, 0.5, 0.9)
MIN_TRAIN_ROWS: Final = 168  # one week of hourly rows
CEILING_FACTOR: Final = 3.0  # log transform: forecasts below min + 3 x the training range
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
    """Training settings (all serialised with the model).

    ``linear_base``: start the trees from the sign-constrained ridge fit (``ridge`` = its
    scale-free penalty); ``trees``: add LightGBM on top (off = linear model only);
    ``coverage``: nominal P10-P90 coverage the bands are calibrated to (on the validation tail;
    ``calibrate=False`` uses the training rows instead); ``transform``: target space
    (``log`` for flow-like series, module docstring) with ``log_scale`` setting its offset.
    """

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
    linear_base: bool = True
    ridge: float = 0.1
    trees: bool = True
    transform: Literal["none", "log"] = "none"
    log_scale: float = 0.1


TRANSFORMS: Final = ("none", "log")


def with_transform(settings: LgbmSettings | None, transform: str | None) -> LgbmSettings | None:
    """``settings`` with the target transform a river's catalogue entry asks for (``None``:
    unchanged, e.g. the river does not set ``target_transform``)."""
    if transform is None:
        return settings
    if transform not in TRANSFORMS:
        raise ModelError(f"unknown target transform {transform!r}; choose from {TRANSFORMS}")
    return replace(settings or LgbmSettings(), transform=transform)  # type: ignore[arg-type]


def _params(s: LgbmSettings, mono: list[int]) -> dict[str, object]:
    return {
        "objective": "regression", "metric": "l2", "learning_rate": s.learning_rate,
        "num_leaves": s.num_leaves, "min_data_in_leaf": s.min_data_in_leaf,
        "num_threads": s.num_threads, "verbose": -1, "seed": s.seed, "deterministic": True,
        "force_row_wise": True, "feature_fraction": 0.9, "bagging_fraction": 0.8,
        "bagging_freq": 1, "monotone_constraints": mono,
        "monotone_constraints_method": "intermediate", "max_bin": 127,
    }


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
    return pd.DataFrame(_missing(X.to_numpy(dtype="float64"), list(X.columns)), index=X.index,
                        columns=["fc", "rain", "upstream"])


def _missing(arr: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """rows x (fc, rain, upstream) booleans from a feature array."""
    col = {f: i for i, f in enumerate(features)}
    out = np.zeros((len(arr), 3), dtype=bool)
    for j, grp in enumerate(("fc", "rain")):
        key = _GROUP_KEY[grp]
        if key in col:
            out[:, j] = np.isnan(arr[:, col[key]])
    ups = [col[c] for c in feature_groups(features)["upstream"] if not c.startswith("d_")]
    if ups:
        out[:, 2] = np.isnan(arr[:, ups]).any(axis=1)
    return out


def _empty_linear() -> LinearFit:
    return LinearFit((), np.zeros(0), 0.0, np.zeros(0))


@dataclass(frozen=True)
class LogTransform:
    """``z = log(max(level, floor) + offset)`` and back, ``level = exp(z) - offset`` clipped
    to [floor, ceiling]: ``floor`` is the training minimum (levels below it are read as it),
    ``ceiling`` = floor + ``CEILING_FACTOR`` x the training range. The linear base extrapolates
    z linearly, i.e. the level exponentially: on 厚東川 *stage* (not a flow) the log model
    forecast 139 m for the 7.4 m flood without the ceiling.
    """

    offset: float
    floor: float
    ceiling: float = float("inf")

    @classmethod
    def fit(cls, level: np.ndarray, scale: float, name: str) -> LogTransform:
        """From training levels: offset = scale x mean excess over the minimum - minimum."""
        lv = level[np.isfinite(level)]
        lo = float(lv.min()) if len(lv) else 0.0
        excess = float(np.mean(lv - lo)) if len(lv) else 0.0
        if not (scale > 0 and excess > 0):
            raise ModelError(f"{name or 'river'}: the log target transform needs a varying "
                             f"level and log_scale > 0 (mean excess {excess}, log_scale "
                             f"{scale}); set the river's target_transform to none")
        return cls(offset=scale * excess - lo, floor=lo,
                   ceiling=lo + CEILING_FACTOR * (float(lv.max()) - lo))

    def z(self, level: np.ndarray) -> np.ndarray:
        """Transformed levels (NaN kept)."""
        return np.asarray(np.log(np.maximum(level, self.floor) + self.offset), dtype="float64")

    def level(self, z: np.ndarray) -> np.ndarray:
        """Inverse of ``z``, clipped to [floor, ceiling] (non-decreasing; NaN kept)."""
        with np.errstate(over="ignore"):
            return np.asarray(np.clip(np.exp(z) - self.offset, self.floor, self.ceiling),
                              dtype="float64")

    def features(self, arr: np.ndarray, features: Sequence[str]) -> np.ndarray:
        """Copy of a feature array with ``level_m`` and ``d_level_*`` in z (the change
        ``z(L_T) - z(L_T - d)``); every other column untouched."""
        out = arr.copy()
        j = list(features).index("level_m")
        level = arr[:, j]
        out[:, j] = self.z(level)
        for k, f in enumerate(features):
            if f.startswith("d_level_"):
                out[:, k] = out[:, j] - self.z(level - arr[:, k])
        return out

    def to_dict(self) -> dict[str, float]:
        """JSON-able form."""
        return {"offset": self.offset, "floor": self.floor, "ceiling": self.ceiling}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> LogTransform:
        """Inverse of ``to_dict``."""
        return cls(float(d["offset"]), float(d["floor"]), float(d["ceiling"]))  # type: ignore[arg-type]


@dataclass
class LeadModels:
    """Trained per-lead models (linear base + booster + band) for one river (or a pooled set
    of rivers), one per fallback variant."""

    settings: LgbmSettings
    features: list[str]
    high_water_m: float
    boosters: dict[str, Booster] = field(default_factory=dict)   # key "h{lead}/{variant}/l2"
    linear: dict[str, LinearFit] = field(default_factory=dict)       # key "h{lead}/{variant}"
    bands: dict[str, Band] = field(default_factory=dict)             # key "h{lead}/{variant}"
    variants: list[str] = field(default_factory=list)
    log: LogTransform | None = None   # set when settings.transform == "log"
    # per variant: everything predict needs, stacked over leads (built on first use)
    _plans: dict[str, _Plan] = field(default_factory=dict, init=False, repr=False,
                                     compare=False)

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
        arr = X.to_numpy(dtype="float64")
        level = arr[:, features.index("level_m")]
        fit = arr   # the feature array in the model's target space
        if s.transform == "log":
            self.log = LogTransform.fit(level, s.log_scale, name)
            fit = self.log.features(arr, features)
        for lead in s.leads:
            y = Y[f"dh_{lead}h"].to_numpy(dtype="float64")
            ok = ~np.isnan(y) & ~np.isnan(level)
            if ok.sum() < MIN_TRAIN_ROWS:
                raise InsufficientDataError(
                    f"{name or 'river'}: only {int(ok.sum())} usable training rows for lead "
                    f"{lead} h (need {MIN_TRAIN_ROWS}); supply a longer clean record"
                )
            # target: change of z (log) or of the level (none)
            y_fit = y if self.log is None else self.log.z(level + y) - self.log.z(level)
            self._train_lead(fit[ok], y_fit[ok], lead, name, arr[ok], y[ok])
        return self

    def _threshold(self, arr: np.ndarray, features: Sequence[str]) -> np.ndarray | float:
        # pooled models carry each river's own threshold as a column
        if "attr_threshold_m" in features:
            return np.asarray(arr[:, list(features).index("attr_threshold_m")])
        return self.high_water_m

    def _high(self, arr: np.ndarray, features: Sequence[str]) -> np.ndarray:
        """High-water regime at the issue time: current level >= the (river's) threshold."""
        with np.errstate(invalid="ignore"):
            return np.asarray(arr[:, list(features).index("level_m")]
                              >= self._threshold(arr, features))

    def _train_lead(self, arr: np.ndarray, y: np.ndarray, lead: int, name: str,
                    raw: np.ndarray, y_raw: np.ndarray) -> None:
        """Fit one lead on ``arr``/``y`` (target space); ``raw``/``y_raw`` are the same rows
        in level space, for the high-water weights and regimes."""
        s = self.settings
        level = raw[:, self.features.index("level_m")]
        high_now = self._high(raw, self.features)
        target_high = high_now | (level + y_raw >= self._threshold(raw, self.features))
        w = np.where(target_high, s.high_water_weight, 1.0)
        if self.log is not None:
            # dz ~ dlevel / (level + offset): weighting by (level + offset)^2 makes the z-space
            # squared error approximate the level-space one (what RMSE scores)
            scale = (np.maximum(level, self.log.floor) + self.log.offset) ** 2
            w = w * scale / scale.mean()
        keep = np.ones(len(y), dtype=bool)
        if s.quiet_keep < 1.0 and "rain_48h" in self.features:
            # dry spells away from high water carry little information per row
            wet = np.nan_to_num(arr[:, self.features.index("rain_48h")]) > 1.0
            rng = np.random.default_rng(s.seed + lead)
            keep = target_high | wet | (rng.random(len(y)) < s.quiet_keep)
        n_val = max(1, int(len(y) * s.valid_fraction))
        val = np.zeros(len(y), dtype=bool)
        val[-n_val:] = True
        tr = keep & ~val
        col_all = {f: i for i, f in enumerate(self.features)}
        for variant in self.variants:
            key = f"h{lead}/{variant}"
            feats = _variant_features(self.features, variant)
            Xv = arr[:, [col_all[f] for f in feats]]
            lin = _empty_linear()
            if s.linear_base:
                lcols = linear_columns(feats, lead)
                li = [feats.index(c) for c in lcols]
                lin = fit_nonneg_ridge(Xv[keep][:, li], y[keep], columns=lcols,
                                       nonneg=np.array([is_rain(c) for c in lcols], dtype=bool),
                                       weights=w[keep], ridge=s.ridge)
            self.linear[key] = lin
            base = self._linear_predict(key, Xv, feats)
            point = base
            if s.trees:
                booster = _fit_booster(s, Xv, y, w, tr, val, base, feats,
                                       f"{name} {key}".strip())
                self.boosters[f"{key}/l2"] = booster
                point = base + _raw(booster, Xv)
            col = {f: i for i, f in enumerate(feats)}
            # calibrate=False: multipliers from the (in-sample, optimistic) training rows
            self.bands[key] = fit_band(Xv, col, feats, lead, y - point, tr,
                                       val if s.calibrate else tr, high_now,
                                       s.coverage)

    def _linear_predict(self, key: str, Xv: np.ndarray, feats: Sequence[str]) -> np.ndarray:
        lin = self.linear[key]
        if not lin.columns:
            return np.full(len(Xv), lin.intercept)
        return lin.predict(Xv[:, [feats.index(c) for c in lin.columns]])

    # ------------------------------------------------------------------ prediction
    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Forecast rows for feature rows X (index = issue time, UTC).

        Returns a long frame: ``issued_at, horizon_h, level, q10, q50, q90`` (m, absolute
        levels = current level + predicted change), ``model_variant`` and ``inputs`` (the
        input groups used, comma separated). Rows without a current level give NaN forecasts.
        """
        cols = list(X.columns)
        arr = np.full((len(X), len(self.features)), np.nan)
        src = X.to_numpy(dtype="float64")
        for j, f in enumerate(self.features):
            if f in cols:
                arr[:, j] = src[:, cols.index(f)]
        chosen = self._choose_variants(_missing(arr, self.features))
        high = self._high(arr, self.features)   # regimes compare levels
        if self.log is not None:
            arr = self.log.features(arr, self.features)
        now = arr[:, self.features.index("level_m")]   # current level (or its z)
        leads = self.settings.leads
        n, m = len(X), len(leads)
        res = np.full((4, n, m), np.nan)   # point, q10, q50, q90 as changes (m or z)
        for variant in self.variants:
            rows = np.flatnonzero(chosen == variant)
            if not len(rows):
                continue
            plan = self._plan(variant)
            Xv = arr[np.ix_(rows, plan.feat_idx)]
            point = plan.linear.predict(Xv[:, plan.lin_idx])
            for j, b in enumerate(plan.boosters):
                if b is not None:
                    point[:, j] += _raw(b, Xv)
            q10, q50, q90 = plan.band.apply(point, Xv, plan.col, high[rows])
            res[0, rows] = point if self.settings.point == "l2" else q50
            res[1, rows], res[2, rows], res[3, rows] = q10, q50, q90
        res += now[None, :, None]
        if self.log is not None:   # non-decreasing map: order and rain monotonicity kept
            res = self.log.level(res)
        return pd.DataFrame({
            "issued_at": pd.DatetimeIndex(X.index).repeat(m),
            "horizon_h": np.tile(np.asarray(leads, dtype="int64"), n),
            "level": res[0].ravel(), "q10": res[1].ravel(), "q50": res[2].ravel(),
            "q90": res[3].ravel(), "model_variant": np.repeat(chosen, m),
            "inputs": np.repeat(_inputs_used(chosen, self.features), m),
        })

    def _plan(self, variant: str) -> _Plan:
        if variant not in self._plans:
            feats = _variant_features(self.features, variant)
            keys = [f"h{lead}/{variant}" for lead in self.settings.leads]
            lin = StackedLinear.of([self.linear[k] for k in keys])
            self._plans[variant] = _Plan(
                feat_idx=np.array([self.features.index(f) for f in feats], dtype=np.intp),
                col={f: i for i, f in enumerate(feats)},
                linear=lin,
                lin_idx=np.array([feats.index(c) for c in lin.columns], dtype=np.intp),
                boosters=[self.boosters.get(f"{k}/l2") for k in keys],
                band=StackedBand.of([self.bands[k] for k in keys]))
        return self._plans[variant]

    def _choose_variants(self, missing: np.ndarray) -> np.ndarray:
        # rows no trained variant covers (fallbacks off) use the last, most reduced one
        chosen = np.full(len(missing), self.variants[-1], dtype=object)
        todo = np.ones(len(missing), dtype=bool)
        # VARIANTS is ordered from fewest to most dropped groups; first cover wins.
        for v in self.variants:
            covers = np.ones(len(missing), dtype=bool)
            for j, g in enumerate(("fc", "rain", "upstream")):
                if g not in VARIANTS[v]:
                    covers &= ~missing[:, j]
            take = todo & covers
            chosen[take] = v
            todo &= ~take
        return chosen

    # ------------------------------------------------------------------ persistence
    def to_strings(self) -> tuple[dict[str, object], dict[str, str]]:
        """(metadata JSON-able dict, {booster key: LightGBM text model})."""
        meta: dict[str, object] = {
            "format": FORMAT, "settings": asdict(self.settings), "features": self.features,
            "high_water_m": self.high_water_m, "variants": self.variants,
            "linear": {k: v.to_dict() for k, v in self.linear.items()},
            "bands": {k: v.to_dict() for k, v in self.bands.items()},
            "lightgbm": lightgbm_version(),
            "transform": None if self.log is None else self.log.to_dict(),
        }
        return meta, {k: b.model_to_string() for k, b in self.boosters.items()}

    @classmethod
    def from_strings(cls, meta: Mapping[str, object], models: Mapping[str, str | TextBooster],
                     *, lazy: bool = False) -> LeadModels:
        """Inverse of ``to_strings``; ``ManifestError`` for another model format.

        ``models``: booster key → LightGBM text model, or a ``trees.TextBooster`` (e.g. one
        that reads its file when first used). Every booster is parsed now (``ModelError`` if
        one cannot be) unless ``lazy``: then each is parsed when it first predicts."""
        if meta.get("format") != FORMAT:
            raise ManifestError(f"model format {meta.get('format')!r} is not {FORMAT} "
                                "(quantile-booster models are no longer read); retrain")
        raw = dict(meta["settings"])  # type: ignore[call-overload]
        raw["leads"] = tuple(raw["leads"])
        self = cls(settings=LgbmSettings(**raw), features=list(meta["features"]),  # type: ignore[call-overload]
                   high_water_m=float(meta["high_water_m"]))  # type: ignore[arg-type]
        self.variants = list(meta["variants"])  # type: ignore[call-overload]
        self.linear = {str(k): LinearFit.from_dict(v)
                       for k, v in dict(meta["linear"]).items()}  # type: ignore[call-overload]
        self.bands = {str(k): Band.from_dict(v)
                      for k, v in dict(meta["bands"]).items()}  # type: ignore[call-overload]
        boosters = {k: m if isinstance(m, TextBooster) else TextBooster(m)
                    for k, m in models.items()}
        if not lazy:
            for b in boosters.values():
                b.load()
        self.boosters = {k: b for k, b in boosters.items()}
        tf = meta.get("transform")
        if self.settings.transform == "log":
            if not isinstance(tf, Mapping):
                raise ManifestError("log-transform model without its offset; retrain")
            self.log = LogTransform.from_dict(tf)
        return self


@dataclass(frozen=True)
class _Plan:
    """One variant's predictor: feature columns, stacked linear base, boosters, bands."""

    feat_idx: np.ndarray
    col: dict[str, int]
    linear: StackedLinear
    lin_idx: np.ndarray
    boosters: list[Booster | None]
    band: StackedBand


def _raw(b: Booster, Xv: np.ndarray) -> np.ndarray:
    return np.asarray(b.predict(Xv, num_iteration=b.best_iteration or None, num_threads=1),
                      dtype="float64")


def _fit_booster(s: LgbmSettings, X: np.ndarray, y: np.ndarray, w: np.ndarray,
                 tr: np.ndarray, val: np.ndarray, base: np.ndarray, feats: list[str],
                 name: str) -> lgb.Booster:
    """L2 booster on the residual of ``base`` (init_score), early-stopped on the tail."""
    import lightgbm as lgb

    init = s.linear_base
    dtr = lgb.Dataset(X[tr], y[tr], weight=w[tr], feature_name=feats,
                      init_score=base[tr] if init else None)
    dval = lgb.Dataset(X[val], y[val], weight=w[val], reference=dtr,
                       init_score=base[val] if init else None)
    try:
        return lgb.train(_params(s, _monotone(feats)), dtr, num_boost_round=s.num_rounds,
                         valid_sets=[dval],
                         callbacks=[lgb.early_stopping(s.early_stopping_rounds, verbose=False)])
    except lgb.basic.LightGBMError as exc:
        raise ModelError(f"LightGBM failed for {name}: {exc}") from exc


def _inputs_used(chosen: np.ndarray, features: Sequence[str]) -> np.ndarray:
    g = feature_groups(features)
    present = [grp for grp in ("rain", "fc", "upstream") if g[grp]]
    labels = {
        v: ",".join(["level", *[p for p in present if p not in VARIANTS[v]]]) for v in VARIANTS
    }
    return np.array([labels[v] for v in chosen], dtype=object)
