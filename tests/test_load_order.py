"""ecCodes and the database drivers in one process (see forecast/ingest/grib2.py): a fresh
interpreter that decodes GRIB2 first and then uses SQLite and PostgreSQL must keep SQLite's
RETURNING and exit cleanly (no SIGSEGV in an exit-time destructor)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GRIB = sorted((Path(__file__).parent / "data" / "jma-grib2").glob("*_ANAL_grib2.bin"))[0]

SCRIPT = f"""
import os, sqlite3
from forecast.ingest.grib2 import read_rain_grib
read_rain_grib({str(GRIB)!r})
con = sqlite3.connect(":memory:")
con.execute("create table t (a integer primary key, b)")
assert con.execute("insert into t (b) values (1) returning a").fetchone() == (1,)
url = os.environ.get("FORECAST_TEST_POSTGRES_URL", "")
if url:
    from forecast.storage.engine import create_engine
    import sqlalchemy as sa
    with create_engine(url).connect() as c:
        assert c.execute(sa.text("select 1")).scalar() == 1
print("ok")
"""


def test_grib_then_databases_in_one_process_exits_cleanly() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120, env=os.environ.copy())
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == "ok"
