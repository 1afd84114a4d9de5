"""Headless matplotlib figures for the PNGs the commands write (``--plot``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def agg_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas (no display, no pyplot state), 110 dpi."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def fill_band(ax: Axes, ds: Any, rows: pd.DataFrame, *, alpha: float, label: str | None) -> None:
    """Shade the forecast interval of ``rows`` (``yhat_lower``/``yhat_upper``) over ``ds``."""
    ax.fill_between(
        ds,
        rows["yhat_lower"].to_numpy(dtype=float),
        rows["yhat_upper"].to_numpy(dtype=float),
        color="tab:blue",
        alpha=alpha,
        lw=0,
        label=label,
    )


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (creating its folder); returns the path."""
    from forecaster.outputs import replace_atomically

    out = Path(path)
    fmt = out.suffix.lstrip(".").lower() or "png"
    replace_atomically(out, lambda scratch: fig.savefig(scratch, format=fmt))
    return out
