"""River catalogue: rivers, gauges, thresholds, rain gauges, catchments and QC limits.

Loaded from YAML (``config/rivers.yaml`` for Mie, ``config/reference_rivers.yaml`` for the real
厚東川 reference river) with a strict schema: unknown keys, non-increasing thresholds, duplicate
ids and impossible coordinates are refused at start-up with a ``CatalogueError`` naming the file,
river and key.

Any value that does not come from an official source is marked ``provisional: true`` (on the
river, a gauge, the thresholds or the catchment); ``River.provisional_parts`` lists them so the
API and UI can say so.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from forecast.errors import CatalogueError

THRESHOLD_NAMES: tuple[str, ...] = ("standby_m", "caution_m", "evacuation_m", "danger_m")
"""Alert ladder, rising: 水防団待機, 氾濫注意, 避難判断, 氾濫危険 (m at the gauge)."""

THRESHOLD_LABELS: dict[str, tuple[str, str]] = {
    "standby_m": ("水防団待機水位", "standby"),
    "caution_m": ("氾濫注意水位", "caution"),
    "evacuation_m": ("避難判断水位", "evacuation judgement"),
    "danger_m": ("氾濫危険水位", "danger"),
}


class AlertLevel(IntEnum):
    """The threshold ladder as an ordered type (shared by alerts, messages, API and page).

    ``FLOODING`` (氾濫開始) exists only where a crisis gauge has ``overflow_level_m``. The
    colours are those of the 警戒レベル scheme (内閣府: レベル2 yellow, 3 red, 4 purple,
    5 black); 水防団待機 has no 警戒レベル and gets a neutral blue (our choice)."""

    STANDBY = 1
    CAUTION = 2
    EVACUATION = 3
    DANGER = 4
    FLOODING = 5

    @property
    def key(self) -> str:
        """``standby`` … ``flooding`` (API, settings and catalogue keys)."""
        return self.name.lower()

    @property
    def name_ja(self) -> str:
        """The level's Japanese name, e.g. 氾濫危険水位."""
        return _LEVEL_JA[self][0]

    @property
    def short_ja(self) -> str:
        """The short Japanese name used in messages, e.g. 氾濫危険."""
        return _LEVEL_JA[self][1]

    @property
    def name_en(self) -> str:
        return _LEVEL_JA[self][2]

    @property
    def colour(self) -> str:
        """Hex colour (``#rrggbb``) for Slack, the page and maps."""
        return _LEVEL_JA[self][3]

    @property
    def keikai_level(self) -> int | None:
        """警戒レベル相当 (None for 水防団待機)."""
        return None if self is AlertLevel.STANDBY else int(self)

    @classmethod
    def from_key(cls, key: str) -> AlertLevel:
        """``standby`` / ``standby_m`` / ``STANDBY`` → the level; ``ValueError`` otherwise."""
        k = key.strip().lower().removesuffix("_m")
        for level in cls:
            if level.key == k:
                return level
        raise ValueError(f"unknown level {key!r}; one of {', '.join(lv.key for lv in cls)}")


