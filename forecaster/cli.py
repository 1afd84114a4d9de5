"""The ``forecaster`` command line: thin commands over the jobs, the API and the scheduler."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from forecaster.errors import ForecasterError

if TYPE_CHECKING:
    from forecaster.config import Settings
    from forecaster.jobs.context import JobContext
    from forecaster.jobs.runner import RunSummary

app = typer.Typer(
    name="forecaster",
    help="Self-hosted load forecasting: ingest history, train, publish and serve forecasts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)
app.add_typer(db_app, name="db")

SpecOption = Annotated[
    Path | None,
    typer.Option("--spec", help="Pipeline spec YAML (default: FORECASTER_PIPELINES)."),
]
SeriesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Series names from the spec, a split_by family by its name (default: all).",
        show_default=False,
    ),
]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _settings(spec: Path | None = None) -> Settings:
    from forecaster.config import load_settings

    overrides = {} if spec is None else {"pipelines": spec}
    return load_settings(**overrides)


def _context(spec: Path | None) -> JobContext:
    from forecaster.jobs.context import JobContext

    return JobContext.create(_settings(spec))


def _report(summary: RunSummary) -> None:
    for name, message in summary.errors.items():
        typer.secho(f"  {summary.job} {name}: FAILED: {message}", err=True, fg=typer.colors.RED)
    if not summary.ok:
        raise typer.Exit(1)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("cmdstanpy", "prophet", "mlflow", "alembic", "urllib3", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # prophet logs an ERROR when the optional plotly is missing; we plot with matplotlib.
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)


@app.command()
def ingest(series: SeriesArg = None, spec: SpecOption = None) -> None:
    """Fetch new history for spec'd series from Prometheus or their replayed file."""
    from forecaster.jobs.runner import run_ingest

    ctx = _context(spec)
    summary = run_ingest(ctx, ctx.select(series), progress=sys.stderr.isatty())
    for result in summary.results:
        for name, count in result.written.items():
            typer.echo(f"ingested {name}: {count} points")
    _report(summary)


