"""Shared fixtures for the ingest parser tests: paths to the small real/hand-written payloads."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
MLIT_DIR = DATA / "mlit-wis"
HOURLY_JAN = MLIT_DIR / "japan_301011281104010_kind6_200401.dat"
HOURLY_FEB = MLIT_DIR / "japan_301011281104010_kind6_200402.dat"
DAILY_2004 = MLIT_DIR / "japan_301011281104010_kind7_2004.dat"
KUJI = DATA / "mlit_kuji_nukada" / "nukada_excerpt.json"
AMEDAS = DATA / "amedas"


@pytest.fixture(scope="session")
def hourly_jan() -> bytes:
    return HOURLY_JAN.read_bytes()


@pytest.fixture(scope="session")
def daily_2004() -> bytes:
    return DAILY_2004.read_bytes()
