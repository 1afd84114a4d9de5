"""Liveness, readiness and Prometheus metrics endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from forecaster.api.deps import ReadAccess, ViewDep
from forecaster.api.params import bad_parameter

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    responses={
        503: {
            "description": "The forecast view has not loaded, its last refresh failed, or "
            "none has finished for too long (the store is not answering)"
        }
    },
)
async def readyz(view: ViewDep, response: Response) -> dict[str, Any]:
    """Ready when the forecast view has loaded from the store, its last refresh worked
    and one finished recently (a refresh hung on a stalled connection never fails)."""
    state = view.state
    problem = view.problem()
    ready = problem is None
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    age = None
    if state.refreshed_at is not None:
        age = (datetime.now(UTC) - state.refreshed_at).total_seconds()
    return {
        "status": "ready" if ready else "not ready",
        "series": len(state.series),
        "forecasts": len(state.forecasts),
        "view_age_seconds": age,
        "error": state.error if state.refreshed_at is None else problem,
    }


# load balancers and uptime checkers probe with HEAD (kept out of the OpenAPI document,
# where a second method of one function would repeat its operation id)
router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)


@router.get("/metrics", summary="Prometheus metrics", dependencies=[ReadAccess])
def metrics(
    request: Request,
    series: Annotated[
        list[str] | None,
        Query(
            description=(
                "Export the per-series metrics of these series only (repeat the parameter "
                "for more). A name without a label set also selects the members of the "
                "split_by family of that name. Pipeline-wide metrics are always exported; "
                "names that select nothing are listed in "
                "forecaster_metrics_unknown_series. Default: every series."
            ),
        ),
    ] = None,
) -> Response:
    """Self-monitoring and the published forecasts, in the Prometheus text format.

    It carries every series' forecast, so it needs the bearer token when reads do
    (``FORECASTER_API__REQUIRE_TOKEN_FOR_READS``; Prometheus sends it with a scrape
    job's ``authorization`` setting).
    """
    import time

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from forecaster.api.exposition import SelectedSeries, SeriesSelection, render

    only = None
    registry = request.app.state.metrics_registry
    if series is not None:
        if any(not name.strip() for name in series):
            raise bad_parameter("series", "series must not be empty")
        only = SeriesSelection(frozenset(series))
        registry = SelectedSeries(registry, only)
    per_series = render(request.app.state.metrics_text, time.time(), only).encode()
    return Response(per_series + generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
