"""Circuit-breaker resource: limits for the next window by Little's law, as JSON or Envoy config."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel

from forecaster.api.deps import ReadAccess, SettingsDep, ViewDep
from forecaster.api.params import bad_parameter, duration_param
from forecaster.api.view import iso_utc
from forecaster.consumers.circuit_breaker import (
    SizingPolicy,
    envoy_thresholds,
    latency_scale_from_unit,
    rate_period_from_unit,
    size_limits,
)
from forecaster.errors import ForecastNotFound, SeriesNotFound

if TYPE_CHECKING:
    from forecaster.api.view import CachedForecast, ForecastView

router = APIRouter(
    prefix="/v1/circuit-breaker", tags=["circuit breaker"], dependencies=[ReadAccess]
)


class BreakerOut(BaseModel):
    """Recommended limits for ``[valid_from, valid_until]`` and how they were derived."""

    valid_from: datetime
    valid_until: datetime
    stale: bool
    max_requests: int
    max_pending_requests: int
    max_connections: int
    max_retries: int
    timeout_ms: int
    basis: dict[str, Any]


def _peak(
    view: ForecastView, name: str, start: float, end: float, *, what: str, loc: list[str]
) -> tuple[CachedForecast, float]:
    """The forecast of ``name`` and its peak (upper quantile) over ``(start, end]``.

    Raises:
        HTTPException: 404 for an unknown series or nothing published; 503 when the
            forecast ends before the window (publishing is behind); 422
            (at ``loc``) when the whole window is forecast below zero, which no rate
            or latency can be (a series of signed values, or the wrong series).
    """
    try:
        cached = view.forecast(name)
    except (SeriesNotFound, ForecastNotFound) as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    lo, hi = view.window_ahead(cached, start, end)
    if hi <= lo:
        # published, but all of it is past: publishing is behind (a 503 as for scaling,
        # not the 404 of a series that does not exist)
        ends = cached.ds_iso[-1] if cached.ds_iso else "?"
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"the forecast of {name!r} ends at {ends}, before the coming "
            f"window: it was published at {cached.generated_at_iso} and none has been since "
            "(publishing is behind); keep the limits in force",
        )
    cols = cached.columns
    peak = max(max(cols.yhat_upper[lo:hi]), max(cols.yhat[lo:hi]))
    if peak < 0:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "loc": loc,
                    "msg": f"the forecast of {name!r} is below zero over the whole window "
                    f"(peak {peak:g}); a {what} cannot be negative: is it the right series?",
                    "type": "value_error",
                }
            ],
        )
    return cached, peak


@router.get(
    "/{series:path}",
    response_model=BreakerOut,
    summary="Circuit-breaker limits for the next window",
    responses={
        200: {
            "description": "The limits (BreakerOut); with format=envoy instead "
            '`{"valid_from", "valid_until", "stale", "cluster": {"circuit_breakers": '
            '{"thresholds": [{"priority", "max_connections", "max_pending_requests", '
            '"max_requests", "max_retries", "track_remaining"}]}}, "route": {"timeout"}}`'
        },
        404: {"description": "Unknown series or nothing published yet"},
        503: {"description": "A forecast ends before the coming window (publishing is behind)"},
    },
)
async def circuit_breaker(
    series: str,
    view: ViewDep,
    settings: SettingsDep,
    latency_series: Annotated[
        str | None, Query(description="Series of the latency of the same upstream", max_length=300)
    ] = None,
    latency: Annotated[
        str | None, Query(description="A fixed latency instead of a series, e.g. 250ms")
    ] = None,
    window: Annotated[str, Query(description="Validity window from now", max_length=32)] = "1h",
    headroom: Annotated[
        float, Query(ge=1.0, le=100.0, allow_inf_nan=False, description="Multiplier on L")
    ] = 1.5,
    timeout_factor: Annotated[
        float,
        Query(
            gt=1.0,
            le=100.0,
            allow_inf_nan=False,
            description="Timeout as a multiple of the latency",
        ),
    ] = 3.0,
    rate_per: Annotated[
        str | None,
        Query(description="Period the rate series counts over (default from its unit, e.g. 5m)"),
    ] = None,
    latency_unit: Annotated[
        Literal["s", "ms"] | None,
        Query(description="Unit of the latency series (default from its unit)"),
    ] = None,
    format: Annotated[  # noqa: A002 - the public parameter name
        Literal["json", "envoy"], Query(description="json, or an Envoy circuit_breakers block")
    ] = "json",
) -> Response:
    """Limits from the upper quantile of the predicted request rate of ``series`` and of
    the predicted latency, both at their peak over ``window``, by Little's law:
    ``max_requests = ceil(headroom * rate * latency)``, ``timeout = timeout_factor *
    latency``, ``max_pending_requests = ceil(rate * (timeout - latency))``.

    ``stale`` is true when a forecast it used is older than the staleness bound (the
    publish job is not keeping up): keep the limits in force rather than apply these."""
    span = duration_param(
        "window", window, maximum=timedelta(seconds=settings.api.max_horizon_seconds)
    )
    if latency_series is None and latency is None:
        raise bad_parameter(
            "latency_series", "give latency_series (a latency series) or a fixed latency"
        )
    if latency_series is not None and latency is not None:
        raise bad_parameter("latency", "give either latency_series or a fixed latency, not both")
    if latency is not None and latency_unit is not None:
        raise bad_parameter(
            "latency_unit",
            "latency_unit is the unit of latency_series; a fixed latency carries its own "
            "(e.g. latency=250ms)",
        )
    now = time.time()
    rate_cached, rate_peak = _peak(
        view,
        series,
        now - 1,
        now + span.total_seconds(),
        what="request rate",
        loc=["path", "series"],
    )
    rate_fc = rate_cached.forecast
    used = [rate_cached]
    lo_step = rate_fc.step_seconds
    unit = view.series_info(series).unit
    found = rate_period_from_unit(unit)
    if rate_per is not None:
        per_seconds = duration_param("rate_per", rate_per, maximum=timedelta(days=1))
        period = per_seconds.total_seconds()
        if found is not None and not math.isclose(found, period):
            # one of the two is wrong, and the limits would be off by their ratio
            raise bad_parameter(
                "rate_per",
                f"rate_per={rate_per!r} contradicts the unit of {series!r} ({unit!r}, a rate "
                f"per {found:g}s): drop rate_per, or correct the series' unit in the spec",
            )
    else:
        if found is None:
            raise bad_parameter(
                "rate_per",
                f"the unit of {series!r} ({unit!r}) does not say what period the rate counts "
                "over; give rate_per, e.g. 1s or 5m",
            )
        period = found
    rate_per_second = rate_peak / period
    basis: dict[str, Any] = {
        "rate_series": series,
        "rate_model": f"{rate_fc.model_name} v{rate_fc.model_version}",
        "rate_generated_at": rate_cached.generated_at_iso,
        "rate_peak_upper": rate_peak,
        "rate_period_seconds": period,
        "level": rate_fc.level,
    }
    if latency is not None:
        latency_seconds = duration_param("latency", latency, maximum=timedelta(hours=1))
        latency_value = latency_seconds.total_seconds()
        basis["latency"] = "fixed"
    else:
        assert latency_series is not None
        lat_cached, lat_peak = _peak(
            view,
            latency_series,
            now - 1,
            now + span.total_seconds(),
            what="latency",
            loc=["query", "latency_series"],
        )
        lat_unit = view.series_info(latency_series).unit
        found_scale = latency_scale_from_unit(lat_unit)
        if latency_unit is not None:
            scale = 1e-3 if latency_unit == "ms" else 1.0
            if found_scale is not None and not math.isclose(found_scale, scale):
                # a series in ms read as seconds sized every limit 1000 times too large
                raise bad_parameter(
                    "latency_unit",
                    f"latency_unit={latency_unit!r} contradicts the unit of "
                    f"{latency_series!r} ({lat_unit!r}): drop latency_unit, or correct the "
                    "series' unit in the spec",
                )
        else:
            if found_scale is None:
                raise bad_parameter(
                    "latency_unit",
                    f"the unit of {latency_series!r} ({lat_unit!r}) is not s or ms; give "
                    "latency_unit",
                )
            scale = found_scale
        latency_value = lat_peak * scale
        used.append(lat_cached)
        basis.update(
            latency_series=latency_series,
            latency_model=f"{lat_cached.forecast.model_name} v{lat_cached.forecast.model_version}",
            latency_generated_at=lat_cached.generated_at_iso,
            latency_peak_upper=lat_peak,
        )
    start = datetime.fromtimestamp(now - now % lo_step, UTC)
    # the limits hold only as far as the forecasts they come from: a horizon shorter
    # than the window (or a publication running late) ends them earlier
    until = now + span.total_seconds()
    covered = min(cached.ds_epoch[-1] for cached in used)
    if covered < until:
        until = max(covered, now)
        basis["forecast_ends_at"] = iso_utc(datetime.fromtimestamp(covered, UTC))
    limits = size_limits(
        rate_per_second=rate_per_second,
        latency_seconds=latency_value,
        valid_from=start,
        valid_until=datetime.fromtimestamp(until, UTC),
        policy=SizingPolicy(headroom=headroom, timeout_factor=timeout_factor),
        basis=basis,
    )
    bound = settings.schedule.stale_after_seconds
    head = {
        "valid_from": iso_utc(limits.valid_from),
        "valid_until": iso_utc(limits.valid_until),
        "stale": any(cached.is_stale(now, bound) for cached in used),
    }
    if format == "envoy":
        body: dict[str, Any] = {**head, **envoy_thresholds(limits)}
    else:
        body = {
            **head,
            "max_requests": limits.max_requests,
            "max_pending_requests": limits.max_pending_requests,
            "max_connections": limits.max_connections,
            "max_retries": limits.max_retries,
            "timeout_ms": limits.timeout_ms,
            "basis": limits.basis,
        }
    return Response(orjson.dumps(body), media_type="application/json")
