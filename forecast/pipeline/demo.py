"""The embedded default: simulated history stored by the live paths, first champions, one
forecast cycle, and a replay file of the simulated future for the live demo. ``forecast demo``
calls ``prepare`` and then serves.

One simulation covers ``[end - years, end + REPLAY_DAYS)`` with a typhoon forced at
``end + TYPHOON_AFTER``: the history up to ``end`` is stored (the last 24 h through the replay
source, as a live deployment would have received it), and everything from ``end - 24 h`` on
(observations with their ``received_at``, rain vintages) goes to the replay file
(``replay_path``: two parquet files) that the live demo's scheduler plays against its clock
(``load_replay`` → ``collect.collect_replay``). ``replay.json`` next to it records the
simulation (window, seed, typhoon), so a later start can regenerate a missing file identically.

Everything here is SIMULATED (``forecast.simulate``, docs/simulation.md) and stored with
source ``simulated``, so the API and page label it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from forecast import frames
from forecast.errors import ConfigError, ForecastError
from forecast.ingest.canonical_csv import to_canonical_csv
from forecast.ingest.replay import Replay, ReplaySlice
from forecast.pipeline import models as champions
from forecast.pipeline.collect import collect_replay, store_observations
from forecast.pipeline.context import Context
from forecast.pipeline.cycle import CycleReport, run_cycle
from forecast.pipeline.training import train_all
from forecast.settings import Settings
from forecast.simulate import ForcedStorm, SimulatedData, simulate
from forecast.storage.engine import migrate, transaction
from forecast.storage.observations import read_observations
from forecast.storage.rain import upsert_rain_vintages
from forecast.storage.stations import sync_stations

DEMO_DELAY = timedelta(minutes=15)
"""The cycle for issue time T runs a little after T, when the telemetry for T has arrived."""
RAIN_PRODUCT = "simulated_forecast"
REPLAY_DAYS: Final = 14
"""Days of simulated future after the history's end in the replay file."""
TYPHOON_AFTER: Final = timedelta(hours=6)
"""The demo's typhoon starts raining this long after the history's end (at ``--speed 60``: six
wall minutes after start; rivers rise within the first wall hour)."""
REPLAY_NAME: Final = "simulated"
"""Source name of replayed rows (``collect_replay`` stores them with ``source`` = this)."""
LIVE_FROM = timedelta(hours=24)
"""The last day of history is stored through the replay source, and starts the replay file."""
_OBS_FILE, _RAIN_FILE = "observations.parquet", "rain.parquet"

Say = Callable[[str], object]


