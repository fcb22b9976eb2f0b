"""Fuzz the GRIB2 decoder with mutated and truncated real bytes.

Whatever the bytes, ``decode_rain_grib`` must either return a well-formed ``RainGrid`` or raise
a ``ForecastError`` subclass; any other exception, or a crash of ecCodes (which would take the
whole test process down), fails. The fuzzed messages are real ones cropped to the Mie window
(re-encoded, see ``crop_message``) so that a decode costs about a millisecond.

Count-based like ``test_ingest_fuzz``: each test runs exactly ``FORECAST_TEST_FUZZ_EXAMPLES``
examples (default 800; CI sets 2000), whatever the machine's speed, and checks that it did.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecast.errors import ForecastError
from forecast.ingest import grib2, rle

DATA = Path(__file__).resolve().parents[1] / "data" / "jma-grib2"
ANAL_FILE = DATA / "Z__C_RJTD_20200707000000_SRF_GPV_Ggis1km_Prr60lv_ANAL_grib2.bin"
FCST_FILE = DATA / "Z__C_RJTD_20170807001000_SRF_GPV_Ggis1km_Prr60lv_Fper10min_FH01-06_grib2.bin"
MIE = grib2.Window(1524, 1716, 1424, 1520)


def _encode(levels: np.ndarray, maxv: int) -> bytes:
    """JMA run-length encoding (8-bit codes) of a flat level array: the inverse of the rule."""
    base = 255 - maxv
    change = np.flatnonzero(np.diff(levels)) + 1
    starts = np.concatenate([[0], change])
    runs = np.diff(np.concatenate([starts, [levels.size]]))
    out = bytearray()
    for level, run in zip(levels[starts].tolist(), runs.tolist(), strict=True):
        out.append(level)
        rest = run - 1
        while rest > 0:
            out.append(rest % base + maxv + 1)
            rest //= base
    return bytes(out)


def crop_message(data: bytes, w: grib2.Window) -> bytes:
    """A small, valid JMA message holding window ``w`` of a real one (all fields).

    Sections 1, 4, 5 and 6 are the real ones; Section 3 gets the window's size and corners,
    Section 5 its point count, Section 7 the window's levels re-encoded. Decoding these is
    ~100 times cheaper than the full grid, so the fuzzer can afford thousands of runs.
    """
    layout, levels = rle.decode_levels(data)
    ny, nx = w.row1 - w.row0, w.col1 - w.col0
    sec1 = data[16:16 + struct.unpack_from(">I", data, 16)[0]]
    s3 = 16 + len(sec1)
    sec3 = bytearray(data[s3:layout.fields[0].section4])
    lat0, lon0 = struct.unpack_from(">II", sec3, 46)
    step_lat, step_lon = 1e6 / 120, 1e6 / 80
    struct.pack_into(">I", sec3, 6, ny * nx)
    struct.pack_into(">II", sec3, 30, nx, ny)
    struct.pack_into(">II", sec3, 46, round(lat0 - w.row0 * step_lat),
                     round(lon0 + w.col0 * step_lon))
    struct.pack_into(">I", sec3, 55, round(lat0 - (w.row1 - 1) * step_lat))
    struct.pack_into(">I", sec3, 59, round(lon0 + (w.col1 - 1) * step_lon))
    body = bytes(sec1) + bytes(sec3)
    for f, lev in zip(layout.fields, levels, strict=True):
        sec45 = bytearray(data[f.section4:f.section7 - 6])
        struct.pack_into(">I", sec45, f.section5 - f.section4 + 5, ny * nx)
        cut = lev.reshape(layout.nj, layout.ni)[w.row0:w.row1, w.col0:w.col1].ravel()
        stream = _encode(cut, f.maxv)
        body += bytes(sec45) + data[f.section7 - 6:f.section7]
        body += struct.pack(">IB", 5 + len(stream), 7) + stream
    total = 16 + len(body) + 4
    return data[:8] + struct.pack(">Q", total) + body + b"7777"


ANAL = crop_message(ANAL_FILE.read_bytes(), MIE)
FCST = crop_message(FCST_FILE.read_bytes(), MIE)
HEADER = 420          # sections 0-6 and the start of the run-length stream of the first field
EXAMPLES = int(os.environ.get("FORECAST_TEST_FUZZ_EXAMPLES", "800"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    b = bytearray(data)
    op = draw(st.sampled_from(["flip", "flip_header", "truncate", "insert", "delete", "length"]))
    if op in ("flip", "flip_header"):
        top = HEADER if op == "flip_header" else len(b)
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, top - 1))] = draw(st.integers(0, 255))
    elif op == "truncate":
        b = b[: draw(st.integers(0, len(b) - 1))]
    elif op == "insert":
        at = draw(st.integers(0, len(b)))
        b[at:at] = draw(st.binary(min_size=1, max_size=16))
    elif op == "delete":
        at = draw(st.integers(0, len(b) - 1))
        del b[at: at + draw(st.integers(1, 16))]
    else:   # overwrite a 4-byte field in the headers (section lengths, point counts, ...)
        at = draw(st.integers(0, HEADER - 4))
        b[at: at + 4] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    return bytes(b)


def _decode_or_refuse(data: bytes) -> None:
    try:
        out = grib2.decode_rain_grib(data, name="fuzz.bin")
    except ForecastError:
        return
    assert out.values.shape == (len(out.valid_at), out.grid.ny, out.grid.nx)
    assert out.values.dtype == np.float32
    assert np.all(np.isnan(out.values) | (np.isfinite(out.values) & (out.values >= 0)))


def _fuzz(message: bytes) -> None:
    """Decode ``EXAMPLES`` mutations of ``message``; fail if hypothesis ran fewer or more."""
    seen: list[bytes] = []

    @FUZZ
    @given(mutated(message))
    def run(data: bytes) -> None:
        seen.append(data)
        _decode_or_refuse(data)

    run()
    assert len(seen) == EXAMPLES


@pytest.mark.slow
def test_mutated_analysis_bytes_decode_or_raise_forecast_errors() -> None:
    _fuzz(ANAL)


@pytest.mark.slow
def test_mutated_forecast_bytes_decode_or_raise_forecast_errors() -> None:
    _fuzz(FCST)
