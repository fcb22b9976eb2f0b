"""The river catalogues: the real Mie file (config/rivers.yaml), the real reference river
(config/reference_rivers.yaml) and the strict validation in ``forecast.catalogue``.

Bad catalogues are built by mutating a deep copy of the real Mie YAML, so each case differs
from a valid file in exactly one place and the error must point there (file, river, key).
Most bad files keep only the broken river: ``load_catalogue`` parses YAML in pure Python
(about 1 s for all 38 rivers on this machine), and one river is enough to locate the error.
"""

from __future__ import annotations

import copy
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from forecast.catalogue import (
    THRESHOLD_NAMES,
    Catalogue,
    load_catalogue,
    parse_catalogue,
)
from forecast.errors import CatalogueError, ConfigError

ROOT = Path(__file__).resolve().parent.parent
MIE = ROOT / "config" / "rivers.yaml"
REFERENCE = ROOT / "config" / "reference_rivers.yaml"

Raw = dict[str, Any]

# libyaml when present: only for reading/writing test fixtures, not for the code under test.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _write(data: Raw, path: Path) -> Path:
    path.write_text(yaml.dump(data, Dumper=_DUMPER, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def raw() -> Raw:
    """The real Mie catalogue as plain YAML data (never mutated: tests deep-copy it)."""
    data = yaml.load(MIE.read_text(encoding="utf-8"), Loader=_LOADER)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def mie() -> Catalogue:
    return load_catalogue(MIE)


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (km)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6371.0 * math.asin(math.sqrt(h))


# --- the real Mie catalogue ---------------------------------------------------------------

def test_mie_catalogue_has_38_rivers_with_unique_ids_and_codes(mie: Catalogue) -> None:
    assert len(mie.rivers) == 38
    ids = [r.id for r in mie.rivers]
    assert len(set(ids)) == len(ids)
    codes = [g.code for r in mie.rivers for g in r.gauges]
    dupes = [c for c, n in Counter(codes).items() if n > 1]
    assert dupes == []
    # 44 telemetry gauge sites on 38 rivers (the prefecture's count), plus crisis gauges.
    assert sum(g.kind == "telemetry" for r in mie.rivers for g in r.gauges) == 44
    assert any(g.kind == "crisis" for r in mie.rivers for g in r.gauges)


def test_every_river_has_a_rising_threshold_ladder(mie: Catalogue) -> None:
    for r in mie.rivers:
        ladder = r.thresholds.ladder()
        assert ladder, r.id
        values = [v for _, v in ladder]
        assert values == sorted(values) and len(set(values)) == len(values), r.id
        if r.thresholds.hwl_m is not None:
            assert r.thresholds.hwl_m >= values[-1], r.id


def test_rivers_are_internally_consistent(mie: Catalogue) -> None:
    all_codes = {g.code for r in mie.rivers for g in r.gauges}
    for r in mie.rivers:
        assert r.primary_gauge in {g.code for g in r.gauges}, r.id
        assert math.isclose(sum(g.weight for g in r.rain_gauges), 1.0, abs_tol=1e-9), r.id
        rain_codes = [g.code for g in r.rain_gauges]
        assert len(set(rain_codes)) == len(rain_codes), r.id
        # Upstream inputs must be real gauges, and every secondary gauge is one.
        assert set(r.upstream_gauges) <= all_codes, r.id
        assert r.primary_gauge not in r.upstream_gauges, r.id
        assert {g.code for g in r.gauges} - {r.primary_gauge} <= set(r.upstream_gauges), r.id
        for g in r.gauges:
            assert g.source == "simulated", (r.id, g.code)
            if g.kind == "crisis":
                assert g.start_level_m is not None and g.overflow_level_m is not None
            if g.code == r.primary_gauge and g.kind == "crisis":
                # Must wake up before the first alert level to see it being crossed.
                assert g.start_level_m is not None
                assert g.start_level_m < r.thresholds.ladder()[0][1], r.id
        assert r.qc.hard_max_m > max(v for _, v in r.thresholds.ladder()), r.id


def test_gauges_lie_in_or_near_their_catchment(mie: Catalogue) -> None:
    """Gauges sit at the catchment outlet: within a few km of the polygon's bounding box;
    rain gauges within 60 km of the polygon's centre (big basins get more room)."""
    for r in mie.rivers:
        lons = [p[0] for p in r.catchment.polygon]
        lats = [p[1] for p in r.catchment.polygon]
        for g in r.gauges:
            assert min(lons) - 0.05 <= g.lon <= max(lons) + 0.05, (r.id, g.code)
            assert min(lats) - 0.05 <= g.lat <= max(lats) + 0.05, (r.id, g.code)
        c_lat, c_lon = sum(lats) / len(lats), sum(lons) / len(lons)
        reach = 60.0 + math.sqrt(r.catchment.area_km2)
        for rg in r.rain_gauges:
            assert _km(c_lat, c_lon, rg.lat, rg.lon) < reach, (r.id, rg.code)


def test_mie_rivers_and_gauges_lie_in_mie(mie: Catalogue) -> None:
    """Mie spans roughly 33.7-35.3N, 135.8-137.0E (the simulator's climate box)."""
    for r in mie.rivers:
        for g in r.gauges:
            assert 33.7 <= g.lat <= 35.3 and 135.8 <= g.lon <= 137.0, (r.id, g.code)


def test_shared_rain_gauges_are_described_identically(mie: Catalogue) -> None:
    """The simulator and the station table keep one row per rain-gauge code, so every river
    must describe a shared gauge the same way; neighbouring catchments do share gauges."""
    seen: dict[str, tuple[object, ...]] = {}
    users: Counter[str] = Counter()
    for r in mie.rivers:
        for g in r.rain_gauges:
            desc = (g.name_ja, g.name_en, g.lat, g.lon, g.network, g.source, g.provisional)
            assert seen.setdefault(g.code, desc) == desc, (r.id, g.code)
            users[g.code] += 1
    shared = [c for c, n in users.items() if n > 1]
    assert len(shared) >= 10


def test_amedas_codes_are_five_digit_jma_codes(mie: Catalogue) -> None:
    amedas = {g.code: g for r in mie.rivers for g in r.rain_gauges if g.network == "amedas"}
    assert amedas
    for code, g in amedas.items():
        assert re.fullmatch(r"\d{5}", code), code
        # JMA area prefixes: 53 Mie, 52 Gifu, 60 Shiga.
        assert code[:2] in {"52", "53", "60"}, code
        assert not g.provisional, code
    assert amedas["53133"].name_ja == "津"


def test_placeholder_codes_are_marked_provisional(mie: Catalogue) -> None:
    for r in mie.rivers:
        for g in r.gauges:
            if g.code.startswith("MIE-"):
                assert g.provisional, (r.id, g.code)
        for rg in r.rain_gauges:
            if rg.code.startswith("MIE-"):
                assert rg.provisional, (r.id, rg.code)


def _naive_provisional_parts(river: Raw) -> list[str]:
    """Oracle: read the provisional flags straight from the YAML data."""
    parts = ["river"] if river.get("provisional") else []
    if river["thresholds"].get("provisional"):
        parts.append("thresholds")
    parts += [f"gauge {g['code']}" for g in river["gauges"] if g.get("provisional")]
    parts += [f"rain gauge {g['code']}" for g in river["rain_gauges"] if g.get("provisional")]
    if river["catchment"].get("provisional"):
        parts.append("catchment")
    return parts


def test_provisional_parts_match_the_yaml_flags(raw: Raw, mie: Catalogue) -> None:
    for data, river in zip(raw["rivers"], mie.rivers, strict=True):
        assert river.provisional_parts == _naive_provisional_parts(data), river.id
    # Nothing official is available for thresholds, so all of them must say so.
    assert all("thresholds" in r.provisional_parts for r in mie.rivers)
    # Rivers whose designation was confirmed are not provisional as a whole; others are.
    confirmed = [r for r in mie.rivers if not r.provisional]
    assert confirmed and len(confirmed) < len(mie.rivers)


def test_provisional_parts_empty_when_everything_is_official(raw: Raw) -> None:
    data = copy.deepcopy(raw)
    river = data["rivers"][0]
    for part in (river, river["thresholds"], river["catchment"], *river["gauges"],
                 *river["rain_gauges"]):
        part["provisional"] = False
    assert parse_catalogue(data).rivers[0].provisional_parts == []


def test_catalogue_lookup(mie: Catalogue) -> None:
    assert mie.river("miya").name_ja == "宮川"
    assert mie.river("miya").gauge.code == mie.river("miya").primary_gauge
    with pytest.raises(CatalogueError, match="unknown river"):
        mie.river("thames")


# --- the real reference river -------------------------------------------------------------

def test_reference_catalogue_has_real_jiseiji_thresholds() -> None:
    ref = load_catalogue(REFERENCE)
    koto = ref.river("koto")
    assert koto.gauge.name_ja == "持世寺"
    assert koto.thresholds.ladder() == [
        ("standby_m", 3.80), ("caution_m", 5.00), ("evacuation_m", 5.10), ("danger_m", 5.50)]
    # The thresholds are official; gauge positions and the catchment outline are not.
    parts = koto.provisional_parts
    assert "thresholds" not in parts and "river" not in parts
    assert "catchment" in parts and f"gauge {koto.primary_gauge}" in parts


# --- strict validation: bad catalogues are refused, naming file, river and key -------------

Mutation = Callable[[Raw], str]
"""Changes the catalogue in place; returns the id of the river it broke."""


def _river(data: Raw, river_id: str) -> Raw:
    return next(r for r in data["rivers"] if r["id"] == river_id)


def _crisis_gauge(data: Raw) -> tuple[Raw, Raw]:
    for r in data["rivers"]:
        for g in r["gauges"]:
            if g["kind"] == "crisis":
                return r, g
    raise AssertionError("the Mie catalogue should contain a crisis gauge")


def _unknown_key(d: Raw) -> str:
    _river(d, "ano")["colour"] = "blue"
    return "ano"


def _unknown_nested_key(d: Raw) -> str:
    _river(d, "kumano")["thresholds"]["warning_m"] = 3.0
    return "kumano"


def _flat_thresholds(d: Raw) -> str:
    th = _river(d, "mitaki")["thresholds"]
    th["evacuation_m"] = th["caution_m"]
    return "mitaki"


def _falling_thresholds(d: Raw) -> str:
    th = _river(d, "isuzu")["thresholds"]
    th["standby_m"], th["danger_m"] = th["danger_m"], th["standby_m"]
    return "isuzu"


def _no_thresholds(d: Raw) -> str:
    _river(d, "kamo")["thresholds"] = {"provisional": True}
    return "kamo"


def _bad_gauge_lat(d: Raw) -> str:
    _river(d, "inabe")["gauges"][1]["lat"] = 51.5      # London
    return "inabe"


def _bad_gauge_lon(d: Raw) -> str:
    _river(d, "ido")["gauges"][0]["lon"] = -0.12
    return "ido"


def _bad_rain_gauge_lat(d: Raw) -> str:
    _river(d, "seta")["rain_gauges"][0]["lat"] = 10.0
    return "seta"


def _bad_polygon(d: Raw) -> str:
    _river(d, "hattori")["catchment"]["polygon"][2] = [2.35, 48.85]    # Paris
    return "hattori"


def _weights_too_high(d: Raw) -> str:
    _river(d, "asake")["rain_gauges"][0]["weight"] += 0.2
    return "asake"


def _weights_too_low(d: Raw) -> str:
    _river(d, "miya")["rain_gauges"].pop()
    return "miya"


def _crisis_without_start(d: Raw) -> str:
    river, gauge = _crisis_gauge(d)
    del gauge["start_level_m"]
    return str(river["id"])


def _crisis_overflow_below_start(d: Raw) -> str:
    river, gauge = _crisis_gauge(d)
    gauge["overflow_level_m"] = gauge["start_level_m"] - 0.1
    return str(river["id"])


def _primary_not_in_gauges(d: Raw) -> str:
    _river(d, "sakanai")["primary_gauge"] = "MIE-L-999"
    return "sakanai"


def _bad_datum_dates(d: Raw) -> str:
    datum = _river(d, "shitomo")["gauges"][0]["datums"][0]
    datum["valid_to"] = datum["valid_from"]
    return "shitomo"


def _bad_river_id(d: Raw) -> str:
    _river(d, "choshi")["id"] = "Choshi River"
    return "Choshi River"


CASES: dict[str, tuple[Mutation, str, str]] = {
    # name: (mutation, key the error must name ("" = none), message pattern)
    "unknown key": (_unknown_key, "colour", r"unknown key"),
    "unknown nested key": (_unknown_nested_key, "thresholds.warning_m", r"unknown key"),
    "equal thresholds": (_flat_thresholds, "thresholds", r"thresholds must increase"),
    "falling thresholds": (_falling_thresholds, "thresholds", r"thresholds must increase"),
    "no threshold at all": (_no_thresholds, "thresholds", r"at least one threshold"),
    "gauge latitude outside Japan": (_bad_gauge_lat, "gauges.1.lat", r"less than or equal"),
    "gauge longitude outside Japan": (_bad_gauge_lon, "gauges.0.lon", r"greater than or equal"),
    "rain gauge outside Japan": (_bad_rain_gauge_lat, "rain_gauges.0.lat", r"greater than"),
    "polygon outside Japan": (_bad_polygon, "catchment.polygon", r"outside Japan"),
    "rain weights above 1": (_weights_too_high, "", r"weights must sum to 1 \(got 1\.200\)"),
    "rain weights below 1": (_weights_too_low, "", r"weights must sum to 1"),
    "crisis gauge without start level": (_crisis_without_start, "gauges.",
                                         r"crisis gauge needs start_level_m"),
    "crisis overflow below start": (_crisis_overflow_below_start, "gauges.",
                                    r"overflow_level_m must be above start_level_m"),
    "primary gauge not in gauges": (_primary_not_in_gauges, "",
                                    r"primary_gauge 'MIE-L-999' is not one of"),
    "datum ends before it starts": (_bad_datum_dates, "gauges.0.datums.0",
                                    r"valid_to must be after valid_from"),
    "river id not lowercase": (_bad_river_id, "id", r"pattern"),
}


@pytest.mark.parametrize(("case", "whole"), [
    *[pytest.param(c, False, id=c) for c in CASES],
    # Two cases in the whole 38-river file: the error still names the right river.
    *[pytest.param(c, True, id=f"{c} (whole file)")
      for c in ("unknown key", "rain weights above 1")],
])
def test_bad_catalogue_is_refused_naming_file_river_and_key(
    case: str, whole: bool, raw: Raw, tmp_path: Path
) -> None:
    mutate, key, pattern = CASES[case]
    data = copy.deepcopy(raw)
    river_id = mutate(data)
    if not whole:
        data["rivers"] = [r for r in data["rivers"] if r["id"] == river_id]
        assert len(data["rivers"]) == 1
    path = _write(data, tmp_path / "rivers.yaml")

    with pytest.raises(CatalogueError) as info:
        load_catalogue(path)
    err = info.value
    assert isinstance(err, ConfigError)
    msg = str(err)
    assert err.file == str(path) and str(path) in msg
    assert err.river == river_id and f"river {river_id}" in msg
    if key.endswith("."):
        assert err.key.startswith(key) and f"key {err.key}" in msg
    elif key:
        assert err.key == key and f"key {key}" in msg
    assert re.search(pattern, msg), msg


def test_unchanged_copy_round_trips(raw: Raw, mie: Catalogue, tmp_path: Path) -> None:
    """Control for the cases above: the dump/reload of an unmutated copy is accepted, whole
    and cut down to single rivers."""
    assert load_catalogue(_write(copy.deepcopy(raw), tmp_path / "all.yaml")) == mie
    for i in (0, len(raw["rivers"]) // 2, -1):
        one = copy.deepcopy(raw)
        one["rivers"] = [one["rivers"][i]]
        assert load_catalogue(_write(one, tmp_path / f"one{i}.yaml")).rivers == (mie.rivers[i],)


def test_duplicate_river_id_is_refused(raw: Raw, tmp_path: Path) -> None:
    data = copy.deepcopy(raw)
    data["rivers"] = [_river(data, "tokida"), _river(data, "seta"),
                      copy.deepcopy(_river(data, "tokida"))]
    path = _write(data, tmp_path / "rivers.yaml")
    with pytest.raises(CatalogueError, match=r"duplicate river id") as info:
        load_catalogue(path)
    assert str(path) in str(info.value)
    assert info.value.river == "tokida" and info.value.key == "rivers.2.id"


def test_gauge_code_shared_by_two_rivers_is_refused(raw: Raw) -> None:
    data = copy.deepcopy(raw)
    stolen = _river(data, "kaizo")["primary_gauge"]
    thief = _river(data, "tempaku")
    thief["gauges"][0]["code"] = stolen
    thief["primary_gauge"] = stolen
    with pytest.raises(CatalogueError, match=rf"gauge code '{stolen}' is already used by "
                                             r"river 'kaizo'") as info:
        parse_catalogue(data, file="mutated.yaml")
    assert "file mutated.yaml" in str(info.value)


def test_duplicate_gauge_code_within_a_river_is_refused(raw: Raw) -> None:
    data = copy.deepcopy(raw)
    river = _river(data, "inabe")
    river["gauges"][1]["code"] = river["gauges"][0]["code"]
    with pytest.raises(CatalogueError, match="duplicate gauge code") as info:
        parse_catalogue(data, file="mutated.yaml")
    assert info.value.river == "inabe"


@pytest.mark.parametrize(("mutate", "key"), [
    (_weights_too_high, "rain_gauges"),
    (_primary_not_in_gauges, "primary_gauge"),
])
def test_river_level_errors_name_the_key(mutate: Mutation, key: str, raw: Raw) -> None:
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(CatalogueError) as info:
        parse_catalogue(data, file="mutated.yaml")
    assert info.value.key.startswith(key)


def test_unknown_upstream_gauge_is_refused(raw: Raw) -> None:
    data = copy.deepcopy(raw)
    _river(data, "inabe")["upstream_gauges"] = ["MIE-L-0O2"]
    with pytest.raises(CatalogueError):
        parse_catalogue(data, file="mutated.yaml")


@pytest.mark.parametrize("text", [
    "name: mie\nrivers:\n  - id: inabe\n   name_ja: 員弁川\n",     # bad indentation
    "name: mie\nrivers: [\n",                                       # unclosed flow sequence
    "name: mie\n\trivers: []\n",                                    # tab indentation
])
def test_invalid_yaml_is_refused_naming_the_file(text: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid YAML") as info:
        load_catalogue(path)
    assert info.value.file == str(path) and str(path) in str(info.value)


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "42\n"])
def test_yaml_that_is_not_a_mapping_is_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError, match="top level must be a mapping") as info:
        load_catalogue(path)
    assert str(path) in str(info.value)


def test_missing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "rivers.yaml"
    with pytest.raises(CatalogueError, match="cannot read catalogue") as info:
        load_catalogue(path)
    assert info.value.file == str(path) and str(path) in str(info.value)


def test_every_threshold_name_is_used_somewhere(mie: Catalogue) -> None:
    """The Mie catalogue exercises the full four-step ladder (no step silently unused)."""
    used = {name for r in mie.rivers for name, _ in r.thresholds.ladder()}
    assert used == set(THRESHOLD_NAMES)
