"""Water-level forecasting for Mie Prefecture's prefecture-managed rivers.

Outputs are internal forecast notifications (水位予測通知) for flood-control staff;
never 警報/注意報, which only JMA may issue.
"""

__version__ = "0.1.0"
