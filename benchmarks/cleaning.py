"""Does history cleaning help on a real outage? auto with and without it, same origins.

On 2015-03-11 from 07:00 to 09:05 UTC every ``realTweets`` ticker reads 0: the
collection stopped (all ten at once, in busy hours). ``auto`` cleans such runs of
zeros into missing data before training and before forecasting from newer data;
this benchmark backtests ``auto`` as the service runs it, once with cleaning
(``clean=True``, the default) and once without, on the tickers hit by it:

- **day-ahead**: 7 origins at midnight UTC from 2015-03-12 to 03-18, one day
  ahead, refitted at every origin: each training window holds the outage;
- **hour-ahead**: 24 origins every 5 minutes from 09:10 (the first point after the
  outage) to 11:05, one hour ahead, fitted once at the first origin and forecast
  from the newest data at each origin (as the service republishes). That fit's
  history ends in the outage, which no cleaning can yet tell from a real drop, so
  both fits are the same model; what differs is that ``auto`` cleans the newest
  data it forecasts from once traffic is back.

MASE is scaled as in EVALUATION.md (the in-sample one-day seasonal naive over each
origin's history window, on the raw series for both variants, so the scales are
equal). Writes a markdown table and a plot (AAPL, both tasks)::

    .venv/bin/python -m benchmarks.cleaning [--series AAPL,GOOG] [--output ...] [--plot ...]

About 10 minutes for the five tickers on 2 cores. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.outputs import write_report

if TYPE_CHECKING:
    import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TWEETS = REPO / "data" / "nab" / "realTweets"
STEP = timedelta(minutes=5)
OUTAGE_START, OUTAGE_END = "2015-03-11 07:00", "2015-03-11 09:05"
TICKERS = ("AAPL", "AMZN", "FB", "GOOG", "KO")
DAY_AHEAD = {"horizon": 288, "origins": 7, "stride": 288, "refit_every": 288, "end": "2015-03-19"}
# one fit at the first origin, then forecasts from newer data (as the service publishes)
HOUR_AHEAD = {
    "horizon": 12,
    "origins": 24,
    "stride": 1,
    "refit_every": 10**9,
    "end": "2015-03-11 12:05",
}


def load(ticker: str) -> pd.Series:
    from forecaster.timeseries import read_series_csv, to_grid

    return to_grid(read_series_csv(TWEETS / f"Twitter_volume_{ticker}.csv"), STEP)


def run(series: pd.Series, task: dict[str, Any], *, clean: bool) -> pd.DataFrame:
    """The backtest of ``auto`` (with or without cleaning) on ``series`` up to the task's end."""
    import pandas as pd

    from forecaster.estimators.auto import AutoEstimator
    from forecaster.evaluation import backtest

    history = series[series.index < pd.Timestamp(task["end"], tz="UTC")]
    return backtest(
        history,
        lambda: AutoEstimator(horizon=task["horizon"], n_jobs=1, clean=clean),
        horizon=task["horizon"],
        origins=task["origins"],
        stride=task["stride"],
        refit_every=task["refit_every"],
        model_name="auto" if clean else "auto, clean=False",
        recalibrate=True,  # both served as the service would (the band does not move yhat)
    )