@dataclass(frozen=True)
class ReplaySpec:
    """The demo's one simulation: ``[start, until)`` with ``seed``; history up to ``end``; the
    forced typhoon (``ForcedStorm`` fields). Stored as ``replay.json`` next to the replay."""

    start: datetime
    end: datetime
    until: datetime
    seed: int
    typhoon: dict[str, Any]

    @classmethod
    def for_history(cls, end: datetime, years: float, seed: int) -> ReplaySpec:
        """The spec ``prepare`` uses for a new history ending at ``end``."""
        storm = ForcedStorm(end + TYPHOON_AFTER)
        return cls(end - timedelta(days=round(365.25 * years)), end,
                   end + timedelta(days=REPLAY_DAYS), seed,
                   {"start": storm.start.isoformat(), "kind": storm.kind,
                    "mean_mm_h": storm.mean_mm_h, "duration_h": storm.hours,
                    "peak": storm.peak})

    @property
    def typhoon_at(self) -> datetime:
        """When the forced typhoon starts raining (UTC)."""
        return datetime.fromisoformat(self.typhoon["start"])

    def storm(self) -> ForcedStorm:
        """The forced typhoon."""
        t = self.typhoon
        return ForcedStorm(self.typhoon_at, kind=t["kind"], mean_mm_h=float(t["mean_mm_h"]),
                           duration_h=float(t["duration_h"]), peak=float(t["peak"]))

    def to_json(self) -> str:
        """JSON text (times ISO 8601 with offset)."""
        d = asdict(self)
        for k in ("start", "end", "until"):
            d[k] = d[k].isoformat()
        return json.dumps({"label": "SIMULATED", **d}, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ReplaySpec:
        """Read ``to_json`` output back; ``ValueError``/``KeyError``/``TypeError`` if bad."""
        d = json.loads(text)
        start, end, until = (datetime.fromisoformat(d[k]) for k in ("start", "end", "until"))
        spec = cls(start, end, until, int(d["seed"]), dict(d["typhoon"]))
        spec.storm()    # refuses a damaged typhoon entry now, not in the middle of prepare
        return spec


@dataclass
class DemoReport:
    """What ``prepare`` did. ``replay``: the replay file (``load_replay`` reads it), which holds
    the simulated data from ``end - 24 h`` of the original history to ``replay_until``;
    ``typhoon_at``: when the forced typhoon starts raining (UTC)."""

    end: datetime
    loaded: bool
    trained: list[str]
    not_trained: dict[str, str]
    cycle: CycleReport
    replay: Path
    typhoon_at: datetime
    replay_until: datetime


def replay_path(settings: Settings) -> Path:
    """Where the demo keeps its replay: ``{data_dir}/demo/replay`` (a directory with
    ``observations.parquet`` and ``rain.parquet``; ``replay.json`` beside it)."""
    return settings.data_dir / "demo" / "replay"


def _spec_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def write_replay(path: Path, replay: Replay | ReplaySlice) -> tuple[int, int]:
    """Write a replay's observations (canonical columns plus ``received_at``, UTC) and rain
    vintages to the directory ``path`` as two parquet files, replacing what was there (written
    to a temporary sibling first, so a crash leaves the old replay or none, never half of one).
    Returns (observation rows, rain-vintage rows)."""
    obs = frames.observations(replay.observations)
    if "received_at" in replay.observations.columns:
        obs["received_at"] = pd.to_datetime(
            replay.observations["received_at"].to_numpy(), utc=True)
    rain = frames.rain_vintages(replay.rain)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for df, name in ((obs, _OBS_FILE), (rain, _RAIN_FILE)):
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp / name,
                           compression="zstd")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return len(obs), len(rain)


def _missing(path: Path) -> ConfigError:
    return ConfigError(f"no demo replay at {path}; run `forecast demo --no-serve` to create it")


def load_replay(path: Path, *, name: str = REPLAY_NAME) -> Replay:
    """The replay written by ``write_replay`` (rows stored with ``source`` = ``name``).

    Raises ``ConfigError`` (one line, naming the file, saying how to fix) if it is missing or
    unreadable."""
    path = Path(path)
    if not path.is_dir():
        raise _missing(path)
    parts: list[pd.DataFrame] = []
    for file in (path / _OBS_FILE, path / _RAIN_FILE):
        if not file.is_file():
            raise _missing(file)
        try:
            parts.append(pq.read_table(file).to_pandas())
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise ConfigError(f"demo replay {file} is unreadable ({_one_line(exc)}); run "
                              "`forecast demo --no-serve` to recreate it") from exc
    try:
        return Replay.of(parts[0], parts[1], name=name)
    except (ForecastError, KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"demo replay {path} does not hold a replay ({_one_line(exc)}); run "
                          "`forecast demo --no-serve` to recreate it") from exc


def _replay_rows(path: Path) -> tuple[int, int]:
    """(observation rows, rain rows) from the parquet footers; ``ConfigError`` if unreadable."""
    if not path.is_dir():
        raise _missing(path)
    counts = []
    for file in (path / _OBS_FILE, path / _RAIN_FILE):
        try:
            counts.append(pq.read_metadata(file).num_rows)
        except FileNotFoundError as exc:
            raise _missing(file) from exc
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise ConfigError(f"demo replay {file} is unreadable ({_one_line(exc)})") from exc
    return counts[0], counts[1]


def init_db(ctx: Context) -> tuple[str, int]:
    """Migrate the schema and load the stations; returns (revision, stations)."""
    rev = migrate(ctx.engine)
    with transaction(ctx.engine, "loading the stations") as conn:
        n = sync_stations(conn, ctx.catalogue)
    return rev, n


