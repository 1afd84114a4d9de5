"""The ``forecaster backtest`` command: a rolling-origin backtest of one CSV series.

Implements the contract in ``docs/EVALUATION.md``; the work is done by
:mod:`forecaster.evaluation`. Heavy libraries are imported inside the command.
"""

from __future__ import annotations

import math
import re
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forecaster.commands import StrictOption, finite_range
from forecaster.errors import ForecasterError, InputDataError
from forecaster.outputs import check_outputs, replace_atomically

if TYPE_CHECKING:
    import pandas as pd

OUTPUT_COLUMNS = ("origin", "ds", "step", "yhat", "yhat_lower", "yhat_upper", "model")


#: The finest grid step, as for a spec's ``step`` (a finer one resampled nothing
#: but empty points, and below a microsecond it was zero and crashed the resampler).
MIN_FREQ = timedelta(seconds=1)


#: pandas' old frequency aliases, which pandas 3 refuses: minutes, seconds, ms, hours.
OLD_PANDAS_UNITS = {"T": "min", "S": "s", "L": "ms", "H": "h"}


def parse_freq(text: str) -> timedelta:
    """Parse a grid step such as ``5min``, ``5m``, ``300s`` or ``1h``.

    Raises:
        InputDataError: Naming the value when it is not a duration of at least 1s.
    """
    import pandas as pd

    from forecaster.durations import parse_duration

    try:
        return _at_least_a_second(parse_duration(text, what="--freq"), text)
    except ValueError as exc:
        # one number and one pandas alias ('5min', '5T', '1D'); anything else (a bare
        # number, repeated or unordered units) is refused as the durations are
        alias = re.fullmatch(r"(-?\d+(?:\.\d+)?)([A-Za-z]+)", text.strip())
        if alias is None:
            raise InputDataError(str(exc)) from None
    number, unit = alias.groups()
    unit = OLD_PANDAS_UNITS.get(unit, unit)  # pandas 3 no longer reads '5T' for 5min
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            value = pd.to_timedelta(number + unit)
    except (ValueError, TypeError) as exc:
        raise InputDataError(f"--freq: cannot parse {text!r}; use e.g. '5min' or '1h'") from exc
    if pd.isna(value):  # 'nan', 'NaT'
        raise InputDataError(f"--freq: cannot parse {text!r}; use e.g. '5min' or '1h'")
    if value <= pd.Timedelta(0):
        raise InputDataError(f"--freq: must be positive, got {text!r}")
    return _at_least_a_second(value.to_pytimedelta(), text)


def _at_least_a_second(step: timedelta, text: str) -> timedelta:
    """``step``, or an :class:`InputDataError` naming ``text`` when it is under 1s."""
    if step < MIN_FREQ:
        raise InputDataError(f"--freq: must be at least 1s, got {text!r}")
    return step