_LEVEL_JA: dict[AlertLevel, tuple[str, str, str, str]] = {
    AlertLevel.STANDBY: ("水防団待機水位", "水防団待機", "standby", "#4a90d9"),
    AlertLevel.CAUTION: ("氾濫注意水位", "氾濫注意", "caution", "#f2e700"),
    AlertLevel.EVACUATION: ("避難判断水位", "避難判断", "evacuation judgement", "#ff2800"),
    AlertLevel.DANGER: ("氾濫危険水位", "氾濫危険", "danger", "#aa00aa"),
    AlertLevel.FLOODING: ("氾濫開始水位", "氾濫開始", "flooding", "#0c000c"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Datum(_Strict):
    """Gauge datum (零点高, m above T.P.) valid over [valid_from, valid_to)."""

    elevation_m: float
    valid_from: date
    valid_to: date | None = None

    @model_validator(mode="after")
    def _order(self) -> Datum:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


GaugeVariable = Literal["level_m", "discharge_m3s", "release_m3s", "inflow_m3s"]
"""What a ``Gauge`` measures (``forecast.frames`` variable names, units in the name)."""


class Gauge(_Strict):
    """A gauge: a water-level gauge unless ``variable`` says otherwise.

    ``variable`` (default ``level_m``) is the series the station delivers. Only an upstream
    input that is not a level (a dam release ``release_m3s``, a dam inflow ``inflow_m3s``, a
    discharge ``discharge_m3s``) sets it; crisis gauges and primary gauges are level gauges.
    """

    code: str = Field(min_length=1)
    name_ja: str
    name_en: str = ""
    lat: float = Field(ge=20.0, le=46.0)
    lon: float = Field(ge=122.0, le=154.0)
    kind: Literal["telemetry", "crisis"]
    variable: GaugeVariable = "level_m"
    datums: tuple[Datum, ...] = ()
    start_level_m: float | None = None      # 観測開始水位 (crisis gauges)
    overflow_level_m: float | None = None   # 氾濫開始水位 (crisis gauges)
    source: str = "simulated"               # ingest source name for this gauge
    provisional: bool = False

    @model_validator(mode="after")
    def _crisis_levels(self) -> Gauge:
        if self.kind == "crisis" and self.variable != "level_m":
            raise ValueError("a crisis gauge (危機管理型水位計) measures level_m only")
        if self.kind == "crisis" and self.start_level_m is None:
            raise ValueError("a crisis gauge needs start_level_m (観測開始水位)")
        if (
            self.start_level_m is not None
            and self.overflow_level_m is not None
            and self.overflow_level_m <= self.start_level_m
        ):
            raise ValueError("overflow_level_m must be above start_level_m")
        return self


class RainGauge(_Strict):
    """A rain gauge (AMeDAS or prefecture telemetry) and its weight in the catchment mean."""

    code: str = Field(min_length=1)
    name_ja: str
    name_en: str = ""
    lat: float = Field(ge=20.0, le=46.0)
    lon: float = Field(ge=122.0, le=154.0)
    network: Literal["amedas", "prefecture", "mlit", "other"] = "amedas"
    weight: float = Field(gt=0.0, le=1.0)
    source: str = "simulated"
    provisional: bool = False


class Thresholds(_Strict):
    """Threshold ladder in metres at the primary gauge; absent steps are ``None``."""

    standby_m: float | None = None
    caution_m: float | None = None
    evacuation_m: float | None = None
    danger_m: float | None = None
    hwl_m: float | None = None      # 計画高水位: shown, not an alert trigger
    provisional: bool = False

    @model_validator(mode="after")
    def _increasing(self) -> Thresholds:
        present = [(n, getattr(self, n)) for n in THRESHOLD_NAMES if getattr(self, n) is not None]
        if not present:
            raise ValueError("at least one threshold level is required")
        for (n1, v1), (n2, v2) in itertools.pairwise(present):
            if v2 <= v1:
                raise ValueError(f"thresholds must increase: {n2}={v2} is not above {n1}={v1}")
        return self

    def ladder(self) -> list[tuple[str, float]]:
        """Present levels in rising order as (name, metres)."""
        return [(n, v) for n in THRESHOLD_NAMES if (v := getattr(self, n)) is not None]


class LevelRule(_Strict):
    """Overrides for one level of ``AlertRules.levels``; a key left out inherits. For
    ``probability``, an explicit ``null`` switches the probability trigger off."""

    dead_band_m: float | None = Field(default=None, ge=0.0, le=5.0)
    min_duration_min: int | None = Field(default=None, ge=0, le=24 * 60)
    probability: float | None = Field(default=None, gt=0.0, le=1.0)
    probability_within_h: int | None = Field(default=None, ge=1, le=6)
    renotify_after_min: int | None = Field(default=None, ge=0, le=24 * 60)


DEFAULT_PROBABILITY: dict[AlertLevel, float | None] = {
    AlertLevel.STANDBY: None, AlertLevel.CAUTION: None,
    AlertLevel.EVACUATION: 0.3, AlertLevel.DANGER: 0.3, AlertLevel.FLOODING: None,
}
"""The probability trigger is on for 避難判断 and 氾濫危険 only (at 30 %): the levels where an
early, uncertain notice is worth a false alarm; below them the P50 crossing suffices."""


@dataclass(frozen=True)
class ResolvedRule:
    """The settings in force for one level of one river (``AlertRules.rule``)."""

    dead_band_m: float
    min_duration: timedelta
    probability: float | None
    probability_within_h: int
    renotify_after: timedelta | None


class AlertRules(_Strict):
    """How a river's forecast notifications behave (catalogue ``alerts:``, on the catalogue
    for every river and on a river for its own; river keys override catalogue keys).

    * ``dead_band_m``: a level is held until the observed level is this far below it (and the
      P50 forecast and the probability are below it too);
    * ``min_duration_min``: ... for this long before the level is lowered;
    * ``all_clear_after_min``: the all-clear needs everything below the lowest level (minus the
      dead band) for this long;
    * ``renotify_after_min``: an unacknowledged level is notified again after this long
      (0: never);
    * ``rearm_after_min``: a level lowered within an event is not raised again on a forecast
      or a probability for this long (an observed crossing always raises it): forecasts that
      swing from one tick to the next do not make a level flap;
    * ``probability_within_h``: the probability trigger looks this many hours ahead;
    * ``levels``: per-level overrides (``standby`` … ``flooding``), e.g. the probability.
    * ``data_problems``: raise data-problem notifications for the duty officer.
    """

    dead_band_m: float = Field(default=0.10, ge=0.0, le=5.0)
    min_duration_min: int = Field(default=60, ge=0, le=24 * 60)
    all_clear_after_min: int = Field(default=180, ge=0, le=7 * 24 * 60)
    renotify_after_min: int = Field(default=60, ge=0, le=24 * 60)
    rearm_after_min: int = Field(default=120, ge=0, le=24 * 60)
    probability_within_h: int = Field(default=3, ge=1, le=6)
    levels: dict[str, LevelRule] = Field(default_factory=dict)
    data_problems: bool = True

    @field_validator("levels")
    @classmethod
    def _level_keys(cls, v: dict[str, LevelRule]) -> dict[str, LevelRule]:
        for k in v:
            AlertLevel.from_key(k)   # ValueError names the known keys
        return v

    def merged(self, river: AlertRules | None) -> AlertRules:
        """These (catalogue) rules with a river's own on top."""
        if river is None:
            return self
        mine = self.model_dump(exclude_unset=True)
        theirs = river.model_dump(exclude_unset=True)
        levels = {k: LevelRule(**v) for k, v in mine.pop("levels", {}).items()}
        for k, v in theirs.pop("levels", {}).items():
            base = levels[k].model_dump(exclude_unset=True) if k in levels else {}
            levels[k] = LevelRule(**{**base, **v})
        return AlertRules(**{**mine, **theirs, **({"levels": levels} if levels else {})})

    def rule(self, level: AlertLevel) -> ResolvedRule:
        """The settings in force for ``level``."""
        over = next((r for k, r in self.levels.items() if AlertLevel.from_key(k) is level),
                    None)
        got = over.model_dump(exclude_unset=True) if over is not None else {}
        renotify = got.get("renotify_after_min", self.renotify_after_min)
        return ResolvedRule(
            dead_band_m=got.get("dead_band_m", self.dead_band_m),
            min_duration=timedelta(minutes=got.get("min_duration_min", self.min_duration_min)),
            probability=got.get("probability", DEFAULT_PROBABILITY[level]),
            probability_within_h=got.get("probability_within_h", self.probability_within_h),
            renotify_after=timedelta(minutes=renotify) if renotify else None)

    @property
    def all_clear_after(self) -> timedelta:
        return timedelta(minutes=self.all_clear_after_min)

    @property
    def rearm_after(self) -> timedelta:
        return timedelta(minutes=self.rearm_after_min)


class Cell(_Strict):
    """One JMA 1 km grid cell of a catchment (row/col from the north-west corner)."""

    row: int = Field(ge=0, lt=3360)
    col: int = Field(ge=0, lt=2560)
    weight: float = Field(gt=0.0, le=1.0)


class Catchment(_Strict):
    """Catchment above the primary gauge: area and a lon/lat polygon and/or a cell list."""

    area_km2: float = Field(gt=0.0, le=20000.0)
    polygon: tuple[tuple[float, float], ...] = ()   # (lon, lat) vertices, not closed
    cells: tuple[Cell, ...] = ()
    provisional: bool = False

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, v: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        if v and len(v) < 3:
            raise ValueError("a polygon needs at least 3 vertices")
        for lon, lat in v:
            if not (122.0 <= lon <= 154.0 and 20.0 <= lat <= 46.0):
                raise ValueError(f"polygon vertex ({lon}, {lat}) lies outside Japan")
        return v

    @model_validator(mode="after")
    def _some_shape(self) -> Catchment:
        if not self.polygon and not self.cells:
            raise ValueError("a catchment needs a polygon or a cell list")
        return self


class QCLimits(_Strict):
    """Per-gauge quality-control limits (metres, metres per hour, hours)."""

    hard_min_m: float = -5.0
    hard_max_m: float = 30.0
    soft_min_m: float | None = None
    soft_max_m: float | None = None
    max_rise_m_per_h: float = 3.0
    max_fall_m_per_h: float = 2.0
    spike_m: float = 1.0
    stuck_hours: float = 12.0
    max_fill_h: float = 1.0
    datum_jump_m: float = 0.5

    @model_validator(mode="after")
    def _ordered(self) -> QCLimits:
        if self.hard_max_m <= self.hard_min_m:
            raise ValueError("hard_max_m must be above hard_min_m")
        return self


class River(_Strict):
    """One river with a forecast point (its primary gauge)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name_ja: str
    name_en: str
    system_ja: str                      # 水系
    system_en: str = ""
    office: str = ""                    # 建設事務所 responsible
    gauges: tuple[Gauge, ...] = Field(min_length=1)
    primary_gauge: str                  # validated after `gauges` (field order matters)
    thresholds: Thresholds
    rain_gauges: tuple[RainGauge, ...] = Field(min_length=1)
    catchment: Catchment
    upstream_gauges: tuple[str, ...] = ()   # codes of gauges (of this or other rivers)
    qc: QCLimits = QCLimits()
    simulation: dict[str, float] = Field(default_factory=dict)  # tank-model parameter overrides
    # model target space: "log" for flow-like series (m3/s); unset = the training settings' own
    target_transform: Literal["none", "log"] | None = None
    alerts: AlertRules | None = None    # this river's notification rules (over the catalogue's)
    provisional: bool = False
    notes: str = ""

    # Field validators (not one model validator) so that errors carry the key they are about.
    @field_validator("gauges")
    @classmethod
    def _unique_gauges(cls, v: tuple[Gauge, ...]) -> tuple[Gauge, ...]:
        codes = [g.code for g in v]
        if len(set(codes)) != len(codes):
            raise ValueError(f"duplicate gauge code within the river: {codes}")
        return v

    @field_validator("primary_gauge")
    @classmethod
    def _primary_known(cls, v: str, info: ValidationInfo) -> str:
        gauges = info.data.get("gauges", ())
        codes = [g.code for g in gauges]
        if codes and v not in codes:
            raise ValueError(f"primary_gauge {v!r} is not one of the river's gauges {codes}")
        variable = next((g.variable for g in gauges if g.code == v), "level_m")
        if variable != "level_m":
            raise ValueError(f"primary_gauge {v!r} measures {variable}; the forecast point "
                             "must be a level_m gauge (thresholds are in metres)")
        return v

    @field_validator("rain_gauges")
    @classmethod
    def _weights(cls, v: tuple[RainGauge, ...]) -> tuple[RainGauge, ...]:
        codes = [r.code for r in v]
        if len(set(codes)) != len(codes):
            raise ValueError(f"a rain gauge is listed twice: {codes}")
        total = sum(r.weight for r in v)
        if abs(total - 1.0) > 0.011:
            raise ValueError(f"rain gauge weights must sum to 1 (got {total:.3f})")
        return v

    @property
    def gauge(self) -> Gauge:
        """The primary (forecast-point) gauge."""
        return next(g for g in self.gauges if g.code == self.primary_gauge)

    @property
    def station_codes(self) -> list[str]:
        """Every station whose data this river's forecast reads: its gauges, rain gauges and
        upstream inputs (which may belong to other rivers)."""
        codes = [g.code for g in self.gauges] + [r.code for r in self.rain_gauges]
        return list(dict.fromkeys([*codes, *self.upstream_gauges]))

    @property
    def provisional_parts(self) -> list[str]:
        """Which parts of this entry are provisional (not from an official source)."""
        parts = ["river"] if self.provisional else []
        if self.thresholds.provisional:
            parts.append("thresholds")
        parts += [f"gauge {g.code}" for g in self.gauges if g.provisional]
        parts += [f"rain gauge {r.code}" for r in self.rain_gauges if r.provisional]
        if self.catchment.provisional:
            parts.append("catchment")
        return parts


class Catalogue(_Strict):
    """A validated set of rivers."""

    name: str
    description: str = ""
    alerts: AlertRules = AlertRules()   # notification rules for every river
    rivers: tuple[River, ...] = Field(min_length=1)

    def alert_rules(self, river: River) -> AlertRules:
        """The notification rules of ``river`` (its own ``alerts:`` over the catalogue's)."""
        return self.alerts.merged(river.alerts)

    def check_references(self, file: str) -> None:
        """Cross-river checks, raised as ``CatalogueError`` naming file, river and key:
        unique river ids, gauge codes owned by one river, known upstream gauges, and shared rain
        gauges described identically wherever they appear."""
        seen: set[str] = set()
        gauge_owner: dict[str, str] = {}
        rain: dict[str, tuple[float, float]] = {}
        for i, r in enumerate(self.rivers):
            if r.id in seen:
                raise CatalogueError("duplicate river id", file=file, river=r.id,
                                     key=f"rivers.{i}.id")
            seen.add(r.id)
            for g in r.gauges:
                if gauge_owner.setdefault(g.code, r.id) != r.id:
                    raise CatalogueError(
                        f"gauge code {g.code!r} is already used by river {gauge_owner[g.code]!r}",
                        file=file, river=r.id, key="gauges")
            for rg in r.rain_gauges:
                if rain.setdefault(rg.code, (rg.lat, rg.lon)) != (rg.lat, rg.lon):
                    raise CatalogueError(
                        f"rain gauge {rg.code!r} has other coordinates in another river",
                        file=file, river=r.id, key="rain_gauges")
        for r in self.rivers:
            unknown = [c for c in r.upstream_gauges if c not in gauge_owner]
            if unknown:
                raise CatalogueError(f"unknown upstream gauge codes {unknown}", file=file,
                                     river=r.id, key="upstream_gauges")

    def station_variables(self) -> dict[str, str]:
        """Station code → the one variable its series is (``forecast.frames`` names).

        Every gauge gives its ``Gauge.variable``: ``level_m`` for telemetry and crisis level
        gauges, or what the catalogue says for a non-level upstream input (e.g.
        ``release_m3s`` for a dam release listed in ``upstream_gauges``; upstream inputs are
        always ``gauges`` of some river, ``check_references`` ensures it). Every rain gauge
        gives ``rain_mm``. Used to label files that carry no variable (canonical CSV without
        a ``variable`` column). A code listed both as a gauge and as a rain gauge has no single
        variable: ``CatalogueError`` naming it (its files need a ``variable`` column).
        """
        out: dict[str, str] = {}
        owner: dict[str, tuple[str, str]] = {}
        for r in self.rivers:
            entries: list[tuple[str, str, str]] = [(g.code, g.variable, "gauges")
                                                   for g in r.gauges]
            entries += [(rg.code, "rain_mm", "rain_gauges") for rg in r.rain_gauges]
            for code, variable, key in entries:
                known = out.setdefault(code, variable)
                owner.setdefault(code, (r.id, key))
                if known != variable:
                    first_river, first_key = owner[code]
                    raise CatalogueError(
                        f"station {code!r} is {known} in {first_river}.{first_key} and "
                        f"{variable} here: one code cannot name two series; give the files a "
                        "variable column or use distinct codes", river=r.id, key=key)
        return out

    def river(self, river_id: str) -> River:
        """The river with this id; ``CatalogueError`` if unknown."""
        for r in self.rivers:
            if r.id == river_id:
                return r
        raise CatalogueError(f"unknown river {river_id!r}", river=river_id)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rivers]


def _locate(data: Any, loc: tuple[int | str, ...]) -> tuple[str, str]:
    """Turn a pydantic error location into (river id, dotted key)."""
    river = ""
    if len(loc) >= 2 and loc[0] == "rivers" and isinstance(loc[1], int):
        try:
            river = str(data["rivers"][loc[1]].get("id", f"#{loc[1]}"))
        except (KeyError, IndexError, TypeError, AttributeError):
            river = f"#{loc[1]}"
        loc = loc[2:]
    return river, ".".join(str(p) for p in loc)


def parse_catalogue(data: Any, *, file: str = "<memory>") -> Catalogue:
    """Validate catalogue data (already loaded from YAML); raise ``CatalogueError`` on problems."""
    if not isinstance(data, dict):
        raise CatalogueError("top level must be a mapping with 'name' and 'rivers'", file=file)
    try:
        cat = Catalogue.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        river, key = _locate(data, tuple(first["loc"]))
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = "unknown key (check spelling against forecast/catalogue.py)"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise CatalogueError(msg + more, file=file, river=river, key=key) from exc
    cat.check_references(file)
    return cat


def load_catalogue(path: str | Path) -> Catalogue:
    """Load and validate a catalogue YAML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"cannot read catalogue: {exc.strerror}", file=str(p)) from exc
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise CatalogueError(f"not valid YAML: {exc}", file=str(p)) from exc
    return parse_catalogue(data, file=str(p))


def default_catalogue_path() -> Path:
    """``config/rivers.yaml`` shipped with the package checkout."""
    return Path(__file__).resolve().parent.parent / "config" / "rivers.yaml"