def write_simulation(ctx: Context, start: datetime, end: datetime, seed: int, *,
                     say: Say = print) -> tuple[int, int]:
    """Simulate [start, end) and store it through the QC store path (source ``simulated``);
    returns (observation rows, rain-vintage rows)."""
    init_db(ctx)
    say(f"simulating {len(ctx.catalogue.rivers)} rivers {start:%Y-%m-%d} → {end:%Y-%m-%d} "
        f"(seed {seed}; SIMULATED data, not observations)")
    sim = simulate(ctx.catalogue, start, end, seed=seed)
    res = store_observations(ctx, sim.observations.drop(columns=["received_at"]),
                             source="simulated")
    for station, err in res.failed.items():
        say(f"station {station} not stored: {err}")
    with transaction(ctx.engine, "storing simulated rain vintages") as conn:
        n_rain = upsert_rain_vintages(conn, sim.rain_forecasts, now=ctx.clock.now())
    return res.inserted + res.revised, n_rain


def export_simulation(ctx: Context, start: datetime, end: datetime, seed: int,
                      path: Path) -> int:
    """Simulate [start, end) into a canonical CSV whose ``source`` column says ``simulated``
    (so re-importing it keeps the label); returns the row count."""
    sim = simulate(ctx.catalogue, start, end, seed=seed)
    Path(path).write_bytes(to_canonical_csv(sim.observations, source="simulated"))
    return len(sim.observations)


def _simulate(ctx: Context, spec: ReplaySpec, say: Say) -> SimulatedData:
    say(f"simulating {len(ctx.catalogue.rivers)} rivers {spec.start:%Y-%m-%d} → "
        f"{spec.until:%Y-%m-%d}, typhoon at {spec.typhoon_at:%Y-%m-%d %H:%M}Z "
        f"(seed {spec.seed}; SIMULATED data, not observations)")
    return simulate(ctx.catalogue, spec.start, spec.until, seed=spec.seed,
                    storms=(spec.storm(),))


def _write_future(path: Path, spec: ReplaySpec, replay: Replay, say: Say) -> None:
    """The replay file: everything observed or issued from ``end - 24 h`` on, then its JSON."""
    live_from = pd.Timestamp(spec.end - LIVE_FROM)
    part = ReplaySlice(replay.observations[replay.observations["time"] >= live_from],
                       replay.rain[replay.rain["issued_at"] >= live_from])
    say(f"writing the replay file: {len(part.observations):,} observations, "
        f"{len(part.rain):,} forecast-rain values to {spec.until:%Y-%m-%d %H:%M}Z ({path})")
    write_replay(path, part)
    spec_file = _spec_path(path)
    tmp = spec_file.with_name(f".{spec_file.name}.tmp-{os.getpid()}")
    tmp.write_text(spec.to_json(), encoding="utf-8")
    os.replace(tmp, spec_file)


def _load_history(ctx: Context, spec: ReplaySpec, path: Path, say: Say) -> None:
    """Simulate ``spec`` once; store the history up to ``spec.end`` as a live deployment would
    have (the history through the QC store path, the last day through the replay source:
    archive → parse → QC → store) and write the rest to the replay file at ``path``."""
    sim = _simulate(ctx, spec, say)
    replay = Replay.of(sim.observations, sim.rain_forecasts, name=REPLAY_NAME)
    del sim
    live_from = spec.end - LIVE_FROM
    history = replay.available_at(live_from, window=spec.end - spec.start)
    say(f"storing {len(history.observations):,} observations and "
        f"{len(history.rain):,} forecast-rain values (QC + store)")
    res = store_observations(ctx, history.observations.drop(columns=["received_at"]),
                             source=REPLAY_NAME, now=live_from)
    if res.failed:
        say(f"stations that failed to store: {res.failed}")
    with transaction(ctx.engine, "storing simulated rain vintages") as conn:
        upsert_rain_vintages(conn, history.rain, now=live_from)
    del history
    _write_future(path, spec, replay, say)
    clock = spec.end + DEMO_DELAY
    arriving = replay.arrived_between(live_from, clock)
    say(f"replaying the last 24 h through the live path: {len(arriving.observations):,} "
        f"observations, {len(arriving.rain):,} forecast-rain values")
    report = collect_replay(ctx, replay, clock, since=live_from)
    if report.failures:
        say(f"replay failures: {report.failures}")


def _read_spec(path: Path) -> ReplaySpec | None:
    try:
        return ReplaySpec.from_json(_spec_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, ForecastError):
        return None


