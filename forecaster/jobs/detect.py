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

from forecaster.durations import format_duration
from forecaster.errors import ConfigError, ForecasterError, ForecastNotFound

if TYPE_CHECKING:
    from forecaster.consumers.webhooks import WebhookTarget
    from forecaster.jobs.context import JobContext
    from forecaster.specs import PipelineSpec, SeriesSpec, _ConsumerSpec
    from forecaster.store.consumers_repo import WatchedState

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
                sent.extend(_push_event(sender, target, repo, name, kind, event_id))
        finally:
            sender.close()
    return DetectResult(
        series=name,
        points=len(scores),
        opened=sum(1 for kind, _ in changes if kind == "opened"),
        closed=sum(1 for kind, _ in changes if kind == "closed"),
        webhooks=sent,
    )


def _push_event(
    sender: Any,
    target: WebhookTarget,
    repo: Any,
    name: str,
    kind: str,
    event_id: int,
    reason: str | None = None,
) -> list[str]:
    """Push the stored event ``event_id`` as ``regression.<kind>``; ``"<key>: <status>"``
    (none when the event is gone). ``reason`` (a close because the series is no longer
    watched) is added to the payload."""
    event = repo.event(event_id)
    if event is None:
        return []
    payload: dict[str, Any] = {
        "type": f"regression.{kind}",
        "series": name,
        "event_id": event_id,
        "start": event.start.isoformat(),
        "end": None if event.end is None else event.end.isoformat(),
        "peak_score": event.peak_score,
        "direction": event.direction,
        "model": event.model,
    }
    if reason is not None:
        payload["reason"] = reason
    outcome = sender.deliver(
        target,
        key=f"regression:{name}:{event_id}:{kind}",
        kind="regression",
        series=name,
        payload=payload,
    )
    return [f"{outcome.key}: {outcome.status}"]


def stop_watching(
    ctx: JobContext,
    watched: WatchedState,
    *,
    reason: str,
    spec: SeriesSpec | None = None,
    now: datetime | None = None,
) -> DetectResult:
    """Stop judging a series no longer watched (a retired ``split_by`` member, ``watch:``
    removed from its spec, or its series removed from the spec).

    Its open regression event, if any, closes at the last observation judged (nothing
    after it is known) and the "closed" push goes to ``spec``'s watch webhook when it
    still has one; its detector state is marked stopped with ``reason``, so ``/metrics``
    drops its gauges. It resumes after that observation if it is watched again.
    """
    from forecaster.consumers.regressions import EventTracker
    from forecaster.consumers.webhooks import WebhookSender
    from forecaster.store.consumers_repo import ConsumersRepo

    name = watched.series
    target = None
    if spec is not None and spec.watch is not None:
        target = webhook_target(spec.watch, f"series {spec.name!r} watch")
    now = now or datetime.now(UTC)
    tracker = EventTracker(step=timedelta(seconds=1))  # only its state is used here
    tracker.set_state(watched.state)
    transitions = tracker.stop()
    state = {
        **watched.state,
        **tracker.get_state(),
        "stopped": {"at": now.astimezone(UTC).isoformat(), "reason": reason},
    }
    repo = ConsumersRepo(ctx.store)
    changes = repo.save_detection(
        watched.series_id,
        state=state,
        open_event_id=watched.open_event_id,
        transitions=transitions,
        closed_reason=f"no longer watched: {reason}",
    )
    for (_, event_id), change in zip(changes, transitions, strict=False):
        end = change.event.end
        log.info(
            "%s: regression event %d closed at %s, the last observation judged; "
            "no longer watched: %s",
            name,
            event_id,
            "?" if end is None else end.isoformat(),
            reason,
        )
    if not changes:
        log.info("%s: no longer watched (%s); its anomaly gauges are dropped", name, reason)
    sent: list[str] = []
    if target is not None and changes:
        sender = WebhookSender(repo)
        try:
            for kind, event_id in changes:
                sent.extend(_push_event(sender, target, repo, name, kind, event_id, reason))
        finally:
            sender.close()
    return DetectResult(series=name, points=0, closed=len(changes), webhooks=sent)


