"""JMA GRIB2 rain decoding (ecCodes + our local templates) on the six real files.

The numpy run-length decoder in ``forecast.ingest.rle`` is the oracle: it parses the bytes by
hand and shares no decoding code with ecCodes, so exact agreement checks both.
"""

from __future__ import annotations

import os
import struct
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gribapi.errors import DecodingError

from forecast.errors import ForecastError, GribError
from forecast.ingest import grib2, rle
from forecast.ingest.grib2 import ProductKind, Window

DATA = Path(__file__).resolve().parents[1] / "data" / "jma-grib2"
FILES = sorted(p.name for p in DATA.glob("*.bin"))
QUICK_ANAL = "Z__C_RJTD_20161121000000_SRF_GPV_Ggis1km_Prr60lv_Aper10min_ANAL_grib2.bin"
NORU = "Z__C_RJTD_20170807001000_SRF_GPV_Ggis1km_Prr60lv_Fper10min_FH01-06_grib2.bin"


@cache
def raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


@cache
def decoded(name: str) -> grib2.RainGrid:
    return grib2.read_rain_grib(DATA / name)


@cache
def oracle(name: str) -> tuple[rle.MessageLayout, list[np.ndarray]]:
    return rle.decode_levels(raw(name), name)


def test_all_six_files_present() -> None:
    assert len(FILES) == 6


# --- run-length rule ---------------------------------------------------------------------

def test_worked_example_from_domain_brief() -> None:
    codes = np.array([3, 9, 12, 6, 4, 15, 2, 1, 0, 13, 12, 2, 3], dtype=np.int64)
    want = [3, 9, 9, 6, 4, 4, 4, 4, 4, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3]
    assert rle.expand(codes, maxv=10, nbits=4, n_values=21).tolist() == want


def _naive_expand(codes: list[int], maxv: int, nbits: int) -> list[int]:
    base, out, i = (1 << nbits) - 1 - maxv, [], 0
    while i < len(codes):
        level, run, power = codes[i], 1, 1
        i += 1
        while i < len(codes) and codes[i] > maxv:
            run += (codes[i] - maxv - 1) * power
            power *= base
            i += 1
        out += [level] * run
    return out


def test_vectorised_expansion_matches_a_loop_on_random_streams() -> None:
    rng = np.random.default_rng(7)
    for nbits, maxv in ((4, 10), (8, 98), (3, 4), (8, 200)):
        parts: list[int] = []
        for _ in range(300):
            parts.append(int(rng.integers(0, maxv + 1)))
            parts += [int(x) for x in rng.integers(maxv + 1, 1 << nbits, rng.integers(0, 3))]
        codes = np.array(parts, dtype=np.int64)
        want = _naive_expand(parts, maxv, nbits)
        assert rle.expand(codes, maxv, nbits, len(want)).tolist() == want


