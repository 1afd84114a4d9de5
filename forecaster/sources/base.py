"""The source protocol: fetch the observations of one spec'd series over a time range."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

    from forecaster.specs import SeriesSpec


@dataclass(frozen=True)
class FetchedSeries:
    """Observations of one series as returned by a source.

    Attributes:
        name: Series name as stored: the spec name, or for ``split_by`` families the
            spec name followed by its labels, e.g. ``checkout_rps{route="/api"}``.
        family: The spec's series name (equal to ``name`` when not split).
        labels: The ``split_by`` label values (empty when not split).
        values: Float observations indexed by tz-aware UTC timestamps, sorted,
            finite (NaN and Prometheus stale markers already dropped).
    """

    name: str
    family: str
    labels: dict[str, str] = field(default_factory=dict)
    values: pd.Series | None = None


def member_name(family: str, labels: dict[str, str]) -> str:
    """Name of one member of a ``split_by`` family: ``family{a="x",b="y"}`` (sorted labels).

    Label values are escaped as PromQL writes them (backslash, double quote, newline),
    so two label sets never share a name (``a='x",b="y'`` and ``a="x", b="y"`` did);
    other control characters too (``\t``, ``\r``, ``\x00``): a NUL in a label value
    made PostgreSQL refuse the name, failing the whole family's ingest on every run.
    """
    if not labels:
        return family
    inner = ",".join(f'{key}="{escape_label_value(labels[key])}"' for key in sorted(labels))
    return f"{family}{{{inner}}}"


#: Control characters and how a member name writes them (Go's and PromQL's escapes).
_CONTROL = {
    **{chr(code): f"\\x{code:02x}" for code in [*range(0x20), 0x7F]},
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
}
_NEEDS_ESCAPE = re.compile(r'[\\"\x00-\x1f\x7f]')


def escape_label_value(value: str) -> str:
    """``value`` as PromQL writes it between double quotes (backslash escapes)."""
    return _NEEDS_ESCAPE.sub(lambda match: _CONTROL.get(match[0], "\\" + match[0]), value)


class Source(Protocol):
    """Fetches history for a spec'd series."""

    def fetch(self, spec: SeriesSpec, start: datetime, end: datetime) -> list[FetchedSeries]:
        """Observations in ``[start, end]`` (UTC), one entry per series (several with split_by).

        Raises:
            SourceUnavailable: The source cannot be reached after retries.
            SourceQueryError: The answer does not match the spec.
        """
        ...
