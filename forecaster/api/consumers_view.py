"""In-memory snapshot of regression scores and events for the API, and their /metrics collector.

Like :class:`forecaster.api.view.ForecastView`, the read path never queries the
database per request: the app's background refresher (see
:func:`forecaster.api.app.create_app`) reloads the newest score per series and the
recent events every :data:`REFRESH_SECONDS`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from forecaster.errors import StoreError

if TYPE_CHECKING:
    from forecaster.store.consumers_repo import EventRow, LatestScore
    from forecaster.store.repository import Store

log = logging.getLogger(__name__)

#: Events kept in memory: open ones and those that ended within this window.
EVENT_WINDOW = timedelta(days=31)
MAX_EVENTS = 5000
REFRESH_SECONDS = 2.0


@dataclass(frozen=True)
class ConsumerState:
    """One consistent snapshot."""

    scores: dict[str, LatestScore] = field(default_factory=dict)
    bars: dict[str, float] = field(default_factory=dict)
    events: tuple[EventRow, ...] = ()
    events_since: datetime | None = None
    refreshed_at: datetime | None = None
    error: str | None = None


class ConsumerView:
    """Swap-on-refresh snapshot of the consumer tables."""

    def __init__(self, store: Store) -> None:
        from forecaster.store.consumers_repo import ConsumersRepo

        self.repo = ConsumersRepo(store)
        self._state = ConsumerState()
        self._lock = threading.Lock()

    @property
    def state(self) -> ConsumerState:
        """The current snapshot (replaced wholesale, never mutated)."""
        return self._state

    def refresh(self) -> bool:
        """Reload scores and recent events; on failure keep serving the old snapshot."""
        with self._lock:
            since = datetime.now(UTC) - EVENT_WINDOW
            try:
                scores = {s.series: s for s in self.repo.latest_scores()}
                bars = self.repo.detector_bars()
                events = tuple(self.repo.events(since=since, limit=MAX_EVENTS))
            except (SQLAlchemyError, StoreError) as exc:
                old = self._state
                self._state = ConsumerState(
                    scores=old.scores,
                    bars=old.bars,
                    events=old.events,
                    events_since=old.events_since,
                    refreshed_at=old.refreshed_at,
                    error=f"store unavailable: {exc}"[:500],
                )
                log.warning("consumer view refresh failed: %s", exc)
                return False
            self._state = ConsumerState(
                scores=scores,
                bars=bars,
                events=events,
                events_since=since if len(events) < MAX_EVENTS else None,
                refreshed_at=datetime.now(UTC),
            )
            return True


class AnomalyCollector(Collector):
    """Exports ``forecaster_anomaly_score{series}``, the bars and open regressions."""

    def __init__(self, view: ConsumerView) -> None:
        self.view = view

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.view.state
        score = GaugeMetricFamily(
            "forecaster_anomaly_score",
            "Newest anomaly score of a watched series: 0 inside the published forecast band, "
            "above 1 outside it (1 + distance in band widths)",
            labels=["series"],
        )
        stamp = GaugeMetricFamily(
            "forecaster_anomaly_score_timestamp_seconds",
            "Unix time of the observation the newest anomaly score judged",
            labels=["series"],
        )
        open_events = GaugeMetricFamily(
            "forecaster_regression_open",
            "1 while a regression event of the series is open, else 0",
            labels=["series", "direction"],
        )
        bar = GaugeMetricFamily(
            "forecaster_anomaly_bar",
            "Adaptive bar of a watched series: a persistent deviation opens a regression "
            "event once its score passes this (a quantile of the series' own recent scores); "
            "absent while the series is still learning",
            labels=["series"],
        )
        for name, value in sorted(state.bars.items()):
            bar.add_metric([name], value)
        opened: dict[tuple[str, str], int] = {}
        for event in state.events:
            if event.end is None:
                opened[(event.series, event.direction)] = 1
        for name, latest in state.scores.items():
            score.add_metric([name], latest.score)
            stamp.add_metric([name], latest.ts.timestamp())
            for direction in ("up", "down"):
                open_events.add_metric([name, direction], float(opened.get((name, direction), 0)))
        yield score
        yield stamp
        yield bar
        yield open_events
