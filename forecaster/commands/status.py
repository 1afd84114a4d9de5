"""The ``forecaster status`` command: is every spec'd series being ingested, trained and
published? One line per series (a family's members each), read from the store.

Exit status 0 when every series is fine (or retired), 1 when any needs attention, so
it can serve as a cron or CI health check.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forecaster.durations import format_duration

if TYPE_CHECKING:
    from forecaster.jobs.context import JobContext
    from forecaster.specs import SeriesSpec
    from forecaster.store.repository import JobOutcome

#: States that need no attention.
FINE = ("ok", "retired")


@dataclass(frozen=True)
class SeriesStatus:
    """Where one series stands."""

    series: str
    spec: str
    state: str
    last_observation: datetime | None
    champion: str | None
    forecast_made: datetime | None
    problem: str
    checked_at: datetime
    #: The latest training: when, which estimator, promoted or not and why, and its
    #: flags (e.g. a cold start); None when the series was never trained.
    last_training: dict[str, object] | None = None

    def to_json(self) -> dict[str, object]:
        """The row for ``--json``: ISO 8601 times, and their ages in whole seconds."""
        return {
            "series": self.series,
            "spec": self.spec,
            "state": self.state,
            "last_observation": _iso(self.last_observation),
            "last_observation_age_seconds": _age_seconds(self.last_observation, self.checked_at),
            "champion": self.champion,
            "forecast_made": _iso(self.forecast_made),
            "forecast_age_seconds": _age_seconds(self.forecast_made, self.checked_at),
            "problem": self.problem,
            "last_training": self.last_training,
        }


def _first_line(detail: str) -> str:
    return (detail.splitlines() or [""])[0][:300]


def _seconds_ago(then: datetime, now: datetime) -> int:
    return max(int((now - then).total_seconds()), 0)


def _since(then: datetime, now: datetime) -> str:
    """How long ago ``then`` was, in whole seconds (``1m45s``)."""
    return format_duration(timedelta(seconds=_seconds_ago(then, now)))


def _age(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "-"
    return f"{then.isoformat(timespec='seconds')} ({_since(then, now)} ago)"


def _iso(then: datetime | None) -> str | None:
    return None if then is None else then.isoformat(timespec="seconds")


def _age_seconds(then: datetime | None, now: datetime) -> int | None:
    return None if then is None else _seconds_ago(then, now)


def _last_training(ctx: JobContext, name: str) -> dict[str, object] | None:
    """The latest training of ``name`` (a refused candidate or a cold start was only in
    ``train``'s output and the dashboard), or None."""
    rows = ctx.store.trainings(name, limit=1)
    if not rows:
        return None
    row = rows[0]
    flags = (row.get("metrics") or {}).get("flags") or []
    return {
        "at": _iso(row["trained_at"]),
        "estimator": row["estimator"],
        "promoted": bool(row["promoted"]),
        "reason": row["reason"],
        "flags": [str(f) for f in flags] if isinstance(flags, list) else [str(flags)],
    }


def _describe_training(training: dict[str, object] | None, now: datetime) -> str:
    if training is None:
        return "-"
    at = training["at"]
    when = _since(datetime.fromisoformat(at), now) if isinstance(at, str) else "?"
    verdict = "promoted" if training["promoted"] else "not promoted"
    flags = training.get("flags") or []
    noted = f" [{'; '.join(str(f) for f in flags)}]" if isinstance(flags, list) and flags else ""
    return f"{training['estimator']}, {verdict} {when} ago: {training['reason']}{noted}"


def _untrained_problem(ctx: JobContext, name: str) -> str:
    """Why a member has no model: too few observations yet, or no training run."""
    from forecaster.jobs.train import MIN_POINTS, stored_toward_training

    have, enough = stored_toward_training(ctx.store, name)
    if not enough:
        return (
            f"waiting for history: {have} of the {MIN_POINTS} observations a training "
            "needs (the scheduler trains it then)"
        )
    return "not trained yet (forecaster train)"


def collect(
    ctx: JobContext, specs: list[SeriesSpec], now: datetime | None = None
) -> list[SeriesStatus]:
    """The status of every stored member of ``specs`` (a spec with none: ``no history``)."""
    from forecaster.consumers.scaling import observation_max_age
    from forecaster.store.repository import OUTCOME_LOOKBACK, RECORDED_JOBS

    now = now or datetime.now(UTC)
    bound = timedelta(seconds=ctx.settings.schedule.stale_after_seconds)
    failed: dict[str, JobOutcome] = {}  # by series name; ingest runs are a family's
    ingested: set[str] = set()  # whose latest ingest ran fine
    for run in ctx.store.latest_job_outcomes(RECORDED_JOBS, since=now - OUTCOME_LOOKBACK):
        if run.series is not None and not run.ok:  # that job's latest run failed
            failed.setdefault(run.series, run)
        elif run.series is not None and run.job == "ingest":
            ingested.add(run.series)
    forecasts = ctx.store.current_publications()
    out: list[SeriesStatus] = []
    for spec in specs:
        reporting, retired = ctx.member_infos(spec)
        silent_after = observation_max_age(
            max(spec.step, spec.ingest_every).total_seconds(), bound.total_seconds()
        )
        family_failing = failed.get(spec.name) if spec.split_by else None
        # a family's members come and go (a scaled-down pod retires later): silence is
        # judged on the family's freshest member, so only a silent source is flagged
        freshest = max(
            (i.last_observation_at for i in reporting if i.last_observation_at is not None),
            default=None,
        )
        if not reporting and not retired:
            first = failed.get(spec.name)
            if first is not None:
                state, problem = f"{first.job} failing", _first_line(first.detail)
            elif spec.name in ingested:  # "run ingest first" while it ran every step
                state, problem = "no history", "ingest runs, but the query matches no series"
            else:
                state, problem = "no history", "run ingest first"
            out.append(SeriesStatus(spec.name, spec.name, state, None, None, None, problem, now))
            continue
        for info in sorted(reporting + retired, key=lambda i: i.name):
            name = info.name
            made = forecasts.get(name)
            failing = failed.get(name) or family_failing
            champion = f"{info.champion} v{info.champion_version}" if info.champion else None
            seen = freshest if spec.split_by else info.last_observation_at
            if info in retired:
                state, problem = "retired", "silent for longer than retire_after"
            elif failing is not None:
                state, problem = f"{failing.job} failing", _first_line(failing.detail)
            elif made is not None and now - made[0] > bound:
                # before "no new data": with the scheduler down nothing is ingested
                # either, and the source was blamed
                state = "stale"
                problem = (
                    f"the forecast is older than the {format_duration(bound)} staleness bound: "
                    "is the scheduler running?"
                )
            elif seen is not None and (now - seen).total_seconds() > silent_after:
                # forecasts were republished from the old data and looked "ok" for a
                # whole horizon (24 h by default) after an exporter died
                state = "no new data"
                problem = (
                    f"nothing observed for {_since(seen, now)} (ingest every "
                    f"{format_duration(spec.ingest_every)}): has the source stopped reporting?"
                )
            elif champion is None:
                state, problem = "no champion", _untrained_problem(ctx, name)
            elif made is None:
                state, problem = "no forecast", "nothing published yet (forecaster publish)"
            else:
                state, problem = "ok", ""
            out.append(
                SeriesStatus(
                    series=name,
                    spec=spec.name,
                    state=state,
                    last_observation=info.last_observation_at,
                    champion=champion,
                    forecast_made=None if made is None else made[0],
                    problem=problem,
                    checked_at=now,
                    last_training=_last_training(ctx, name),
                )
            )
    return out


def status_command(
    series: Annotated[
        list[str] | None,
        typer.Argument(
            help="Series names from the spec, a split_by family by its name (default: all).",
            show_default=False,
        ),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option("--spec", help="Pipeline spec YAML (default: FORECASTER_PIPELINES)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per series.")] = False,
) -> None:
    """Show, per spec'd series, its last observation, champion, forecast age and any
    failing job; exits 1 when any series needs attention."""
    from forecaster.config import load_settings
    from forecaster.jobs.context import JobContext

    settings = load_settings(**({} if spec is None else {"pipelines": spec}))
    # a health check reads: it neither creates nor migrates a store
    ctx = JobContext.create(settings, migrate=False)
    logging.getLogger("forecaster.jobs.context").setLevel(logging.WARNING)  # retirements
    try:
        rows = collect(ctx, ctx.select(series))
    finally:
        ctx.store.engine.dispose()
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.to_json()))
    else:
        for row in rows:
            colour = typer.colors.GREEN if row.state in FINE else typer.colors.RED
            typer.secho(f"{row.series}: {row.state}", fg=colour, bold=row.state not in FINE)
            typer.echo(f"  last observation  {_age(row.last_observation, row.checked_at)}")
            typer.echo(f"  champion          {row.champion or '-'}")
            typer.echo(f"  forecast made     {_age(row.forecast_made, row.checked_at)}")
            if row.last_training is not None:
                typer.echo(
                    f"  last training     {_describe_training(row.last_training, row.checked_at)}"
                )
            if row.problem:
                typer.echo(f"  problem           {row.problem}")
        attention = [row for row in rows if row.state not in FINE]
        typer.echo(
            f"{len(rows)} series: {len(rows) - len(attention)} fine, "
            f"{len(attention)} need attention"
        )
    if any(row.state not in FINE for row in rows):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``status`` command to ``app``."""
    app.command("status")(status_command)
