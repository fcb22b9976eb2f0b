"""Water-level forecasting for Mie Prefecture's prefecture-managed rivers.

Outputs are internal forecast notifications (水位予測通知) for flood-control staff;
never 警報/注意報, which only JMA may issue.
"""

__version__ = "0.1.0"

# Load order matters. ecCodes' wheel (eckitlib) bundles an old libsqlite3 (3.26, no RETURNING)
# and its own libldap/libssl. Whichever copy loads first serves the whole process: if ecCodes
# comes first, sqlite3 loses RETURNING and libpq's libldap crashes in its exit-time destructor
# (SIGSEGV at interpreter exit). So the system sqlite3 and psycopg's libpq load here, before
# anything (a test, a notebook, ingest) can import ecCodes (~0.2 s of start-up, for psycopg).
# tests/test_load_order.py checks both in a fresh interpreter.
import sqlite3 as _sqlite3  # noqa: F401, I001

import psycopg as _psycopg  # noqa: F401

import pandas as _pd

# Copy-on-Write (pandas 3's default) everywhere, so validators can hand frames on without
# copying millions of rows and a caller's edit can never reach another frame.
_pd.set_option("mode.copy_on_write", True)
