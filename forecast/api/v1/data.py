"""API v1, the data side: observations with QC flag names, the forecast archive ("what did we
say at 02:00"), cycle runs with their outcomes (cursor pagination), input freshness, the
gauges as GeoJSON, model versions, and the CAP feed. Every endpoint needs the viewer role.

Times in queries must carry their offset (a naive time is refused with 422); a window is at
most 90 days and within the years 2000–2100, so an extreme ``end`` is a 422, not a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime

from forecast.api.auth import Principal, Role
from forecast.api.security import require
from forecast.api.v1 import revision_fields
from forecast.api.v1.schemas import (
    PROBLEMS,
    ArchiveOut,
    Feature,
    FeatureCollection,
    FreshnessOut,
    ModelVersionOut,
    ObservationOut,
    ObservationsOut,
    RainHour,
    RainOut,
    Revision,
    RunOut,
    RunsPage,
)
from forecast.catalogue import AlertLevel, River
from forecast.errors import CatalogueError, InvalidRequestError, NotFoundError
from forecast.frames import Flag
from forecast.pipeline import status, views
from forecast.pipeline.context import Context

Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
MAX_SPAN = timedelta(days=90)
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def _window(start: datetime | None, end: datetime | None, now: datetime,
            default: timedelta) -> tuple[datetime, datetime]:
    end = end or now
    start = start or end - default
    for name, t in (("start", start), ("end", end)):
        if not EARLIEST <= t <= LATEST:
            raise InvalidRequestError(f"{name} must be between 2000 and 2100")
    if end <= start:
        raise InvalidRequestError("end must be after start")
    if end - start > MAX_SPAN:
        raise InvalidRequestError("at most 90 days per request: page through longer spans")
    return start, end


def _flag_name(v: int) -> str:
    try:
        return Flag(int(v)).name
    except ValueError:
        return "UNKNOWN"


def router(ctx: Context, data_label: str) -> APIRouter:
    api = APIRouter(prefix="/v1", responses=PROBLEMS)

    def river_or_404(river_id: str) -> River:
        try:
            return ctx.catalogue.river(river_id)
        except CatalogueError as exc:
            raise NotFoundError(f"unknown river {river_id!r}") from exc

    @api.get("/rivers/{river_id}/observations", response_model=ObservationsOut,
             tags=["observations"])
    def observations(river_id: str, who: Viewer, station: str | None = None,
                     start: AwareDatetime | None = None,
                     end: AwareDatetime | None = None) -> ObservationsOut:
        river = river_or_404(river_id)
        code = station or river.primary_gauge
        if code not in river.station_codes:
            raise NotFoundError(f"station {code!r} is not read by river {river_id!r} "
                                 f"(its stations: {', '.join(river.station_codes)})")
        lo, hi = _window(start, end, ctx.clock.now(), timedelta(hours=48))
        frame = views.observations(ctx, code, lo, hi)
        rows = [ObservationOut(station_id=str(r["station_id"]), variable=str(r["variable"]),
                               time=pd.Timestamp(r["time"]).to_pydatetime(),
                               value=None if pd.isna(r["value"]) else float(r["value"]),
                               flag=int(r["flag"]), flag_name=_flag_name(int(r["flag"])),
                               qc_rule=str(r["qc_rule"] or ""),
                               provisional=bool(r["provisional"]),
                               source=str(r.get("source", "")))
                for r in frame.to_dict("records")]
        return ObservationsOut(data=data_label, river_id=river_id, station=code, start=lo,
                               end=hi, flags={f.name: int(f) for f in Flag},
                               observations=rows)

    @api.get("/rivers/{river_id}/rain", response_model=RainOut, tags=["observations"])
    def rain(river_id: str, who: Viewer, start: AwareDatetime | None = None,
             end: AwareDatetime | None = None) -> RainOut:
        """Observed catchment rain by hour (the rain gauges weighted as the model reads them)
        and the newest forecast-rain vintage (issued at or before ``end``, at most 6 h old)."""
        river = river_or_404(river_id)
        lo, hi = _window(start, end, ctx.clock.now(), timedelta(hours=48))
        observed = views.catchment_rain(ctx, river_id, lo, hi)
        fc = views.forecast_rain(ctx, river_id, hi)
        times = pd.DatetimeIndex(observed.index).to_pydatetime()
        hours = [RainHour(valid_at=t, rain_mm=None if pd.isna(v) else float(v))
                 for t, v in zip(times, observed.to_numpy(dtype=float), strict=True)]
        recs = fc.to_dict("records") if len(fc) else []
        return RainOut(
            data=data_label, river_id=river_id, catchment_id=river.id,
            rain_gauges=[g.code for g in river.rain_gauges], observed=hours,
            forecast_issued_at=pd.Timestamp(recs[0]["issued_at"]).to_pydatetime()
            if recs else None,
            forecast_product=str(recs[0]["product"]) if recs else None,
            forecast=[RainHour(valid_at=pd.Timestamp(r["valid_at"]).to_pydatetime(),
                               rain_mm=float(r["value"])) for r in recs])

    @api.get("/rivers/{river_id}/forecasts", response_model=ArchiveOut, tags=["forecasts"])
    def archive(river_id: str, issued_at: AwareDatetime, who: Viewer,
                revision: int | None = Query(None, ge=1, le=10_000)) -> ArchiveOut:
        river_or_404(river_id)
        _window(issued_at - timedelta(hours=1), issued_at, issued_at, timedelta(hours=1))
        frame = views.forecast_archive(ctx, river_id, issued_at.astimezone(UTC))
        revs = []
        for rev, rows in frame.groupby("revision", sort=True) if len(frame) else []:
            if revision is not None and int(str(rev)) != revision:
                continue
            recs = [{str(k): v for k, v in r.items()} for r in rows.to_dict("records")]
            revs.append(Revision.model_validate(revision_fields(recs)))
        return ArchiveOut(data=data_label, river_id=river_id,
                          issued_at=issued_at.astimezone(UTC), revisions=revs)

    @api.get("/runs", response_model=RunsPage, tags=["runs"])
    def runs(who: Viewer, limit: int = Query(20, ge=1, le=200),
             cursor: int | None = Query(None, ge=1, le=2**31 - 1,
                                        description="next_cursor of a page"),
             kind: str | None = Query(None, pattern="^(tick|cycle)$")) -> RunsPage:
        rows = views.runs(ctx, limit=limit + 1, before_id=cursor, kind=kind)
        page = [RunOut.model_validate(r) for r in rows[:limit]]
        more = len(rows) > limit
        return RunsPage(runs=page, next_cursor=page[-1].id if more and page else None)

    @api.get("/freshness", response_model=FreshnessOut, tags=["runs"])
    def freshness(who: Viewer) -> FreshnessOut:
        f = status.freshness(ctx)

        def recs(df: pd.DataFrame) -> list[dict[str, Any]]:
            out = []
            for r in df.to_dict("records"):
                out.append({str(k): (None if _missing(v) else
                                     (list(v) if isinstance(v, (tuple, list)) else
                                      (pd.Timestamp(v).isoformat()
                                       if isinstance(v, pd.Timestamp) else v)))
                            for k, v in r.items()})
            return out

        return FreshnessOut(at=f.at, stations=recs(f.stations), products=recs(f.products))

    @api.get("/gauges.geojson", response_model=FeatureCollection, tags=["rivers"])
    def gauges(who: Viewer) -> FeatureCollection:
        latest = views.latest_forecasts(ctx)
        crest = (latest.groupby("river_id")["q50"].max().to_dict() if len(latest) else {})
        feats = []
        for r in ctx.catalogue.rivers:
            ladder = [(AlertLevel.from_key(n), v) for n, v in r.thresholds.ladder()]
            top = crest.get(r.id)
            reached = [lv for lv, v in ladder if top is not None and top >= v]
            level = max(reached) if reached else None
            for g in r.gauges:
                feats.append(Feature(
                    geometry={"type": "Point", "coordinates": [g.lon, g.lat]},
                    properties={"river_id": r.id, "river_ja": r.name_ja, "code": g.code,
                                "name_ja": g.name_ja, "kind": g.kind,
                                "primary": g.code == r.primary_gauge,
                                "forecast_level": level.key if level and
                                g.code == r.primary_gauge else None,
                                "colour": level.colour if level and
                                g.code == r.primary_gauge else None}))
        return FeatureCollection(features=feats)

    @api.get("/models", response_model=list[ModelVersionOut], tags=["models"])
    def models(who: Viewer, river_id: str | None = None) -> list[ModelVersionOut]:
        from forecast.pipeline.models import list_versions

        if river_id is not None:
            river_or_404(river_id)
        table = list_versions(ctx, river_id)
        out = []
        for rec in table.to_dict("records"):
            row = {str(k): (None if _missing(v) else v) for k, v in rec.items()}
            out.append(ModelVersionOut(river_id=str(row["river_id"]),
                                       version=str(row["version"]),
                                       champion=bool(row.get("champion")),
                                       details={k: _plain(v) for k, v in row.items()
                                                if k not in ("river_id", "version",
                                                             "champion")}))
        return out

    @api.get("/cap/feed.atom", tags=["notifications"],
             response_class=Response, responses={200: {"content": {
                 "application/atom+xml": {}}}})
    def cap_feed(request: Request, who: Viewer) -> Response:
        from forecast.pipeline.notify import cap_feed as feed

        base = ctx.settings.public_url or str(request.base_url)
        return Response(feed(ctx, base.rstrip("/") + "/v1"),
                        media_type="application/atom+xml")

    @api.get("/cap/{identifier}.xml", tags=["notifications"], response_class=Response,
             responses={200: {"content": {"application/cap+xml": {}}}})
    def cap_message(identifier: str, who: Viewer) -> Response:
        xml = views.cap_message(ctx, identifier)
        if xml is None:
            raise NotFoundError(f"no CAP message {identifier!r}")
        return Response(xml, media_type="application/cap+xml")

    return api


def _missing(v: Any) -> bool:
    try:
        return bool(pd.isna(v)) if not isinstance(v, (list, tuple, dict)) else False
    except (TypeError, ValueError):
        return False


def _plain(v: Any) -> Any:
    """JSON-able: timestamps as ISO strings, numpy scalars as Python numbers."""
    if isinstance(v, (pd.Timestamp, datetime)):
        return pd.Timestamp(v).isoformat()
    if hasattr(v, "item") and not isinstance(v, (list, tuple, dict)):
        return v.item()
    return v
