"""CSV replay source: a recorded trace served as if it were live Prometheus data.

The trace is shifted by a whole number of weeks so that it ends less than a week
before "now" (weekday and time of day are preserved, so daily and weekly cycles stay
real); times after its end are filled by looping the trace, again by whole weeks.
Only points up to the current time are returned, so the series keeps growing as
time passes, exactly like a scrape target would. The shift depends only on the
trace and the clock, so every process (demo, scheduler, tests) sees the same data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from forecaster.errors import InputDataError, SourceQueryError
from forecaster.sources.base import FetchedSeries
from forecaster.timeseries import read_series_csv, to_grid

if TYPE_CHECKING:
    import pandas as pd

    from forecaster.specs import SeriesSpec

WEEK = timedelta(days=7)


def _now() -> datetime:
    return datetime.now(UTC)


class ReplayTrace:
    """One recorded trace on its grid, mapped onto the present.

    Args:
        path: CSV file (timestamp, value) with a header row.
        step: Grid step the trace is resampled to (mean).
        clock: Returns the current UTC time (injectable for tests).
    """

    def __init__(self, path: Path, step: timedelta, clock: Callable[[], datetime] = _now) -> None:
        raw = read_series_csv(path)
        grid = to_grid(raw, step)
        if len(grid) < 2:
            raise InputDataError(f"{path}: a replay trace needs at least two points")
        self.path = path
        self.step = step
        self.clock = clock
        self.values = grid
        span = grid.index[-1] - grid.index[0] + step
        weeks = max(1, math.floor(span / WEEK))
        self.period = weeks * WEEK
        if span < WEEK:
            # Shorter than a week: loop by whole days instead (keeps time of day).
            self.period = max(1, math.floor(span / timedelta(days=1))) * timedelta(days=1)
            if span < timedelta(days=1):
                self.period = span

    def shift(self) -> timedelta:
        """Offset added to the trace's timestamps so that it ends within a week before now."""
        last = self.values.index[-1].to_pydatetime()
        now = self.clock()
        unit = WEEK if self.period >= WEEK else self.period
        k = math.floor((now - last) / unit)
        return timedelta(seconds=k * unit.total_seconds())

    def window(self, start: datetime, end: datetime) -> pd.Series:
        """Replayed values on the grid within ``[start, min(end, now)]`` (NaN dropped)."""
        import numpy as np
        import pandas as pd

        now = self.clock()
        end = min(end, now)
        if end < start:
            return pd.Series([], index=pd.DatetimeIndex([], tz=UTC), dtype=float)
        freq = pd.Timedelta(self.step)
        grid = pd.date_range(
            pd.Timestamp(start).ceil(freq), pd.Timestamp(end).floor(freq), freq=freq, tz=UTC
        )
        if len(grid) == 0:
            return pd.Series([], index=pd.DatetimeIndex([], tz=UTC), dtype=float)
        shift = pd.Timedelta(self.shift())
        first = self.values.index[0] + shift
        last = self.values.index[-1] + shift
        period = pd.Timedelta(self.period)
        after = np.asarray(grid > last)
        laps = np.zeros(len(grid), dtype="int64")
        if after.any():
            laps[after] = np.ceil(np.asarray((grid[after] - last) / period)).astype("int64")
        source_times = grid - shift - pd.TimedeltaIndex(laps * period)
        looked_up = self.values.reindex(source_times)
        out = pd.Series(looked_up.to_numpy(), index=grid, dtype=float)
        out = out[np.asarray(grid >= first)]
        result: pd.Series = out.dropna()
        return result


class FileSource:
    """Source for spec'd series with ``file:``: replays the CSV (see module docs)."""

    def __init__(self, clock: Callable[[], datetime] = _now) -> None:
        self.clock = clock
        self._traces: dict[tuple[Path, timedelta], ReplayTrace] = {}

    def trace(self, spec: SeriesSpec) -> ReplayTrace:
        """The (cached) replay trace of ``spec``."""
        if spec.file is None:
            raise SourceQueryError(f"series {spec.name!r} has no file to replay")
        key = (spec.file, spec.step)
        if key not in self._traces:
            self._traces[key] = ReplayTrace(spec.file, spec.step, self.clock)
        return self._traces[key]

    def fetch(self, spec: SeriesSpec, start: datetime, end: datetime) -> list[FetchedSeries]:
        """Replayed observations of ``spec`` in ``[start, end]`` up to now."""
        values = self.trace(spec).window(start, end)
        return [FetchedSeries(name=spec.name, family=spec.name, labels={}, values=values)]
