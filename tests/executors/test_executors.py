"""Fits fan out over local processes or a Dask cluster with identical results."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from forecaster.executors import DaskExecutor, ProcessExecutor, SerialExecutor
from forecaster.jobs.train import FitOutcome, FitTask, fit_history
from forecaster.timeseries import read_series_csv, to_grid
from tests.support.specs import elb_spec


def _tasks(nab: Path) -> list[FitTask]:
    step = timedelta(minutes=5)
    files = ["realTweets/Twitter_volume_KO.csv", "realAWSCloudwatch/elb_request_count_8c0756.csv"]
    tasks = []
    for name in files:
        history = to_grid(read_series_csv(nab / name), step).iloc[-5 * 288 :]
        tasks.append(
            FitTask(
                series=name,
                history=history,
                candidates=("seasonal_naive", "lightgbm"),
                horizon=24,
            )
        )
    return tasks


def _key(outcome: FitOutcome) -> tuple[str, str, dict[str, float]]:
    mase = {k: round(v["mase"], 9) for k, v in outcome.scores.items()}
    return outcome.series, outcome.chosen, mase


def _run(executor: object, tasks: list[FitTask]) -> list[FitOutcome]:
    results: list[FitOutcome | None] = [None] * len(tasks)
    for index, outcome in executor.map_unordered(fit_history, tasks):  # type: ignore[attr-defined]
        assert not isinstance(outcome, BaseException), outcome
        results[index] = outcome
    executor.close()  # type: ignore[attr-defined]
    return [r for r in results if r is not None]


def test_the_task_carries_the_prophet_time_limit(nab: Path) -> None:
    """A worker's fit applies the task's Prophet time limit (the training setting)."""
    task = _tasks(nab)[1]
    task = FitTask(
        series=task.series,
        history=task.history,
        candidates=("prophet", "seasonal_naive"),
        horizon=24,
        prophet_fit_timeout=0.01,
    )
    outcome = fit_history(task)
    assert "prophet" not in outcome.scores
    assert outcome.chosen == "seasonal_naive"
    assert any("time limit of 0.01 s" in flag for flag in outcome.flags)


@pytest.mark.integration
def test_process_and_dask_match_the_local_run(nab: Path) -> None:
    tasks = _tasks(nab)
    local = _run(SerialExecutor(), tasks)
    assert [_key(o) for o in _run(ProcessExecutor(workers=2), tasks)] == [_key(o) for o in local]

    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = _run(DaskExecutor(client), tasks)
    assert [_key(o) for o in remote] == [_key(o) for o in local]
    # The saved estimators are identical, apart from the measured fit durations.
    assert [_timeless(o.document) for o in remote] == [_timeless(o.document) for o in local]


def _timeless(value: object) -> object:
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k != "fit_seconds"}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def test_errors_come_back_as_values() -> None:
    def boom(x: int) -> int:
        if x == 1:
            raise ValueError("bad item 1")
        return x * 2

    out = dict(SerialExecutor().map_unordered(boom, [0, 1, 2]))
    assert out[0] == 0 and out[2] == 4
    assert isinstance(out[1], ValueError) and "bad item 1" in str(out[1])


def _threads(_item: object) -> str:
    import os

    return os.environ["OMP_NUM_THREADS"]


def test_workers_pin_the_threads_per_fit_the_settings_ask_for() -> None:
    """Every worker pinned one thread whatever FORECASTER_TRAINING__THREADS_PER_FIT said."""
    from forecaster.executors import make_executor

    executor = make_executor(workers=2, threads_per_worker=3)
    try:
        assert {out for _, out in executor.map_unordered(_threads, [0, 1])} == {"3"}
    finally:
        executor.close()


def test_train_without_n_jobs_fits_with_the_threads_per_fit_setting(
    tmp_path: Path, nab: Path, make_settings, write_spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`forecaster train`'s --n-jobs default of 1 won over the setting."""
    from typer.testing import CliRunner

    import forecaster.jobs.train
    from forecaster.cli import app

    spec = elb_spec(tmp_path, nab, write_spec)
    settings = make_settings(spec=spec)
    seen: list[int] = []
    real = forecaster.jobs.train.prepare_fit

    def spy(*args, n_jobs: int, **kwargs):
        seen.append(n_jobs)
        return real(*args, n_jobs=n_jobs, **kwargs)

    monkeypatch.setattr(forecaster.jobs.train, "prepare_fit", spy)
    env = {
        "FORECASTER_PIPELINES": str(spec),
        "FORECASTER_DATABASE__URL": settings.database.url,
        "FORECASTER_MLFLOW__TRACKING_URI": settings.mlflow.tracking_uri,
        "FORECASTER_MLFLOW__ARTIFACT_LOCATION": str(settings.mlflow.artifact_location),
        "FORECASTER_TRAINING__THREADS_PER_FIT": "2",
    }
    runner = CliRunner()
    assert runner.invoke(app, ["ingest"], env=env).exit_code == 0
    result = runner.invoke(app, ["train"], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--n-jobs", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert seen == [2, 1]


def test_an_unreachable_dask_scheduler_fails_each_training_with_a_clear_error(
    tmp_path: Path, nab: Path, make_settings, write_spec
) -> None:
    """It ended the command in a traceback ("OSError: Timed out trying to connect")."""
    import dask

    from forecaster.jobs.context import JobContext
    from forecaster.jobs.runner import run_ingest, run_train
    from tests.support.promserver import free_port

    spec = elb_spec(tmp_path, nab, write_spec)
    address = f"tcp://127.0.0.1:{free_port()}"
    ctx = JobContext.create(make_settings(spec=spec, training={"dask_address": address}))
    try:
        assert run_ingest(ctx, ctx.select(None)).ok
        with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
            summary = run_train(ctx, ctx.select(None))
        assert not summary.ok
        assert summary.errors["elb"].startswith(f"cannot reach the Dask scheduler at {address}")
    finally:
        ctx.store.engine.dispose()