@app.command()
def train(
    series: SeriesArg = None,
    spec: SpecOption = None,
    n_jobs: Annotated[
        int | None,
        typer.Option(
            help="Threads per estimator fit (default: FORECASTER_TRAINING__THREADS_PER_FIT).",
            min=1,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Backtest the estimators per series, log to MLflow and gate the champion."""
    from forecaster.jobs.runner import run_train

    ctx = _context(spec)
    summary = run_train(ctx, ctx.select(series), progress=sys.stderr.isatty(), n_jobs=n_jobs)
    for result in summary.results:
        verdict = "champion" if result.promoted else "not promoted"
        typer.echo(
            f"trained {result.series}: {result.chosen} ({verdict}; {result.reason}) "
            f"in {result.seconds:.1f}s, run {result.run_id}"
        )
        for flag in result.flags:
            typer.echo(f"  note: {flag}")
    unregistered = summary.unregistered
    if unregistered:
        # the trainings are in the store, but nothing reached the registry and no
        # champion changed: a cron job or CI step must not read this as success
        typer.secho(
            f"MLflow failed for {len(unregistered)} series ({', '.join(unregistered)}): "
            "their trainings are recorded in the store only and their champions did not "
            "change; check FORECASTER_MLFLOW__TRACKING_URI (or, for a file error, "
            "FORECASTER_MLFLOW__ARTIFACT_LOCATION) and train again",
            err=True,
            fg=typer.colors.RED,
        )
    _report(summary)
    if unregistered:
        raise typer.Exit(1)


@app.command()
def publish(series: SeriesArg = None, spec: SpecOption = None) -> None:
    """Forecast from the latest history with each series' champion and publish it."""
    from forecaster.jobs.runner import run_publish

    ctx = _context(spec)
    summary = run_publish(ctx, ctx.select(series), progress=sys.stderr.isatty())
    for result in summary.results:
        typer.echo(
            f"published {result.series}: {result.points} steps from "
            f"{result.origin.isoformat()} by {result.model_name} v{result.model_version}"
        )
    _report(summary)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes on one port. Each counts the pipeline runs on /metrics "
            "for itself, so scrapes alternating between them see counters go back: where "
            "those matter, run replicas of one worker each (docs/dashboard.md).",
            min=1,
        ),
    ] = 1,
    server: Annotated[
        str,
        typer.Option(
            help="HTTP server: granian (default, fastest in benchmarks/serving.py) or uvicorn."
        ),
    ] = "granian",
) -> None:
    """Serve the HTTP API (forecasts, history, dashboard, health, metrics, OpenAPI docs)."""
    from forecaster.store.db import make_engine, new_store_warning, upgrade

    settings = _settings()
    if (warning := new_store_warning(settings.database.url)) is not None:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    engine = make_engine(settings.database)
    upgrade(engine)
    engine.dispose()
    bind_host, bind_port = host or settings.api.host, port or settings.api.port
    if server == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        Granian(
            "forecaster.api.asgi:app",
            address=bind_host,
            port=bind_port,
            interface=Interfaces.ASGI,
            workers=workers,
            log_access=False,
        ).serve()
    elif server == "uvicorn":
        import uvicorn

        uvicorn.run(
            "forecaster.api.asgi:app",
            host=bind_host,
            port=bind_port,
            workers=workers,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    else:
        _fail(f"--server must be granian or uvicorn, got {server!r}", code=2)


@app.command()
def scheduler(spec: SpecOption = None) -> None:
    """Run the pipelines on their schedules (ingest, publish every minute, daily retrain)."""
    from forecaster.jobs.detect import check_webhook_secrets
    from forecaster.scheduler import run_scheduler

    ctx = _context(spec)
    check_webhook_secrets(ctx.spec)  # a refusal before any "running" line
    typer.echo(
        f"scheduler running {len(ctx.spec.series)} series from {ctx.spec.path}; Ctrl-C stops"
    )
    run_scheduler(ctx)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    serve_api: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Keep serving after the first forecast.")
    ] = True,
    scaler_port: Annotated[int, typer.Option(help="KEDA external scaler (gRPC) port.")] = 50051,
) -> None:
    """Ingest bundled real traces, train, publish and serve: the whole product on SQLite.

    Serves the API (with the dashboard) and the KEDA external scaler, and runs the
    scheduler (ingest, publish every minute, daily retrain) until Ctrl-C.
    """
    from forecaster.demo import run_demo

    run_demo(port=port, serve=serve_api, scaler_port=scaler_port)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the store's schema to the latest version.

    On PostgreSQL it runs without the statement and query timeouts
    (FORECASTER_DATABASE__STATEMENT_TIMEOUT_SECONDS, __QUERY_TIMEOUT_SECONDS):
    on a large store a migration takes as long as it takes.
    """
    from forecaster.store.db import current_revision, make_engine, upgrade

    settings = _settings()
    engine = make_engine(settings.database)
    upgrade(engine)
    typer.echo(
        f"database {engine.url.render_as_string(hide_password=True)} at revision "
        f"{current_revision(engine)}"
    )


@db_app.command("current")
def db_current() -> None:
    """Show the store's schema revision and this release's; exits 1 unless they match."""
    from forecaster.store.db import (
        check_known_revision,
        check_store_exists,
        current_revision,
        head_revision,
        make_engine,
    )

    settings = _settings()
    check_store_exists(settings.database.url)  # reading must not create an empty store
    engine = make_engine(settings.database)
    try:
        found, head = current_revision(engine), head_revision()
        typer.echo(
            f"database {engine.url.render_as_string(hide_password=True)} at revision "
            f"{found or 'none (empty database)'}; this release's schema is {head}"
        )
        check_known_revision(engine, found)  # a newer release's, or not a store at all
    finally:
        engine.dispose()
    if found != head:
        typer.secho("not at this release's schema: run forecaster db upgrade", err=True)
        raise typer.Exit(1)


COMMAND_MODULES = ("backtest", "simulate", "scaler", "detect", "status")


def _register_optional_commands() -> None:
    """Add the commands that live in ``forecaster.commands.<name>`` (each has ``register``)."""
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"forecaster.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("forecaster.commands"):
                continue
            raise
        module.register(app)


def main() -> None:
    """Console entry point: runs the app, turning forecaster errors into clean exits."""
    from forecaster.config import load_settings, warn_unknown_variables

    _register_optional_commands()
    try:
        level = load_settings().log_level
    except ForecasterError:
        level = "INFO"
    _setup_logging(level)
    warn_unknown_variables()
    try:
        app()
    except ForecasterError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
