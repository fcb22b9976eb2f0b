"""Model registry on disk: ``<root>/<river>/<version>/`` per trained model set.

A version directory holds the LightGBM text models and ``model.json`` (``persist.save``) plus
``manifest.json``: river, version, created_at, status, training window, feature names (with the
upstream inputs and future-rain mode they were built from), LightGBM parameters, data hash,
package version, model and manifest format versions, git commit, data source and the backtest
that judged it (its spec and per-lead scores). A version is written under a temporary name and
renamed into place, so a crash never leaves half a version behind.

The registry holds artifacts only: which version is champion is recorded in the database
(``storage.models``, through ``pipeline.models``), never here. A version directory is written
once and not changed afterwards.

Promotion policy (``promotion_note``) is champion–challenger: both must have been judged on the
same backtest (spec), or an ``evaluate`` callable re-scores both models on one hold-out; the
challenger must not be worse on event-window RMSE averaged over leads 3–6 h (all-hours RMSE
when the judging span held no flood event). ``force=True`` overrides. Loading refuses a
manifest that is damaged or does not match this code (manifest/model format, package major
version, the feature list ``forecast.features`` builds today) with ``ManifestError`` naming the
directory and how to fix it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from forecast import __version__
from forecast.errors import ManifestError, RegistryError
from forecast.features import FUTURE_RAIN_MODES, FutureRain, build_features
from forecast.modelling import persist
from forecast.modelling.lgbm import LeadModels, LgbmSettings
from forecast.modelling.pooled import ATTRIBUTE_COLUMNS, PooledLeadModels, pool_columns_of
from forecast.modelling.trees import lightgbm_version

MANIFEST_FORMAT = 1
JUDGED_LEADS = (3, 4, 5, 6)

Evaluator = Callable[[LeadModels], Mapping[str, Mapping[str, float | None]]]
"""Scores a fixed model on one hold-out: ``{"rmse_event": {lead: m}, "rmse": {lead: m}}``."""


@dataclass(frozen=True)
class Version:
    """A registered model version: its manifest and directory."""

    river_id: str
    version: str
    path: Path
    manifest: dict[str, Any]

    def _mean(self, key: str) -> float | None:
        return _mean_judged(self.manifest.get("backtest", {}).get(key, {}))

    @property
    def event_rmse(self) -> float | None:
        """Mean event-window RMSE (m) over leads 3–6 h from the judging backtest."""
        return self._mean("rmse_event")

    @property
    def score(self) -> tuple[float | None, str]:
        """What promotion compares: event RMSE (leads 3–6 h) when the judging span held a
        flood event, else RMSE over all hours, with the basis named."""
        return judged_score(self.manifest.get("backtest", {}))


def _mean_judged(scores: Mapping[str, Any]) -> float | None:
    vals = [scores.get(str(h)) for h in JUDGED_LEADS]
    ok = [float(v) for v in vals if v is not None]
    return sum(ok) / len(ok) if len(ok) == len(JUDGED_LEADS) else None


def judged_score(backtest: Mapping[str, Any]) -> tuple[float | None, str]:
    """What promotion compares for one backtest section: mean event RMSE over leads 3–6 h
    when the judging span held an event, else mean all-hours RMSE; with the basis named."""
    ev = _mean_judged(backtest.get("rmse_event", {}))
    if ev is not None:
        return ev, "event RMSE"
    return _mean_judged(backtest.get("rmse", {})), "all-hours RMSE"


def compare_backtests(a: Mapping[str, Any], b: Mapping[str, Any]
                      ) -> tuple[float | None, float | None, str]:
    """Scores of two backtest sections judged on the same folds, like with like: mean event
    RMSE over leads 3–6 h when both have one, else mean all-hours RMSE; (a, b, basis)."""
    (sa, basis), (sb, basis_b) = judged_score(a), judged_score(b)
    if basis != basis_b:
        basis = "all-hours RMSE"
        sa, sb = _mean_judged(a.get("rmse", {})), _mean_judged(b.get("rmse", {}))
    return sa, sb, basis


# ------------------------------------------------------------------ provenance helpers
def data_hash(frame: pd.DataFrame) -> str:
    """sha256 of a training frame's column names, index and values."""
    h = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else "unknown"


