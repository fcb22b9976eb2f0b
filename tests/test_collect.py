"""Collection service end to end against MockTransport: real-format payloads (AMeDAS map,
MLIT .dat, crisis JSON, JMA GRIB2) are archived before parsing, parsed, QC'd and stored; one
broken or unreachable source never stops the others; a second identical run adds nothing;
replays go through the same path."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from helpers import context, run
from sqlalchemy.engine import Engine

from forecast import frames
from forecast.catalogue import Catalogue, load_catalogue
from forecast.errors import FrameError
from forecast.ingest.fetch import Fetcher, RetryPolicy
from forecast.ingest.mlit import parse_mlit_dat
from forecast.ingest.replay import Replay
from forecast.ingest.sources import (
    AmedasMap,
    AmedasPoint,
    CrisisArea,
    JmaGrib,
    UrlList,
    sources_for_catalogue,
)
from forecast.pipeline import collect as collect_mod
from forecast.pipeline.collect import collect, collect_replay, store_observations
from forecast.storage.archive import load_payload
from forecast.storage.observations import read_observations
from forecast.storage.rain import read_rain_vintages
from forecast.storage.tables import raw_fetches

DATA = Path(__file__).resolve().parent / "data"
ROOT_CAT = Path(__file__).resolve().parent.parent / "config" / "reference_rivers.yaml"
AMEDAS_MAP = (DATA / "amedas" / "map" / "20250801093000.json").read_bytes()
MLIT_NAME = "japan_301011281104010_kind6_200401.dat"
MLIT_DAT = (DATA / "mlit-wis" / MLIT_NAME).read_bytes()
GRIB_NAME = "Z__C_RJTD_20210817090000_SRF_GPV_Ggis1km_Prr60lv_FH01-06_grib2.bin"
NOW = datetime(2025, 8, 1, 0, 35, tzinfo=UTC)       # 09:35 JST: the 09:30 map is out


def crisis_json(levels: list[float], *, start: str = "2025-08-01T08:00:00+09:00") -> bytes:
    t0 = pd.Timestamp(start)
    obss = [{"code": "2400000001", "name": "テスト橋",
             "obsTime": (t0 + pd.Timedelta(minutes=10 * i)).isoformat(), "level": v,
             "startLevel": 1.0, "warnLevel": 2.0, "fladLevel": 3.0, "lat": 34.7,
             "lon": 136.5} for i, v in enumerate(levels)]
    obss.append({"code": "2400000002", "name": "欠測", "obsTime": start, "level": None,
                 "startLevel": 1.0, "warnLevel": 2.0, "fladLevel": 3.0})   # a rejected record
    return json.dumps({"obss": obss}, ensure_ascii=False).encode()


CRISIS = crisis_json([1.20, 1.25, 1.31, 1.40, 1.52, 1.60, 1.66, 1.70, 1.74, 1.80])


def handler_for(routes: dict[str, bytes | int], hits: dict[str, int] | None = None):  # type: ignore[no-untyped-def]
    def handler(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if hits is not None:
            hits[url] = hits.get(url, 0) + 1
        body = routes.get(url, 404)
        if isinstance(body, int):
            return httpx.Response(body)
        return httpx.Response(200, content=body)
    return handler


def fetcher(routes: dict[str, bytes | int], hits: dict[str, int] | None = None) -> Fetcher:
    client = httpx.Client(transport=httpx.MockTransport(handler_for(routes, hits)))
    return Fetcher(client, clock=lambda: NOW, sleep=lambda s: None, rng=random.Random(0),
                   retry=RetryPolicy(attempts=2))


@pytest.fixture(scope="module")
def catalogue(reference_catalogue_path: Path) -> Catalogue:
    return load_catalogue(reference_catalogue_path)


def sources() -> list:  # type: ignore[type-arg]
    return [
        AmedasMap(None, "https://jma.test/amedas"),
        UrlList("mlit_dat", (f"https://wis.test/{MLIT_NAME}",), parse_mlit_dat),
        CrisisArea(None, 24000, "https://k.test/current"),
    ]


ROUTES: dict[str, bytes | int] = {
    "https://jma.test/amedas/map/20250801093000.json": AMEDAS_MAP,
    f"https://wis.test/{MLIT_NAME}": MLIT_DAT,
    "https://k.test/current/24000.json": CRISIS,
}


def fetch_rows(engine: Engine) -> list[dict]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(raw_fetches)
                                                       .order_by(raw_fetches.c.id))]


def test_collect_stores_every_source_and_is_idempotent(engine: Engine,
                                                       catalogue: Catalogue) -> None:
    report = collect(context(engine, catalogue, NOW), sources(), timedelta(minutes=10), now=NOW,
                     fetcher=fetcher(ROUTES))
    assert all(s.ok for s in report.sources.values()), report.failures
    stored = run(engine, read_observations)
    by_source = stored.groupby("source").size().to_dict()
    assert by_source["amedas"] >= 4 and by_source["crisis_json"] == 10
    assert by_source["mlit_dat"] >= 24 * 31
    # the stored rows are the parsers' rows (values and times untouched by the pipeline)
    amedas = stored[stored["source"] == "amedas"].set_index("station_id")
    assert amedas.loc["53133", "value"] == 2.5
    assert amedas.loc["53133", "time"] == pd.Timestamp("2025-08-01T00:30", tz="UTC")
    assert report.sources["crisis_json"].record_errors       # the null-level record
    assert report.inserted == len(stored)
    rows = fetch_rows(engine)
    assert len(rows) == 3 and {r["parse_status"] for r in rows} == {"ok"}

    again = collect(context(engine, catalogue, NOW), sources(), timedelta(minutes=10), now=NOW,
                    fetcher=fetcher(ROUTES))
    assert again.inserted == 0 and again.revised == 0
    pd.testing.assert_frame_equal(run(engine, read_observations), stored)
    assert len(fetch_rows(engine)) == 6      # every fetch is recorded; bytes stored once


def test_parse_failure_is_archived_and_other_sources_stored(engine: Engine,
                                                            catalogue: Catalogue) -> None:
    broken = b'{"obss": [ {"code": "2400000001", '   # truncated JSON
    routes = dict(ROUTES) | {"https://k.test/current/24000.json": broken,
                             f"https://wis.test/{MLIT_NAME}": 503}
    report = collect(context(engine, catalogue, NOW), sources(), timedelta(minutes=10), now=NOW,
                     fetcher=fetcher(routes))
    crisis = report.sources["crisis_json"]
    assert [p.status for p in crisis.payloads] == ["parse_failed"]
    assert "ParseError" in crisis.payloads[0].error
    assert [p.status for p in report.sources["mlit_dat"].payloads] == ["fetch_failed"]
    assert MLIT_NAME in report.sources["mlit_dat"].payloads[0].error
    assert report.sources["amedas"].ok and report.sources["amedas"].inserted >= 4
    failed = [r for r in fetch_rows(engine) if r["parse_status"] == "failed"]
    assert len(failed) == 1 and failed[0]["source"] == "crisis_json"
    assert run(engine, load_payload, failed[0]["sha256"]) == broken     # bytes kept for re-parse
    assert set(run(engine, read_observations)["source"]) == {"amedas"}


def test_conditional_fetch_skips_unchanged_payloads(engine: Engine,
                                                    catalogue: Catalogue) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("If-None-Match") == '"c1"':
            return httpx.Response(304)
        return httpx.Response(200, content=CRISIS, headers={"ETag": '"c1"'})

    f = Fetcher(httpx.Client(transport=httpx.MockTransport(handler)), clock=lambda: NOW,
                sleep=lambda s: None)
    src = [CrisisArea(None, 24000, "https://k.test/current")]
    first = collect(context(engine, catalogue, NOW), src, timedelta(hours=1), now=NOW, fetcher=f)
    second = collect(context(engine, catalogue, NOW), src, timedelta(hours=1), now=NOW, fetcher=f)
    assert first.inserted == 10
    assert [p.status for p in second.sources["crisis_json"].payloads] == ["not_modified"]
    assert len(fetch_rows(engine)) == 1


def test_late_reading_reevaluates_qc(engine: Engine, catalogue: Catalogue) -> None:
    """A spike can only be judged once the next reading exists: the stored verdict of the
    earlier reading is revised when the later one arrives in a later run."""
    src = [CrisisArea(None, 24000, "https://k.test/current")]
    first = crisis_json([1.20, 1.22, 1.24, 3.50])           # last value: spike or flood?
    collect(context(engine, catalogue, NOW), src, timedelta(hours=1), now=NOW,
            fetcher=fetcher({"https://k.test/current/24000.json": first}))
    spike_time = pd.Timestamp("2025-08-01T08:30+09:00").tz_convert("UTC")
    before = run(engine, read_observations).set_index("time")
    # without the next reading it can only be a (doubtful) fast rise, not a spike
    assert before.loc[spike_time, "qc_rule"] == "rate_of_rise"
    assert before.loc[spike_time, "flag"] == frames.Flag.DOUBTFUL
    later = crisis_json([1.20, 1.22, 1.24, 3.50, 1.26])     # back down: it was a spike
    report = collect(context(engine, catalogue, NOW), src, timedelta(hours=1), now=NOW,
                     fetcher=fetcher({"https://k.test/current/24000.json": later}))
    after = run(engine, read_observations).set_index("time")
    assert after.loc[spike_time, "qc_rule"] == "spike"
    assert after.loc[spike_time, "flag"] == frames.Flag.UNRELIABLE
    assert report.inserted == 1 and report.revised == 1


def test_failing_station_does_not_stop_the_others(engine: Engine, catalogue: Catalogue,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real = collect_mod.apply_qc

    def qc(obs, cat, **kw):  # type: ignore[no-untyped-def]
        if "53296" in set(obs["station_id"]):
            raise FrameError("injected failure for station 53296")
        return real(obs, cat, **kw)

    monkeypatch.setattr(collect_mod, "apply_qc", qc)
    report = collect(context(engine, catalogue, NOW), [AmedasMap(None, "https://jma.test/amedas")],
                     timedelta(minutes=10), now=NOW, fetcher=fetcher(ROUTES))
    sr = report.sources["amedas"]
    assert list(sr.failed_stations) == ["53296"]
    stored = set(run(engine, read_observations)["station_id"])
    assert "53296" not in stored and "53133" in stored and len(stored) >= 3
    assert fetch_rows(engine)[0]["parse_status"] == "failed"   # re-parse later from archive


def test_grib_source_stores_rain_vintages(engine: Engine, catalogue: Catalogue) -> None:
    data = (DATA / "jma-grib2" / GRIB_NAME).read_bytes()
    src = JmaGrib({r.id: r.catchment for r in catalogue.rivers}, "https://grib.test/srf")
    now = datetime(2021, 8, 17, 9, 10, tzinfo=UTC)
    routes: dict[str, bytes | int] = {f"https://grib.test/srf/{GRIB_NAME}": data}
    report = collect(context(engine, catalogue, NOW), [src], timedelta(minutes=30), now=now,
                     fetcher=fetcher(routes))
    assert report.sources["jma_grib2"].ok, report.failures
    rain = run(engine, read_rain_vintages)
    assert len(rain) == 6 and set(rain["catchment_id"]) == {"koto"}
    assert list(rain["valid_at"] - rain["issued_at"]) == [pd.Timedelta(hours=h)
                                                          for h in range(1, 7)]


def test_collect_replay_same_path_and_idempotent(engine: Engine, catalogue: Catalogue) -> None:
    t = pd.Timestamp("2023-07-01T00:00", tz="UTC")
    obs = pd.DataFrame({
        "station_id": "jiseiji", "variable": frames.LEVEL,
        "time": [t + pd.Timedelta(minutes=10 * i) for i in range(12)],
        "value": [1.0 + 0.01 * i for i in range(12)],
        "received_at": [t + pd.Timedelta(minutes=10 * i) for i in range(12)],
    })
    obs.loc[5, "received_at"] = t + pd.Timedelta(hours=5)      # one reading 4+ h late
    rain = pd.DataFrame({"product": "simulated_forecast", "catchment_id": "koto",
                         "issued_at": [t, t + pd.Timedelta("1h")],
                         "valid_at": [t + pd.Timedelta("1h"), t + pd.Timedelta("2h")],
                         "value": [1.5, 0.0]})
    replay = Replay.of(obs, rain, name="simulated")
    clock = (t + pd.Timedelta("2h")).to_pydatetime()
    first = collect_replay(context(engine, catalogue, NOW), replay, clock)
    # 11 readings arrived; QC filled the 10-minute hole left by the late one
    assert first.inserted == 12 and first.sources["simulated"].rain_rows == 2
    stored = run(engine, read_observations)
    assert set(stored["source"]) == {"simulated"} and len(stored) == 12
    late_time = t + pd.Timedelta(minutes=50)
    hole = stored[stored["time"] == late_time]
    assert hole["qc_rule"].tolist() == ["gap_fill"]
    assert hole["flag"].tolist() == [frames.Flag.FILLED]
    assert {r["source"] for r in fetch_rows(engine)} == {"simulated"}
    assert all(r["uri"].startswith("replay://simulated/") for r in fetch_rows(engine))

    again = collect_replay(context(engine, catalogue, NOW), replay, clock)
    assert again.inserted == 0 and again.revised == 0

    later = collect_replay(context(engine, catalogue, NOW), replay,
                           (t + pd.Timedelta("6h")).to_pydatetime(), since=clock)
    now_stored = run(engine, read_observations).set_index("time")
    assert now_stored.loc[late_time, "value"] == obs.loc[5, "value"]
    assert now_stored.loc[late_time, "qc_rule"] == ""      # the real reading replaced the fill
    assert later.sources["simulated"].ok and later.revised == 1 and later.inserted == 0


def test_store_observations_keeps_verified_over_provisional(engine: Engine,
                                                            catalogue: Catalogue) -> None:
    t = pd.Timestamp("2024-01-01", tz="UTC")
    verified = pd.DataFrame({"station_id": "S", "variable": frames.LEVEL, "time": [t],
                             "value": [1.0], "provisional": False})
    ctx = context(engine, catalogue, NOW)
    store_observations(ctx, verified, source="mlit_dat", now=t.to_pydatetime())
    res = store_observations(ctx, verified.assign(value=9.0, provisional=True),
                             source="amedas", now=t.to_pydatetime())
    assert res.inserted == 0 and res.revised == 0
    assert run(engine, read_observations)["value"].tolist() == [1.0]


def test_source_urls_for_a_window() -> None:
    end = datetime(2025, 8, 1, 0, 30, tzinfo=UTC)            # 09:30 JST
    amap = AmedasMap(None, "https://b")
    assert amap.urls(end - timedelta(minutes=30), end) == [
        "https://b/map/20250801091000.json", "https://b/map/20250801092000.json",
        "https://b/map/20250801093000.json"]
    point = AmedasPoint(frozenset({"53133"}), "https://b")
    assert point.urls(end - timedelta(hours=4), end) == [
        "https://b/point/53133/20250801_03.json", "https://b/point/53133/20250801_06.json",
        "https://b/point/53133/20250801_09.json"]
    assert CrisisArea(None, 24000, "https://k").urls(end, end) == ["https://k/24000.json"]
    grib = JmaGrib({}, "https://g")
    assert [u.rsplit("/", 1)[1][10:24] for u in grib.urls(end - timedelta(hours=1), end)] == [
        "20250801000000", "20250801003000"]


def test_sources_follow_catalogue_source_fields(catalogue: Catalogue) -> None:
    river = catalogue.rivers[0]
    rg = river.rain_gauges[0].model_copy(update={"source": "amedas"})
    g = river.gauges[0].model_copy(update={"source": "crisis_json"})
    cat = catalogue.model_copy(update={"rivers": (river.model_copy(update={
        "rain_gauges": (rg, *river.rain_gauges[1:]), "gauges": (g, *river.gauges[1:])}),)})
    built = {s.name: s for s in sources_for_catalogue(cat, amedas_base="https://b")}
    assert set(built) == {"amedas", "crisis_json"}
    assert built["amedas"].station_ids == frozenset({rg.code})  # type: ignore[attr-defined]
    assert built["crisis_json"].station_ids == frozenset({g.code})  # type: ignore[attr-defined]
    assert sources_for_catalogue(catalogue) == []       # kotogawa_csv has no live source


@pytest.mark.parametrize("source, path", [
    ("mlit_dat", DATA / "mlit-wis" / MLIT_NAME),
    ("mlit_json", DATA / "mlit_kuji_nukada" / "nukada_excerpt.json"),
    ("amedas_map", DATA / "amedas" / "map" / "20250801093000.json"),
    ("amedas_point", DATA / "amedas" / "point" / "53133" / "20250801_09.json"),
    ("crisis_json", None),
])
def test_file_import_covers_the_live_formats(engine: Engine, tmp_path: Path, source: str,
                                             path: Path | None) -> None:
    from forecast.pipeline.importer import import_files

    if path is None:
        path = tmp_path / "24000.json"
        path.write_bytes(CRISIS)
    report = import_files(context(engine, load_catalogue(ROOT_CAT), NOW), [path],
                          source=source)
    # QC may add FILLED rows in short gaps: at least every parsed row is stored
    assert not report.failed and report.inserted >= report.total_rows > 0
    assert str(path) in report.rows
    assert len(run(engine, read_observations)) == report.inserted


def test_qc_recheck_applies_new_limits_to_stored_history(engine: Engine,
                                                         catalogue: Catalogue) -> None:
    """`forecast qc --recheck` after a limit change: flags follow the new limits, values stay,
    the old verdicts move to the observation history, and a second re-check changes nothing."""
    from forecast.pipeline.collect import recheck_qc
    from forecast.storage.observations import observation_history_frame

    t = pd.date_range("2024-07-01", periods=36, freq="10min", tz="UTC")
    levels = [7.0 + 0.05 * i for i in range(36)]   # a steady rise to 8.75 m: GOOD under the
    i = 30                                           # old hard_max_m of 12 m ...
    obs = pd.DataFrame({"station_id": "jiseiji", "variable": frames.LEVEL, "time": t,
                        "value": levels})
    ctx = context(engine, catalogue, NOW)
    store_observations(ctx, obs, source="telemetry")
    before = run(engine, read_observations, station_ids=["jiseiji"]).set_index("time")
    assert (before["flag"] == frames.Flag.GOOD).all()
    # ... but the prefecture lowers the gauge's hard maximum to 8 m
    koto = catalogue.rivers[0]
    strict = catalogue.model_copy(update={"rivers": (koto.model_copy(update={
        "qc": koto.qc.model_copy(update={"hard_max_m": 8.0})}),)})
    res = recheck_qc(context(engine, strict, NOW), stations=["jiseiji"])
    assert not res.failed and res.revised >= 1
    after = run(engine, read_observations, station_ids=["jiseiji"]).set_index("time")
    assert (after.loc[t[i], "flag"], after.loc[t[i], "qc_rule"]) == \
        (frames.Flag.UNRELIABLE, "hard_max")
    assert (after.loc[t[:20], "flag"] == frames.Flag.GOOD).all()    # 7.00-7.95 m: still GOOD
    pd.testing.assert_series_equal(after.loc[t, "value"], before.loc[t, "value"])
    assert set(after["source"]) == {"telemetry"}
    hist = run(engine, observation_history_frame, "jiseiji", frames.LEVEL,
               t[i].to_pydatetime())
    assert hist["flag"].tolist() == [frames.Flag.GOOD]
    again = recheck_qc(context(engine, strict, NOW), stations=["jiseiji"])
    assert again.revised == 0
