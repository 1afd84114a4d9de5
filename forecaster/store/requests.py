"""The job-request queue: admin calls enqueue, the scheduler process claims and runs.

API routes never fit models or run jobs themselves; they write a request row and
the scheduler (the only process that runs jobs) picks it up within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Column, Integer, String, Table, Text, select, update
from sqlalchemy.exc import SQLAlchemyError

from forecaster.errors import NotFound, StoreError
from forecaster.store.tables import UTCDateTime, metadata

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

JobName = Literal["ingest", "train", "publish", "reload"]
JOBS: tuple[str, ...] = ("ingest", "train", "publish", "reload")

job_requests_table = Table(
    "job_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(16), nullable=False),
    Column("series", String(300), nullable=True),
    Column("status", String(16), nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("detail", Text, nullable=False, default=""),
)


@dataclass(frozen=True)
class JobRequest:
    """One requested run and its state (pending, running, done, failed)."""

    id: int
    job: str
    series: str | None
    status: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    detail: str


def _row(row: object) -> JobRequest:
    m = row._mapping  # type: ignore[attr-defined]
    return JobRequest(
        id=m["id"],
        job=m["job"],
        series=m["series"],
        status=m["status"],
        requested_at=m["requested_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        detail=m["detail"],
    )


def enqueue(engine: Engine, *, job: str, series: str | None) -> JobRequest:
    """Add a pending request and return it."""
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}; choose from {', '.join(JOBS)}")
    try:
        with engine.begin() as conn:
            result = conn.execute(
                job_requests_table.insert().values(
                    job=job,
                    series=series,
                    status="pending",
                    requested_at=datetime.now(UTC),
                    detail="",
                )
            )
            request_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot queue the {job} request: {exc}") from exc
    return get_request(engine, request_id)


def get_request(engine: Engine, request_id: int) -> JobRequest:
    """The request ``request_id``.

    Raises:
        NotFound: No such request.
        StoreError: The store cannot be read.
    """
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(job_requests_table).where(job_requests_table.c.id == request_id)
            ).first()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read job request {request_id}: {exc}") from exc
    if row is None:
        raise NotFound(f"no job request {request_id}")
    return _row(row)


def claim_next(engine: Engine) -> JobRequest | None:
    """Atomically move the oldest pending request to running and return it."""
    with engine.begin() as conn:
        row = conn.execute(
            select(job_requests_table.c.id)
            .where(job_requests_table.c.status == "pending")
            .order_by(job_requests_table.c.id)
            .limit(1)
        ).first()
        if row is None:
            return None
        claimed = conn.execute(
            update(job_requests_table)
            .where(job_requests_table.c.id == row[0])
            .where(job_requests_table.c.status == "pending")
            .values(status="running", started_at=datetime.now(UTC))
        )
        if claimed.rowcount != 1:
            return None
    return get_request(engine, int(row[0]))


def finish(engine: Engine, request_id: int, *, ok: bool, detail: str) -> None:
    """Mark a running request done or failed, with a human-readable detail."""
    with engine.begin() as conn:
        conn.execute(
            update(job_requests_table)
            .where(job_requests_table.c.id == request_id)
            .values(
                status="done" if ok else "failed",
                finished_at=datetime.now(UTC),
                detail=detail[:4000],
            )
        )


def fail_interrupted(engine: Engine) -> int:
    """Mark every running request failed as interrupted; returns how many.

    Called by a scheduler when it takes the one-per-store lock: a request still
    running then belonged to a scheduler that stopped (or crashed) while running it,
    and nothing would ever finish it. It is not re-run (it may be what crashed it).
    """
    with engine.begin() as conn:
        done = conn.execute(
            update(job_requests_table)
            .where(job_requests_table.c.status == "running")
            .values(
                status="failed",
                finished_at=datetime.now(UTC),
                detail="interrupted: the scheduler stopped while running it; request it again",
            )
        )
    return int(done.rowcount or 0)
