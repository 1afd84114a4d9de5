"""The ``forecaster detect`` command: the production regression detector replayed over a CSV.

Online: every decision at time t uses only observations before t; the estimator
is refitted on the service's training schedule (``--refit``, a 5-field UTC cron)
and re-forecasts from the newest observations in between; observations are judged
against the reference forecast (``predict(follow_level=False)``: no recent-level
corrections), as the service's detection job is. Writes one row per
regression event: ``start,end,score`` (ISO 8601 UTC; ``end`` empty while open at
the end of the file; ``score`` the peak anomaly score).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer

from forecaster.commands import StrictOption, finite_range
from forecaster.errors import ForecasterError, InputDataError
from forecaster.outputs import check_outputs, replace_atomically

#: The service's training schedule, which --refit follows unless given.
DEFAULT_REFIT = "0 3 * * *"


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def detect_command(
    input_csv: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT.csv", help="Two columns (timestamp, value) with a header row."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Events CSV (start,end,score).")],
    scores: Annotated[
        Path | None,
        typer.Option(
            help="Also write every scored step (ds,y,yhat,yhat_lower,yhat_upper,score,side,bar)."
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="PNG: the series, its band and the events; scores against the bar."),
    ] = None,
    freq: Annotated[str, typer.Option(help="Grid step; the series is resampled by mean.")] = (
        "5min"
    ),
    direction: Annotated[
        Literal["up", "down", "both"], typer.Option(help="Which deviations count.")
    ] = "both",
    persist: Annotated[
        str,
        typer.Option(help="How long a deviation must last before an event opens (0s: at once)."),
    ] = "15m",
    min_score: Annotated[
        float,
        typer.Option(
            parser=finite_range(1.0, math.inf),
            help="Scores above this qualify (1 = outside the band; >= 1).",
        ),
    ] = 1.0,
    close_after: Annotated[
        str | None, typer.Option(help="How long back inside the band closes an event (1 step).")
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            help="Adaptive bar from the series' own recent scores (--no-baseline: "
            "persistence alone opens events)."
        ),
    ] = True,
    baseline_quantile: Annotated[
        float,
        typer.Option(
            parser=finite_range(0.5, 0.99999),
            help="Quantile of recent scores = the bar (0.5 .. 0.99999).",
        ),
    ] = 0.999,
    baseline_window: Annotated[str, typer.Option(help="How far back scores count.")] = "14d",
    learning: Annotated[
        str, typer.Option(help="Scores needed before any event opens (per series).")
    ] = "1d",
    baseline_refresh: Annotated[
        str | None,
        typer.Option(help="Recompute the bar at most this often (default: every step)."),
    ] = None,
    instant_factor: Annotated[
        float,
        typer.Option(
            parser=finite_range(1.0, math.inf),
            help="A score above this many times the bar opens at once (>= 1).",
        ),
    ] = 2.0,
    model: Annotated[str, typer.Option(help="Estimator; auto is what the service runs.")] = "auto",
    level: Annotated[
        float,
        typer.Option(parser=finite_range(50.0, 99.9), help="Band level, percent (50 .. 99.9)."),
    ] = 90.0,
    refit: Annotated[
        str | None,
        typer.Option(
            help="Refit schedule, 5-field UTC cron (the service's train) [default: 0 3 * * *]."
        ),
    ] = None,
    refit_every: Annotated[
        str | None, typer.Option(help="Refit every this long instead of --refit (e.g. 7d).")
    ] = None,
    publish_every: Annotated[
        int, typer.Option(min=1, help="Steps between re-forecasts (1 = as the service).")
    ] = 1,
    history: Annotated[str, typer.Option(help="Training window per refit.")] = "28d",
    min_history: Annotated[str, typer.Option(help="History before the first decision.")] = "1d",
    strict: StrictOption = False,
) -> None:
    """Detect regressions in INPUT.csv online, as the service would have, and write events."""
    started = time.perf_counter()
    try:
        check_outputs(input_csv, {"--output": output, "--scores": scores, "--plot": plot})
        from forecaster.commands.backtest import check_history_window, parse_freq
        from forecaster.consumers.regressions import (
            EventTracker,
            RefitSchedule,
            ScoreBaseline,
            detect_history,
        )
        from forecaster.durations import parse_duration
        from forecaster.estimators.base import create_estimator, estimator_names
        from forecaster.timeseries import read_grid_csv

        step = parse_freq(freq)
        durations = {}
        for flag, value in (
            ("--persist", persist),
            ("--history", history),
            ("--min-history", min_history),
            ("--baseline-window", baseline_window),
            ("--learning", learning),
        ):
            try:
                # --persist 0s: an event opens on the first qualifying observation
                durations[flag] = parse_duration(value, what=flag, allow_zero=flag == "--persist")
            except ValueError as exc:
                raise InputDataError(str(exc)) from None
        check_history_window(durations["--history"], step, history=history, freq=freq)
        try:
            closing = (
                None if close_after is None else parse_duration(close_after, what="--close-after")
            )
            every = (
                None if refit_every is None else parse_duration(refit_every, what="--refit-every")
            )
            refresh = (
                timedelta(0)
                if baseline_refresh is None
                else parse_duration(baseline_refresh, what="--baseline-refresh")
            )
            if every is not None and refit is not None:
                raise InputDataError(
                    "give --refit (a cron schedule) or --refit-every (an interval), not both"
                )
            if baseline and durations["--learning"] > durations["--baseline-window"]:
                raise InputDataError(
                    f"--learning {learning} is longer than --baseline-window "
                    f"{baseline_window}: the bar could never learn from that many scores"
                )
            schedule = RefitSchedule(cron=None if every else (refit or DEFAULT_REFIT), every=every)
            bar = (
                ScoreBaseline(
                    step=step,
                    quantile=baseline_quantile,
                    window=durations["--baseline-window"],
                    learning=durations["--learning"],
                    refresh=refresh,
                )
                if baseline
                else None
            )
        except ValueError as exc:
            raise InputDataError(str(exc)) from None
        if model not in estimator_names():
            raise InputDataError(
                f"unknown model {model!r}; choose from {', '.join(estimator_names())}"
            )
        series = read_grid_csv(input_csv, step, strict=strict)
        if series.index[-1] - series.index[0] <= durations["--min-history"]:
            raise InputDataError(
                f"{input_csv}: spans {series.index[-1] - series.index[0]}, not more than "
                f"--min-history {min_history}; nothing to decide on"
            )
        tracker = EventTracker(
            step=step,
            direction=direction,
            persist=durations["--persist"],
            min_score=min_score,
            close_after=closing,
            instant_factor=instant_factor,
        )
        horizon = max(publish_every, 1)

        def make_estimator() -> object:
            if model == "auto":
                return create_estimator(
                    "auto",
                    candidates=("seasonal_naive", "prophet", "lightgbm"),
                    horizon=horizon,
                    level=level,
                    n_jobs=1,
                    history_window=durations["--history"],
                )
            return create_estimator(model)

        from tqdm import tqdm

        total = len(series) - int(
            series.index.searchsorted(series.index[0] + durations["--min-history"])
        )
        with tqdm(
            total=total,
            desc="detect",
            unit="step",
            disable=not sys.stderr.isatty(),
            dynamic_ncols=True,
        ) as progress:
            result = detect_history(
                series,
                make_estimator=make_estimator,  # type: ignore[arg-type]
                tracker=tracker,
                refit=schedule,
                min_history=durations["--min-history"],
                train_window=durations["--history"],
                publish_every=publish_every,
                level=level,
                on_progress=progress.update,
                baseline=bar,
            )
    except ForecasterError as exc:
        raise _fail(str(exc)) from None

    def write_events(path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["start", "end", "score"])
            for event in result.events:
                writer.writerow(
                    [
                        event.start.isoformat(),
                        "" if event.end is None else event.end.isoformat(),
                        f"{event.peak_score:.4f}",
                    ]
                )

    extra = ""
    try:
        replace_atomically(output, write_events)
        if scores is not None:
            frame = result.scores.copy()
            frame["ds"] = [ts.isoformat() for ts in frame["ds"]]
            replace_atomically(scores, lambda path: frame.to_csv(path, index=False))
            extra += f", scores -> {scores}"
        if plot is not None:
            from forecaster.consumers.regressions import plot_detection

            plot_detection(
                result, plot, title=f"{input_csv.name}: regressions", min_score=min_score
            )
            extra += f", plot -> {plot}"
    except OSError as exc:
        raise _fail(f"cannot write output: {exc}") from exc
    typer.echo(
        f"detected {len(result.events)} event(s) in {len(result.scores)} scored steps "
        f"({result.refits} refits, {result.forecasts} forecasts) in "
        f"{time.perf_counter() - started:.1f}s -> {output}{extra}"
    )


def register(app: typer.Typer) -> None:
    """Add ``detect`` to the CLI."""
    app.command("detect")(detect_command)
