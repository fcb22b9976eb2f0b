"""Prediction-only LightGBM boosters on LightGBM's C library, parsed when first used.

A forecasting process only predicts, but importing the ``lightgbm`` Python package imports
scikit-learn and SciPy with it (about 1 s of CPU on the service machine, a third of
``forecast run-once``'s budget). ``TextBooster`` holds a LightGBM text model
(``Booster.model_to_string``, or the file ``persist.save`` wrote) and predicts through the same
C functions ``lightgbm.Booster.predict`` calls for a float64 matrix
(``LGBM_BoosterLoadModelFromString``, ``LGBM_BoosterPredictForMat`` with the same parameter
string), so its forecasts are bit-for-bit those of ``lightgbm.Booster`` (tested). The library
file is found where the ``lightgbm`` package keeps it, without importing the package (when it
is already imported, its library handle is used).

The text is parsed on the first ``predict`` (or by ``load``): of a river's up to six fallback
variants per lead usually only the full one runs. A file's sha256, when known, is checked
before it is parsed: a version that was changed or damaged on disk is refused
(``ManifestError``) instead of forecasting from it. Training still uses the ``lightgbm``
package (``forecast.modelling.lgbm``).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from forecast.errors import ManifestError, ModelError

_DTYPE_FLOAT64 = 1        # C_API_DTYPE_FLOAT64
_ROW_MAJOR = 1            # C_API_IS_ROW_MAJOR
_PREDICT_NORMAL = 0       # C_API_PREDICT_NORMAL
_LIB_NAMES = {"win32": "lib_lightgbm.dll", "darwin": "lib_lightgbm.dylib"}

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def _package_dir() -> Path:
    spec = importlib.util.find_spec("lightgbm")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the lightgbm package is not installed (pip install lightgbm)")
    return Path(next(iter(spec.submodule_search_locations)))


def _library() -> ctypes.CDLL:
    """LightGBM's C library: the loaded package's, else the file in the package folder (the
    places ``lightgbm.libpath`` looks), else by importing the package."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        lgb_basic = sys.modules.get("lightgbm.basic")
        if lgb_basic is not None:
            lib: ctypes.CDLL = getattr(lgb_basic, "_LIB")  # noqa: B009  (not exported)
        else:
            name = _LIB_NAMES.get(sys.platform, "lib_lightgbm.so")
            pkg = _package_dir()
            found = [p for p in (pkg.parent / name, pkg / "bin" / name, pkg / "lib" / name)
                     if p.is_file()]
            if found:
                lib = ctypes.CDLL(str(found[0]))
            else:   # an unusual layout: let the package find its library
                import lightgbm.basic

                lib = getattr(lightgbm.basic, "_LIB")  # noqa: B009
        lib.LGBM_GetLastError.restype = ctypes.c_char_p
        _lib = lib
        return lib


def lightgbm_version() -> str:
    """The installed LightGBM's version (``lightgbm.__version__``) without importing it."""
    module = sys.modules.get("lightgbm")
    if module is not None and hasattr(module, "__version__"):
        return str(module.__version__)
    return (_package_dir() / "VERSION.txt").read_text(encoding="utf-8").strip()


def _check(lib: ctypes.CDLL, ret: int, what: str) -> None:
    if ret != 0:
        raise ModelError(f"LightGBM {what} failed: {lib.LGBM_GetLastError().decode('utf-8')}")


