"""What a forecasting process imports: ``forecast run-once`` has a 3 s budget, Python's start-up
and imports included, so the operational path imports no training, plotting, GRIB, migration
or HTTP library it does not use (each is imported where it is used)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# psycopg is not here: forecast/__init__ loads it on purpose, before anything can load ecCodes
# (whose bundled libldap otherwise crashes libpq at exit; see the comment there).
HEAVY = ("sklearn", "scipy", "lightgbm", "matplotlib", "statsmodels", "alembic", "eccodes",
         "httpx", "sqlalchemy.dialects.postgresql")


def _imported(code: str) -> list[str]:
    probe = (f"import sys\n{code}\n"
             f"import json; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_tick_and_the_cli_import_no_heavy_library() -> None:
    assert _imported("import forecast.pipeline.tick, forecast.pipeline.cycle, forecast.cli") \
        == []


def test_a_replay_context_makes_no_http_client(tmp_path: Path) -> None:
    """With ``FORECAST_REPLAY`` the ticks read the replay: no HTTP client (nor httpx); without
    it the context has its fetcher."""
    code = ("from forecast.pipeline.context import Context\n"
            "from forecast.settings import load_settings\n"
            "s = load_settings({{'FORECAST_DATABASE_URL': 'sqlite:///{db}'{extra}}})\n"
            "ctx = Context.from_settings(s)\n"
            "assert (ctx.fetcher is None) == {replay}\n")
    db = tmp_path / "x.db"
    replay = f", 'FORECAST_REPLAY': '{tmp_path / 'replay'}'"
    assert _imported(code.format(db=db, extra=replay, replay=True)) == []
    assert "httpx" in _imported(code.format(db=db, extra="", replay=False))
