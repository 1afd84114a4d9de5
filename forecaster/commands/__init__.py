"""CLI commands, one module per command, each exposing ``register(app)``."""

import math
from collections.abc import Callable
from typing import Annotated, Any

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


def finite_range(low: float, high: float) -> Callable[[Any], float]:
    """``parser`` for a float ``typer.Option`` within ``[low, high]``.

    Typer's own ``min``/``max`` compare ``nan`` false against both bounds, so the
    message was "should be less than or equal to 99.9" for a value that is no number.
    """

    def parse(text: Any) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise typer.BadParameter(f"{text!r} is not a number") from None
        if math.isnan(value):
            raise typer.BadParameter(f"{text!r} is not a number")
        if math.isinf(value):
            raise typer.BadParameter(f"{text!r} is not a finite number")
        if not low <= value <= high:
            raise typer.BadParameter(f"{text} is not between {low:g} and {high:g}")
        return value

    parse.__name__ = f"number {low:g}..{high:g}"
    return parse
