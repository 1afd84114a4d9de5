"""CLI commands, one module per command, each exposing ``register(app)``."""

from typing import Annotated

import typer

#: ``--strict`` for commands that read a CSV file (see ``read_series_csv``).
StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Refuse rows out of time order and repeated timestamps instead of sorting "
        "and averaging them (with a warning).",
    ),
]
