"""Series resource: catalogue, published forecasts and stored history."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel

from forecaster.api.deps import ReadAccess, SettingsDep, StoreDep, ViewDep
from forecaster.api.params import bad_parameter, duration_param, timestamp_param
from forecaster.api.view import ForecastView, iso_utc
from forecaster.config import Settings
from forecaster.errors import ForecastNotFound, SeriesNotFound, StoreError

router = APIRouter(prefix="/v1/series", tags=["series"], dependencies=[ReadAccess])


class SeriesOut(BaseModel):
    """A series in the catalogue."""

    name: str
    family: str
    labels: dict[str, str]
    kind: str
    unit: str
    step_seconds: int
    last_observation: datetime | None
    champion: str | None
    champion_version: str | None


class ModelOut(BaseModel):
    """Provenance of a forecast."""

    name: str
    version: str
    run_id: str


class ForecastPointOut(BaseModel):
    """One forecast step; the interval is central at ``level`` percent."""

    ds: datetime
    yhat: float
    yhat_lower: float
    yhat_upper: float


class ForecastOut(BaseModel):
    """A published forecast."""

    series: str
    generated_at: datetime
    step_seconds: int
    level: float
    stale: bool
    model: ModelOut
    points: list[ForecastPointOut]


class HistoryPointOut(BaseModel):
    """One observation."""

    ds: datetime
    y: float


class HistoryOut(BaseModel):
    """Stored observations."""

    series: str
    points: list[HistoryPointOut]


def _not_found(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc))


@router.get("", response_model=list[SeriesOut], summary="List series")
async def list_series(view: ViewDep) -> list[dict[str, Any]]:
    """Every known series with its step, last observation time and champion model."""
    return [
        {
            "name": info.name,
            "family": info.family,
            "labels": info.labels,
            "kind": info.kind,
            "unit": info.unit,
            "step_seconds": info.step_seconds,
            "last_observation": info.last_observation_at,
            "champion": info.champion,
            "champion_version": info.champion_version,
        }
        for info in sorted(view.state.series.values(), key=lambda s: s.name)
    ]


@router.get(
    "/{name:path}/forecast",
    response_model=ForecastOut,
    summary="Latest published forecast",
    responses={404: {"description": "Unknown series or nothing published yet"}},
)
async def get_forecast(
    name: str,
    view: ViewDep,
    settings: SettingsDep,
    horizon: Annotated[
        str, Query(description="How far ahead from now, e.g. 15m, 1h, 24h", max_length=32)
    ] = "1h",
) -> Response:
    """Forecast points from the current step up to ``now + horizon``.

    ``yhat_lower``/``yhat_upper`` bound the central interval at ``level`` percent.
    ``stale`` is true when the forecast is older than the configured bound.
    """
    ahead = duration_param(
        "horizon", horizon, maximum=timedelta(seconds=settings.api.max_horizon_seconds)
    )
    try:
        body = forecast_body(view, settings, name, ahead.total_seconds())
    except (SeriesNotFound, ForecastNotFound) as exc:
        raise _not_found(exc) from None
    return Response(body, media_type="application/json")


def forecast_body(view: ForecastView, settings: Settings, name: str, ahead_seconds: float) -> bytes:
    """The JSON of ``GET /v1/series/{name}/forecast`` for a validated horizon.

    Raises:
        SeriesNotFound, ForecastNotFound: Nothing to serve for ``name``.
    """
    cached = view.forecast(name)
    fc = cached.forecast
    now = time.time()
    lo, hi = view.window(cached, now - fc.step_seconds, now + ahead_seconds)
    body = {
        "series": fc.series,
        "generated_at": cached.generated_at_iso,
        "step_seconds": fc.step_seconds,
        "level": fc.level,
        "stale": cached.is_stale(now, settings.schedule.stale_after_seconds),
        "model": {"name": fc.model_name, "version": fc.model_version, "run_id": fc.run_id},
        "points": [
            {"ds": ds, "yhat": yhat, "yhat_lower": lower, "yhat_upper": upper}
            for ds, (yhat, lower, upper) in zip(
                cached.ds_iso[lo:hi], cached.columns.bands(lo, hi), strict=True
            )
        ],
    }
    return orjson.dumps(body)


@router.get(
    "/{name:path}/history",
    response_model=HistoryOut,
    summary="Stored observations",
    responses={404: {"description": "Unknown series"}},
)
def get_history(
    name: str,
    store: StoreDep,
    since: Annotated[
        str | None,
        Query(description="ISO 8601 start (naive = UTC) or relative like -6h; default -24h"),
    ] = None,
    until: Annotated[str | None, Query(description="ISO 8601 end; default now")] = None,
) -> Response:
    """Observations of ``name`` between ``since`` and ``until`` (at most 31 days)."""
    end = timestamp_param("until", until) if until is not None else datetime.now(UTC)
    if since is not None:  # "since=" is a 422, not the default
        start = timestamp_param("since", since)
    elif end - datetime.min.replace(tzinfo=UTC) < timedelta(hours=24):
        start = datetime.min.replace(tzinfo=UTC)  # until is within a day of year 1
    else:
        start = end - timedelta(hours=24)
    if start > end:
        raise bad_parameter("since", "since must be before until")
    if end - start > timedelta(days=31):
        raise bad_parameter("since", "at most 31 days of history per request")
    try:
        rows = store.history(name, since=start, until=end)
    except SeriesNotFound as exc:
        raise _not_found(exc) from None
    except StoreError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    body = {
        "series": name,
        "points": [{"ds": iso_utc(ts), "y": y} for ts, y in rows],
    }
    return Response(orjson.dumps(body), media_type="application/json")
