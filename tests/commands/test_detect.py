"""``forecaster detect``: events from a CSV, online (no peeking), clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from forecaster.commands.detect import register


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # keep "detect" a sub-command
        return

    return app


def _write(path: Path, days: int = 5, shift_at: int = 4 * 288 + 100) -> Path:
    rng = np.random.default_rng(7)
    n = days * 288
    t = np.arange(n)
    y = 100 + 30 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 2, n)
    y[shift_at : shift_at + 24] += 80  # a two-hour regression
    stamps = pd.date_range("2026-01-01", periods=n, freq="5min")
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": y}).to_csv(
        path, index=False
    )
    return path


def _events(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "bar",
    [
        [],
        ["--no-baseline"],
        ["--learning", "2h", "--instant-factor", "3", "--baseline-refresh", "1h"],
        ["--persist", "0s"],  # opens at once (it was refused: "must be positive")
    ],
)
def test_detects_the_injected_regression(cli: typer.Typer, tmp_path: Path, bar: list[str]) -> None:
    data = _write(tmp_path / "in.csv")
    out = tmp_path / "events.csv"
    result = CliRunner().invoke(
        cli,
        [
            "detect",
            str(data),
            "--output",
            str(out),
            "--model",
            "seasonal_naive",
            "--direction",
            "up",
            "--persist",
            "15m",
            *bar,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "event(s)" in result.output
    events = _events(out)
    assert list(events[0]) == ["start", "end", "score"]
    shift_start = pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=5 * (4 * 288 + 100))
    hits = [
        e
        for e in events
        if pd.Timestamp(e["start"]) <= shift_start + pd.Timedelta(hours=2)
        and (not e["end"] or pd.Timestamp(e["end"]) >= shift_start)
    ]
    assert hits and float(hits[0]["score"]) > 1.0
    assert pd.Timestamp(hits[0]["start"]) - shift_start <= pd.Timedelta(minutes=15)
    if not bar:  # default: a day of --min-history, then a day of learning raise nothing
        learnt = pd.Timestamp("2026-01-03", tz="UTC")
        assert all(pd.Timestamp(e["start"]) >= learnt for e in events)


def test_decisions_use_only_past_data(cli: typer.Typer, tmp_path: Path) -> None:
    full = _write(tmp_path / "full.csv")
    frame = pd.read_csv(full)
    cut = 4 * 288 + 110
    frame.iloc[:cut].to_csv(tmp_path / "cut.csv", index=False)
    runner = CliRunner()
    for name in ("full", "cut"):
        result = runner.invoke(
            cli,
            [
                "detect",
                str(tmp_path / f"{name}.csv"),
                "-o",
                str(tmp_path / f"{name}.out"),
                "--model",
                "seasonal_naive",
            ],
        )
        assert result.exit_code == 0, result.output
    last = pd.Timestamp(frame["timestamp"].iloc[cut - 1], tz="UTC")
    full_events = [e for e in _events(tmp_path / "full.out") if pd.Timestamp(e["start"]) <= last]
    cut_events = _events(tmp_path / "cut.out")
    assert [e["start"] for e in cut_events] == [e["start"] for e in full_events]
    closed_in_both = [e for e in cut_events if e["end"]]
    assert all(e in full_events for e in closed_in_both)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "no such file"),
        (["DATA", "--model", "nope"], "unknown model 'nope'"),
        (["DATA", "--persist", "soon"], "--persist"),
        (["DATA", "--refit", "daily"], "invalid refit cron"),
        (["DATA", "--freq", "banana"], "--freq"),
        (["DATA", "--min-history", "30d"], "nothing to decide on"),
        (["DATA", "--learning", "30d"], "--learning 30d is longer than --baseline-window 14d"),
        (["DATA", "--refit", "0 3 * * *", "--refit-every", "7d"], "not both"),
        (["DATA", "--baseline-window", "soon"], "--baseline-window"),
        (["DATA", "--baseline-refresh", "-1h"], "--baseline-refresh"),
        (
            ["DATA", "--model", "seasonal_naive", "--history", "5m"],
            "--history 5m is shorter than two steps of --freq 5min",
        ),
    ],
)
def test_clear_errors(cli: typer.Typer, tmp_path: Path, args: list[str], message: str) -> None:
    data = _write(tmp_path / "in.csv", days=2)
    argv = [
        "detect",
        *[str(data) if a == "DATA" else a for a in args],
        "-o",
        str(tmp_path / "o.csv"),
    ]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1
    assert message in result.output


def test_a_gap_longer_than_the_history_window_names_the_option_to_widen(
    cli: typer.Typer, tmp_path: Path, nab: Path
) -> None:
    """On sparse data (observations hours apart) a short --history stopped with a bare
    "history has no finite values": not which decision, nor what to change."""
    data = nab / "realKnownCause/rogue_agent_key_hold.csv"
    argv = ["detect", str(data), "--history", "1h", "--model", "seasonal_naive"]
    result = CliRunner().invoke(cli, [*argv, "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 1, result.output
    assert "history has no finite values" in result.output
    assert "the --history window of 1h before it has no observed point" in result.output
    assert "use a --history longer than that gap" in result.output
    assert not (tmp_path / "o.csv").exists()


def test_out_of_range_options_are_usage_errors(cli: typer.Typer, tmp_path: Path) -> None:
    data = _write(tmp_path / "in.csv", days=2)
    for flag, value in (
        ("--baseline-quantile", "1.5"),
        ("--instant-factor", "0.5"),
        ("--instant-factor", "inf"),  # the spec's watch refuses it: so does the command
        ("--min-score", "inf"),
        ("--min-score", "0.5"),
    ):
        result = CliRunner().invoke(cli, ["detect", str(data), "-o", "o.csv", flag, value])
        assert result.exit_code == 2
        assert f"Invalid value for '{flag}'" in result.output


def test_scores_csv_and_plot(cli: typer.Typer, tmp_path: Path) -> None:
    data = _write(tmp_path / "in.csv")
    scores, plot = tmp_path / "scores.csv", tmp_path / "out" / "detect.png"
    result = CliRunner().invoke(
        cli,
        [
            "detect",
            str(data),
            "-o",
            str(tmp_path / "events.csv"),
            "--model",
            "seasonal_naive",
            "--scores",
            str(scores),
            "--plot",
            str(plot),
        ],
    )
    assert result.exit_code == 0, result.output
    assert str(plot) in result.output
    frame = pd.read_csv(scores)
    assert list(frame.columns) == [
        "ds", "y", "yhat", "yhat_lower", "yhat_upper", "score", "side", "bar"
    ]  # fmt: skip
    # one row per decided step after --min-history (1 day of 5), the bar learnt after one more
    assert len(frame) == 4 * 288
    stamps = pd.to_datetime(frame["ds"], utc=True)
    learnt = stamps >= pd.Timestamp("2026-01-03", tz="UTC")
    assert frame.loc[~learnt, "bar"].isna().all() and frame.loc[learnt, "bar"].notna().all()
    assert (frame["score"] >= 0).all() and set(frame["side"]) <= {-1, 0, 1}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_a_plot_of_nothing_scored_is_written(cli: typer.Typer, tmp_path: Path) -> None:
    """Two observations two days apart: nothing can be judged (no forecast before the
    second). The outputs say so, and the plot is empty axes (it was a matplotlib
    TypeError traceback on the empty score columns, after the CSVs were written)."""
    data = tmp_path / "two.csv"
    data.write_text("timestamp,value\n2026-01-01 00:00:00,1\n2026-01-03 00:00:00,2\n")
    plot = tmp_path / "detect.png"
    result = CliRunner().invoke(
        cli, ["detect", str(data), "-o", str(tmp_path / "e.csv"), "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    assert "0 event(s) in 0 scored steps" in result.output
    assert _events(tmp_path / "e.csv") == []
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--level", "nan"], "'nan' is not a number"),
        (["--level", "99.95"], "99.95 is not between 50 and 99.9"),
        (["--baseline-quantile", "1"], "1 is not between 0.5 and 0.99999"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(
    cli: typer.Typer, tmp_path: Path, args: list[str], message: str
) -> None:
    data = _write(tmp_path / "in.csv", days=2)
    result = CliRunner().invoke(cli, ["detect", str(data), *args, "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "o.csv").exists()