def check_history_window(window: timedelta, step: timedelta, *, history: str, freq: str) -> None:
    """Refuse a training window of fewer than two grid steps (as a spec's ``history``).

    With one point an estimator fits nothing: the backtest scored MASE as n/a "as the
    series did not vary" and detect scored no step at all, both without an error.

    Raises:
        InputDataError: Naming ``--history`` and ``--freq``.
    """
    if window < 2 * step:
        raise InputDataError(
            f"--history {history} is shorter than two steps of --freq {freq}; training "
            "needs at least two points"
        )


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def backtest_command(
    input_csv: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT.csv", help="Two columns (timestamp, value) with a header row."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Forecast rows (CSV).")],
    freq: Annotated[str, typer.Option(help="Grid step; the series is resampled by mean.")] = (
        "5min"
    ),
    horizon: Annotated[int, typer.Option(min=1, help="Steps forecast from each origin.")] = 288,
    origins: Annotated[int, typer.Option(min=1, help="Number of forecast origins.")] = 4,
    stride: Annotated[
        int | None, typer.Option(min=1, help="Steps between origins (default: horizon).")
    ] = None,
    refit_every: Annotated[
        int | None,
        typer.Option(min=1, help="Refit at most once every this many steps (default: always)."),
    ] = None,
    history: Annotated[
        str, typer.Option(help="History before an origin that training may use.")
    ] = "28d",
    level: Annotated[
        float,
        typer.Option(
            parser=finite_range(1.0, 99.9), help="Central interval level, percent (1 .. 99.9)."
        ),
    ] = 90.0,
    model: Annotated[
        str,
        typer.Option(
            help="Estimator name, or 'auto' (production: as served, its band recalibrated "
            "by the last day's misses as the publish job does, the first hour of lead and "
            "longer leads each by their own; between origins more than an hour apart the "
            "service's hourly forecasts are made and judged too)."
        ),
    ] = "auto",
    plot: Annotated[Path | None, typer.Option(help="Also write a PNG of the backtest.")] = None,
    unit: Annotated[str, typer.Option(help="Unit of the values, for the plot.")] = "",
    n_jobs: Annotated[int, typer.Option(min=1, help="Threads for LightGBM.")] = 1,
    strict: StrictOption = False,
) -> None:
    """Rolling-origin backtest of INPUT.csv; writes one row per origin per step."""
    from forecaster.durations import parse_duration
    from forecaster.evaluation import (
        backtest,
        estimator_factory,
        model_names,
        plot_backtest,
        score_backtest,
    )
    from forecaster.timeseries import read_grid_csv

    began = time.perf_counter()
    try:
        check_outputs(input_csv, {"--output": output, "--plot": plot})
        if model not in model_names():
            raise InputDataError(f"unknown model {model!r}; choose from {', '.join(model_names())}")
        estimator_factory(model, horizon=horizon, level=level)
        step = parse_freq(freq)
        try:
            window = parse_duration(history, what="--history")
        except ValueError as exc:
            raise InputDataError(str(exc)) from exc
        check_history_window(window, step, history=history, freq=freq)
        # the contract counts origins back from the end of the grid, empty rows included
        series = read_grid_csv(input_csv, step, strict=strict, keep_empty_end=True)
        frame = backtest(
            series,
            model,
            horizon=horizon,
            origins=origins,
            stride=stride,
            refit_every=refit_every,
            history_window=window,
            level=level,
            progress=sys.stderr.isatty(),
            n_jobs=n_jobs,
        )
        scores = score_backtest(frame, series, history_window=window)
        out = frame[list(OUTPUT_COLUMNS)].copy()
        # whole seconds, unless the grid has fractions of one (--freq 1500ms)
        stamp = "%Y-%m-%dT%H:%M:%S.%fZ" if step.microseconds else "%Y-%m-%dT%H:%M:%SZ"
        for column in ("origin", "ds"):
            out[column] = out[column].dt.strftime(stamp)
        replace_atomically(output, lambda path: out.to_csv(path, index=False))
        if plot is not None:
            plot_backtest(
                frame,
                series,
                plot,
                title=(
                    f"{input_csv.name}: {model} backtest, {origins} origin(s), "
                    f"horizon {horizon} x {freq}, {level:g}% interval"
                ),
                unit=unit,
            )
    except ForecasterError as exc:
        raise _fail(str(exc)) from exc
    except OSError as exc:
        raise _fail(f"cannot write output: {exc}") from exc
    seconds = time.perf_counter() - began
    used = models_used(frame)
    typer.echo(
        f"{input_csv.name}: model {used}; origins {origins}, horizon {horizon}; "
        f"MASE {_metric(scores['mase'], '.3f')}  sMAPE {_metric(scores['smape'], '.1f')}%  "
        f"coverage {_metric(100 * scores['coverage'], '.1f')}% (target {level:g}%)  "
        f"width {_metric(scores['width'], '.3f')}  seconds {seconds:.1f}"
    )
    # the seasonal naive's in-sample error needs more than a day of window
    if window <= timedelta(days=1) and not math.isnan(scores["mase"]):
        sys.stdout.flush()
        typer.echo(
            f"  MASE is scaled by the one-step naive's in-sample error: --history {history} "
            "is not longer than the daily season the contract's seasonal naive repeats",
            err=True,
        )
    if not series.reindex(frame["ds"]).notna().any():
        # every origin in the empty rows at the end of the file: "did not vary" was wrong
        sys.stdout.flush()
        typer.echo(
            "  no scores: no forecast step has an observed value (the origins fall in "
            f"the {_empty_tail(series)} empty point(s) at the end of the file; fewer "
            "--origins or a smaller --stride reach the data)",
            err=True,
        )
    elif math.isnan(scores["mase"]):
        sys.stdout.flush()
        typer.echo(
            "  MASE n/a: the series did not vary before the origins (the daily seasonal "
            "naive's in-sample error, MASE's denominator, is 0)",
            err=True,
        )


def _empty_tail(series: pd.Series) -> int:
    """How many points at the end of ``series`` have no value."""
    import numpy as np

    values = series.to_numpy(dtype=float)
    finite = np.flatnonzero(np.isfinite(values))
    return len(values) - (int(finite[-1]) + 1 if len(finite) else 0)


def _metric(value: float, spec: str) -> str:
    """``value`` formatted, or ``n/a`` when it could not be computed (NaN)."""
    return "n/a" if math.isnan(value) else format(value, spec)


def models_used(frame: pd.DataFrame, *, shown: int | None = 3) -> str:
    """The models that produced the backtest, most origins first, with their origin
    counts; past ``shown`` (None: all; auto's blends differ by their weights) the
    rest are counted, so the summary stays one line."""
    counts = frame.drop_duplicates("origin")["model"].astype(str).value_counts(sort=False)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{name} x{count}" for name, count in ranked[:shown])
    rest = len(ranked) - len(ranked[:shown])
    return text + (f" and {rest} more" if rest > 0 else "")


def register(app: typer.Typer) -> None:
    """Add the ``backtest`` command to ``app``."""
    app.command("backtest")(backtest_command)
