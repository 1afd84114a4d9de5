"""Regressions resource: events where a watched series left its forecast band and stayed out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field

from forecaster.api.consumers_view import ConsumerView
from forecaster.api.deps import ReadAccess, ViewDep
from forecaster.api.params import timestamp_param
from forecaster.api.view import iso_utc
from forecaster.errors import StoreError

router = APIRouter(
    prefix="/v1/regressions",
    tags=["regressions"],
    dependencies=[ReadAccess],
)


class RegressionEventOut(BaseModel):
    """A regression event; ``end`` is null while it is open."""

    id: int
    series: str
    start: datetime
    end: datetime | None
    open: bool
    peak_score: float
    direction: str
    model: str
    detected_at: datetime
    closed_reason: str | None = Field(
        None,
        description="Why it closed when the series did not return to its band: the "
        "scheduler stopped judging it (retired, no longer watched); null otherwise",
    )


class RegressionsOut(BaseModel):
    """Events, newest start first."""

    truncated: bool = Field(
        False,
        description="More events matched than `limit`: these are the newest; narrow "
        "`since` or `series`, or raise `limit`",
    )
    events: list[RegressionEventOut]
    not_judged: list[str] = Field(
        default_factory=list,
        description="Of the series `series` selects, those the detector is not judging "
        "now (no `watch:` in the spec, not judged yet, or no longer watched): no event "
        "for them is not an all-clear. Empty without `series`",
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso_utc(value)


@router.get(
    "",
    response_model=RegressionsOut,
    summary="Regression events",
    responses={404: {"description": "Unknown series"}},
)
async def list_regressions(
    request: Request,
    view: ViewDep,
    series: Annotated[
        str | None,
        Query(
            description="Only this series (a split_by family's name: its members)",
            max_length=300,
        ),
    ] = None,
    since: Annotated[
        str | None,
        Query(description="Events open at or ending after this (ISO 8601 or -7d); default -7d"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="At most this many events")] = 500,
) -> Response:
    """Regression events of watched series: open ones and those that ended after ``since``.

    Each event carries its start, end (null while open), the peak anomaly score
    (above 1 = outside the forecast band; 1 + distance in band widths), its
    direction and the forecast model that judged it. The band is the forecast's
    reference band: the champion's forecast without its recent-level corrections,
    published beside the served one, so a lasting regression is not absorbed by a
    forecast that follows the level it moved to.
    """
    # "since=" (empty) is a 422 like any unreadable value, not the 7-day default
    start = (
        timestamp_param("since", since)
        if since is not None
        else datetime.now(UTC) - timedelta(days=7)
    )
    view_state = view.state  # one snapshot
    names: set[str] | None = None  # the series selected (None: all)
    family: str | None = None  # a split_by family's name, as written in the spec
    if series is not None:
        if series in view_state.series:
            names = {series}
        else:
            names = {info.name for info in view_state.members_of(series)}
            if not names:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown series {series!r}")
            family = series
    snapshot: ConsumerView = request.app.state.consumer_view
    state = snapshot.state
    if state.events_since is not None and start >= state.events_since:
        events = [
            e
            for e in state.events
            if (names is None or e.series in names) and (e.end is None or e.end >= start)
        ][: limit + 1]
    else:  # older than the in-memory window: a rare, explicit query to the store
        try:
            events = await asyncio.to_thread(
                snapshot.repo.events,
                series=None if family is not None else series,
                family=family,
                since=start,
                limit=limit + 1,  # one more tells whether there are more
            )
        except StoreError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    truncated = len(events) > limit
    events = events[:limit]
    body: dict[str, Any] = {
        "truncated": truncated,
        "events": [
            {
                "id": e.id,
                "series": e.series,
                "start": _iso(e.start),
                "end": _iso(e.end),
                "open": e.end is None,
                "peak_score": e.peak_score,
                "direction": e.direction,
                "model": e.model,
                "detected_at": _iso(e.detected_at),
                "closed_reason": e.closed_reason,
            }
            for e in events
        ],
        "not_judged": sorted(names - state.scores.keys()) if names is not None else [],
    }
    return Response(orjson.dumps(body), media_type="application/json")
