"""Cache-warming resource: upcoming predicted ramps of a series, and what to warm in a family."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel

from forecaster.api.deps import ReadAccess, SettingsDep, ViewDep
from forecaster.api.params import duration_param
from forecaster.api.view import iso_utc
from forecaster.consumers.cache_warming import find_ramps, rank_members
from forecaster.errors import ForecastNotFound, SeriesNotFound

router = APIRouter(prefix="/v1/cache-warming", tags=["cache warming"], dependencies=[ReadAccess])


class WarmWindowOut(BaseModel):
    """One predicted ramp; warm from ``warm_at`` (= ``ramp_start`` - lead)."""

    warm_at: datetime
    ramp_start: datetime
    peak_at: datetime
    expected_peak: float
    expected_peak_upper: float
    expected_increase_ratio: float


class WarmWindowsOut(BaseModel):
    """Upcoming ramps of a series, from its current published forecast."""

    series: str
    generated_at: datetime
    stale: bool
    lead_seconds: float
    model: dict[str, str]
    windows: list[WarmWindowOut]


class TopMemberOut(BaseModel):
    """A family member ranked by predicted demand over the window."""

    rank: int
    series: str
    labels: dict[str, str]
    predicted_demand: float
    predicted_demand_upper: float


class TopOut(BaseModel):
    """The members to keep warm over the next window."""

    family: str
    window_start: datetime
    window_end: datetime
    k: int
    members: list[TopMemberOut]
    without_forecast: list[str]
    stale: list[str]


def split_member_names(text: str) -> list[str]:
    """The series names in a comma-separated list such as ``current``.

    A member of a family split by several labels is named
    ``by_call{method="GET",route="/a"}``, and a label value may hold a comma too: a
    comma inside the braces or inside a quoted value (``\\"`` escaped) does not split.
    """
    names: list[str] = []
    name: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in text:
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"' and depth:
            quoted = True
        elif char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif char == "," and not depth:
            names.append("".join(name))
            name = []
            continue
        name.append(char)
    names.append("".join(name))
    return [stripped for n in names if (stripped := n.strip())]


@router.get(
    "/{family:path}/top",
    response_model=TopOut,
    summary="Members of a family to warm",
    responses={404: {"description": "Unknown family"}},
)
async def top_members(
    family: str,
    view: ViewDep,
    settings: SettingsDep,
    k: Annotated[int, Query(ge=1, le=1000, description="How many members to return")] = 10,
    window: Annotated[
        str, Query(description="The coming window to rank over, e.g. 1h", max_length=32)
    ] = "1h",
    current: Annotated[
        list[str] | None,
        Query(
            description="Comma-separated members the cache holds now (series names; commas "
            "inside a name's {...} do not split it; or repeat the parameter); they keep "
            "their place unless an outsider's predicted demand beats theirs by more than "
            "`margin`",
            max_length=65536,
        ),
    ] = None,
    margin: Annotated[
        float,
        Query(
            ge=0,
            le=100,
            allow_inf_nan=False,
            description="Relative hysteresis margin for `current`",
        ),
    ] = 0.1,
) -> Response:
    """Rank the members of a ``split_by`` family (per route, key, tenant, ...) by predicted
    demand over the next ``window`` (sum of the point forecast over its steps), so a
    warmer preloads what will be hot rather than what was. A warmer that passes what it
    holds as ``current`` gets a stable set: an incumbent is only replaced by a member
    predicted to be more than ``margin`` hotter, so near-ties do not churn the cache.

    ``without_forecast`` lists the members with no forecast for the window (none
    published yet, or it ends before the window); ``stale`` the ranked members whose
    forecast is older than the staleness bound (the publish job is not keeping up)."""
    span = duration_param(
        "window", window, maximum=timedelta(seconds=settings.api.max_horizon_seconds)
    )
    state = view.state
    members = state.members_of(family)
    if not members:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown series family {family!r}")
    clock = time.time()
    now = datetime.fromtimestamp(clock, UTC)
    step = timedelta(seconds=min(m.step_seconds for m in members))
    start = now - step  # include the step in progress
    end = now + span
    bound = settings.schedule.stale_after_seconds
    forecasts = {}
    stale = []
    reach = 0.0  # how far the ranked forecasts go
    for m in members:
        cached = state.forecasts.get(m.name)
        if cached is None:
            continue
        # only the window's steps become point objects; a window shorter than the
        # gap to the next step takes that step
        lo, hi = view.window_ahead(cached, start.timestamp(), end.timestamp())
        if hi > lo:
            forecasts[m.name] = cached.forecast.points[lo:hi]
            reach = max(reach, cached.ds_epoch[-1])
            if cached.is_stale(clock, bound):
                stale.append(m.name)
    last = max((points[-1].ds for points in forecasts.values()), default=end)
    # the window reported is the one ranked over: the step a short window ends in, or
    # as far as the forecasts go when they all end before the window does
    end = max(end, last) if reach >= end.timestamp() or not forecasts else last
    held = [name for text in current or () for name in split_member_names(text)]
    ranked = rank_members(forecasts, start=start, end=end, k=k, current=held, margin=margin)
    labels = {m.name: m.labels for m in members}
    body: dict[str, Any] = {
        "family": family,
        "window_start": iso_utc(start),
        "window_end": iso_utc(end),
        "k": k,
        "members": [
            {
                "rank": i + 1,
                "series": r.series,
                "labels": labels[r.series],
                "predicted_demand": r.demand,
                "predicted_demand_upper": r.demand_upper,
            }
            for i, r in enumerate(ranked)
        ],
        "without_forecast": sorted(m.name for m in members if m.name not in forecasts),
        "stale": sorted(stale),
    }
    return Response(orjson.dumps(body), media_type="application/json")


@router.get(
    "/{series:path}",
    response_model=WarmWindowsOut,
    summary="Upcoming predicted ramps",
    responses={404: {"description": "Unknown series or nothing published yet"}},
)
async def warm_windows(
    series: str,
    view: ViewDep,
    settings: SettingsDep,
    within: Annotated[
        str, Query(description="Ramps starting within this time from now", max_length=32)
    ] = "24h",
    min_increase: Annotated[
        float,
        Query(gt=0, le=1000, allow_inf_nan=False, description="Minimum relative rise, 0.3 = +30 %"),
    ] = 0.3,
    lead: Annotated[
        str, Query(description="Warm-up time before a ramp starts", max_length=32)
    ] = "10m",
) -> Response:
    """Upcoming demand ramps from the current forecast and its upper quantile.

    ``warm_at`` is ``ramp_start`` minus ``lead``; it lies in the past when a ramp
    has already begun (warm now). ``expected_peak_upper`` is the upper interval
    bound at the peak, the level to warm for. ``stale`` is true when the forecast is
    older than the staleness bound (the publish job is not keeping up).
    """
    maximum = timedelta(seconds=settings.api.max_horizon_seconds)
    ahead = duration_param("within", within, maximum=maximum)
    warmup = duration_param("lead", lead, maximum=timedelta(days=1))
    try:
        cached = view.forecast(series)
    except (SeriesNotFound, ForecastNotFound) as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    fc = cached.forecast
    now = time.time()
    lo, _hi = view.window(cached, now - fc.step_seconds, now + maximum.total_seconds())
    ramps = find_ramps(
        fc.points[lo:],
        now=datetime.fromtimestamp(now, UTC),
        within=ahead,
        min_increase=min_increase,
        lead=warmup,
    )
    body: dict[str, Any] = {
        "series": fc.series,
        "generated_at": cached.generated_at_iso,
        "stale": cached.is_stale(now, settings.schedule.stale_after_seconds),
        "lead_seconds": warmup.total_seconds(),
        "model": {"name": fc.model_name, "version": fc.model_version, "run_id": fc.run_id},
        "windows": [
            {
                "warm_at": iso_utc(r.warm_at),
                "ramp_start": iso_utc(r.ramp_start),
                "peak_at": iso_utc(r.peak_at),
                "expected_peak": r.expected_peak,
                "expected_peak_upper": r.peak_upper,
                "expected_increase_ratio": r.expected_increase_ratio,
            }
            for r in ramps
        ],
    }
    return Response(orjson.dumps(body), media_type="application/json")
