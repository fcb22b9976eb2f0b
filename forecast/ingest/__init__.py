"""Source parsers: bytes in, canonical frames (``forecast.frames``) out.

One module per source (``mlit``, ``crisis``, ``amedas``, ``telemetry``). Parsers never touch
storage and never read a clock (``now`` is an argument); every failure is a
``forecast.errors.ParseError`` (or subclass) naming source, location and position.
"""
