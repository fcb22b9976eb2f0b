"""Response and request models of API v1 (the OpenAPI schema is built from them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class Me(BaseModel):
    subject: str
    name: str
    kind: str
    roles: list[str]


class Threshold(BaseModel):
    level: int = Field(description="1 水防団待機 … 5 氾濫開始")
    key: str
    name_ja: str
    name_en: str
    level_m: float
    colour: str


class Gauge(BaseModel):
    code: str
    name_ja: str
    name_en: str
    kind: str
    lat: float
    lon: float
    primary: bool


class RiverOut(BaseModel):
    id: str
    name_ja: str
    name_en: str
    system_ja: str
    office: str
    thresholds: list[Threshold]
    gauges: list[Gauge]
    provisional: list[str] = Field(description="parts not from an official source")


class Lead(BaseModel):
    horizon_h: int
    valid_at: datetime
    q10: float
    q50: float
    q90: float


class Revision(BaseModel):
    """One stored forecast of a river: a revision of its issue time."""

    revision: int
    model_version: str
    model_variant: str
    degraded: bool
    low_confidence: bool
    reasons: list[str]
    values: list[Lead]


class ForecastOut(Revision):
    river_id: str
    issued_at: datetime


class LatestForecasts(BaseModel):
    data: str
    forecasts: list[ForecastOut]


class NotificationOut(BaseModel):
    id: int
    river_id: str
    gauge: str
    topic: str
    level: int
    level_key: str
    level_name_ja: str
    state: str
    basis: str | None
    raised_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    cleared_at: datetime | None
    event_key: str
    summary_ja: str | None = None


class Acknowledge(BaseModel):
    note: str | None = Field(default=None, max_length=500)


RoleName = Literal["viewer", "operator", "hydrologist", "admin"]


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"\S",
                      description="who or what uses the key")
    roles: list[RoleName] = Field(min_length=1)
    days: int | None = Field(default=365, ge=1, le=3650)


class KeyOut(BaseModel):
    key_id: str
    name: str
    roles: list[str]
    state: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class NewKey(KeyOut):
    key: str = Field(description="the whole key: shown once, store it now")


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]


class ObservationOut(BaseModel):
    station_id: str
    variable: str
    time: datetime
    value: float | None
    flag: int
    flag_name: str = Field(description="GOOD, FILLED, DOUBTFUL, UNRELIABLE, MISSING, "
                           "BELOW_START (see `flags`)")
    qc_rule: str = Field(description="the QC rule that set the flag, empty when GOOD")
    provisional: bool
    source: str


class ObservationsOut(BaseModel):
    data: str
    river_id: str
    station: str
    start: datetime
    end: datetime
    flags: dict[str, int] = Field(description="the QC flag legend: name → value")
    observations: list[ObservationOut]


class ArchiveOut(BaseModel):
    data: str
    river_id: str
    issued_at: datetime
    revisions: list[Revision]


class RunRiver(BaseModel):
    river_id: str
    status: str
    model_version: str | None
    message: str | None


class RunSource(BaseModel):
    source: str
    status: str
    payloads: int
    rows: int
    failures: int
    seconds: float | None
    message: str | None


class RunOut(BaseModel):
    id: int
    issued_at: datetime
    revision: int
    kind: str
    trigger: str
    status: str
    message: str | None
    started_at: datetime
    finished_at: datetime | None
    stages: dict[str, float] | None
    rivers: list[RunRiver]
    sources: list[RunSource]


class RunsPage(BaseModel):
    runs: list[RunOut]
    next_cursor: int | None = Field(description="pass as ?cursor= for the next (older) page")


class FreshnessOut(BaseModel):
    at: datetime
    stations: list[dict[str, Any]]
    products: list[dict[str, Any]]


class Feature(BaseModel):
    type: str = "Feature"
    geometry: dict[str, Any]
    properties: dict[str, Any]


class FeatureCollection(BaseModel):
    type: str = "FeatureCollection"
    features: list[Feature]


class ModelVersionOut(BaseModel):
    river_id: str
    version: str
    champion: bool
    details: dict[str, Any]


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text, "content": {"application/problem+json": {}}}
    for code, text in ((401, "not signed in"), (403, "not allowed"), (404, "not found"),
                       (409, "conflict with the current state"), (422, "invalid request"),
                       (429, "too many requests"))}
"""The problems every /v1 endpoint may answer with (declared for the OpenAPI document)."""


class RainHour(BaseModel):
    valid_at: datetime = Field(description="end of the hour")
    rain_mm: float | None = Field(description="catchment mean over the hour; null = unknown")


class RainOut(BaseModel):
    data: str
    river_id: str
    catchment_id: str
    rain_gauges: list[str]
    observed: list[RainHour] = Field(description="weighted over the river's rain gauges")
    forecast_issued_at: datetime | None = Field(description="the newest forecast-rain vintage")
    forecast_product: str | None
    forecast: list[RainHour]