def _retired_reason(spec: SeriesSpec) -> str:
    return f"retired (silent longer than retire_after {format_duration(spec.retire_members_after)})"


def close_unwatched(ctx: JobContext, *, now: datetime | None = None) -> int:
    """Stop judging every series with a detector state that the spec no longer watches
    (see :func:`stop_watching`); run by the hourly housekeeping (so a scheduler started
    on a new spec catches up) and after a reload. Each series' run is recorded as a
    ``detect`` run when it closed an event or failed.

    Returns:
        How many series were stopped.
    """
    from forecaster.jobs.runner import RunSummary
    from forecaster.store.consumers_repo import ConsumersRepo

    specs = {spec.name: spec for spec in ctx.spec.series}
    members: dict[str, tuple[list[str], list[str]]] = {}
    summary = RunSummary("detect")
    stopped = 0
    for watched in ConsumersRepo(ctx.store).watched_states():
        spec = specs.get(watched.family)
        if spec is None:
            reason = "its series is no longer in the pipeline spec"
        elif spec.watch is None:
            reason = "watch: was removed from its spec"
        else:
            if spec.name not in members:
                members[spec.name] = ctx.family_members(spec)
            reporting, retired = members[spec.name]
            if watched.series in reporting:
                continue
            reason = (
                _retired_reason(spec)
                if watched.series in retired
                else "no longer a series of its spec (its split_by changed)"
            )
        _stop_guarded(ctx, summary, watched, reason=reason, spec=spec, now=now)
        stopped += 1
    return stopped


def _stop_guarded(
    ctx: JobContext,
    summary: Any,
    watched: WatchedState,
    *,
    reason: str,
    spec: SeriesSpec | None,
    now: datetime | None,
) -> None:
    """:func:`stop_watching` as a ``detect`` run of the series (recorded when it closed
    an event or failed, a failed webhook delivery failing it)."""
    from forecaster.jobs.runner import run_guarded

    def stop(ctx: JobContext, *, spec: SeriesSpec | None, name: str) -> DetectResult:
        assert name == watched.series
        return stop_watching(ctx, watched, reason=reason, spec=spec, now=now)

    has_event = watched.open_event_id is not None or watched.state.get("open") is not None
    run_guarded(
        ctx,
        "detect",
        watched.series,
        partial(_failing_on_undelivered, stop, ctx, spec=spec, name=watched.series),
        summary,
        record=has_event,
        describe=lambda result: str(result)[:1000],
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
    spec = ctx.select([family])[0]
    _run_members(ctx, spec, job, fn, ctx.members(spec))


def _run_members(ctx: JobContext, spec: SeriesSpec, job: str, fn: Any, names: list[str]) -> None:
    from forecaster.jobs.runner import RunSummary, run_guarded

    summary = RunSummary(job)
    for name in names:
        run_guarded(
            ctx,
            job,
            name,
            partial(_failing_on_undelivered, fn, ctx, spec=spec, name=name),
            summary,
            describe=lambda result: str(result)[:1000],
        )


def _failing_on_undelivered(fn: Any, ctx: JobContext, *, spec: SeriesSpec | None, name: str) -> Any:
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
    """Scheduled: regression detection for every member of a watched spec'd series;
    members retired since the last run stop being judged (:func:`stop_watching`)."""
    from forecaster.jobs.runner import RunSummary
    from forecaster.scheduler import _ctx
    from forecaster.store.consumers_repo import ConsumersRepo

    ctx = _ctx()
    spec = ctx.select([family])[0]
    reporting, retired = ctx.family_members(spec)
    _run_members(ctx, spec, "detect", detect_series, reporting)
    if retired:
        gone = set(retired)
        summary = RunSummary("detect")
        for watched in ConsumersRepo(ctx.store).watched_states(family=family):
            if watched.series in gone:
                reason = _retired_reason(spec)
                _stop_guarded(ctx, summary, watched, reason=reason, spec=spec, now=None)


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