@pytest.mark.parametrize("nbits", [3, 5, 8, 12])
def test_unpack_codes_reads_big_endian_bit_fields(nbits: int) -> None:
    rng = np.random.default_rng(nbits)
    values = rng.integers(0, 1 << nbits, 50)
    bits = "".join(format(int(v), f"0{nbits}b") for v in values)
    bits += "0" * (-len(bits) % 8)
    stream = int(bits, 2).to_bytes(len(bits) // 8, "big")
    assert rle.unpack_codes(stream, nbits)[:50].tolist() == values.tolist()


@pytest.mark.parametrize("codes, n", [([11, 0], 1), ([3, 9], 3), ([3, 15, 15, 15, 15], 5)])
def test_bad_streams_are_refused(codes: list[int], n: int) -> None:
    with pytest.raises(ValueError):
        rle.run_lengths(np.array(codes, dtype=np.int64), 10, 4, n)


# --- decoding the real files -------------------------------------------------------------

@pytest.mark.parametrize(("name", "kind", "issued", "n"), [
    (FILES[0], ProductKind.QUICK_ANALYSIS, "2016-11-21 00:00", 1),
    (FILES[1], ProductKind.QUICK_ANALYSIS, "2016-11-21 01:00", 1),
    (FILES[2], ProductKind.QUICK_FORECAST, "2017-08-07 00:10", 6),
    (FILES[3], ProductKind.ANALYSIS, "2020-07-07 00:00", 1),
    (FILES[4], ProductKind.ANALYSIS, "2021-08-17 09:00", 1),
    (FILES[5], ProductKind.FORECAST, "2021-08-17 09:00", 6),
])
def test_kind_and_times(name: str, kind: ProductKind, issued: str, n: int) -> None:
    g = decoded(name)
    assert g.kind is kind
    t0 = pd.Timestamp(issued, tz="UTC")
    assert g.issued_at == t0
    assert g.values.shape == (n, 3360, 2560) and g.values.dtype == np.float32
    if kind.is_forecast:
        # step k is the hour (init + k-1 h, init + k h]
        assert list(g.lead_h) == [1, 2, 3, 4, 5, 6]
        assert list(g.valid_at) == [t0 + pd.Timedelta(hours=k) for k in range(1, 7)]
    else:
        # analyses: the Section-1 time is the end of the accumulation hour
        assert list(g.valid_at) == [t0] and g.lead_h == (0,)


def test_kind_follows_name_and_override() -> None:
    data = raw(FILES[3])
    assert grib2.decode_rain_grib(data, window=Window(0, 2, 0, 2)).kind is ProductKind.ANALYSIS
    named = grib2.decode_rain_grib(data, name="x_Aper10min_ANAL.bin", window=Window(0, 2, 0, 2))
    assert named.kind is ProductKind.QUICK_ANALYSIS
    forced = grib2.decode_rain_grib(data, kind=ProductKind.QUICK_ANALYSIS,
                                    window=Window(0, 2, 0, 2))
    assert forced.kind is ProductKind.QUICK_ANALYSIS


def test_grid_spacing_comes_from_the_corners() -> None:
    grid = decoded(FILES[3]).grid
    assert grid.same_as(grib2.JMA_1KM)
    assert grid.dlat == pytest.approx(1 / 120, abs=1e-8)    # coded Dj says 0.008333
    assert grid.dlon == pytest.approx(1 / 80, abs=1e-8)
    assert grid.lats()[-1] == pytest.approx(20.004167, abs=1e-6)
    assert grid.lons()[-1] == pytest.approx(149.99375, abs=1e-6)


@pytest.mark.parametrize("name", FILES)
def test_level_tables_are_read_from_each_field(name: str) -> None:
    layout, _ = oracle(name)
    g = decoded(name)
    assert len(g.level_tables) == len(layout.fields)
    for table, field in zip(g.level_tables, layout.fields, strict=True):
        want = rle.level_table(field)[1:]
        assert table.n_levels == field.max_level
        assert np.array_equal(np.array(table.values_mm_h), want)
        assert table.max_level_used == field.maxv
        # shape of JMA's table: 0, trace 0.4, then whole millimetres, increasing
        assert table.values_mm_h[:3] == (0.0, 0.4, 1.0)
        assert np.all(np.diff(table.values_mm_h) > 0)


def test_quick_files_carry_shorter_tables() -> None:
    m = {name: decoded(name).level_tables[0].n_levels for name in FILES}
    assert m[FILES[0]] == 90 and m[FILES[1]] == 88
    assert {m[n] for n in FILES[2:]} == {98}


@pytest.mark.parametrize("name", FILES)
def test_ecodes_equals_numpy_oracle(name: str) -> None:
    layout, levels = oracle(name)
    g = decoded(name)
    for k, (field, lev) in enumerate(zip(layout.fields, levels, strict=True)):
        got = g.values[k].ravel()
        table = rle.level_table(field).astype(np.float32)
        assert np.array_equal(got, table[lev], equal_nan=True)
        assert np.array_equal(np.isnan(got), lev == 0)
        # and back to levels: the table is strictly increasing, so values identify levels
        ok = ~np.isnan(got)
        back = np.searchsorted(table[1:], got[ok]) + 1
        assert np.array_equal(back, lev[ok])
        assert int(lev.max()) == field.maxv


def test_window_is_a_cut_of_the_full_grid() -> None:
    w = Window(1524, 1716, 1424, 1520)
    cut = grib2.read_rain_grib(DATA / NORU, window=w)
    full = decoded(NORU)
    assert cut.window == w
    assert np.array_equal(cut.values, full.values[:, 1524:1716, 1424:1520], equal_nan=True)
    assert np.allclose(cut.grid.lats(w), full.grid.lats()[1524:1716])


def test_bad_window_is_refused() -> None:
    with pytest.raises(GribError, match="outside"):
        grib2.decode_rain_grib(raw(QUICK_ANAL), window=Window(0, 4000, 0, 10))


def test_to_xarray_carries_credit_and_units() -> None:
    g = grib2.read_rain_grib(DATA / FILES[5], window=Window(1524, 1530, 1424, 1428))
    ds = g.to_xarray()
    da = ds["precipitation"]
    assert da.dims == ("valid_at", "lat", "lon")
    assert da.attrs["units"] == "mm h-1"
    assert ds.attrs["credit"] == "出典：気象庁"
    assert ds["lead_h"].values.tolist() == [1, 2, 3, 4, 5, 6]
    assert pd.Timestamp(ds["valid_at"].values[0]) == pd.Timestamp("2021-08-17 10:00")
    assert np.array_equal(da.values, g.values, equal_nan=True)
    assert ds["lat"].values[0] > ds["lat"].values[-1]      # north first


# --- refusing bad input ------------------------------------------------------------------

def _patched(offset: int, value: bytes) -> bytes:
    b = bytearray(raw(QUICK_ANAL))
    b[offset:offset + len(value)] = value
    return bytes(b)


def _expect_grib_error(data: bytes, match: str) -> GribError:
    with pytest.raises(GribError, match=match) as info:
        grib2.decode_rain_grib(data, name="case.bin")
    assert "case.bin" in str(info.value)
    return info.value


def test_foreign_centre_is_refused() -> None:
    err = _expect_grib_error(_patched(16 + 5, struct.pack(">H", 7)), "centre 7")
    assert "byte" in err.position


def test_test_status_is_refused() -> None:
    _expect_grib_error(_patched(16 + 19, b"\x01"), "test data")


def test_operational_status_is_what_we_decode() -> None:
    assert raw(QUICK_ANAL)[16 + 19] == 0


@pytest.mark.parametrize("cut", [10, 100, 1000, 200_000, -1])
def test_truncated_bytes_are_refused_with_offset(cut: int) -> None:
    err = _expect_grib_error(raw(QUICK_ANAL)[:cut], "truncated|not a GRIB")
    assert err.position.startswith("byte")


def test_not_grib_and_grib1_are_refused() -> None:
    _expect_grib_error(b"<html>not found</html>" * 10, "not a GRIB")
    _expect_grib_error(_patched(7, b"\x01"), "edition 1")


def test_trailing_bytes_are_refused() -> None:
    _expect_grib_error(raw(QUICK_ANAL) + b"\0" * 8, "after the end")


def test_corrupt_run_length_stream_is_refused_before_eccodes() -> None:
    layout, _ = oracle(QUICK_ANAL)
    start = layout.fields[0].section7 + 5
    # 0xFF digits make runs far longer than the grid; ecCodes would write past its buffer
    err = _expect_grib_error(_patched(start + 100, b"\xff" * 8), "run length|expands")
    assert err.position == f"byte {start}"


def test_corrupt_section_length_is_refused() -> None:
    _expect_grib_error(_patched(16 + 21 + 72, struct.pack(">I", 10**6)), "does not fit")


def test_unknown_product_template_is_refused() -> None:
    sec4 = 16 + 21 + 72
    _expect_grib_error(_patched(sec4 + 7, struct.pack(">H", 8)), "template 4.8")


def test_eccodes_errors_are_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    # Boundary check only: make the library fail and see that callers get a GribError.
    def fail(*_: object, **__: object) -> None:
        raise DecodingError(-13)

    monkeypatch.setattr(grib2.eccodes, "codes_get_values", fail)
    with pytest.raises(GribError, match="ecCodes") as info:
        grib2.decode_rain_grib(raw(QUICK_ANAL), name="case.bin")
    assert isinstance(info.value.__cause__, DecodingError)
    assert isinstance(info.value, ForecastError)


def test_definitions_are_shipped_inside_the_package() -> None:
    base = grib2.DEFINITIONS_DIR / "grib2" / "local" / "rjtd"
    assert (base / "template.4.50008.def").is_file()
    assert (base / "template.4.50009.def").is_file()
    assert str(grib2.DEFINITIONS_DIR) in os.environ["ECCODES_EXTRA_DEFINITION_PATH"]


@pytest.fixture(autouse=True, scope="module")
def _free_decoded_grids() -> object:
    # the cached full grids take ~0.8 GB; release them when this module is done
    yield
    decoded.cache_clear()
    oracle.cache_clear()
