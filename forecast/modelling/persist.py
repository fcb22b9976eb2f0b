"""Save and load ``LeadModels`` as LightGBM text models plus a JSON of features and settings.

Layout of a model directory: ``model.json`` (format, settings, feature names, variants,
linear-base coefficients, band spread models and multipliers, LightGBM version, file names and
each file's sha256) and one ``h{lead}__{variant}__l2.txt`` per booster
(``Booster.model_to_string``), so a registry can store, diff and hash them. Directories of
another format (e.g. the old quantile boosters) are refused with ``ManifestError``.

``load`` parses every booster (a damaged file is refused at once); ``load(lazy=True)`` (the
forecasting process) reads ``model.json`` only and each booster file when it first predicts,
checking its sha256 first when ``model.json`` records one (directories saved before hashes
were recorded are checked by LightGBM's parse alone); a booster that cannot be read then fails
its prediction, which the cycle turns into a persistence forecast that says why.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from forecast.errors import ManifestError, ModelError
from forecast.modelling.lgbm import LeadModels
from forecast.modelling.trees import TextBooster


def save(models: LeadModels, directory: str | Path) -> None:
    """Write ``model.json`` (features, settings, linear base, bands, file hashes) and one
    LightGBM text model per booster (``h{lead}__{variant}__l2.txt``) into ``directory``
    (created if needed)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta, texts = models.to_strings()
    files, hashes = {}, {}
    for key, text in texts.items():
        fname = key.replace("/", "__") + ".txt"
        data = text.encode("utf-8")
        (d / fname).write_bytes(data)
        files[key] = fname
        hashes[key] = hashlib.sha256(data).hexdigest()
    meta["files"] = files
    meta["sha256"] = hashes
    (d / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")


def load(directory: str | Path, *, lazy: bool = False) -> LeadModels:
    """Read a directory written by ``save``; ``ManifestError`` if it is damaged. ``lazy``:
    boosters are read (hash-checked when a hash is recorded) and parsed when they first
    predict (module docstring)."""
    d = Path(directory)
    try:
        meta = json.loads((d / "model.json").read_text(encoding="utf-8"))
        hashes = meta.get("sha256") or {}
        files = {k: TextBooster(path=d / f, sha256=hashes.get(k))
                 for k, f in meta["files"].items()}
        if lazy:
            return LeadModels.from_strings(meta, dict(files), lazy=True)
        # eager: the texts stay in memory (a loaded model can be saved again)
        return LeadModels.from_strings(meta, {k: b.model_to_string() for k, b in files.items()})
    except ManifestError as exc:
        raise ManifestError(f"{d}: {exc}") from exc
    except (OSError, KeyError, TypeError, ValueError, AttributeError, ModelError) as exc:
        raise ManifestError(f"{d}: cannot load model ({exc}); retrain or restore it") from exc