@functools.cache
def model_format() -> int:
    """The ``LeadModels`` serialisation format this code writes (``model.json`` "format")."""
    meta, _ = LeadModels(settings=LgbmSettings(), features=[], high_water_m=0.0).to_strings()
    return int(str(meta["format"]))


def expected_features(upstream: Sequence[str], future_rain: FutureRain) -> list[str]:
    """Feature names, in order, that ``build_features`` produces today for a river with these
    upstream input codes (``up_<code>`` columns) and this future-rain mode."""
    return list(_expected_features(tuple(str(c) for c in upstream), future_rain))


@functools.lru_cache(maxsize=4096)   # the code does not change while a process runs
def _expected_features(upstream: tuple[str, ...], future_rain: FutureRain) -> tuple[str, ...]:
    t = pd.Timestamp("2000-01-01", tz="UTC")
    dummy = pd.DataFrame({"level_m": [1.0], "rain_mm": [0.0],
                          **{f"up_{c}": [0.0] for c in upstream}},
                         index=pd.DatetimeIndex([t], name="time"))
    # archive and perfect give the same rain_fc_* columns; perfect needs no vintage frame
    mode: FutureRain = "perfect" if future_rain == "archive" else future_rain
    return tuple(build_features(dummy, [t], future_rain=mode).columns)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str, ensure_ascii=False),
                   encoding="utf-8")
    os.replace(tmp, path)


def _hint(river_id: str) -> str:
    return f"retrain with `forecast train --river {river_id}`"


def jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    """JSON round trip with NaN -> null (PostgreSQL's JSON refuses NaN)."""
    return dict(json.loads(json.dumps(d, default=str).replace("NaN", "null")))


# ------------------------------------------------------------------ registration
def register(root: Path, river_id: str, models: LeadModels, *, created_at: datetime,
             window: tuple[datetime, datetime], data_sha256: str,
             backtest: Mapping[str, Any], future_rain: FutureRain | None = None,
             upstream: Sequence[str] | None = None, source: str = "",
             pooled: Mapping[str, Any] | None = None) -> Version:
    """Save ``models`` as a new candidate version of ``river_id``; returns it.

    ``backtest``: ``{"spec": {...}, "rmse_event": {lead: m}, "rmse": {...}, ...}`` from the
    judging backtest. ``future_rain`` and ``upstream`` (codes) say how the features were built,
    so loading can check them against the code; ``source`` names the data source
    (``simulated`` labels reports); ``pipeline.models.register`` also records it in the
    database with an audit row. ``pooled`` (``{"rivers": [...],
    "attributes": {"area_km2", "threshold_m"}}``) marks a pooled model across rivers (a
    ``pooled.PooledLeadModels``; no upstream inputs); loading binds it to those attributes.
    """
    version = f"{created_at:%Y%m%dT%H%M%SZ}-{data_sha256[:8]}"
    river_dir = Path(root) / river_id
    path = river_dir / version
    if path.exists():
        raise RegistryError(f"{path} already exists: same data registered in the same second")
    if future_rain is not None and future_rain not in FUTURE_RAIN_MODES:
        raise RegistryError(f"future_rain must be one of {FUTURE_RAIN_MODES}")
    manifest: dict[str, Any] = {
        "manifest_format": MANIFEST_FORMAT, "model_format": model_format(),
        "river_id": river_id, "version": version, "created_at": created_at.isoformat(),
        "training_window": [window[0].isoformat(), window[1].isoformat()],
        "features": list(models.features), "future_rain": future_rain,
        "upstream": None if upstream is None else list(upstream),
        "parameters": asdict(models.settings), "high_water_m": models.high_water_m,
        "data_sha256": data_sha256, "source": source, "package_version": __version__,
        "lightgbm_version": lightgbm_version(), "git_commit": _git_commit(),
        "backtest": jsonable(backtest),
    }
    if pooled is not None:
        manifest["pooled"] = jsonable(pooled)
    # write under a hidden temporary name, then rename: readers never see half a version
    tmp = river_dir / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    persist.save(models, tmp)
    _write_json(tmp / "manifest.json", manifest)
    os.replace(tmp, path)
    return Version(river_id, version, path, manifest)


