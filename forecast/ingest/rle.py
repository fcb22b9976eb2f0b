"""JMA GRIB2 run-length packing (data representation template 5.200) in plain numpy.

Two jobs:

* **Structural check** (``scan_message``): walk the sections of one GRIB2 message by hand and
  refuse anything whose lengths, order or templates do not fit a JMA 1 km rain product, before
  the bytes reach ecCodes. ecCodes trusts section lengths and the run-length stream (its 5.200
  decoder writes one value per decoded cell without checking the running total), so corrupt
  bytes could crash the process instead of raising.
* **Independent decoder** (``decode_levels``), the test oracle for ``forecast.ingest.grib2``:
  it shares no code with ecCodes, so agreement on real files checks both.

Run-length rule (JMA, DOMAIN.md §4.3): with ``N`` bits per code and ``V`` the largest level
used, a code ``<= V`` is a level; the codes ``> V`` that follow it are base-``L`` digits
(least significant first, ``L = 2**N - 1 - V``) of the run length
``1 + sum((d_i - (V + 1)) * L**i)``. Level 0 means missing; level ``m >= 1`` stands for the
value ``R(m) / 10**E`` (mm/h) with the representative values ``R`` from Section 5.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecast.errors import GribError

SOURCE = "jma_grib2"
JMA_CENTRE = 34
ANALYSIS_TEMPLATE = 50008
FORECAST_TEMPLATE = 50009
# Section 4 lengths the local templates imply (checked on real files): 58 octets of the
# standard template-4.8 pieces with one time range + 24 octets of operation flags (+ 29).
SECTION4_LENGTH = {ANALYSIS_TEMPLATE: 82, FORECAST_TEMPLATE: 111}

I64 = npt.NDArray[np.int64]
Codes = npt.NDArray[np.uint8] | I64     # packed codes: uint8 when N = 8


@dataclass(frozen=True)
class FieldLayout:
    """Where one field (a Section 4-7 group) sits in the message and how it is packed."""

    section4: int           # byte offset of Section 4
    section5: int           # byte offset of Section 5
    section7: int           # byte offset of Section 7
    template4: int          # product definition template (50008 analysis, 50009 forecast)
    n_values: int           # grid points (Section 5)
    nbits: int              # bits per packed code (N)
    maxv: int               # largest level used (V)
    max_level: int          # number of level values (M)
    scale: int              # decimal scale factor E
    level_values: tuple[int, ...]   # R(1) .. R(M)
    stream: bytes           # Section 7 payload (packed codes)


@dataclass(frozen=True)
class MessageLayout:
    """The sections of one JMA rain GRIB2 message, as found by ``scan_message``."""

    centre: int
    production_status: int
    reference: tuple[int, int, int, int, int, int]  # Section 1 time (UTC) y, m, d, H, M, S
    ni: int
    nj: int
    scanning_mode: int
    fields: tuple[FieldLayout, ...]


def _fail(msg: str, name: str, offset: int) -> GribError:
    return GribError(msg, source=SOURCE, location=name, position=f"byte {offset}")


def scan_message(data: bytes, name: str = "<bytes>") -> MessageLayout:
    """Walk one GRIB2 message and check its structure; raise ``GribError`` if it is unusable.

    Checks: ``GRIB`` indicator, edition 2, total length against the bytes given (truncation,
    trailing bytes), every section length inside the message, section order
    ``1 [2] 3 (4 5 6 7)+ 7777``, grid template 3.0, product templates 4.50008/4.50009 of the
    expected length, data representation template 5.200 with a consistent level table, no
    bitmap. Centre and production status are returned, not judged (the caller does that).
    """
    size = len(data)
    if size < 16 or data[:4] != b"GRIB":
        raise _fail("not a GRIB message (no 'GRIB' indicator)", name, 0)
    edition = data[7]
    if edition != 2:
        raise _fail(f"GRIB edition {edition} is not supported (JMA rain products are GRIB2)",
                    name, 7)
    if data[6] != 0:
        raise _fail(f"discipline {data[6]} is not meteorological (0)", name, 6)
    total = struct.unpack_from(">Q", data, 8)[0]
    if total > size:
        raise _fail(f"truncated: message says {total} bytes, only {size} present", name, 8)
    if total < size:
        raise _fail(f"{size - total} unexpected bytes after the end of the message", name, total)
    if data[total - 4:total] != b"7777":
        raise _fail("message does not end with '7777'", name, total - 4)

    sec1 = sec3 = -1
    s5: tuple[int, ...] | None = None
    fields: list[FieldLayout] = []
    pending: dict[int, int] = {}
    expected: tuple[int, ...] = (1,)
    pos = 16
    while pos < total - 4:
        if pos + 5 > total - 4:
            raise _fail("section header runs into the end marker", name, pos)
        length, number = struct.unpack_from(">IB", data, pos)
        if length < 5 or pos + length > total - 4:
            raise _fail(f"section {number} length {length} does not fit in the message",
                        name, pos)
        if number not in expected:
            raise _fail(f"section {number} found where section {expected} was expected",
                        name, pos + 4)
        if number == 1:
            if length < 21:
                raise _fail(f"section 1 too short ({length} bytes)", name, pos)
            sec1 = pos
            expected = (2, 3)
        elif number == 2:
            expected = (3,)
        elif number == 3:
            _check_section3(data, pos, length, name)
            sec3 = pos
            expected = (4,)
        elif number == 4:
            _check_section4(data, pos, length, name)
            pending = {4: pos}
            expected = (5,)
        elif number == 5:
            s5 = _check_section5(data, pos, length, sec3, name)
            pending[5] = pos
            expected = (6,)
        elif number == 6:
            if length != 6 or data[pos + 5] != 255:
                raise _fail("a bitmap is present; JMA rain uses level 0 for missing", name, pos)
            expected = (7,)
        else:  # section 7 closes one field
            assert s5 is not None  # the expected-order rule guarantees Section 5 came first
            fields.append(_field(data, pending, pos, length, s5))
            expected = (2, 3, 4)
        pos += length
    if not fields or expected[0] != 2:
        raise _fail("message ends before a complete field (sections 4-7)", name, pos)

    ni, nj = struct.unpack_from(">II", data, sec3 + 30)
    return MessageLayout(
        centre=struct.unpack_from(">H", data, sec1 + 5)[0],
        production_status=data[sec1 + 19],
        reference=(struct.unpack_from(">H", data, sec1 + 12)[0], *data[sec1 + 14:sec1 + 19]),
        ni=ni,
        nj=nj,
        scanning_mode=data[sec3 + 71],
        fields=tuple(fields),
    )


def _check_section3(data: bytes, pos: int, length: int, name: str) -> None:
    template = struct.unpack_from(">H", data, pos + 12)[0]
    if template != 0 or length < 72:
        raise _fail(f"grid template 3.{template} ({length} bytes) is not the expected "
                    "regular lat/lon template 3.0", name, pos + 12)
    n_points = struct.unpack_from(">I", data, pos + 6)[0]
    ni, nj = struct.unpack_from(">II", data, pos + 30)
    if ni == 0 or nj == 0 or ni * nj != n_points:
        raise _fail(f"grid Ni={ni} x Nj={nj} does not match {n_points} points", name, pos + 30)


def _check_section4(data: bytes, pos: int, length: int, name: str) -> None:
    nv, template = struct.unpack_from(">HH", data, pos + 5)
    want = SECTION4_LENGTH.get(template)
    if want is None:
        raise _fail(f"product template 4.{template} is not a JMA rain product "
                    "(4.50008 analysis, 4.50009 forecast)", name, pos + 7)
    if length != want or nv != 0:
        raise _fail(f"section 4 of template 4.{template} is {length} bytes (expected {want})",
                    name, pos)
    if data[pos + 41] != 1:  # number of time ranges: ecCodes would loop over the count
        raise _fail(f"{data[pos + 41]} statistical time ranges (expected 1)", name, pos + 41)


def _check_section5(data: bytes, pos: int, length: int, sec3: int, name: str
                    ) -> tuple[int, ...]:
    n_values, template = struct.unpack_from(">IH", data, pos + 5)
    if template != 200:
        raise _fail(f"data representation template 5.{template} is not JMA run-length 5.200",
                    name, pos + 9)
    if length < 17:
        raise _fail(f"section 5 too short ({length} bytes)", name, pos)
    nbits, maxv, max_level, scale = struct.unpack_from(">BHHB", data, pos + 11)
    n_points = struct.unpack_from(">I", data, sec3 + 6)[0]
    if n_values != n_points:
        raise _fail(f"section 5 has {n_values} values, grid has {n_points}", name, pos + 5)
    if not 1 <= nbits <= 16 or not 1 <= maxv <= max_level or maxv >= (1 << nbits) - 1:
        raise _fail(f"inconsistent run-length parameters N={nbits} V={maxv} M={max_level}",
                    name, pos + 11)
    if length < 17 + 2 * max_level:
        raise _fail(f"section 5 ({length} bytes) too short for {max_level} level values",
                    name, pos)
    levels = struct.unpack_from(f">{max_level}H", data, pos + 17)
    return (n_values, nbits, maxv, max_level, scale, *levels)


def _field(data: bytes, pending: dict[int, int], pos: int, length: int, s5: tuple[int, ...]
           ) -> FieldLayout:
    n_values, nbits, maxv, max_level, scale, *levels = s5
    sec4 = pending[4]
    return FieldLayout(
        section4=sec4, section5=pending[5], section7=pos,
        template4=struct.unpack_from(">H", data, sec4 + 7)[0],
        n_values=n_values, nbits=nbits, maxv=maxv, max_level=max_level, scale=scale,
        level_values=tuple(levels), stream=bytes(data[pos + 5:pos + length]),
    )


def unpack_codes(stream: bytes, nbits: int) -> Codes:
    """Split a big-endian bit stream into unsigned ``nbits``-bit codes (trailing bits dropped)."""
    if nbits == 8:
        return np.frombuffer(stream, dtype=np.uint8)
    bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8))
    n = bits.size // nbits
    weights = (1 << np.arange(nbits - 1, -1, -1)).astype(np.int64)
    return bits[: n * nbits].reshape(n, nbits).astype(np.int64) @ weights


def _digits(codes: Codes, maxv: int, nbits: int, n_values: int) -> tuple[I64, I64, I64]:
    """Level positions, and for every digit code its run (index into them) and its term."""
    if codes.size == 0 or codes[0] > maxv:
        raise ValueError("run-length stream does not start with a level value")
    base = (1 << nbits) - 1 - maxv
    is_digit = codes > maxv
    starts = np.flatnonzero(~is_digit)
    where = np.flatnonzero(is_digit)
    owner = np.searchsorted(starts, where) - 1
    exponent = where - starts[owner] - 1               # digit index within its run
    coeff = codes[where].astype(np.int64) - (maxv + 1)
    # Beyond this many digits any non-zero digit makes a run longer than the whole grid;
    # capping keeps base**exponent inside int64 on corrupt streams.
    max_exp = int(math.log(n_values, base)) + 1 if base >= 2 else 0
    if np.any((exponent > max_exp) & (coeff > 0)):
        raise ValueError("run length longer than the grid")
    return starts, owner, coeff * np.power(np.int64(base), np.minimum(exponent, max_exp))


def check_run_lengths(codes: Codes, maxv: int, nbits: int, n_values: int) -> None:
    """Raise ``ValueError`` unless the stream expands to exactly ``n_values`` cells."""
    starts, _, terms = _digits(codes, maxv, nbits, n_values)
    total = starts.size + int(terms.sum())
    if total != n_values:
        raise ValueError(f"run-length stream expands to {total} cells, grid has {n_values}")


def run_lengths(codes: Codes, maxv: int, nbits: int, n_values: int) -> tuple[Codes, I64]:
    """Levels and run lengths of a run-length code stream (vectorised, no expansion).

    Raises ``ValueError`` (the caller adds file and offset) when the stream does not start
    with a level or does not expand to exactly ``n_values`` cells.
    """
    starts, owner, terms = _digits(codes, maxv, nbits, n_values)
    # terms are bounded by n_values * base (checked above), so float64 sums stay exact
    runs = 1 + np.bincount(owner, weights=terms, minlength=starts.size).astype(np.int64)
    total = int(runs.sum())
    if total != n_values:
        raise ValueError(f"run-length stream expands to {total} cells, grid has {n_values}")
    return codes[starts], runs


def expand(codes: Codes, maxv: int, nbits: int, n_values: int) -> npt.NDArray[np.uint16]:
    """Expand a code stream into one level per grid cell (0 = missing)."""
    levels, runs = run_lengths(codes, maxv, nbits, n_values)
    return np.repeat(levels.astype(np.uint16), runs)


def level_table(field: FieldLayout) -> npt.NDArray[np.float64]:
    """Value of each level in mm/h: index 0 is NaN (missing), index m is R(m)/10**E."""
    scale = field.scale if field.scale < 128 else -(field.scale - 128)  # sign-magnitude
    table = np.empty(field.max_level + 1, dtype=np.float64)
    table[0] = np.nan
    table[1:] = np.asarray(field.level_values, dtype=np.float64) / 10.0**scale
    return table


def decode_levels(data: bytes, name: str = "<bytes>") -> tuple[MessageLayout,
                                                               list[npt.NDArray[np.uint16]]]:
    """Decode every field of a JMA rain message to levels with numpy only (the test oracle).

    Returns the layout and one flat ``uint16`` level array per field (row-major from the
    north-west corner, 0 = missing). Raises ``GribError`` on corrupt input.
    """
    layout = scan_message(data, name)
    out = []
    for f in layout.fields:
        try:
            out.append(expand(unpack_codes(f.stream, f.nbits), f.maxv, f.nbits, f.n_values))
        except ValueError as exc:
            raise _fail(str(exc), name, f.section7 + 5) from exc
    return layout, out