class TextBooster:
    """A LightGBM text model that predicts like ``lightgbm.Booster`` (module docstring).

    ``text`` (the model itself) or ``path`` (a file holding it, read when first needed, with
    ``sha256`` its expected hash, hex). ``best_iteration`` is -1 as for a booster loaded from
    a string: every tree of the saved model is used.
    """

    best_iteration = -1

    def __init__(self, text: str | None = None, *, path: Path | None = None,
                 sha256: str | None = None) -> None:
        if (text is None) == (path is None):
            raise ValueError("give the model text or its file, not both")
        self._text = text
        self._path = path
        self._sha256 = sha256
        self._handle: ctypes.c_void_p | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "parsed" if self._handle is not None else "not parsed"
        return f"TextBooster({self._path or 'text'}, {state})"

    def __reduce__(self) -> tuple[Any, ...]:   # a C handle does not pickle: the text does
        return (TextBooster, (self.model_to_string(),))

    def model_to_string(self) -> str:
        """The LightGBM text model (read from its file, hash-checked, when it has one)."""
        if self._text is not None:
            return self._text
        assert self._path is not None
        try:
            raw = self._path.read_bytes()
        except OSError as exc:
            raise ManifestError(f"{self._path}: cannot read the model file ({exc}); "
                                "retrain or restore it") from exc
        if self._sha256 is not None and hashlib.sha256(raw).hexdigest() != self._sha256:
            raise ManifestError(f"{self._path}: the model file does not match its recorded "
                                "sha256 (changed or damaged since it was saved); retrain or "
                                "restore it")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{self._path}: not a LightGBM text model ({exc})") from exc

    def load(self) -> TextBooster:
        """Parse the model now (``ModelError`` / ``ManifestError`` if it cannot be)."""
        self._booster()
        return self

    def _booster(self) -> ctypes.c_void_p:
        if self._handle is not None:
            return self._handle
        with self._lock:
            if self._handle is None:
                lib = _library()
                handle, iterations = ctypes.c_void_p(), ctypes.c_int(0)
                text = self.model_to_string()
                _check(lib, lib.LGBM_BoosterLoadModelFromString(
                    ctypes.c_char_p(text.encode("utf-8")), ctypes.byref(iterations),
                    ctypes.byref(handle)), f"loading {self._path or 'a model'}")
                self._handle = handle
        return self._handle

    def num_feature(self) -> int:
        """Number of input columns the model was trained on."""
        lib, out = _library(), ctypes.c_int(0)
        _check(lib, lib.LGBM_BoosterGetNumFeature(self._booster(), ctypes.byref(out)),
               "reading the number of features")
        return int(out.value)

    def predict(self, data: np.ndarray, num_iteration: int | None = None,
                num_threads: int | None = None) -> np.ndarray:
        """Predictions (float64, one per row) for a 2-D float matrix, as
        ``lightgbm.Booster.predict(data, num_iteration=..., num_threads=...)``."""
        mat = np.asarray(data)
        if mat.ndim != 2:
            raise ValueError("Input numpy.ndarray or list must be 2 dimensional")
        # the conversion lightgbm.basic._np2d_to_np1d makes
        dtype: np.dtype[Any] = mat.dtype if mat.dtype in (np.float32, np.float64) \
            else np.dtype(np.float32)
        fortran = bool(mat.flags["F_CONTIGUOUS"])
        order: Literal["C", "F"] = "F" if fortran else "C"
        flat = np.asarray(mat, dtype=dtype, order=order).ravel(order=order)
        dtype_code = _DTYPE_FLOAT64 if flat.dtype == np.float64 else 0   # 0: float32
        ptr = flat.ctypes.data_as(ctypes.POINTER(
            ctypes.c_double if flat.dtype == np.float64 else ctypes.c_float))
        iteration = -1 if num_iteration is None else int(num_iteration)
        param = ctypes.c_char_p(
            (f"num_threads={num_threads}" if num_threads is not None else "").encode())
        lib, handle = _library(), self._booster()
        n_preds = ctypes.c_int64(0)
        _check(lib, lib.LGBM_BoosterCalcNumPredict(
            handle, ctypes.c_int(mat.shape[0]), ctypes.c_int(_PREDICT_NORMAL), ctypes.c_int(0),
            ctypes.c_int(iteration), ctypes.byref(n_preds)), "sizing a prediction")
        out = np.empty(n_preds.value, dtype=np.float64)
        got = ctypes.c_int64(0)
        _check(lib, lib.LGBM_BoosterPredictForMat(
            handle, ptr, ctypes.c_int(dtype_code), ctypes.c_int32(mat.shape[0]),
            ctypes.c_int32(mat.shape[1]), ctypes.c_int(0 if fortran else _ROW_MAJOR),
            ctypes.c_int(_PREDICT_NORMAL), ctypes.c_int(0), ctypes.c_int(iteration), param,
            ctypes.byref(got), out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))),
            "predicting")
        if got.value != n_preds.value:
            raise ModelError("LightGBM returned a prediction of the wrong length")
        return out

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and _lib is not None:
            _lib.LGBM_BoosterFree(handle)