# ------------------------------------------------------------------ reading and checks
def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: manifest.json missing or damaged ({exc}); "
                            f"{_hint(path.parent.name)}") from exc
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: manifest.json is not an object; {_hint(path.parent.name)}")
    return manifest


def check_manifest(path: Path, manifest: Mapping[str, Any], river_id: str,
                   features: Sequence[str] | None = None) -> None:
    """Refuse (``ManifestError``) a manifest this code cannot use: other manifest or model
    format, other package major version, moved directory, or a feature list that differs from
    what ``build_features`` makes today (and from ``features``, e.g. from the catalogue)."""
    hint = _hint(river_id)
    if manifest.get("manifest_format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: manifest format {manifest.get('manifest_format')!r}, "
                            f"this code reads {MANIFEST_FORMAT}; {hint}")
    if manifest.get("model_format") != model_format():
        raise ManifestError(f"{path}: model format {manifest.get('model_format')!r}, this "
                            f"code reads {model_format()}; {hint}")
    if str(manifest.get("package_version", "")).split(".")[0] != __version__.split(".")[0]:
        raise ManifestError(f"{path}: trained by package {manifest.get('package_version')}, "
                            f"this is {__version__}; {hint}")
    if manifest.get("river_id") != river_id or manifest.get("version") != path.name:
        raise ManifestError(f"{path}: manifest names {manifest.get('river_id')}/"
                            f"{manifest.get('version')}; the directory was moved or edited")
    stored = list(manifest.get("features") or [])
    wanted: list[tuple[str, Sequence[str]]] = []
    if manifest.get("pooled"):
        # a pooled model reads the river's rows without upstream inputs, plus its attributes
        if not isinstance(manifest["pooled"].get("attributes"), dict):
            raise ManifestError(f"{path}: pooled model without river attributes; {hint}")
        if manifest.get("future_rain") is not None:
            wanted.append(("the feature code builds (pooled)", [
                *pool_columns_of(expected_features([], manifest["future_rain"])),
                *ATTRIBUTE_COLUMNS]))
        if features is not None:
            wanted.append(("the caller expects (pooled)",
                           [*pool_columns_of(features), *ATTRIBUTE_COLUMNS]))
    else:
        if manifest.get("future_rain") is not None and manifest.get("upstream") is not None:
            wanted.append(("the feature code builds",
                           expected_features(manifest["upstream"], manifest["future_rain"])))
        if features is not None:
            wanted.append(("the caller expects", features))
    for label, exp in wanted:
        if list(exp) != stored:
            extra, lacking = sorted(set(stored) - set(exp)), sorted(set(exp) - set(stored))
            raise ManifestError(f"{path}: feature list differs from what {label} (model has "
                                f"extra {extra}, lacks {lacking}); {hint}")


def load_version(root: Path, river_id: str, version: str, *,
                 features: Sequence[str] | None = None, lazy: bool = False
                 ) -> tuple[Version, LeadModels]:
    """Load one version, checking its manifest against this code and its model files.

    ``lazy``: the boosters are read and parsed when they first predict, each file checked
    against its recorded sha256 first (``persist.load``); the manifest checks run now."""
    path = Path(root) / river_id / version
    if not path.is_dir():
        raise RegistryError(f"{path}: no version {version!r} of river {river_id!r}; "
                            f"list them with `forecast models --river {river_id}`")
    manifest = _read_manifest(path)
    check_manifest(path, manifest, river_id, features)
    models = persist.load(path, lazy=lazy)
    if list(models.features) != list(manifest.get("features", [])):
        raise ManifestError(f"{path}: the manifest's feature list does not match the model "
                            f"files; {_hint(river_id)}")
    if manifest.get("pooled"):
        attrs = manifest["pooled"]["attributes"]
        models = PooledLeadModels.for_river(models, area_km2=float(attrs["area_km2"]),
                                            threshold_m=float(attrs["threshold_m"]))
    return Version(river_id, version, path, manifest), models


