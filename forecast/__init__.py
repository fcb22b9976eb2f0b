"""Water-level forecasting for Mie Prefecture's prefecture-managed rivers.

Outputs are internal forecast notifications (水位予測通知) for flood-control staff;
never 警報/注意報, which only JMA may issue.
"""

__version__ = "0.1.0"

import pandas as _pd

# Copy-on-Write (pandas 3's default) everywhere, so validators can hand frames on without
# copying millions of rows and a caller's edit can never reach another frame.
_pd.set_option("mode.copy_on_write", True)
