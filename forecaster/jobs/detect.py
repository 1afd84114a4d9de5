"""Scheduled consumer jobs: regression detection on watched series, cache-warming pushes.

``detect_series`` scores every observation that arrived since the last run
against the band of the forecast published before it (its reference band, without
recent-level corrections, when the publication has one), stores the scores, runs
the :class:`~forecaster.consumers.regressions.EventTracker` (whose state is kept
in the store) and stores event changes, optionally pushing them to the spec'd
webhook. ``warm_series`` pushes cache-warming windows whose ``warm_at`` has come.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from forecaster.errors import ConfigError, ForecasterError, ForecastNotFound

if TYPE_CHECKING:
    from forecaster.consumers.webhooks import WebhookTarget
    from forecaster.jobs.context import JobContext
    from forecaster.specs import PipelineSpec, SeriesSpec, _ConsumerSpec

log = logging.getLogger(__name__)


class WebhookError(ForecasterError):
    """A webhook delivery failed after its retries."""


#: How far back the first run of a newly watched series looks.
FIRST_LOOKBACK = timedelta(hours=1)
#: Scores older than this are pruned.
SCORE_RETENTION = timedelta(days=14)


@dataclass(frozen=True)
class DetectResult:
    """What one detection run did for one series."""

    series: str
    points: int
    opened: int = 0
    closed: int = 0
    webhooks: list[str] = field(default_factory=list)


def webhook_target(settings: _ConsumerSpec, where: str) -> WebhookTarget | None:
    """The webhook of a consumer spec, with its secret read from the environment.

    Raises:
        ConfigError: When the named environment variable is not set.
    """
    from forecaster.consumers.webhooks import WebhookTarget

    if settings.webhook is None or settings.secret_env is None:
        return None
    secret = os.environ.get(settings.secret_env)
    if not secret:
        raise ConfigError(
            f"{where}: webhook secret variable {settings.secret_env!r} is not set or empty"
        )
    return WebhookTarget(url=settings.webhook, secret=secret.encode())


def check_webhook_secrets(spec: PipelineSpec) -> None:
    """Refuse a spec whose webhooks' secret variables are not set (the scheduler checks
    at start, so a missing secret is not a detection failure every minute).

    Raises:
        ConfigError: Naming every series and variable missing.
    """
    missing = [
        f"{series.name} {section}: {consumer.secret_env}"
        for series in spec.series
        for section, consumer in (("watch", series.watch), ("cache_warming", series.cache_warming))
        if consumer is not None
        and consumer.webhook is not None
        and consumer.secret_env is not None
        and not os.environ.get(consumer.secret_env)
    ]
    if missing:
        raise ConfigError(
            "webhook secret variables are not set or empty: "
            + "; ".join(missing)
            + " (set them, or remove the webhooks from the spec)"
        )


def detect_series(
    ctx: JobContext, *, spec: SeriesSpec, name: str, now: datetime | None = None
) -> DetectResult:
    """Score new observations of ``name`` and update its regression events."""
    from forecaster.consumers.regressions import (
        EventTracker,
        ScoreBaseline,
        anomaly_score,
        judge,
    )
    from forecaster.consumers.webhooks import WebhookSender
    from forecaster.store.consumers_repo import ConsumersRepo, ScoreRow

    watch = spec.watch
    if watch is None:
        return DetectResult(series=name, points=0)
    # before anything is stored: events opened while the secret was missing were saved
    # and their "opened" push was never sent
    target = webhook_target(watch, f"series {spec.name!r} watch")
    now = now or datetime.now(UTC)
    store = ctx.store
    info = store.series(name)
    repo = ConsumersRepo(store)
    state, open_id = repo.detector_state(info.id)
    tracker = EventTracker(
        step=spec.step,
        direction=watch.direction,
        persist=watch.persist,
        min_score=watch.min_score,
        close_after=watch.close_after,
        instant_factor=watch.instant_factor,
    )
    if state:
        tracker.set_state(state)
    since = tracker.last_ts + timedelta(microseconds=1) if tracker.last_ts else now - FIRST_LOOKBACK
    rows = store.history(name, since=since, until=now)
    baseline = None
    if watch.baseline_quantile is not None:
        baseline = ScoreBaseline(
            step=spec.step,
            quantile=watch.baseline_quantile,
            window=watch.baseline_window,
            learning=watch.learning,
            refresh=watch.baseline_refresh or timedelta(0),
        )
        baseline.set_state(state or {})
        if not baseline.fresh(now):  # the bar is due: read the window's stored scores
            first_new = rows[0][0] if rows else now
            since_window = first_new - watch.baseline_window
            for ts, score in repo.score_values(info.id, since=since_window, before=first_new):
                baseline.add(ts, score)
    scores: list[ScoreRow] = []
    transitions = []
    bands: dict[int, dict[datetime, Any]] = {}
    for ts, value in rows:
        forecast = store.forecast_made_before(name, ts)
        if forecast is None:
            continue
        by_ds = bands.setdefault(forecast.publication_id, {p.ds: p for p in forecast.points})
        point = by_ds.get(ts)
        if point is None:
            continue
        yhat, lower, upper = point.detection_band()
        score, side = anomaly_score(value, lower, upper)
        model = f"{forecast.model_name} v{forecast.model_version}"
        scores.append(
            ScoreRow(
                ts=ts,
                value=value,
                yhat=yhat,
                yhat_lower=lower,
                yhat_upper=upper,
                score=score,
                side=side,
                publication_id=forecast.publication_id,
                model=model,
            )
        )
        transitions.extend(judge(tracker, baseline, ts, score, side, model))
    saved = tracker.get_state()
    if baseline is not None:  # kept for the next run and /metrics (None while learning)
        baseline.threshold(now)
        saved.update(baseline.get_state())
    changes = repo.save_detection(
        info.id,
        state=saved,
        open_event_id=open_id,
        transitions=transitions,
        scores=scores,
    )
    repo.prune_scores(info.id, before=now - max(SCORE_RETENTION, watch.baseline_window))
    sent: list[str] = []
    if target is not None:
        sender = WebhookSender(repo)
        try:
            for kind, event_id in changes:
                if kind == "updated":
                    continue
                event = repo.event(event_id)
                if event is None:
                    continue
                outcome = sender.deliver(
                    target,
                    key=f"regression:{name}:{event_id}:{kind}",
                    kind="regression",
                    series=name,
                    payload={
                        "type": f"regression.{kind}",
                        "series": name,
                        "event_id": event_id,
                        "start": event.start.isoformat(),
                        "end": None if event.end is None else event.end.isoformat(),
                        "peak_score": event.peak_score,
                        "direction": event.direction,
                        "model": event.model,
                    },
                )
                sent.append(f"{outcome.key}: {outcome.status}")
        finally:
            sender.close()
    return DetectResult(
        series=name,
        points=len(scores),
        opened=sum(1 for kind, _ in changes if kind == "opened"),
        closed=sum(1 for kind, _ in changes if kind == "closed"),
        webhooks=sent,
    )


def warm_series(
    ctx: JobContext, *, spec: SeriesSpec, name: str, now: datetime | None = None
) -> list[str]:
    """Push the cache-warming windows of ``name`` whose ``warm_at`` has arrived (none
    while nothing is published: the series waits for its first training).

    Each window is sent at most once: its key is the series and its ramp's start and
    peak, claimed in the store before sending, and a window that overlaps one pushed
    in the last day is the same window seen by a later forecast (once a ramp has
    begun its start is "now", moving with every publish; keyed by the hour of its
    start it was pushed again each hour, and a second ramp in the same hour never).

    Returns:
        ``"<key>: <status>"`` per window considered.
    """
    from forecaster.consumers.cache_warming import find_ramps
    from forecaster.consumers.webhooks import WebhookSender
    from forecaster.store.consumers_repo import ConsumersRepo

    settings = spec.cache_warming
    if settings is None:
        return []
    target = webhook_target(settings, f"series {spec.name!r} cache_warming")
    if target is None:
        return []
    now = now or datetime.now(UTC)
    try:
        forecast = ctx.store.latest_forecast(name)
    except ForecastNotFound:  # not trained yet (a new series or pod): nothing to push
        return []
    ramps = find_ramps(
        forecast.points,
        now=now,
        within=settings.within,
        min_increase=settings.min_increase,
        lead=settings.lead,
    )
    due = [r for r in ramps if r.warm_at <= now < r.peak_at]
    out: list[str] = []
    repo = ConsumersRepo(ctx.store)
    pushed = [
        window
        for row in repo.deliveries(series=name, kind="cache_warming", since=now - timedelta(days=1))
        if (window := _window_of(row["key"])) is not None
    ]
    sender = WebhookSender(repo)
    try:
        for ramp in due:
            key = f"cache-warming:{name}:{_stamp(ramp.ramp_start)}/{_stamp(ramp.peak_at)}"
            same = next(
                (
                    k
                    for k, (start, peak) in pushed
                    if start <= ramp.peak_at and ramp.ramp_start <= peak
                ),
                None,
            )
            if same is not None:
                out.append(f"{key}: skipped (the window of {same})")
                continue
            pushed.append((key, (ramp.ramp_start, ramp.peak_at)))
            outcome = sender.deliver(
                target,
                key=key,
                kind="cache_warming",
                series=name,
                payload={
                    "type": "cache_warming.window",
                    "series": name,
                    "warm_at": ramp.warm_at.isoformat(),
                    "ramp_start": ramp.ramp_start.isoformat(),
                    "peak_at": ramp.peak_at.isoformat(),
                    "expected_peak": ramp.expected_peak,
                    "expected_peak_upper": ramp.peak_upper,
                    "expected_increase_ratio": ramp.expected_increase_ratio,
                    "model": f"{forecast.model_name} v{forecast.model_version}",
                    "forecast_generated_at": forecast.generated_at.isoformat(),
                    # from a forecast older than the staleness bound (publishing stalled)
                    "stale": forecast.is_stale(
                        now.timestamp(), ctx.settings.schedule.stale_after_seconds
                    ),
                },
            )
            out.append(f"{outcome.key}: {outcome.status}")
    finally:
        sender.close()
    return out


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _window_of(key: str) -> tuple[str, tuple[datetime, datetime]] | None:
    """(key, (ramp start, peak)) of a cache-warming delivery key; None for other keys.

    Keys end ``<start>/<peak>`` (``2026-11-29T10:05Z/2026-11-29T10:20Z``). A key of an
    earlier release (``...:2026-11-29T10``, the hour of the ramp's start) stands for
    that whole hour, so its windows are not pushed again after an upgrade.
    """
    stamp = "%Y-%m-%dT%H:%MZ"
    with contextlib.suppress(ValueError):
        start = datetime.strptime(key[-35:-18], stamp).replace(tzinfo=UTC)
        if key[-18] == "/":
            return key, (start, datetime.strptime(key[-17:], stamp).replace(tzinfo=UTC))
    with contextlib.suppress(ValueError):
        hour = datetime.strptime(key[-13:], "%Y-%m-%dT%H").replace(tzinfo=UTC)
        if len(key) > 13 and key[-14] == ":":
            return key, (hour, hour + timedelta(hours=1))
    return None


def _each_member(ctx: JobContext, family: str, job: str, fn: Any) -> None:
    from forecaster.jobs.runner import RunSummary, run_guarded

    spec = ctx.select([family])[0]
    summary = RunSummary(job)
    for name in ctx.members(spec):
        run_guarded(
            ctx,
            job,
            name,
            partial(_failing_on_undelivered, fn, ctx, spec=spec, name=name),
            summary,
            describe=lambda result: str(result)[:1000],
        )


def _failing_on_undelivered(fn: Any, ctx: JobContext, *, spec: SeriesSpec, name: str) -> Any:
    """``fn``'s result, or a failed run when a webhook delivery failed for good.

    Its work is stored either way; a receiver that was down showed only as a log
    line, the run recorded as fine (deliveries are at most once: it is not retried).

    Raises:
        WebhookError: Naming the deliveries that failed.
    """
    result = fn(ctx, spec=spec, name=name)
    lines = result.webhooks if isinstance(result, DetectResult) else result
    failed = [line for line in lines if line.endswith(": failed")]
    if failed:
        raise WebhookError(
            f"{len(failed)} webhook delivery(ies) failed after their retries (not sent "
            f"again): {'; '.join(failed)}; the receiver's answer is in webhook_deliveries"
        )
    return result


def detect_job(family: str) -> None:
    """Scheduled: regression detection for every member of a watched spec'd series."""
    from forecaster.scheduler import _ctx

    _each_member(_ctx(), family, "detect", detect_series)


def warm_job(family: str) -> None:
    """Scheduled: cache-warming pushes for every member of a spec'd series."""
    from forecaster.scheduler import _ctx

    _each_member(_ctx(), family, "warm", warm_series)


def consumer_jobs(spec: SeriesSpec, now: datetime) -> list[tuple[str, Any, Any]]:
    """The scheduler jobs ``(id, function, trigger)`` of ``spec``'s consumers.

    Detection runs every ingest interval, 30 s after ingest (so that new
    observations are in); warming pushes are checked every minute.
    """
    from apscheduler.triggers.interval import IntervalTrigger

    jobs: list[tuple[str, Any, Any]] = []
    if spec.watch is not None:
        jobs.append(
            (
                f"detect:{spec.name}",
                detect_job,
                IntervalTrigger(
                    seconds=spec.ingest_every.total_seconds(),
                    start_date=now + timedelta(seconds=30),
                ),
            )
        )
    if spec.cache_warming is not None and spec.cache_warming.webhook is not None:
        jobs.append(
            (
                f"warm:{spec.name}",
                warm_job,
                IntervalTrigger(seconds=60, start_date=now + timedelta(seconds=45)),
            )
        )
    return jobs