# ------------------------------------------------------------------ listing and policy
def list_versions(root: Path, river_id: str | None = None) -> pd.DataFrame:
    """Every version directory: river_id, version, created_at, event_rmse_3_6h / rmse_3_6h
    (m, judging backtest), status (ok | damaged). Which is champion: ``pipeline.models``."""
    rows: list[dict[str, Any]] = []
    base = Path(root)
    rivers = [river_id] if river_id else sorted(p.name for p in base.glob("*") if p.is_dir())
    for r in rivers:
        for d in sorted((base / r).glob("*/manifest.json")):
            if d.parent.name.startswith("."):
                continue
            try:
                m = _read_manifest(d.parent)
            except ManifestError:
                rows.append({"river_id": r, "version": d.parent.name, "created_at": None,
                             "event_rmse_3_6h": None, "rmse_3_6h": None, "status": "damaged"})
                continue
            v = Version(r, d.parent.name, d.parent, m)
            rows.append({"river_id": r, "version": v.version, "created_at": m.get("created_at"),
                         "event_rmse_3_6h": v.event_rmse, "rmse_3_6h": v._mean("rmse"),
                         "status": "ok"})
    return pd.DataFrame(rows, columns=["river_id", "version", "created_at", "event_rmse_3_6h",
                                       "rmse_3_6h", "status"])


def _scores(root: Path, river_id: str, champ: Version, chall: Version,
            evaluate: Evaluator | None) -> tuple[float | None, float | None, str, str]:
    """(challenger score, champion score, basis, how) on one common backtest, like with like
    (``compare_backtests``)."""
    spec_a = champ.manifest.get("backtest", {}).get("spec")
    spec_b = chall.manifest.get("backtest", {}).get("spec")
    if spec_a is not None and spec_a == spec_b:
        return (*compare_backtests(chall.manifest["backtest"], champ.manifest["backtest"]),
                "same stored backtest")
    if evaluate is None:
        raise RegistryError(
            f"{river_id}: {chall.version} and champion {champ.version} were judged on different "
            "backtests; re-run the same backtest for both (pass evaluate) or use --force")
    _, m_champ = load_version(root, river_id, champ.version)
    _, m_chall = load_version(root, river_id, chall.version)
    return (*compare_backtests(evaluate(m_chall), evaluate(m_champ)),
            "both re-scored on one hold-out")


def promotion_note(root: Path, river_id: str, version: str, current: str | None, *,
                   force: bool = False, evaluate: Evaluator | None = None) -> str:
    """Decide whether ``version`` may replace champion ``current`` (None: no champion yet);
    returns the note to record, or raises ``RegistryError`` with both figures.

    The challenger must load (manifest checks). Unless ``force``, it must not be worse than
    the champion on the judged score (module docstring).
    """
    challenger, _ = load_version(root, river_id, version)
    if current == version:
        raise RegistryError(f"{river_id}: {version} is already the champion")
    if current is None:
        return "first champion"
    if force:
        return "forced"
    champ, _ = load_version(root, river_id, current)
    a, b, basis, how = _scores(root, river_id, champ, challenger, evaluate)
    if a is None or b is None:
        raise RegistryError(f"{river_id}: no backtest scores for leads 3–6 h in a manifest "
                            "(trained with --no-backtest?); use --force to promote anyway")
    if a > b:
        raise RegistryError(
            f"{river_id}: challenger {version} is worse than champion {current} on "
            f"{basis} (leads 3–6 h, {how}): {a:.3f} m vs {b:.3f} m; not promoted "
            "(use --force to override)")
    return f"{basis} 3–6 h {a:.3f} m vs champion {b:.3f} m ({how})"
