"""The CI guard in tests/conftest.py: under CI=true a skipped ``postgres`` test fails.

Each case runs the real conftest (copied into a pytester directory) on a tiny test file in a
subprocess, with and without CI and FORECAST_TEST_POSTGRES_URL."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"
TESTS = '''
import pytest

@pytest.mark.postgres
def test_pg_skipped():
    pytest.skip("no server here")

@pytest.mark.postgres
def test_pg_runs():
    pass

def test_plain_skipped():
    pytest.skip("not a postgres test")

@pytest.mark.postgres
@pytest.mark.xfail(reason="known", strict=True)
def test_pg_xfail():
    raise AssertionError

def test_engine_fixture(engine):
    assert engine.dialect.name in {"sqlite", "postgresql"}
'''
INI = "[pytest]\nmarkers =\n    postgres: needs PostgreSQL\n"


@pytest.fixture
def guarded(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makeini(INI)
    pytester.makepyfile(test_tiny=TESTS)
    return pytester


@pytest.mark.parametrize("ci", ["true", "1"])
def test_skipped_postgres_test_fails_under_ci(guarded: pytest.Pytester,
                                             monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv("FORECAST_TEST_POSTGRES_URL", raising=False)
    result = guarded.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    # test_pg_skipped fails; the fixture-skipped test_engine_fixture[postgresql] errors (the
    # skip happened in setup); the plain skip stays a skip and the xfail stays an xfail
    result.assert_outcomes(passed=2, failed=1, errors=1, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "ERROR test_tiny.py::test_engine_fixture?postgresql?*",
        "FAILED test_tiny.py::test_pg_skipped*",
    ])
    assert "PostgreSQL test skipped under CI=true (Skipped: no server here)" in result.stdout.str()
    assert "set FORECAST_TEST_POSTGRES_URL (.ci/run does both)" in result.stdout.str()


@pytest.mark.parametrize("ci", [None, "false"])
def test_skipped_postgres_test_only_skips_outside_ci(guarded: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    ci: str | None) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    monkeypatch.delenv("FORECAST_TEST_POSTGRES_URL", raising=False)
    result = guarded.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, skipped=3, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
