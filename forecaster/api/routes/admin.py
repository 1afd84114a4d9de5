"""Admin resource: trigger ingest/train/publish runs or a spec reload (bearer token required).

Routes only enqueue: the scheduler process picks requests up within seconds and
records the outcome, which ``GET /v1/admin/jobs/{id}`` reports.
"""

from __future__ import annotations

import pathlib
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from forecaster.api.deps import AdminAccess, AdminRoute, StoreDep, ViewDep
from forecaster.errors import NotFound, StoreError

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[AdminAccess], route_class=AdminRoute
)


class JobRequestIn(BaseModel):
    """A run to trigger. ``series`` is a spec'd series (family) name; omit for all."""

    model_config = ConfigDict(extra="forbid")

    job: Literal["ingest", "train", "publish", "reload"]
    series: str | None = Field(None, max_length=300)


class JobRequestOut(BaseModel):
    """A queued run and its state: pending, running, done or failed."""

    id: int
    job: str
    series: str | None
    status: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    detail: str


@router.post(
    "/jobs",
    response_model=JobRequestOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Trigger a job run",
    responses={
        401: {"description": "No token"},
        403: {"description": "Wrong token, or no token configured"},
        404: {"description": "Unknown series"},
        413: {"description": "Request body too large"},
        415: {"description": "Body not sent as JSON"},
    },
)
async def create_job(
    body: JobRequestIn, request: Request, store: StoreDep, view: ViewDep
) -> JobRequestOut:
    """Queue a run of ``job`` for ``series`` (or every series); the scheduler runs it."""
    from forecaster.store.requests import enqueue

    if body.series is not None and body.job == "reload":
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "loc": ["body", "series"],
                    "msg": "reload re-reads the whole spec; leave series out",
                    "type": "value_error",
                }
            ],
        )
    if body.series is not None and body.job != "reload":
        families = {info.family for info in view.state.series.values()}
        if families and body.series not in families:
            # a series the spec names but nothing has stored yet (added by a reload,
            # or whose first ingest failed) is still one the scheduler can run
            families |= _spec_families(request.app.state.settings.pipelines)
        if families and body.series not in families:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail=f"unknown series {body.series!r}; known: {', '.join(sorted(families))}",
            )
    try:
        queued = enqueue(store.engine, job=body.job, series=body.series)
    except StoreError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    return JobRequestOut(**queued.__dict__)


def _spec_families(path: pathlib.Path) -> set[str]:
    """Series names of the pipeline spec at ``path`` (none when this process cannot
    read a valid one: the API may run without the scheduler's spec)."""
    from forecaster.errors import SpecError
    from forecaster.specs import load_spec

    try:
        return {spec.name for spec in load_spec(path).series}
    except SpecError:
        return set()


@router.get(
    "/jobs/{request_id}",
    response_model=JobRequestOut,
    summary="State of a job run",
    responses={
        401: {"description": "No token"},
        403: {"description": "Wrong token, or no token configured"},
        404: {"description": "No job request with that id"},
        503: {"description": "The store cannot be read"},
    },
)
async def get_job(
    request_id: Annotated[int, Path(ge=1, le=2**31 - 1, description="Id returned by POST")],
    store: StoreDep,
) -> JobRequestOut:
    """Where a triggered run stands, with the scheduler's detail once finished."""
    from forecaster.store.requests import get_request

    try:
        request = get_request(store.engine, request_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except StoreError as exc:  # was a bare 500 while the POST beside it said 503
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    return JobRequestOut(**request.__dict__)