def plot(
    path: Path, ticker: str, series: pd.Series, frames: dict[tuple[str, bool], pd.DataFrame]
) -> None:
    import pandas as pd

    from forecaster.plotting import agg_figure, save_figure

    fig = agg_figure(11, 6.5)
    axes = fig.subplots(2, 1)
    day = frames[("day", True)]["origin"].min()
    panels = [
        (
            axes[0],
            "day",
            day,
            (day, day + pd.Timedelta(days=1)),
            f"{ticker}: day-ahead forecast from {day:%Y-%m-%d %H:%M}, the day after the outage",
        ),
        (
            axes[1],
            "hour",
            pd.Timestamp("2015-03-11 09:25", tz="UTC"),
            (pd.Timestamp(OUTAGE_START, tz="UTC") - pd.Timedelta(hours=2), None),
            f"{ticker}: hour-ahead forecast from 09:25, 15 minutes after traffic returned",
        ),
    ]
    for ax, task, origin, (start, end), title in panels:
        end = end or origin + pd.Timedelta(hours=1)
        actual = series[(series.index >= start) & (series.index <= end)]
        ax.plot(actual.index, actual.to_numpy(), color="black", lw=1, label="actual")
        for clean, colour in ((True, "tab:blue"), (False, "tab:red")):
            frame = frames[(task, clean)]
            rows = frame[frame["origin"] == origin]
            label = "auto (cleans the outage)" if clean else "auto, clean=False"
            ax.plot(rows["ds"], rows["yhat"], color=colour, lw=1.5, label=label)
        outage = (pd.Timestamp(OUTAGE_START, tz="UTC"), pd.Timestamp(OUTAGE_END, tz="UTC"))
        shift = pd.Timedelta(days=1) if task == "day" else pd.Timedelta(0)
        ax.axvspan(
            outage[0] + shift,
            outage[1] + shift,
            color="grey",
            alpha=0.15,
            label="outage" if task == "hour" else "outage's hours, a day later",
        )
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mentions / 5 min")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--series", default=",".join(TICKERS), help=f"tickers (default {','.join(TICKERS)})"
    )
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/cleaning.md")
    parser.add_argument("--plot", type=Path, default=REPO / "docs/cleaning.png")
    args = parser.parse_args()
    import pandas as pd

    from forecaster.evaluation import score_backtest

    tickers = [t.strip().upper() for t in args.series.split(",") if t.strip()]
    unknown = [t for t in tickers if not (TWEETS / f"Twitter_volume_{t}.csv").is_file()]
    if unknown or not tickers:
        raise SystemExit(f"unknown ticker(s) {unknown}; choose from {', '.join(TICKERS)}")
    started = time.perf_counter()
    rows = []
    for ticker in tickers:
        series = load(ticker)
        zeros = series[OUTAGE_START:OUTAGE_END]
        if len(zeros) == 0 or (zeros != 0).any():
            raise SystemExit(f"{ticker} is not all zeros over {OUTAGE_START} - {OUTAGE_END}")
        frames = {}
        for task_name, task in (("day", DAY_AHEAD), ("hour", HOUR_AHEAD)):
            for clean in (True, False):
                frames[(task_name, clean)] = run(series, task, clean=clean)
                print(
                    f"{ticker} {task_name}-ahead clean={clean} "
                    f"({time.perf_counter() - started:.0f}s)",
                    flush=True,
                )
        scores = {key: score_backtest(frame, series) for key, frame in frames.items()}
        rows.append(
            (
                ticker,
                scores[("day", True)]["mase"],
                scores[("day", False)]["mase"],
                scores[("hour", True)]["mase"],
                scores[("hour", False)]["mase"],
            )
        )
        if ticker == tickers[0]:
            plot(args.plot, ticker, series, frames)
    minutes = (time.perf_counter() - started) / 60
    plot_path = args.plot.relative_to(REPO) if args.plot.is_relative_to(REPO) else args.plot
    lines = [
        "# History cleaning on a real outage",
        "",
        f"Command: `python -m benchmarks.cleaning` ({minutes:.1f} min). The `realTweets` "
        f"collection outage of {OUTAGE_START}-{OUTAGE_END[-5:]} UTC (every ticker reads 0); "
        "`auto` as the service runs it, with its cleaning (default) and with `clean=False`.",
        "",
        "| ticker | day-ahead MASE, cleaned | not cleaned | change "
        "| hour-ahead MASE, cleaned | not cleaned | change |",
        "|---|---|---|---|---|---|---|",
    ]
    for ticker, d1, d0, h1, h0 in [*rows, ("mean", *pd.DataFrame(rows).iloc[:, 1:].mean())]:
        lines.append(
            f"| {ticker} | {d1:.3f} | {d0:.3f} | {100 * (d1 / d0 - 1):+.0f}% "
            f"| {h1:.3f} | {h0:.3f} | {100 * (h1 / h0 - 1):+.0f}% |"
        )
    lines += [
        "",
        "Day-ahead: 7 origins at 00:00 UTC, 2015-03-12 to 03-18, refitted at each. "
        "Hour-ahead: 24 origins every 5 minutes from 09:10 to 11:05 on 03-11, fitted once at "
        "the first (whose history ends in the outage, so both fits are the same model) and "
        "forecast from the newest data, which `auto` cleans once traffic is back.",
        "",
        f"![cleaning]({plot_path})",
    ]
    write_report(args.output, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
