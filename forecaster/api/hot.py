"""The two hottest reads served without FastAPI's per-request machinery.

KEDA polls ``GET /v1/scaling/{series}`` and dashboards and consumers poll
``GET /v1/series/{name}/forecast``, many times a second across a fleet. Routing,
dependency injection and query validation in FastAPI cost several times what
building the answer from the in-memory view does (measured in
``benchmarks/serving.py``), so :class:`HotReads` answers the plain, valid form of
these two requests itself, with the same body functions the routes use.

Anything else passes through to the app untouched: other paths and methods, a
query parameter it does not know, repeated or empty, a value that is not a plain
number or a valid duration, and every failure (unknown series, stale forecast,
store outage, ...). The app then answers as it always does, so errors, their
status codes and messages, and the OpenAPI documentation stay FastAPI's. It is not
installed when reads need a token (``api.require_token_for_reads``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from forecaster.api.limits import ASGIApp, Receive, Scope, Send, send_json
from forecaster.api.params import duration_param
from forecaster.api.routes.scaling import ObservationsCache, scaling_body
from forecaster.api.routes.series import forecast_body
from forecaster.consumers.planner import MAX_REPLICAS, target_too_fine

if TYPE_CHECKING:
    from forecaster.api.view import ForecastView
    from forecaster.config import Settings

FORECAST_PREFIX, FORECAST_SUFFIX = "/v1/series/", "/forecast"
SCALING_PREFIX = "/v1/scaling/"
_FLOAT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_INT = re.compile(r"[0-9]+")
_SCALING_KEYS = frozenset(
    {"target_per_replica", "lead_time", "quantile", "min_replicas", "max_replicas"}
)


class _PassThrough(Exception):
    """The request is not the plain valid form: let the app answer it."""


class HotReads:
    """Answer valid forecast and scaling reads directly; pass everything else on.

    Args:
        app: The wrapped ASGI app (the FastAPI app's inner stack).
        view: The in-memory forecast view the routes read.
        settings: The app's settings (horizon bound, staleness bound).
        observations: The latest-observations cache the scaling route reads.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        view: ForecastView,
        settings: Settings,
        observations: ObservationsCache,
    ) -> None:
        self.app = app
        self.view = view
        self.settings = settings
        self.observations = observations
        self.max_ahead = timedelta(seconds=settings.api.max_horizon_seconds)
        #: Requests answered here rather than by the app (tests and benchmarks read it).
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            try:
                body = await self._answer(scope["path"], scope.get("query_string", b""))
            except Exception:  # noqa: BLE001 - any doubt: the app answers (and reports) it
                body = None
            if body is not None:
                self.answered += 1
                await send_json(send, 200, body)
                return
        await self.app(scope, receive, send)

    async def _answer(self, path: str, query_string: bytes) -> bytes | None:
        if path.startswith(FORECAST_PREFIX) and path.endswith(FORECAST_SUFFIX):
            name = path[len(FORECAST_PREFIX) : -len(FORECAST_SUFFIX)]
            params = _params(query_string, {"horizon"})
            if not name:
                return None
            ahead = self._duration(params.get("horizon", "1h"), "horizon")
            return forecast_body(self.view, self.settings, name, ahead)
        if path.startswith(SCALING_PREFIX):
            series = path[len(SCALING_PREFIX) :]
            params = _params(query_string, _SCALING_KEYS)
            if not series or "target_per_replica" not in params:
                return None
            target = _number(params["target_per_replica"])
            quantile = _number(params.get("quantile", "0.9"))
            low = _count(params.get("min_replicas"))
            high = _count(params.get("max_replicas"))
            if target <= 0 or target_too_fine(target) or not 0 < quantile < 1:
                return None
            if high is not None and (high < 1 or (low is not None and high < low)):
                return None
            if (low or 0) > MAX_REPLICAS or (high or 0) > MAX_REPLICAS:
                return None
            return scaling_body(
                self.view,
                self.settings,
                await self.observations.current(),
                series,
                target_per_replica=target,
                lead_seconds=self._duration(params.get("lead_time", "5m"), "lead_time"),
                quantile=quantile,
                min_replicas=low,
                max_replicas=high,
            )
        return None

    def _duration(self, value: str, name: str) -> float:
        """Seconds of a duration parameter the route would accept (its parser and bound)."""
        if len(value) > 32:  # the routes' Query(max_length=32)
            raise _PassThrough(name)
        return duration_param(name, value, maximum=self.max_ahead).total_seconds()


def _params(query_string: bytes, known: frozenset[str] | set[str]) -> dict[str, str]:
    """Query parameters, each known, present once and not empty; else pass through."""
    params: dict[str, str] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key not in known or key in params or not value:
            raise _PassThrough(key)
        params[key] = value
    return params


def _number(text: str) -> float:
    if not _FLOAT.fullmatch(text):
        raise _PassThrough(text)
    return float(text)


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    if not _INT.fullmatch(text):
        raise _PassThrough(text)
    return int(text)
