"""Save and load ``LeadModels`` as LightGBM text models plus a JSON of features and settings.

Layout of a model directory: ``model.json`` (format, settings, feature names, variants,
linear-base coefficients, band spread models and multipliers, LightGBM version, file names) and
one ``h{lead}__{variant}__l2.txt`` per booster (``Booster.model_to_string``), so a registry can
store, diff and hash them. Directories of another format (e.g. the old quantile boosters) are
refused with ``ManifestError``.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb

from forecast.errors import ManifestError
from forecast.modelling.lgbm import LeadModels


def save(models: LeadModels, directory: str | Path) -> None:
    """Write ``model.json`` (features, settings, linear base, bands) and one LightGBM text model
    per booster (``h{lead}__{variant}__l2.txt``) into ``directory`` (created if needed)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta, texts = models.to_strings()
    files = {}
    for key, text in texts.items():
        fname = key.replace("/", "__") + ".txt"
        (d / fname).write_text(text, encoding="utf-8")
        files[key] = fname
    meta["files"] = files
    (d / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")


def load(directory: str | Path) -> LeadModels:
    """Read a directory written by ``save``; ``ManifestError`` if it is damaged."""
    d = Path(directory)
    try:
        meta = json.loads((d / "model.json").read_text(encoding="utf-8"))
        texts = {k: (d / f).read_text(encoding="utf-8") for k, f in meta["files"].items()}
        return LeadModels.from_strings(meta, texts)
    except ManifestError as exc:
        raise ManifestError(f"{d}: {exc}") from exc
    except (OSError, KeyError, TypeError, ValueError, lgb.basic.LightGBMError) as exc:
        raise ManifestError(f"{d}: cannot load model ({exc}); retrain or restore it") from exc

