"""Dashboard resource: the built-in page (``/dashboard``) and the JSON it draws.

The page itself is static (HTML, JS, CSS and the vendored uPlot library under
``forecaster/api/static``). Its data endpoint ``/v1/dashboard/{series}`` gathers,
for one series and a time window: the stored history, the current forecast (from
the in-memory view), the forecasts made an hour and a day earlier, the champion and
the backtest scores of recent trainings, and regression events when the
``regression_events`` table exists. Those reads go to the store (a handful of
indexed queries) and are cached per (series, window) for a few seconds, so a room
full of open dashboards costs little.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import MetaData, Table, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from forecaster.api.deps import ReadAccess, SettingsDep, StoreDep, ViewDep
from forecaster.api.params import bad_parameter, duration_param
from forecaster.errors import ForecastNotFound, InputDataError, SeriesNotFound, StoreError

if TYPE_CHECKING:
    from forecaster.api.view import ForecastView
    from forecaster.store.repository import ForecastPoint, PublishedForecast, Store

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
MAX_WINDOW = timedelta(days=14)
EARLIER = (("1h", timedelta(hours=1)), ("1d", timedelta(days=1)))
"""Labels and ages of the earlier forecasts laid over the actuals."""
CACHE_SECONDS = 5.0

page_router = APIRouter(tags=["dashboard"])
router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"], dependencies=[ReadAccess])


def install(app: FastAPI) -> None:
    """Add the dashboard page, its static files and its data endpoint to ``app``."""
    app.state.dashboard_cache = DashboardCache(CACHE_SECONDS)
    app.include_router(page_router)
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")


@page_router.get("/dashboard", response_class=HTMLResponse, summary="Dashboard page")
async def dashboard_page() -> HTMLResponse:
    """The dashboard: pick a series, see actuals, forecasts, intervals and the champion."""
    return HTMLResponse(_index_html(), headers={"Cache-Control": "no-cache"})


_INDEX: list[bytes] = []


def _index_html() -> bytes:
    if not _INDEX:
        _INDEX.append((STATIC_DIR / "index.html").read_bytes())
    return _INDEX[0]


@router.get(
    "/{name:path}",
    summary="Everything the dashboard draws for one series",
    responses={404: {"description": "Unknown series"}},
)
def dashboard_data(
    name: str,
    request: Request,
    view: ViewDep,
    store: StoreDep,
    settings: SettingsDep,
    window: Annotated[
        str, Query(description="How much history to show, e.g. 6h, 24h, 7d (max 14d)")
    ] = "24h",
    target_per_replica: Annotated[
        float | None,
        Query(
            gt=0,
            allow_inf_nan=False,
            description="Load one replica handles; adds a replica plan when given",
        ),
    ] = None,
    quantile: Annotated[
        float,
        Query(
            gt=0,
            lt=1,
            allow_inf_nan=False,
            description="Forecast quantile the replica plan provisions",
        ),
    ] = 0.9,
    lead_time: Annotated[
        str, Query(description="Replica plan lead time, e.g. 5m", max_length=32)
    ] = "5m",
) -> Response:
    """Actuals, current forecast with its band, earlier forecasts, champion, events.

    Timestamps in the arrays ``t`` are Unix seconds (UTC); values are in the series'
    ``unit``. ``forecast.lower``/``upper`` bound the central interval at
    ``forecast.level`` percent. ``forecast.reference`` (watched series only, else
    ``null``) is the band the regression detector judges against: the forecast
    without recent-level corrections. Sections that do not apply are ``null`` or empty.
    ``stale`` is true when the current forecast is older than the staleness bound
    (``FORECASTER_SCHEDULE__STALE_AFTER_SECONDS``); ``last_observation`` tells how old
    the newest observation is when the window holds none.
    With ``target_per_replica``, ``replicas`` holds the replica plan over the forecast:
    per step, ``ceil(max(quantile over [t, t + lead_time]) / target_per_replica)``.
    """
    span = duration_param("window", window, maximum=MAX_WINDOW)
    if span < timedelta(minutes=5):
        raise bad_parameter("window", f"window={window!r} is shorter than 5m")
    lead = duration_param("lead_time", lead_time, maximum=timedelta(hours=24))
    cache: DashboardCache = request.app.state.dashboard_cache
    key = (name, int(span.total_seconds()), target_per_replica, quantile, lead.total_seconds())
    cached = cache.get(key)
    if cached is not None:
        return Response(cached, media_type="application/json")
    try:
        body = build_dashboard(
            view=view,
            store=store,
            name=name,
            span=span,
            cache=cache,
            stale_after=settings.schedule.stale_after_seconds,
        )
        if target_per_replica is not None and body["forecast"] is not None:
            body["replicas"] = replica_plan(
                body["forecast"],
                target_per_replica=target_per_replica,
                quantile=quantile,
                lead=lead,
            )
    except InputDataError as exc:
        raise bad_parameter("quantile", str(exc)) from None
    except SeriesNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except (StoreError, SQLAlchemyError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    payload = orjson.dumps(body)
    cache.put(key, payload)
    return Response(payload, media_type="application/json")


def build_dashboard(
    *,
    view: ForecastView,
    store: Store,
    name: str,
    span: timedelta,
    now: datetime | None = None,
    cache: DashboardCache | None = None,
    stale_after: float = 120.0,
) -> dict[str, Any]:
    """The dashboard document of ``name`` for the last ``span`` (see :func:`dashboard_data`).

    ``stale`` is true when the current forecast is older than ``stale_after`` seconds.
    """
    now = now or datetime.now(UTC)
    start = now - span
    info = store.series(name)
    history = store.history(name, since=start, until=now)
    current: PublishedForecast | None
    try:
        current = view.forecast(name).forecast
    except (SeriesNotFound, ForecastNotFound):
        current = None
    earlier = []
    for label, age in EARLIER:
        made = store.forecast_made_before(name, now - age)
        if made is None or (current is not None and made.publication_id == current.publication_id):
            continue
        earlier.append(
            {
                "label": label,
                **_forecast_doc(made, start=start, end=now),
            }
        )
    forecast = None
    if current is not None:
        forecast = _forecast_doc(current, start=start, end=None)
    trainings = store.trainings(name, limit=10)
    champion = store.champion(name)
    return {
        "series": name,
        "unit": info.unit,
        "kind": info.kind,
        "step_seconds": info.step_seconds,
        "now": now.timestamp(),
        "window_seconds": span.total_seconds(),
        "last_observation": _epoch(info.last_observation_at),
        "stale": current is not None and current.is_stale(now.timestamp(), stale_after),
        "actual": {"t": [ts.timestamp() for ts, _ in history], "y": [y for _, y in history]},
        "forecast": forecast,
        "earlier": earlier,
        "champion": None
        if champion is None
        else {
            "estimator": champion.estimator,
            "version": champion.model_version,
            "run_id": champion.run_id,
            "mase": _finite(champion.mase),
            "promoted_at": champion.promoted_at.timestamp(),
        },
        "trainings": [_training_doc(row) for row in trainings],
        "regressions": regression_events(store, name, since=start, cache=cache),
        "replicas": None,
    }


def replica_plan(
    forecast: dict[str, Any], *, target_per_replica: float, quantile: float, lead: timedelta
) -> dict[str, Any]:
    """Replicas per forecast step from the planner (``forecaster.consumers.planner``).

    Args:
        forecast: A forecast section of the dashboard document (``t``, ``yhat``,
            ``lower``, ``upper``, ``level``).
        target_per_replica: Load one replica handles, in the series' unit.
        quantile: Forecast quantile to provision for (within the published interval).
        lead: How far ahead each step's capacity must already cover.

    Raises:
        InputDataError: If ``quantile`` is outside the published interval.
    """
    from forecaster.consumers.planner import interval_quantile_steps, replicas_for_load

    t: list[float] = forecast["t"]
    steps = list(zip(forecast["yhat"], forecast["lower"], forecast["upper"], strict=True))
    load = interval_quantile_steps(quantile, steps, level=forecast["level"])
    ahead = lead.total_seconds()
    provisioned = []
    end = 0
    for i, start in enumerate(t):
        end = max(end, i)
        while end + 1 < len(t) and t[end + 1] <= start + ahead:
            end += 1
        provisioned.append(max(0.0, *load[i : end + 1]))
    return {
        "target_per_replica": target_per_replica,
        "quantile": quantile,
        "lead_time_seconds": ahead,
        "t": t,
        "load": provisioned,
        "replicas": [replicas_for_load(v, target_per_replica) for v in provisioned],
    }


def _forecast_doc(
    fc: PublishedForecast, *, start: datetime, end: datetime | None
) -> dict[str, Any]:
    points = [p for p in fc.points if p.ds > start and (end is None or p.ds <= end)]
    return {
        "generated_at": fc.generated_at.timestamp(),
        "level": fc.level,
        "model": {"name": fc.model_name, "version": fc.model_version, "run_id": fc.run_id},
        "t": [p.ds.timestamp() for p in points],
        "yhat": [p.yhat for p in points],
        "lower": [p.yhat_lower for p in points],
        "upper": [p.yhat_upper for p in points],
        "reference": _reference_doc(points),
    }


def _reference_doc(points: list[ForecastPoint]) -> dict[str, list[float]] | None:
    """The band the regression detector judges against, where every point has one."""
    bands = [p.reference for p in points]
    if not bands or any(b is None for b in bands):
        return None
    yhat, lower, upper = (list(column) for column in zip(*bands, strict=True))
    return {"yhat": yhat, "lower": lower, "upper": upper}


def _training_doc(row: dict[str, Any]) -> dict[str, Any]:
    metrics = row.get("metrics") or {}
    scores = metrics.get("scores") if isinstance(metrics, dict) else None
    return {
        "trained_at": _epoch(row.get("trained_at")),
        "estimator": row.get("estimator"),
        "version": row.get("model_version"),
        "run_id": row.get("run_id"),
        "promoted": bool(row.get("promoted")),
        "reason": row.get("reason"),
        "mase": _finite(metrics.get("mase")) if isinstance(metrics, dict) else None,
        "scores": {
            str(est): {str(k): _finite(v) for k, v in values.items()}
            for est, values in (scores or {}).items()
            if isinstance(values, dict)
        },
    }


# -- regression events (table owned by the regression detector; optional) ------------

_EVENT_COLUMNS = {
    "start": ("start", "started_at", "start_at", "opened_at", "begin"),
    "end": ("end", "ended_at", "end_at", "closed_at", "finish"),
    "score": ("peak_score", "score", "max_score"),
    "direction": ("direction",),
    "model": ("model_name", "model", "estimator"),
    "closed_reason": ("closed_reason",),  # migration 0008
}


def regression_events(
    store: Store, name: str, *, since: datetime, cache: DashboardCache | None = None
) -> list[dict[str, Any]]:
    """Regression events of ``name`` overlapping ``[since, now]``; empty without the table.

    The ``regression_events`` table is created by the regression detector's
    migration. It is reflected here rather than imported so the dashboard works
    before (and without) that migration: a series column (``series`` name or
    ``series_id``) and a start column are required, end/score/model are optional.
    """
    table = (cache or DashboardCache(0.0)).events_table(store)
    if table is None:
        return []
    cols = table.c
    found = {
        key: next((cols[c] for c in names if c in cols), None)
        for key, names in _EVENT_COLUMNS.items()
    }
    start_col, end_col = found["start"], found["end"]
    if start_col is None:
        return []
    query = select(*(c for c in found.values() if c is not None))
    if "series_id" in cols:
        query = query.where(cols["series_id"] == store.series(name).id)
    elif "series" in cols:
        query = query.where(cols["series"] == name)
    else:
        return []
    bound: datetime = since.astimezone(UTC)
    if store.engine.dialect.name == "sqlite":
        bound = bound.replace(tzinfo=None)  # SQLite keeps naive UTC
    if end_col is not None:
        query = query.where((end_col.is_(None)) | (end_col >= bound))
    else:
        query = query.where(start_col >= bound)
    query = query.order_by(start_col).limit(200)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
    except (SQLAlchemyError, TypeError, ValueError) as exc:
        # A schema this reader does not understand must not break the dashboard.
        log.warning("cannot read regression events of %r: %s", name, exc)
        return []
    events = []
    for row in rows:
        event = {key: row[col.name] for key, col in found.items() if col is not None}
        for key in ("start", "end"):
            event[key] = _epoch(event.get(key))
        if "score" in event:
            event["score"] = _finite(event["score"])
        events.append(event)
    return events


# -- helpers --------------------------------------------------------------------------


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        aware: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return _epoch(parsed)
    return None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class DashboardCache:
    """Per-app cache: encoded responses valid ``ttl`` seconds, the reflected events table."""

    def __init__(self, ttl: float, size: int = 64) -> None:
        self.ttl = ttl
        self.size = size
        self._items: dict[tuple[Any, ...], tuple[float, bytes]] = {}
        self._events: tuple[float, Table | None] | None = None
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        """The cached response of ``key`` if still fresh."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None or time.monotonic() - hit[0] > self.ttl:
                return None
            return hit[1]

    def put(self, key: tuple[Any, ...], value: bytes) -> None:
        """Remember ``value`` for ``key`` (evicting the oldest entry when full)."""
        with self._lock:
            if key not in self._items and len(self._items) >= self.size:
                oldest = min(self._items, key=lambda k: self._items[k][0])
                del self._items[oldest]
            self._items[key] = (time.monotonic(), value)

    def events_table(self, store: Store) -> Table | None:
        """The reflected ``regression_events`` table (re-checked every minute), or None."""
        hit = self._events
        if hit is not None and time.monotonic() - hit[0] < 60.0:
            return hit[1]
        table: Table | None = None
        try:
            if inspect(store.engine).has_table("regression_events"):
                table = Table("regression_events", MetaData(), autoload_with=store.engine)
        except SQLAlchemyError as exc:
            log.warning("cannot inspect regression_events: %s", exc)
        self._events = (time.monotonic(), table)
        return table
