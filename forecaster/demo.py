"""``forecaster demo``: the whole product end to end on the embedded default.

SQLite store under ``.forecaster/``, MLflow store under ``models/``, and real NAB
traces from ``data/nab`` replayed through the file source as if Prometheus served
them. Ingests, trains (with progress bars), publishes, then runs the scheduler in a
child process and the API in the foreground until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

DEMO_SPEC = Path("pipelines/demo.yaml")


def _say(message: str) -> None:
    typer.secho(message, fg=typer.colors.CYAN, bold=True)


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def run_demo(*, port: int = 8000, serve: bool = True, scaler_port: int = 50051) -> None:
    """Run the demo; see the module docstring."""
    from forecaster.config import load_settings
    from forecaster.jobs.context import JobContext
    from forecaster.jobs.runner import run_ingest, run_publish, run_train

    spec_path = Path(os.environ.get("FORECASTER_PIPELINES", DEMO_SPEC))
    if not spec_path.is_file():
        raise typer.BadParameter(
            f"demo spec {spec_path} not found; run `make demo` from the repository root"
        )
    started = time.perf_counter()
    import logging

    logging.getLogger("forecaster").setLevel(logging.WARNING)  # the demo narrates itself
    settings = load_settings(pipelines=spec_path)
    _say(f"forecaster demo: store {settings.database.url}, MLflow {settings.mlflow.tracking_uri}")
    ctx = JobContext.create(settings)
    specs = list(ctx.spec.series)
    _say(f"1/3 ingesting {len(specs)} replayed real traces ({', '.join(s.name for s in specs)})")
    summary = run_ingest(ctx, specs, progress=True)
    for result in summary.results:
        for name, count in result.written.items():
            typer.echo(f"    {name}: {count} points")
    _fail_on(summary)
    _say("2/3 training: rolling-origin backtest of each estimator, MLflow run, champion gate")
    summary = run_train(ctx, specs, progress=True)
    for result in summary.results:
        verdict = "champion" if result.promoted else "kept previous champion"
        best = ", ".join(
            f"{k} MASE {v.get('mase', float('nan')):.2f}" for k, v in sorted(result.scores.items())
        )
        typer.echo(f"    {result.series}: {result.chosen} -> {verdict} ({best})")
    _fail_on(summary)
    _say("3/3 publishing forecasts")
    summary = run_publish(ctx, specs)
    _fail_on(summary)
    elapsed = time.perf_counter() - started
    _say(f"first forecasts published in {elapsed:.0f}s")
    base = f"http://127.0.0.1:{port}"
    first = specs[0].name
    if not serve:  # it listed URLs that nothing served
        typer.echo(
            f"\nNot serving (--no-serve). The store is {settings.database.url}; serve it with "
            f"`forecaster serve` and `forecaster scaler`, or run `forecaster demo`.\n"
        )
        return
    typer.echo(
        "\nOpen:\n"
        f"  API docs        {base}/docs\n"
        f"  series          {base}/v1/series\n"
        f"  a forecast      {base}/v1/series/{first}/forecast?horizon=1h\n"
        f"  metrics         {base}/metrics\n"
        f"  dashboard       {base}/dashboard\n"
        f"  scaling value   {base}/v1/scaling/{first}?target_per_replica=50&lead_time=10m\n"
        f"  KEDA scaler     grpc 127.0.0.1:{scaler_port} (externalscaler.ExternalScaler)\n"
        f"  MLflow UI       .venv/bin/mlflow ui --backend-store-uri {settings.mlflow.tracking_uri}"
        "  (then http://127.0.0.1:5000)\n"
    )
    # uvicorn re-raises the SIGTERM it stopped on once it is done; with the default
    # action that killed this process before the finally below, and the scheduler it
    # started ran on, orphaned
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # a closed terminal: the scheduler, in a session of its own (below), does not get
    # the hangup, so the demo stops it as on SIGTERM instead of dying and orphaning it
    signal.signal(signal.SIGHUP, _exit_on_sigterm)
    env = {**os.environ, "FORECASTER_PIPELINES": str(spec_path)}
    # a session of its own: Ctrl-C signals the terminal's whole process group, and the
    # scheduler took the demo's SIGTERM after that SIGINT for a second signal and
    # exited at once, without its running jobs' grace period; it stops on the demo's
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "forecaster", "scheduler"], env=env, start_new_session=True
    )
    from forecaster.scaler.server import start_scaler
    from forecaster.scheduler import SHUTDOWN_GRACE_SECONDS

    scaler = start_scaler(settings, host="127.0.0.1", port=scaler_port)
    _say(
        f"scheduler running (pid {scheduler.pid}); KEDA scaler on 127.0.0.1:{scaler.port}; "
        f"serving the API on {base} — Ctrl-C stops"
    )
    try:
        import uvicorn

        from forecaster.api.app import create_app

        uvicorn.run(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    finally:
        scaler.stop()
        scheduler.terminate()
        try:
            scheduler.wait(timeout=SHUTDOWN_GRACE_SECONDS + 5)
        except subprocess.TimeoutExpired:
            scheduler.kill()


def _fail_on(summary: object) -> None:
    errors = getattr(summary, "errors", {})
    if errors:
        for name, message in errors.items():
            typer.secho(f"    {name}: {message}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