def _stored_end(ctx: Context, near: datetime) -> datetime:
    """The hour of the first river's last stored primary reading within a day of ``near``
    (the history is stored up to ``end + DEMO_DELAY``)."""
    with transaction(ctx.engine, "reading the demo history") as conn:
        have = read_observations(conn, station_ids=[ctx.catalogue.rivers[0].primary_gauge],
                                 start=near - timedelta(days=1), end=near + timedelta(days=1))
    return near if have.empty else have["time"].max().floor("h").to_pydatetime()


def _ensure_replay(ctx: Context, path: Path, end: datetime, years: float,
                   say: Say) -> ReplaySpec:
    """With history already stored: reuse the replay file, or regenerate it from
    ``replay.json`` (the same simulation as the stored history) if it is missing or damaged."""
    spec = _read_spec(path)
    if spec is not None:
        try:
            n_obs, n_rain = _replay_rows(path)
        except ConfigError as exc:
            say(f"{exc}: regenerating it")
        else:
            say(f"reusing the replay file {path} ({n_obs:,} observations, {n_rain:,} "
                f"forecast-rain values to {spec.until:%Y-%m-%d %H:%M}Z)")
            return spec
    else:
        # Stored by an older demo, or replay.json was lost: assume the history was simulated
        # for its last stored hour, these years and the configured seed (true unless live
        # ticks have stored more since; an older demo's history came from another simulation).
        spec = ReplaySpec.for_history(_stored_end(ctx, end), years, ctx.settings.seed)
        say(f"no readable {_spec_path(path).name}: regenerating the replay for a history "
            f"ending {spec.end:%Y-%m-%d %H:%M}Z (--years {years:g}, seed {spec.seed}); it "
            "continues the stored history only if that is where it was simulated")
    sim = _simulate(ctx, spec, say)
    _write_future(path, spec, Replay.of(sim.observations, sim.rain_forecasts,
                                        name=REPLAY_NAME), say)
    return spec


def _first_champions(ctx: Context, end: datetime, say: Say,
                     progress: Callable[[str], object] | None) -> tuple[list[str],
                                                                        dict[str, str]]:
    """Train, register and promote a first champion for every river without one."""
    missing = [r.id for r in ctx.catalogue.rivers if champions.champion(ctx, r.id) is None]
    if not missing:
        return [], {}
    report = train_all(ctx, end=end, days=365, judge=False, rivers=missing,
                       progress=progress, workers=min(2, os.cpu_count() or 1))
    for rid, version in report.versions.items():
        champions.promote(ctx, rid, version.version, actor="demo")
    for rid, msg in report.failed.items():
        say(f"river {rid}: not trained: {msg}")
    return sorted(report.versions), dict(report.failed)


def prepare(ctx: Context, *, end: datetime, years: float = 1.0, say: Say = print,
            progress: Callable[[str], object] | None = None) -> DemoReport:
    """Migrate, store simulated history and write the replay file unless present (a missing
    replay file is regenerated), make first champions, run one cycle.
    ``end``: the demo's issue time (whole hour, UTC) when there is no history yet."""
    init_db(ctx)
    path = replay_path(ctx.settings)
    with transaction(ctx.engine, "reading the demo history") as conn:
        have = read_observations(conn, station_ids=[ctx.catalogue.rivers[0].primary_gauge],
                                 start=end - timedelta(days=2), end=end)
    loaded = have.empty
    if loaded:
        spec = ReplaySpec.for_history(end, years, ctx.settings.seed)
        _load_history(ctx, spec, path, say)
    else:
        end = have["time"].max().floor("h").to_pydatetime()
        say(f"simulated history already present (up to {end:%Y-%m-%d %H:%M}Z)")
        spec = _ensure_replay(ctx, path, end, years, say)
    trained, failed = _first_champions(ctx, end, say, progress)
    say(f"first forecast cycle at {end:%Y-%m-%d %H:%M}Z ({len(ctx.catalogue.rivers)} rivers)")
    cycle = run_cycle(ctx, end, trigger="demo", rain_product=RAIN_PRODUCT)
    return DemoReport(end, loaded, trained, failed, cycle, path, spec.typhoon_at, spec.until)
