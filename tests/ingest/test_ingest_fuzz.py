"""Fuzz/property tests: mutated real (or documented-format) inputs never escape the error tree.

Each parser gets byte-level mutations (flips, truncations, insertions, line deletions and
duplications, field swaps) and, for JSON, structural mutations (values replaced by nulls,
wrong types, non-finite numbers; keys deleted). The only exceptions allowed are
``forecast.errors.ForecastError`` subclasses; anything returned must satisfy the frame contract.

Examples per parser: ``FORECAST_TEST_FUZZ_EXAMPLES`` (default 800, to keep the suite under a minute
on 2 shared cores; set 1500 or more for a deeper run).
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecast import frames
from forecast.errors import ForecastError
from forecast.ingest.amedas import parse_amedas_map, parse_amedas_point, parse_amedas_table
from forecast.ingest.crisis import parse_crisis_json
from forecast.ingest.mlit import parse_mlit_dat
from forecast.ingest.mlit_json import parse_mlit_json
from forecast.ingest.telemetry import feed_from_mapping, parse_telemetry

from .conftest import AMEDAS, DAILY_2004, HOURLY_JAN, KUJI
from .test_ingest_crisis import GOOD as CRISIS_RECORDS
from .test_ingest_telemetry import CSV_FEED, CSV_TEXT, JSON_FEED

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FORECAST_TEST_FUZZ_EXAMPLES", "800"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _byte_mutation(rnd: random.Random, data: bytes) -> bytes:
    if not data:
        return bytes([rnd.randrange(256)])
    op = rnd.randrange(7)
    i = rnd.randrange(len(data))
    if op == 0:                                     # flip one byte
        return data[:i] + bytes([rnd.randrange(256)]) + data[i + 1:]
    if op == 1:                                     # truncate
        return data[:i]
    if op == 2:                                     # insert junk
        junk = bytes(rnd.choice(b",*$#- 0123456789.\r\n\x00\xff\x82\xa0") for _ in range(3))
        return data[:i] + junk + data[i:]
    lines = data.split(b"\n")
    j = rnd.randrange(len(lines))
    if op == 3:                                     # delete a line
        del lines[j]
    elif op == 4:                                   # duplicate a line
        lines.insert(j, lines[j])
    elif op == 5:                                   # swap two lines
        k = rnd.randrange(len(lines))
        lines[j], lines[k] = lines[k], lines[j]
    else:                                           # swap two fields within a line
        fields = lines[j].split(b",")
        a, b = rnd.randrange(len(fields)), rnd.randrange(len(fields))
        fields[a], fields[b] = fields[b], fields[a]
        lines[j] = b",".join(fields)
    return b"\n".join(lines)


_NASTY: list[Any] = [None, "", "x", "now", -1, 0, 1e308, -9999.99, [], {}, True, [None, 0],
                     [1.0], "2025-13-01T00:00", "2025-09-12T20:50:00", float("nan"),
                     float("inf"), "0.5", 12345678901234567890, 10**400, -(10**400)]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _tree_mutation(rnd: random.Random, doc: Any) -> Any:
    paths = [p for p in _paths(doc) if p]
    if not paths:
        return copy.deepcopy(rnd.choice(_NASTY))
    path = rnd.choice(paths)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if rnd.random() < 0.2 and isinstance(parent, dict):
        del parent[path[-1]]
    elif rnd.random() < 0.1 and isinstance(parent, list):
        parent.append(json.loads(json.dumps(parent[path[-1]])))   # duplicate an element
    else:
        parent[path[-1]] = copy.deepcopy(rnd.choice(_NASTY))  # never share [] / {}
    return doc


def _mutated(seed: bytes, rnd: random.Random, n: int, as_json: bool) -> bytes:
    if as_json and rnd.random() < 0.6:
        doc = json.loads(seed)
        for _ in range(n):
            doc = _tree_mutation(rnd, doc)
        data = json.dumps(doc, ensure_ascii=rnd.random() < 0.5, allow_nan=True).encode()
        return _byte_mutation(rnd, data) if rnd.random() < 0.2 else data
    data = seed
    for _ in range(n):
        data = _byte_mutation(rnd, data)
    return data


def _check(parse: Callable[[bytes], Any], data: bytes) -> None:
    try:
        out = parse(data)
    except ForecastError:
        return
    frame = getattr(out, "readings", out)
    if isinstance(frame, pd.DataFrame) and "variable" in frame.columns:
        frames.observations(frame)          # a returned frame honours the contract


# a plain seeded Random: deterministic per example, so failures replay exactly
MUTATION = st.tuples(st.integers(0, 2**32 - 1).map(random.Random), st.integers(1, 3))


def _cp932(data: bytes) -> bytes:
    return data.decode("utf-8").encode("cp932")


MLIT_SEEDS = [HOURLY_JAN.read_bytes(), _cp932(HOURLY_JAN.read_bytes()), DAILY_2004.read_bytes()]


@FUZZ
@given(st.sampled_from(MLIT_SEEDS), MUTATION)
def test_fuzz_mlit_dat(seed, mutation):
    rnd, n = mutation
    _check(lambda d: parse_mlit_dat(d, "fuzz.dat"), _mutated(seed, rnd, n, as_json=False))


KUJI_SEED = json.dumps({**json.loads(KUJI.read_bytes()),
                        "records": json.loads(KUJI.read_bytes())["records"][:30]}).encode()


@FUZZ
@given(MUTATION)
def test_fuzz_mlit_json(mutation):
    rnd, n = mutation
    _check(lambda d: parse_mlit_json(d, "fuzz.json", now=NOW),
           _mutated(KUJI_SEED, rnd, n, as_json=True))


CRISIS_SEED = json.dumps({"obss": CRISIS_RECORDS}).encode()


@FUZZ
@given(MUTATION)
def test_fuzz_crisis(mutation):
    rnd, n = mutation
    _check(lambda d: parse_crisis_json(d, "fuzz.json", now=NOW),
           _mutated(CRISIS_SEED, rnd, n, as_json=True))


AMEDAS_CASES = [
    ((AMEDAS / "map" / "20250801093000.json").read_bytes(),
     lambda d: parse_amedas_map(d, "map/20250801093000.json", now=NOW)),
    ((AMEDAS / "point" / "53133" / "20250801_09.json").read_bytes(),
     lambda d: parse_amedas_point(d, "point/53133/20250801_09.json", now=NOW)),
    ((AMEDAS / "amedastable.json").read_bytes(),
     lambda d: parse_amedas_table(d, "amedastable.json")),
]


@FUZZ
@given(st.sampled_from(AMEDAS_CASES), MUTATION)
def test_fuzz_amedas(case, mutation):
    (seed, parse), (rnd, n) = case, mutation
    _check(parse, _mutated(seed, rnd, n, as_json=True))


TELEMETRY_CASES = [
    (CSV_TEXT.encode("cp932"), feed_from_mapping(CSV_FEED), False),
    (json.dumps({"data": {"obs": [
        {"id": "A1", "t": "2025-09-12T20:50:00+09:00", "rain": 3.5},
        {"id": "A1", "t": "2025-09-12T11:40:00Z", "rain": "-999"},
        {"id": "A1", "t": "2025-09-12T11:30:00Z", "rain": None}]}}).encode(),
     feed_from_mapping(JSON_FEED), True),
]


@FUZZ
@given(st.sampled_from(TELEMETRY_CASES), MUTATION)
def test_fuzz_telemetry(case, mutation):
    (seed, feed, as_json), (rnd, n) = case, mutation
    _check(lambda d: parse_telemetry(feed, d, "fuzz", now=NOW), _mutated(seed, rnd, n, as_json))
