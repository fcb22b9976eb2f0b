"""Private helpers shared by the ingest parsers: text decoding, strict JSON, time checks.

Every helper turns library exceptions (UnicodeDecodeError, JSONDecodeError, ...) into the
project's ``ParseError``/``EncodingError`` so that parsers never leak a bare exception.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from forecast.errors import EncodingError, ParseError

_BOM = b"\xef\xbb\xbf"
JST_OFFSET_NS = np.int64(9 * 3600 * 10**9)
"""JST is UTC+9 all year (Japan has no daylight saving time)."""


FUTURE_TOLERANCE = pd.Timedelta(minutes=10)
"""Clock-skew allowance before a timestamp counts as "in the future"."""


def decode_text(
    data: bytes, *, source: str, location: str, encodings: Sequence[str] = ("utf-8", "cp932")
) -> tuple[str, str]:
    """Decode ``data`` with the first encoding that works; return ``(text, encoding)``.

    A UTF-8 byte-order mark is stripped. Raises ``EncodingError`` naming the byte offset of the
    first undecodable byte (under the first encoding) when none of ``encodings`` fits.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ParseError(f"expected bytes, got {type(data).__name__}",
                         source=source, location=location)
    raw = bytes(data)
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    first_error: UnicodeDecodeError | None = None
    for encoding in encodings:
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
    pos = f"byte {first_error.start}" if first_error else ""
    raise EncodingError(
        f"not valid {' or '.join(encodings)} text; re-save the file in one of these encodings",
        source=source, location=location, position=pos,
    ) from first_error


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity by default; they are not JSON and never valid readings.
    raise ValueError(f"non-finite number {name} is not allowed")


def _pairs_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # json.loads would silently keep the last one: a duplicate key is data loss.
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def load_json(data: bytes, *, source: str, location: str) -> Any:
    """Parse UTF-8 JSON strictly: no NaN/Infinity, no duplicate object keys.

    Raises ``EncodingError`` for non-UTF-8 bytes and ``ParseError`` (with line/column) for
    malformed JSON.
    """
    text, _ = decode_text(data, source=source, location=location, encodings=("utf-8",))
    try:
        return json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_pairs_no_duplicates
        )
    except json.JSONDecodeError as exc:
        raise ParseError(f"malformed JSON: {exc.msg}", source=source, location=location,
                         position=f"line {exc.lineno} column {exc.colno}") from exc
    except ValueError as exc:
        raise ParseError(f"invalid JSON: {exc}", source=source, location=location) from exc
    except RecursionError as exc:
        raise ParseError("JSON nested too deeply", source=source, location=location) from exc


def finite_number(value: Any) -> float | None:
    """``float(value)`` for a finite JSON number (not bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        out = float(value)
    except OverflowError:          # an int beyond float range (JSON allows any length)
        return None
    return out if math.isfinite(out) else None


def utc_ns_from_jst(jst_ns: np.ndarray) -> pd.DatetimeIndex:
    """Naive JST wall-clock times (int64 ns or datetime64[ns]) → tz-aware UTC index."""
    as_int = np.asarray(jst_ns).astype("datetime64[ns]").astype(np.int64) - JST_OFFSET_NS
    return pd.DatetimeIndex(as_int.astype("datetime64[ns]")).tz_localize("UTC")


def as_utc(now: datetime | pd.Timestamp, *, source: str) -> pd.Timestamp:
    """``now`` as a UTC timestamp; a naive ``now`` is refused (ambiguous)."""
    ts = pd.Timestamp(now)
    if ts.tzinfo is None:
        raise ParseError("`now` must be timezone-aware", source=source)
    return ts.tz_convert("UTC")


def first_future(
    times: pd.DatetimeIndex | pd.Series, now: datetime | pd.Timestamp | None, *, source: str,
    tolerance: pd.Timedelta = FUTURE_TOLERANCE,
) -> int | None:
    """Index of the first time later than ``now + tolerance`` (clock skew allowance), or None."""
    if now is None or len(times) == 0:
        return None
    limit = as_utc(now, source=source) + tolerance
    future = np.flatnonzero(np.asarray(pd.DatetimeIndex(times) > limit))
    return int(future[0]) if len(future) else None
