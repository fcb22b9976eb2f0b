"""Model registry on disk: ``<root>/<river>/<version>/`` per trained model set.

A version directory holds the LightGBM text models and ``model.json`` (``persist.save``) plus
``manifest.json``: river, version, created_at, training window, feature names, settings, data
hash, package version, git commit, manifest format and the backtest that judged it (its spec and
per-lead scores). ``<root>/<river>/champion.json`` names the champion and keeps the promotion
history (written atomically: temp file + ``os.replace``), so ``rollback`` can restore the
previous champion.

Promotion is champion–challenger: the challenger must have been judged on the same backtest
(spec) as the champion and must not be worse on event-window RMSE averaged over leads 3–6 h
(all-hours RMSE when the judging span held no flood event);
``force=True`` overrides (and the audit log should say so). Loading refuses a manifest that is
damaged or does not match this code, with an instruction to retrain.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from forecast import __version__
from forecast.errors import ManifestError, RegistryError
from forecast.modelling import persist
from forecast.modelling.lgbm import LeadModels

MANIFEST_FORMAT = 1
JUDGED_LEADS = (3, 4, 5, 6)


@dataclass(frozen=True)
class Version:
    """A registered model version: its manifest and directory."""

    river_id: str
    version: str
    path: Path
    manifest: dict[str, Any]

    def _mean(self, key: str) -> float | None:
        scores = self.manifest.get("backtest", {}).get(key, {})
        vals = [scores.get(str(h)) for h in JUDGED_LEADS]
        ok = [float(v) for v in vals if v is not None]
        return sum(ok) / len(ok) if len(ok) == len(JUDGED_LEADS) else None

    @property
    def event_rmse(self) -> float | None:
        """Mean event-window RMSE (m) over leads 3–6 h from the judging backtest."""
        return self._mean("rmse_event")

    @property
    def score(self) -> tuple[float | None, str]:
        """What promotion compares: event RMSE (leads 3–6 h) when the judging span held a
        flood event, else RMSE over all hours, with the basis named."""
        ev = self.event_rmse
        return (ev, "event RMSE") if ev is not None else (self._mean("rmse"), "all-hours RMSE")


def data_hash(frame: pd.DataFrame) -> str:
    """sha256 of a training frame's values and index (what the model was trained on)."""
    h = hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def register(root: Path, river_id: str, models: LeadModels, *, created_at: datetime,
             window: tuple[datetime, datetime], data_sha256: str,
             backtest: Mapping[str, Any]) -> Version:
    """Save ``models`` as a new version of ``river_id``; returns it (not yet champion).

    ``backtest``: ``{"spec": {...}, "rmse_event": {lead: m}, ...}`` from the judging backtest.
    """
    version = f"{created_at:%Y%m%dT%H%M%SZ}-{data_sha256[:8]}"
    path = Path(root) / river_id / version
    if path.exists():
        raise RegistryError(f"{path} already exists: same data registered in the same second")
    persist.save(models, path)
    manifest = {
        "manifest_format": MANIFEST_FORMAT, "river_id": river_id, "version": version,
        "created_at": created_at.isoformat(),
        "training_window": [window[0].isoformat(), window[1].isoformat()],
        "features": list(models.features), "settings": models.to_strings()[0].get("settings"),
        "data_sha256": data_sha256, "package_version": __version__, "git_commit": _git_commit(),
        "backtest": dict(backtest),
    }
    _write_json(path / "manifest.json", manifest)
    return Version(river_id, version, path, manifest)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: manifest.json missing or damaged ({exc}); retrain with "
                            f"`forecast train --river {path.parent.name}`") from exc
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: manifest.json is not an object; retrain the river")
    return manifest


def load_version(root: Path, river_id: str, version: str) -> tuple[Version, LeadModels]:
    """Load one version, checking its manifest against this code and its model files."""
    path = Path(root) / river_id / version
    manifest = _read_manifest(path)
    hint = f"retrain with `forecast train --river {river_id}`"
    if manifest.get("manifest_format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: manifest format {manifest.get('manifest_format')!r}, "
                            f"this code reads {MANIFEST_FORMAT}; {hint}")
    if str(manifest.get("package_version", "")).split(".")[0] != __version__.split(".")[0]:
        raise ManifestError(f"{path}: trained by package {manifest.get('package_version')}, "
                            f"this is {__version__}; {hint}")
    if manifest.get("river_id") != river_id or manifest.get("version") != version:
        raise ManifestError(f"{path}: manifest names {manifest.get('river_id')}/"
                            f"{manifest.get('version')}; the directory was moved or edited")
    models = persist.load(path)
    if list(models.features) != list(manifest.get("features", [])):
        raise ManifestError(f"{path}: the manifest's feature list does not match the model "
                            f"files; {hint}")
    return Version(river_id, version, path, manifest), models


