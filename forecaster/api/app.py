"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI

from forecaster import __version__

if TYPE_CHECKING:
    from forecaster.config import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """
Forecasts of request rate and latency, published by the forecaster pipelines and
served from memory. Timestamps are ISO 8601 UTC; values are in each series' unit.
Intervals are central prediction intervals at `level` percent.
"""


def create_app(
    settings: Settings,
    *,
    refresh_seconds: float = 1.0,
    freeze_heap: bool = False,
    max_view_age_seconds: float | None = None,
) -> FastAPI:
    """Build the API app.

    The store engine and the forecast view are created here; the view is loaded
    at start-up and refreshed every ``refresh_seconds`` in the background. With
    ``freeze_heap`` (server processes: :mod:`forecaster.api.asgi`) the objects alive
    after that first load are frozen out of the garbage collector's scans
    (:func:`~forecaster.api.view.freeze_startup_heap`). A view no refresh renewed for
    ``max_view_age_seconds`` (default: 10 refreshes, at least 30 s, as the scaler's)
    makes ``/readyz`` answer 503. The job runs behind the pipeline-health metrics are
    read beside the view (:class:`~forecaster.api.job_metrics.JobRunStats`, every 5 s),
    so ``/metrics`` answers from memory however the store fares.
    """
    from prometheus_client import CollectorRegistry

    from forecaster.api.consumers_view import REFRESH_SECONDS, AnomalyCollector, ConsumerView
    from forecaster.api.job_metrics import JobRunCollector, JobRunStats
    from forecaster.api.metrics import ForecastGauges
    from forecaster.api.params import reject_unknown_params
    from forecaster.api.routes import (
        admin,
        cache_warming,
        circuit_breaker,
        dashboard,
        health,
        regressions,
        scaling,
        series,
    )
    from forecaster.api.view import ForecastView, freeze_startup_heap
    from forecaster.consumers.exporter import ForecastMaxGauges
    from forecaster.store.db import make_engine
    from forecaster.store.repository import Store

    engine = make_engine(settings.database)
    store = Store(engine)
    view = ForecastView(
        store, max_age_seconds=max_view_age_seconds or max(30.0, 10 * refresh_seconds)
    )
    consumers = ConsumerView(store)
    registry = CollectorRegistry()
    registry.register(AnomalyCollector(consumers))
    job_stats = JobRunStats(store, max_age_seconds=view.max_age_seconds)
    registry.register(JobRunCollector(job_stats))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # job counters count from the API's start, not from its first scrape; read in
        # the background, readiness does not wait
        job_read = asyncio.create_task(asyncio.to_thread(job_stats.refresh, force=True))
        await asyncio.to_thread(view.refresh)
        await asyncio.to_thread(consumers.refresh)
        if freeze_heap:
            freeze_startup_heap()
        stop = asyncio.Event()

        async def refresher() -> None:
            nonlocal job_read
            loop = asyncio.get_running_loop()
            consumers_due = loop.time() + REFRESH_SECONDS
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), refresh_seconds)
                    return
                # the job runs are read beside the view, one read at a time (every
                # job_stats.min_interval), so a slow one holds back no view refresh;
                # /metrics exports what they last read and never queries the store
                if job_read.done():
                    _log_failure(job_read)
                    job_read = asyncio.create_task(asyncio.to_thread(job_stats.refresh))
                await asyncio.to_thread(view.refresh)
                if loop.time() >= consumers_due:
                    await asyncio.to_thread(consumers.refresh)
                    consumers_due = loop.time() + REFRESH_SECONDS

        task = asyncio.create_task(refresher())
        try:
            yield
        finally:
            # Let a refresh in flight finish: never dispose the engine under a thread
            # that still holds one of its connections.
            stop.set()
            await task
            await asyncio.wait([job_read])
            _log_failure(job_read)
            engine.dispose()

    app = FastAPI(
        title="forecaster",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_params)],
    )
    app.state.settings = settings
    app.state.store = store
    app.state.view = view
    app.state.consumer_view = consumers
    app.state.metrics_registry = registry
    app.state.job_stats = job_stats
    # the per-series gauges, written straight to text (forecaster.api.exposition)
    app.state.metrics_text = (ForecastGauges(view), ForecastMaxGauges(view, settings))
    from forecaster.api.hot import HotReads
    from forecaster.api.limits import SizeLimits
    from forecaster.api.routes.scaling import ObservationsCache
    from forecaster.consumers.scaling import LatestObservations

    app.state.scaling_observations = ObservationsCache(LatestObservations(store))
    if not settings.api.require_token_for_reads:
        # innermost of the middlewares: CORS and the size limits still apply to it
        app.add_middleware(
            HotReads,
            view=view,
            settings=settings,
            observations=app.state.scaling_observations,
        )
    if settings.api.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET"],
            allow_headers=["Authorization"],
        )
    app.add_middleware(
        SizeLimits,
        max_query_bytes=settings.api.max_query_bytes,
        max_body_bytes=settings.api.max_body_bytes,
    )
    app.include_router(health.router)
    app.include_router(series.router)
    app.include_router(scaling.router)
    app.include_router(cache_warming.router)
    app.include_router(circuit_breaker.router)
    app.include_router(regressions.router)
    app.include_router(admin.router)
    dashboard.install(app)
    return app


def _log_failure(task: asyncio.Task[None]) -> None:
    """Log what a finished background read raised (store errors are caught inside it:
    this is a bug's traceback, which a replaced task would drop unseen)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("reading job runs for /metrics crashed", exc_info=task.exception())
