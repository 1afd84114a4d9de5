"""The ``simulate`` command on a short real NAB slice: table, report, plot, honesty, bad input."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from forecaster.commands import simulate as simulate_command
from forecaster.commands.simulate import (
    Replay,
    _replicas_from_loads,
    matched_headroom,
    matched_utilisation,
    predictive_replicas,
    simulate,
    stabilisation_steps,
)
from forecaster.errors import InputDataError
from forecaster.timeseries import read_series_csv, to_grid

NAB = Path(__file__).resolve().parents[2] / "data" / "nab"
AAPL = NAB / "realTweets" / "Twitter_volume_AAPL.csv"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    simulate_command.register(app)

    @app.callback()
    def main() -> None:
        """Test app."""

    return app


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    """The last four days of Twitter AAPL mention volume (5-minute steps)."""
    frame = pd.read_csv(AAPL)
    path = tmp_path / "aapl.csv"
    frame.tail(4 * 288).to_csv(path, index=False)
    return path


def run(app: typer.Typer, *args: Any) -> Any:
    return CliRunner().invoke(app, ["simulate", *map(str, args)])


def test_table_report_and_plot(app: typer.Typer, trace: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    plot = tmp_path / "plot.png"
    result = run(
        app, trace, "--capacity", 40, "--lead", "10m", "--days", 2,
        "--model", "seasonal_naive", "--output", report_path, "--plot", plot,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for text in ("predictive", "reactive (HPA-like)", "oracle", "under-provisioned"):
        assert text in result.output
    assert "replica-hours" in result.output and "actions" in result.output
    report = json.loads(report_path.read_text())
    assert report["replay"]["steps"] == 2 * 288 and report["lead_steps"] == 2
    plans = report["plans"]
    assert {"predictive", "predictive_same_cost", "reactive", "oracle"} <= set(plans)
    assert plans["oracle"]["under_provisioned_steps"] == 0
    for row in plans.values():
        assert 0 <= row["under_provisioned_share"] <= 1 and row["replica_hours"] > 0
    # the oracle is the cheapest plan that never under-provisions
    assert plans["oracle"]["replica_hours"] <= plans["reactive"]["replica_hours"]
    # the same-cost predictive plan never costs more than the reactive one it is compared
    # with (the 70% plan, or one given at least the cheapest predictive plan's cost)
    same = report["same_cost"]
    reference = plans[
        "reactive" if same["predictive_error_headroom"] is not None else "reactive_same_cost"
    ]
    assert plans["predictive_same_cost"]["replica_hours"] <= reference["replica_hours"]
    assert same["reactive_under_provisioned_steps"] == reference["under_provisioned_steps"]
    assert report["poll_seconds"] == 30 and report["error_headroom"] == 0
    days = [entry.split(":")[0] for entry in report["models_by_day"]]
    assert days == ["2015-04-21", "2015-04-22"]
    assert all(entry.endswith("seasonal_naive") for entry in report["models_by_day"])
    assert report["forecast_decisions"] == report["decisions"]
    # durations as the user writes them, not Python's timedelta ("0:10:00")
    assert plans["reactive"]["note"].startswith("load observed 10m earlier at 70% target")
    assert plot.stat().st_size > 20_000


def test_no_lookahead_forecasts_use_only_the_past(trace: Path) -> None:
    series = to_grid(read_series_csv(trace), timedelta(minutes=5))
    report, _, _ = simulate(
        series, capacity=40, lead=timedelta(minutes=10), days=1, model="seasonal_naive",
        quantile=0.9,
    )  # fmt: skip
    # Changing the future after the replay's first decision must not change that decision.
    changed = series.copy()
    changed.iloc[-288 + 1 :] = changed.iloc[-288 + 1 :] * 100
    report2, _, _ = simulate(
        changed, capacity=40, lead=timedelta(minutes=10), days=1, model="seasonal_naive",
        quantile=0.9,
    )  # fmt: skip
    assert report["models_by_day"] == report2["models_by_day"]
    from forecaster.commands.simulate import replay_forecasts

    a = replay_forecasts(
        series, start=len(series) - 288, lead_steps=2, model="seasonal_naive",
        quantile=0.9, n_jobs=1, progress=False,
    )  # fmt: skip
    b = replay_forecasts(
        changed, start=len(series) - 288, lead_steps=2, model="seasonal_naive",
        quantile=0.9, n_jobs=1, progress=False,
    )  # fmt: skip
    # every decision made before the changed step is identical (a decision uses the
    # data up to and including its own step, as production republishes after each one)
    assert a.peaks[:3] == b.peaks[:3]


def test_cold_start_falls_back_to_reactive_and_says_so(app: typer.Typer, tmp_path: Path) -> None:
    frame = pd.read_csv(AAPL).tail(288 + 100)
    path = tmp_path / "short.csv"
    frame.to_csv(path, index=False)
    result = run(app, path, "--capacity", 40, "--days", 1, "--model", "seasonal_naive")
    assert result.exit_code == 0, result.output
    assert "cold start" in result.output and "predictive = reactive" in result.output


def test_planner_without_forecast_is_reactive() -> None:
    replay = Replay(peaks=[None, None], observed=[70.0, 140.0], decision_times=[0.0, 300.0])
    assert predictive_replicas(replay, 10.0).tolist() == [10, 20]


def flat_replay(n: int, *, forecast: float, actual: list[float]) -> Replay:
    """Decisions every 5 min, lead one step, the same forecast every time."""
    frame = np.array([[forecast], [0.8 * forecast], [1.2 * forecast]])
    return Replay(
        peaks=[forecast] * n,
        observed=list(actual),
        decision_times=[300.0 * i for i in range(n)],
        frames=[frame] * n,
        target_times=[300.0 * (i + 1) for i in range(n)],
        actual=list(actual),
        step_seconds=300.0,
    )


def test_error_headroom_in_the_replay_uses_the_planners_own_errors() -> None:
    actual = [10.0, 50.0] * 10  # the forecast of 20 misses by 10 or 30: mean error 20
    replay = flat_replay(len(actual), forecast=20.0, actual=actual)
    plain = predictive_replicas(replay, 10.0, quantile=0.5)
    with_headroom = predictive_replicas(replay, 10.0, quantile=0.5, error_headroom=1.0)
    # the first errors are known from the third decision on; then 20 + 20 = 40 is planned
    assert plain[3:].min() >= 2 and with_headroom[:3].tolist() == plain[:3].tolist()
    assert (with_headroom[4:] >= 4).all() and (with_headroom >= plain).all()


def test_polling_lets_scale_down_steps_compound_between_decisions() -> None:
    actual = [400.0] + [10.0] * 5
    replay = flat_replay(len(actual), forecast=10.0, actual=actual)
    once = predictive_replicas(replay, 10.0, quantile=0.5)
    polled = predictive_replicas(replay, 10.0, quantile=0.5, poll_seconds=30)
    assert once[0] == polled[0] == 40
    # held by the 5-minute stabilisation window at the next decision, then 25% per
    # decision: once per step, or ten times per step when asked every 30 s
    assert once.tolist() == [40, 40, 30, 22, 16, 12]
    assert polled.tolist() == [40, 40, 30, 1, 1, 1]


def test_same_cost_matching() -> None:
    rng = np.random.default_rng(3)
    actual = list(20 + 15 * rng.random(200))
    replay = flat_replay(len(actual), forecast=25.0, actual=actual)
    budget = 200 * 4
    k = matched_headroom(replay, capacity=10.0, budget_steps=budget, poll_seconds=None)
    assert k is not None and k > 0
    assert predictive_replicas(replay, 10.0, quantile=0.5, error_headroom=k).sum() <= budget
    more = predictive_replicas(replay, 10.0, quantile=0.5, error_headroom=k + 0.05)
    assert more.sum() > budget
    # the observed-load floor alone costs more than a budget of one replica per step
    assert matched_headroom(replay, capacity=10.0, budget_steps=200, poll_seconds=None) is None
    loads: list[float | None] = [None, 10.0, 30.0, 50.0]
    u = matched_utilisation(loads, 10.0, 12)
    assert _replicas_from_loads(loads, u * 10.0).sum() >= 12
    assert _replicas_from_loads(loads, (u + 0.01) * 10.0).sum() < 12


def test_reactive_plan_holds_replicas_through_the_hpa_stabilisation_window() -> None:
    loads: list[float | None] = [70.0, 7.0, 7.0, None, 140.0, 7.0, 7.0, 7.0]
    assert _replicas_from_loads(loads, 7.0).tolist() == [10, 1, 1, 1, 20, 1, 1, 1]
    # HPA: scale down only to the highest recommendation of the trailing window;
    # scale up at once
    held = _replicas_from_loads(loads, 7.0, hold_steps=1)
    assert held.tolist() == [10, 10, 1, 1, 20, 20, 1, 1]
    assert _replicas_from_loads(loads, 7.0, hold_steps=2).tolist() == [10, 10, 10, 1, 20, 20, 20, 1]
    # the load of a decision stays recommended until the next one (the HPA recomputes
    # every 15 s), so a 5-minute window on a 5-minute or 30-minute grid keeps one step
    five = timedelta(minutes=5)
    assert stabilisation_steps(five, five) == 1
    assert stabilisation_steps(five, timedelta(minutes=30)) == 1
    assert stabilisation_steps(timedelta(minutes=10), five) == 2
    assert stabilisation_steps(timedelta(0), five) == 0


def test_reactive_stabilisation_option(app: typer.Typer, trace: Path, tmp_path: Path) -> None:
    reports = {}
    for window in ("5m", "0"):
        path = tmp_path / f"report-{window}.json"
        result = run(
            app, trace, "--capacity", 40, "--days", 1, "--model", "seasonal_naive",
            "--reactive-stabilisation", window, "--output", path,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert f"reactive stabilisation {window}" in result.output
        reports[window] = json.loads(path.read_text())
    assert reports["5m"]["reactive_stabilisation_seconds"] == 300
    assert reports["0"]["reactive_stabilisation_seconds"] == 0
    held, raw = (reports[w]["plans"]["reactive"] for w in ("5m", "0"))
    # holding through the window costs more and never under-provisions more often
    assert held["replica_hours"] > raw["replica_hours"]
    assert held["under_provisioned_steps"] <= raw["under_provisioned_steps"]
    assert held["scaling_actions"] < raw["scaling_actions"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--capacity", "0"], "--capacity must be a positive number"),
        (["--capacity", "10", "--reactive-stabilisation", "a while"], "--reactive-stabilisation"),
        (["--capacity", "10", "--lead", "soon"], "--lead"),
        (["--capacity", "10", "--freq", "often"], "--freq"),
        (["--capacity", "10", "--days", "30"], "needs more"),
        (["--capacity", "10", "--lead", "30d"], "--days 7 with --lead 30d needs more"),
        (["--capacity", "10", "--model", "crystal_ball"], "unknown --model 'crystal_ball'"),
        (["--capacity", "10", "--quantile", "0.99"], "--quantile 0.99 is not available"),
        (["--capacity", "10", "--freq", "2d"], "--freq 2d is longer than a day"),
        (["--capacity", "1e-300"], "--capacity 1e-300 is too small for the trace"),
        (["--capacity", "10", "--poll", "1ms"], "--poll: must be at least 1s, got '1ms'"),
        # the replay decides once a step: a longer poll was silently a 5-minute one
        (["--capacity", "10", "--poll", "20m"], "--poll 20m is longer than the replay's step"),
        (["--capacity", "10", "--error-headroom", "nan"], "'nan' is not a number"),
        (["--capacity", "10", "--error-headroom", "-1"], "-1 is not between 0 and"),
    ],
)
def test_bad_input_is_a_clear_error(
    app: typer.Typer, trace: Path, args: list[str], needle: str
) -> None:
    result = run(app, trace, *args)
    assert result.exit_code != 0
    assert needle in result.output


def test_lead_between_steps_is_reported_as_the_lead_used(
    app: typer.Typer, trace: Path, tmp_path: Path
) -> None:
    path = tmp_path / "report.json"
    result = run(
        app, trace, "--capacity", 40, "--days", 1, "--model", "seasonal_naive", "--lead", "7m",
        "--output", path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    note = "--lead 7m is not a whole number of 5m steps: replicas are decided 2 step(s) (10m)"
    assert note in result.output
    report = json.loads(path.read_text())
    assert report["lead_steps"] == 2 and any(n.startswith("--lead 7m") for n in report["notes"])


def test_replay_days_without_observations_are_refused() -> None:
    index = pd.date_range("2024-01-01", periods=4 * 288, freq="5min", tz="UTC")
    load = pd.Series(100.0, index=index)
    load.iloc[-288:] = np.nan  # the last day: timestamps, no values
    with pytest.raises(InputDataError, match="have no observations: nothing to replay"):
        simulate(
            load, capacity=50, lead=timedelta(minutes=10), days=1, model="last_value",
            quantile=0.9,
        )  # fmt: skip


def test_bad_files(app: typer.Typer, tmp_path: Path) -> None:
    missing = run(app, tmp_path / "nope.csv", "--capacity", 10)
    assert missing.exit_code == 1 and "no such file" in missing.output
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2015-01-01 00:00:00,abc\n")
    result = run(app, bad, "--capacity", 10)
    assert result.exit_code == 1 and "is not a number" in result.output
    # a load below zero planned far above the oracle without a word
    negative = tmp_path / "negative.csv"
    rows = [
        f"2015-01-01 {h:02d}:{m:02d}:00,{(-3.5 if (h, m) == (2, 5) else 10.0)}"
        for h in range(4)
        for m in range(0, 60, 5)
    ]
    negative.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    result = run(app, negative, "--capacity", 10)
    assert result.exit_code == 1
    assert "1 value(s) below zero (the first -3.5 at 2015-01-01T02:05:00" in result.output


def test_oracle_never_under_provisions_on_noise() -> None:
    index = pd.date_range("2024-01-01", periods=5 * 288, freq="5min", tz="UTC")
    rng = np.random.default_rng(7)
    series = pd.Series(100 + 20 * rng.standard_normal(len(index)), index=index)
    report, outcomes, _ = simulate(
        series, capacity=25, lead=timedelta(minutes=15), days=2, model="seasonal_naive",
        quantile=0.5,
    )  # fmt: skip
    assert outcomes["oracle"].under_steps == 0
    assert report["lead_steps"] == 3


def test_leads_beyond_an_hour_get_the_long_band_scale(trace: Path) -> None:
    """With a 2-hour lead the replay's forecasts reach past the first hour: those steps
    are stretched by the long scale (judged on the hourly forecasts' longer leads),
    the first hour by the short one, as the publish job does."""
    from forecaster.commands.simulate import replay_forecasts
    from forecaster.estimators.naive import SeasonalNaive

    series = to_grid(read_series_csv(trace), timedelta(minutes=5))
    start = len(series) - 288
    replay = replay_forecasts(
        series, start=start, lead_steps=24, model="seasonal_naive", quantile=0.9,
        n_jobs=1, progress=False,
    )  # fmt: skip
    first = start - 24
    day_fit = SeasonalNaive().fit(series.iloc[: first + 1])
    ratios = []
    for i in (200, 250):  # late in the replayed day: a day of hourly forecasts judged
        frame = replay.frames[i]
        assert frame is not None
        plain = day_fit.predict(24, history=series.iloc[: first + i + 1], level=90.0)
        np.testing.assert_allclose(frame[0], plain["yhat"].to_numpy())
        ratio = (frame[2] - frame[0]) / (plain["yhat_upper"] - plain["yhat"]).to_numpy()
        np.testing.assert_allclose(ratio[:12], ratio[0])
        np.testing.assert_allclose(ratio[12:], ratio[12])
        ratios.append((ratio[0], ratio[12]))
    assert any(not np.isclose(short, long) for short, long in ratios)
