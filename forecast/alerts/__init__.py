"""The alert engine (pure): forecasts + observations + thresholds + previous state + time →
new state + notices. No I/O, no clock: the issue time is an argument.

* ``forecast.alerts.notice``: what the engine says (``Notice``) and what it reads per stream
  (``StreamInput``, ``LeadForecast``);
* ``forecast.alerts.rules``: the ladder of a stream, the exceedance probability from the
  quantiles, and which levels the inputs trigger or hold (``assess``);
* ``forecast.alerts.lifecycle``: the state machine (raise, escalate, lower, clear, remind,
  acknowledge) with hysteresis, and the data-problem stream.

The pipeline (``forecast.pipeline.notify``) stores the new state, the messages and their
outbox rows in one transaction; ``forecast.notify`` renders and sends them.
"""
