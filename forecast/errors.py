"""The project's one exception tree.

Library errors (httpx, ecCodes, SQL, LightGBM) are translated into these where they occur,
with ``raise ... from exc``, so callers only ever catch ``ForecastError`` subclasses.
Every message says what was wrong, where (file / URL / river / key / row) and, where
possible, what to do about it.

    ForecastError
    ├── ConfigError                  bad settings or catalogue, refused at start-up
    │   ├── SettingsError            FORECAST_* environment variables
    │   └── CatalogueError           config/rivers.yaml (names file, river, key)
    ├── DataError                    input data that cannot be used
    │   ├── ParseError               unparseable payload (names source, file/URL, position)
    │   │   ├── EncodingError        wrong text encoding
    │   │   └── GribError            GRIB2 that is corrupt, truncated, foreign or test status
    │   ├── FrameError               a DataFrame that breaks its column contract
    │   └── InputFileError           a user-supplied CSV (names file, row, column)
    ├── SourceError                  a source that is down, times out or answers with an error
    ├── StorageError                 database failures (wrapped SQLAlchemy errors)
    │   └── MigrationError           schema not at the expected revision
    ├── ModelError                   training, prediction or registry failures
    │   ├── InsufficientDataError    too little clean data to train (names river)
    │   ├── ManifestError            a model directory whose manifest is damaged or mismatching
    │   └── RegistryError            unknown version, nothing to promote or roll back
    ├── CycleError                   a forecast cycle that could not run at all
    ├── DeliveryError                a notification not delivered (Slack, webhook, CAP); .retryable
    ├── NotFoundError                an API request for something that does not exist (404)
    ├── InvalidRequestError          an API request with impossible parameters (422)
    ├── ConflictError                an action the current state does not allow (409)
    ├── AccessError                  a request refused by access control
    │   ├── AuthenticationError      no, bad, expired or revoked credentials (HTTP 401)
    │   └── PermissionDeniedError    authenticated, but without the role (HTTP 403)
    └── SimulationError              a simulated-data request that cannot be run (bad window)
"""

from __future__ import annotations


class ForecastError(Exception):
    """Root of every error raised by this package."""


class ConfigError(ForecastError):
    """Settings or catalogue are invalid; raised at start-up."""


class SettingsError(ConfigError):
    """A FORECAST_* environment variable is missing or invalid."""


class CatalogueError(ConfigError):
    """The river catalogue is invalid.

    ``file``, ``river`` and ``key`` name where the problem is, so the message can tell an
    editor of ``config/rivers.yaml`` exactly which line to fix.
    """

    def __init__(
        self, message: str, *, file: str = "", river: str = "", key: str = ""
    ) -> None:
        self.file = file
        self.river = river
        self.key = key
        where = ", ".join(
            part
            for part in (
                f"file {file}" if file else "",
                f"river {river}" if river else "",
                f"key {key}" if key else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class DataError(ForecastError):
    """Input data that cannot be used as it is."""


class ParseError(DataError):
    """A payload that does not parse.

    ``source`` is the source name (e.g. ``mlit_dat``), ``location`` the file path or URL,
    ``position`` a line/row/byte offset or key path inside it.
    """

    def __init__(
        self, message: str, *, source: str = "", location: str = "", position: str = ""
    ) -> None:
        self.source = source
        self.location = location
        self.position = position
        where = " ".join(
            part
            for part in (
                f"[{source}]" if source else "",
                location,
                f"at {position}" if position else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class EncodingError(ParseError):
    """The payload is not in the expected text encoding."""


class GribError(ParseError):
    """A GRIB2 message that is corrupt, truncated, from another centre or marked as test data."""


class FrameError(DataError):
    """A DataFrame that does not meet its column contract (see ``forecast.frames``)."""


class InputFileError(DataError):
    """A user-supplied file (e.g. backtest OBS.csv) that cannot be used.

    ``file``, ``row`` and ``column`` say where; the message says what to do.
    """

    def __init__(self, message: str, *, file: str = "", row: int | None = None,
                 column: str = "") -> None:
        self.file = file
        self.row = row
        self.column = column
        parts = [file] if file else []
        if row is not None:
            parts.append(f"row {row}")
        if column:
            parts.append(f"column {column!r}")
        where = ", ".join(parts)
        super().__init__(f"{where}: {message}" if where else message)


class SourceError(ForecastError):
    """A data source that is down, times out or returns an error status."""

    def __init__(self, message: str, *, source: str = "", url: str = "") -> None:
        self.source = source
        self.url = url
        where = " ".join(p for p in (f"[{source}]" if source else "", url) if p)
        super().__init__(f"{where}: {message}" if where else message)


class StorageError(ForecastError):
    """A database operation failed; the transaction was rolled back."""


class MigrationError(StorageError):
    """The database schema is not at the revision this code expects."""


class ModelError(ForecastError):
    """Training, prediction or model-registry failure."""


class InsufficientDataError(ModelError):
    """Too little clean data to train or evaluate a model for a river."""


class ManifestError(ModelError):
    """A model directory whose manifest is missing, damaged or does not match the code."""


class RegistryError(ModelError):
    """Registry operation impossible (unknown version, nothing to roll back to, ...)."""


class CycleError(ForecastError):
    """A forecast cycle could not run at all (per-river failures are recorded, not raised)."""


class DeliveryError(ForecastError):
    """A notification that a channel (Slack, webhook, CAP endpoint) did not accept.

    ``retryable`` tells the outbox whether trying again later can help: timeouts, refused
    connections, HTTP 408/429/5xx and Slack ``ratelimited`` are retryable; a bad token, an
    unknown channel or another 4xx answer is not (someone must fix the settings). ``channel``
    names the channel (``slack``, ``webhook``, ``cap``), ``status`` the HTTP status when there
    was one. The message never contains a token, secret or webhook URL (those are secrets).
    """

    def __init__(self, message: str, *, retryable: bool, channel: str = "",
                 status: int | None = None) -> None:
        self.retryable = retryable
        self.channel = channel
        self.status = status
        super().__init__(f"[{channel}] {message}" if channel else message)


class NotFoundError(ForecastError):
    """An API request for a river, station, run or message that does not exist (HTTP 404)."""


class InvalidRequestError(ForecastError):
    """An API request whose parameters cannot be served, e.g. a window of 10 years (422)."""


class ConflictError(ForecastError):
    """An action the current state does not allow, e.g. acknowledging twice (HTTP 409)."""


class AccessError(ForecastError):
    """A request refused by access control; the message is safe to show the caller (it never
    names a key, a token's content or why a signature failed beyond one word)."""


class AuthenticationError(AccessError):
    """No credentials, or credentials that are invalid, expired or revoked (HTTP 401)."""


class PermissionDeniedError(AccessError):
    """Valid credentials without the role the action needs (HTTP 403)."""


class SimulationError(ForecastError):
    """A request for simulated demo data that cannot be run (e.g. naive or empty time window)."""
