"""Scaling resource: planned load and replicas per series, for KEDA's ``metrics-api`` trigger."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from datetime import timedelta
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel

from forecaster.api.deps import ReadAccess, SettingsDep, ViewDep
from forecaster.api.params import bad_parameter, duration_param
from forecaster.api.view import ForecastView
from forecaster.config import Settings
from forecaster.consumers.planner import MAX_REPLICAS, ScalingPolicy, target_too_fine
from forecaster.consumers.scaling import ForecastUnusable, LatestObservations, ScalingQuery, answer
from forecaster.errors import ForecastNotFound, InputDataError, SeriesNotFound, StoreError

router = APIRouter(prefix="/v1/scaling", tags=["scaling"], dependencies=[ReadAccess])

#: Latest observations are reloaded in the background at most this often.
OBSERVATIONS_REFRESH_SECONDS = 15.0
#: Older than this (no scaling read for a while), a read waits for the refresh.
OBSERVATIONS_WAIT_SECONDS = 2 * OBSERVATIONS_REFRESH_SECONDS
#: ... but at most this long, so that a slow store does not hold the answer.
OBSERVATIONS_WAIT_LIMIT_SECONDS = 1.0
#: A forecast view not refreshed for this long counts as a store outage.
MAX_VIEW_AGE_SECONDS = 120.0


class ScalingOut(BaseModel):
    """What to provision for a series now."""

    series: str
    value: float
    replicas: int
    load: float
    forecast_peak: float | None
    observed: float | None
    forecast_generated_at: str
    stale: bool
    reason: str


class ObservationsCache:
    """Latest observations, reloaded off the request path (one query every few seconds)."""

    def __init__(self, observations: LatestObservations) -> None:
        self.observations = observations
        self._task: asyncio.Task[bool] | None = None

    async def current(self) -> LatestObservations:
        """The cache, refreshed in the background when older than
        :data:`OBSERVATIONS_REFRESH_SECONDS`; a first read, or one after an idle spell
        longer than :data:`OBSERVATIONS_WAIT_SECONDS`, waits (at most
        :data:`OBSERVATIONS_WAIT_LIMIT_SECONDS`) for the refresh: the first request
        after an idle spell was answered from the old snapshot, "too old to use", and
        planned without the observed-load floor."""
        refreshed = self.observations.refreshed_at
        age = math.inf if refreshed is None else time.time() - refreshed
        if age > OBSERVATIONS_REFRESH_SECONDS and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(asyncio.to_thread(self.observations.refresh))
        if age > OBSERVATIONS_WAIT_SECONDS and self._task is not None:
            limit = None if refreshed is None else OBSERVATIONS_WAIT_LIMIT_SECONDS
            with contextlib.suppress(TimeoutError):  # a slow store: answer from what we have
                await asyncio.wait_for(asyncio.shield(self._task), limit)
        return self.observations


@router.get(
    "/{series:path}",
    response_model=ScalingOut,
    summary="Planned load and replicas",
    responses={
        404: {"description": "Unknown series or nothing published yet"},
        422: {
            "description": "Invalid parameter (named in the error), including a lead_time "
            "longer than the published forecast covers"
        },
        503: {
            "description": "Forecast stale, or ending before the lead time because "
            "ingestion is behind; store unavailable"
        },
    },
)
async def get_scaling(
    series: str,
    request: Request,
    view: ViewDep,
    settings: SettingsDep,
    target_per_replica: Annotated[
        float,
        Query(gt=0, allow_inf_nan=False, description="Load one replica handles (series unit)"),
    ],
    lead_time: Annotated[
        str, Query(description="Time a new replica needs to be ready, e.g. 5m", max_length=32)
    ] = "5m",
    quantile: Annotated[
        float,
        Query(
            gt=0,
            lt=1,
            allow_inf_nan=False,
            description="Forecast quantile: 0.5 is yhat, the interval's upper end (0.95 at "
            "level 90) is yhat_upper; in between is interpolated",
        ),
    ] = 0.9,
    min_replicas: Annotated[
        int | None, Query(ge=0, le=MAX_REPLICAS, description="Lower clamp")
    ] = None,
    max_replicas: Annotated[
        int | None, Query(ge=1, le=MAX_REPLICAS, description="Upper clamp")
    ] = None,
) -> Response:
    """Load to provision for (``value``) and ``replicas = ceil(value / target_per_replica)``.

    ``value`` is max(forecast ``quantile`` over [now, now + ``lead_time``], the
    latest observed load), clamped through ``min_replicas``/``max_replicas``. Point
    KEDA's ``metrics-api`` trigger at it with ``valueLocation: value`` and
    ``targetValue`` = ``target_per_replica``. Any doubt (unknown series, no
    forecast, a forecast older than the staleness bound or ending before the lead
    time, a store outage) is a non-200 with a message, so KEDA's fallback applies.
    This endpoint is stateless: configure scale-down smoothing in the ScaledObject's
    HPA ``behavior``.
    """
    lead = duration_param(
        "lead_time", lead_time, maximum=timedelta(seconds=settings.api.max_horizon_seconds)
    )
    if target_too_fine(target_per_replica):  # as the gRPC scaler refuses targetPerReplica
        raise bad_parameter(
            "target_per_replica",
            "target_per_replica is finer than the 0.001 KEDA passes to the HPA (the "
            "trigger's targetValue); use a multiple of 0.001 (or scale the series to a "
            "smaller unit)",
        )
    if min_replicas is not None and max_replicas is not None and max_replicas < min_replicas:
        raise bad_parameter("max_replicas", "max_replicas must be >= min_replicas")
    if min_replicas is not None and not math.isfinite(min_replicas * target_per_replica):
        raise bad_parameter(
            "min_replicas", "min_replicas x target_per_replica must be a finite load"
        )
    observations: ObservationsCache = request.app.state.scaling_observations
    try:
        body = scaling_body(
            view,
            settings,
            await observations.current(),
            series,
            target_per_replica=target_per_replica,
            lead_seconds=lead.total_seconds(),
            quantile=quantile,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
        )
    except (SeriesNotFound, ForecastNotFound) as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except (ForecastUnusable, StoreError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    except InputDataError as exc:
        raise bad_parameter(getattr(exc, "parameter", "quantile"), str(exc)) from None
    return Response(body, media_type="application/json")


def scaling_body(
    view: ForecastView,
    settings: Settings,
    observations: LatestObservations,
    series: str,
    *,
    target_per_replica: float,
    lead_seconds: float,
    quantile: float,
    min_replicas: int | None,
    max_replicas: int | None,
) -> bytes:
    """The JSON of ``GET /v1/scaling/{series}`` for validated parameters.

    Raises:
        SeriesNotFound, ForecastNotFound: Nothing to plan from.
        ForecastUnusable, StoreError: A forecast too old or too short; the store down.
        InputDataError: The quantile does not fit the forecast's interval, or the lead
            time reaches past the published horizon (``LeadBeyondHorizon``).
    """
    policy = ScalingPolicy(
        target_per_replica=target_per_replica,
        min_replicas=1 if min_replicas is None else min_replicas,
        max_replicas=max_replicas,
    )
    query = ScalingQuery(series=series, policy=policy, lead_seconds=lead_seconds, quantile=quantile)
    result = answer(
        view,
        query,
        now=time.time(),
        stale_after_seconds=float(settings.schedule.stale_after_seconds),
        max_view_age_seconds=MAX_VIEW_AGE_SECONDS,
        observations=observations,
    )
    decision = result.decision
    body = {
        "series": series,
        "value": decision.value,
        "replicas": decision.replicas,
        "load": decision.load,
        "forecast_peak": decision.forecast_peak,
        "observed": decision.observed,
        "forecast_generated_at": result.generated_at_iso,
        "stale": result.stale,
        "reason": decision.reason,
    }
    return orjson.dumps(body)
