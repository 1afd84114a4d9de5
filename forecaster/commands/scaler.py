"""The ``forecaster scaler`` command: run the KEDA external scaler (gRPC) until Ctrl-C."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from forecaster.scaler.server import ScalerHandle


def scaler_command(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default FORECASTER_SCALER__HOST).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Port (default FORECASTER_SCALER__PORT, 50051)."),
    ] = None,
    refresh_seconds: Annotated[
        float, typer.Option(min=0.1, help="How often forecasts are reloaded from the store.")
    ] = 2.0,
) -> None:
    """Serve forecasts to KEDA as an external scaler (externalscaler.ExternalScaler)."""
    from forecaster.config import load_settings
    from forecaster.errors import StoreError
    from forecaster.scaler.server import serve
    from forecaster.store.db import make_engine, new_store_warning, upgrade

    settings = load_settings()
    if (warning := new_store_warning(settings.database.url)) is not None:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    engine = make_engine(settings.database)
    try:
        upgrade(engine)
    except StoreError as exc:
        # Serve anyway: GetMetricSpec works without the store and every other call
        # answers UNAVAILABLE until it is back, so KEDA's fallback applies.
        typer.secho(f"warning: {exc}", err=True, fg=typer.colors.YELLOW)
    finally:
        engine.dispose()

    def announce(handle: ScalerHandle) -> None:
        typer.echo(
            f"KEDA external scaler listening on {host or settings.scaler.host}:{handle.port} "
            f"(forecasts from {settings.database.url.split('@')[-1]}); Ctrl-C stops"
        )

    serve(settings, host=host, port=port, refresh_seconds=refresh_seconds, on_ready=announce)


def register(app: typer.Typer) -> None:
    """Add the ``scaler`` command to ``app``."""
    app.command("scaler")(scaler_command)