def _champion_file(root: Path, river_id: str) -> Path:
    return Path(root) / river_id / "champion.json"


def _champion_state(root: Path, river_id: str) -> dict[str, Any]:
    f = _champion_file(root, river_id)
    if not f.exists():
        return {"champion": None, "history": []}
    try:
        state = json.loads(f.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ManifestError(f"{f} is damaged; fix or delete it and promote again") from exc
    return dict(state)


def champion(root: Path, river_id: str) -> str | None:
    """The champion version of a river (None if none was promoted)."""
    v = _champion_state(root, river_id).get("champion")
    return str(v) if v else None


def load_champion(root: Path, river_id: str) -> tuple[str, LeadModels] | None:
    """(version, models) of the river's champion, or None; a bad champion raises."""
    v = champion(root, river_id)
    if v is None:
        return None
    version, models = load_version(root, river_id, v)
    return version.version, models


def list_versions(root: Path, river_id: str | None = None) -> pd.DataFrame:
    """Every registered version: river_id, version, created_at, champion, event_rmse_3_6h."""
    rows: list[dict[str, Any]] = []
    base = Path(root)
    rivers = [river_id] if river_id else sorted(p.name for p in base.glob("*") if p.is_dir())
    for r in rivers:
        champ = champion(base, r)
        for d in sorted((base / r).glob("*/manifest.json")):
            try:
                m = _read_manifest(d.parent)
            except ManifestError:
                rows.append({"river_id": r, "version": d.parent.name, "created_at": None,
                             "champion": False, "event_rmse_3_6h": None, "rmse_3_6h": None,
                         "status": "damaged"})
                continue
            v = Version(r, d.parent.name, d.parent, m)
            rows.append({"river_id": r, "version": v.version, "created_at": m.get("created_at"),
                         "champion": v.version == champ, "event_rmse_3_6h": v.event_rmse,
                         "rmse_3_6h": v._mean("rmse"), "status": "ok"})
    return pd.DataFrame(rows, columns=["river_id", "version", "created_at", "champion",
                                       "event_rmse_3_6h", "rmse_3_6h", "status"])


def promote(root: Path, river_id: str, version: str, *, at: datetime,
            force: bool = False) -> str:
    """Make ``version`` the champion after the champion–challenger check; returns a message."""
    challenger, _ = load_version(root, river_id, version)
    state = _champion_state(root, river_id)
    current = state.get("champion")
    note = "first champion"
    if current and current != version and not force:
        champ, _ = load_version(root, river_id, current)
        if champ.manifest.get("backtest", {}).get("spec") != \
                challenger.manifest.get("backtest", {}).get("spec"):
            raise RegistryError(
                f"{river_id}: {version} and champion {current} were judged on different "
                "backtests; re-run the same backtest for both or use --force")
        (a, basis), (b, _) = challenger.score, champ.score
        if a is None or b is None:
            raise RegistryError(f"{river_id}: no backtest scores for leads 3–6 h in a manifest "
                                "(trained with --no-backtest?); use --force to promote anyway")
        if a > b:
            raise RegistryError(
                f"{river_id}: challenger {version} is worse than champion {current} on "
                f"{basis} (leads 3–6 h): {a:.3f} m vs {b:.3f} m; not promoted "
                "(use --force to override)")
        note = f"{basis} 3–6 h {a:.3f} m vs champion {b:.3f} m"
    elif force and current:
        note = "forced"
    history = [*state.get("history", []), {"version": version, "at": at.isoformat(),
                                            "note": note}]
    _write_json(_champion_file(root, river_id), {"champion": version, "history": history})
    return f"{river_id}: {version} is champion ({note})"


def rollback(root: Path, river_id: str, *, at: datetime) -> str:
    """Restore the previous champion; returns its version."""
    state = _champion_state(root, river_id)
    history = list(state.get("history", []))
    if len(history) < 2:
        raise RegistryError(f"{river_id}: no earlier champion to roll back to")
    previous = history[-2]["version"]
    load_version(root, river_id, previous)  # refuses a damaged or mismatching version
    history.append({"version": previous, "at": at.isoformat(), "note": "rollback"})
    _write_json(_champion_file(root, river_id), {"champion": previous, "history": history})
    return str(previous)
