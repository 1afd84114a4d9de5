"""Reading, validating and regularising one time series (pandas, UTC, fixed step).

Conventions used across the package: a *history* is a ``pandas.Series`` of floats
indexed by a tz-aware UTC ``DatetimeIndex`` on a regular grid (``index.freq`` set);
missing observations are ``NaN``.
"""

from __future__ import annotations

import io
import logging
import math
import re
import warnings
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from forecaster.durations import format_duration
from forecaster.errors import InputDataError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    FloatArray = npt.NDArray[np.float64]


#: A Unix timestamp: at least 9 digits (from 1973 on in seconds), optional fraction.
EPOCH_PATTERN = r"\d{9,}(?:\.\d+)?"


#: Values beyond this magnitude are refused: the estimators' sums of values near 1e308
#: overflow to inf (seen at 1e305 x four weeks of points), and no load is that big.
MAX_ABS_VALUE = 1e100
#: What pandas reads as "no timestamp" (NaT); a row without its time is refused.
MISSING_TIMESTAMPS = frozenset({"", "nan", "nat", "none", "null"})


def parse_timestamps(
    values: pd.Series, *, where: str, lines: Sequence[int] | None = None
) -> pd.DatetimeIndex:
    """Parse ``values`` into a UTC DatetimeIndex; naive timestamps are taken as UTC.

    A column of plain numbers of 9 or more digits is Unix time (seconds, or
    milliseconds from 1e11 on).

    Args:
        values: The timestamp column, as text.
        where: The file, for the messages.
        lines: The file line of each item of ``values`` (default: a header on line 1,
            then one item a line).

    Raises:
        InputDataError: On a missing or unparseable value (naming its row) or a mix
            of naive and tz-aware stamps.
    """
    import pandas as pd

    text = values.astype(str).str.strip()
    line = list(range(2, len(text) + 2)) if lines is None else lines
    missing = text.str.lower().isin(MISSING_TIMESTAMPS).to_numpy()
    if missing.any():
        row = int(missing.nonzero()[0][0])
        raise InputDataError(
            f"{where}: row {line[row]}: no timestamp ({text.iloc[row]!r}); every row needs one"
        )
    epoch = text.str.fullmatch(EPOCH_PATTERN)
    if epoch.any() and not epoch.all() and float(epoch.mean()) >= 0.5:
        # mostly Unix time: the odd one out is the row to name (parsing everything
        # as dates named the first Unix time instead, as a year out of range)
        row = int((~epoch).to_numpy().nonzero()[0][0])
        raise InputDataError(
            f"{where}: row {line[row]}: timestamp {text.iloc[row]!r} is not Unix time like "
            f"the other rows (e.g. {text[epoch].iloc[0]!r}); use one convention"
        )
    if len(text) and bool(epoch.all()):
        # Unix time, as Prometheus and many exporters write it: seconds, or
        # milliseconds when the numbers are that large (after the year 5138 in seconds)
        number = pd.to_numeric(text)
        unit: Literal["s", "ms"] = "ms" if float(number.max()) >= 1e11 else "s"
        per_second = 1000.0 if unit == "ms" else 1.0
        _check_range(text, number.to_numpy(dtype=float) / per_second, line, where)
        return pd.DatetimeIndex(pd.to_datetime(number, unit=unit, utc=True)).as_unit("ns")
    # a zone name such as EST is ambiguous (and pandas would drop it with a warning
    # per row, reading the time as UTC): refuse it
    named = text.str.extract(r"\d\s*([A-Za-z]{2,})$", expand=False).str.upper()
    odd = named.notna() & ~named.isin(["UTC", "GMT", "AM", "PM"])
    if odd.any():
        row = int(odd.to_numpy().nonzero()[0][0])
        raise InputDataError(
            f"{where}: row {line[row]}: timestamp {text.iloc[row]!r} names its time zone "
            f"({named.iloc[row]}), which is ambiguous; write an offset such as -05:00, or UTC"
        )
    # offsets: +hh:mm, +hhmm, or +hh right after the time
    has_zone = text.str.contains(
        r"(?:[+-]\d\d:?\d\d|:\d\d(?:\.\d+)?[+-]\d\d|Z|UTC|GMT)$", regex=True, case=False
    )
    if has_zone.any() and not has_zone.all():
        first_naive = text[~has_zone].iloc[0]
        first_zoned = text[has_zone].iloc[0]
        raise InputDataError(
            f"{where}: timestamps mix time zones and naive values "
            f"(e.g. {first_zoned!r} and {first_naive!r}); use one convention"
        )
    try:
        parsed = pd.to_datetime(text, utc=True, format="mixed", dayfirst=_day_first(text, where))
    except (ValueError, TypeError) as exc:
        row, bad = _first_bad_timestamp(text)
        # pandas counts positions from 0 without the header: only the row number is ours
        reason = re.sub(r",? at position \d+", "", str(exc))
        if re.fullmatch(r"-?\d+(?:\.\d+)?", bad):
            reason = (
                "a small number is not a time; write dates (ISO 8601) or Unix time in "
                "seconds (9 or more digits)"
            )
        raise InputDataError(
            f"{where}: row {line[row]}: cannot parse timestamp {bad!r}: {reason}"
        ) from exc
    index = pd.DatetimeIndex(parsed)
    # pandas 3 may keep far dates in a coarser unit; everything downstream is in ns
    _check_range(text, index.as_unit("s").asi8.astype(float), line, where)
    return index.as_unit("ns")


#: A date written with its day and month as numbers first: ``01/03/2024``, ``1.3.24``.
NUMERIC_DATE = r"(\d{1,2})[/.-](\d{1,2})[/.-]\d{2,4}\b.*"


def _day_first(text: pd.Series, where: str) -> bool:
    """Whether dates such as ``01/03/2024`` in ``text`` are day-first.

    pandas guessed per row, month first where it could: a day-first file was read as
    scattered days of other months (1-2 March as 3 January to 3 February), or, across
    the 12th, partly one way and partly the other. The whole column is read one way: the
    way some row requires (a first number above 12 is a day), else (every number up to
    12) the way that keeps the rows in time order and without a gap far longer than
    their usual spacing, else month first; with a warning.

    Raises:
        InputDataError: When some rows can only be day-first and others only month-first.
    """
    import numpy as np
    import pandas as pd

    parts = text.str.extract(f"^{NUMERIC_DATE}$")
    if parts.isna().any(axis=None) or parts.empty:
        return False  # ISO 8601 and other spellings: nothing to choose
    first, second = parts[0].astype(int), parts[1].astype(int)
    day_first, month_first = bool((first > 12).any()), bool((second > 12).any())
    if day_first and month_first:
        a, b = text[first > 12].iloc[0], text[second > 12].iloc[0]
        raise InputDataError(
            f"{where}: dates mix day-first ({a!r}) and month-first ({b!r}) order; use one "
            "order, or ISO 8601 (2024-03-01)"
        )
    if day_first or month_first:
        return day_first
    if first.nunique() == 1 or (first == second).all():
        return False  # nothing tells the two readings apart
    readings = {}
    for dayfirst in (False, True):
        try:
            stamps = pd.to_datetime(text, utc=True, format="mixed", dayfirst=dayfirst)
        except (ValueError, TypeError):
            continue
        values = stamps.to_numpy(dtype="datetime64[ns]").astype("int64")
        # rows out of order decide, then a gap far longer than the usual spacing (1-2
        # March every 5 minutes read month first jumps from 3 January to 3 February);
        # spacings within 3x of each other are a tie, read month first (monthly rows
        # 01/01 .. 12/01 are in order and regular either way)
        steps = np.diff(values)
        ahead = steps[steps > 0]
        gap = float(ahead.max() / np.median(ahead)) if len(ahead) else 1.0
        readings[dayfirst] = (int((steps < 0).sum()), max(gap, 3.0))
    if len(readings) < 2 or readings[True] >= readings[False]:
        if len(readings) == 2 and readings[True] == readings[False]:
            log.warning(
                "%s: dates such as %r read month first (day and month both at most 12); "
                "write ISO 8601 (2024-03-01) to be sure",
                where,
                text.iloc[0],
            )
        return False
    log.warning(
        "%s: dates such as %r read day first (DD/MM): read month first, the rows would be "
        "out of time order or spread over months",
        where,
        text.iloc[0],
    )
    return True


def _check_range(text: pd.Series, seconds: FloatArray, line: Sequence[int], where: str) -> None:
    """Refuse timestamps outside what a nanosecond timestamp holds (1677-2262)."""
    import numpy as np
    import pandas as pd

    low, high = pd.Timestamp.min.timestamp(), pd.Timestamp.max.timestamp()
    outside = ~((seconds >= low) & (seconds <= high))
    if np.any(outside):
        row = int(np.flatnonzero(outside)[0])
        raise InputDataError(
            f"{where}: row {line[row]}: cannot parse timestamp {text.iloc[row]!r}: outside "
            f"the supported range {pd.Timestamp.min.date()} .. {pd.Timestamp.max.date()}"
        )


def _tidy_csv_text(text: str, where: str) -> str:
    """The text of a CSV file as pandas should read it: ``#`` comment lines before the
    header blanked (line numbers kept) and trailing commas dropped (a comma at the end
    of every row made pandas take the timestamps for an index and the values for
    timestamps). Rows still longer than the header are refused by the reader.

    Raises:
        InputDataError: The file is JSON, not CSV.
    """
    if _looks_like_json(text):
        raise InputDataError(
            f"{where}: looks like JSON, not CSV; expected a header row such as "
            "'timestamp,value' and one row per observation"
        )
    text = _blank_leading_comments(text)
    return re.sub(r",+[ \t]*(\r?)$", r"\1", text, flags=re.MULTILINE)


def _looks_like_json(text: str) -> bool:
    """Whether ``text`` is a JSON document (an object or an array of them), not a CSV
    whose header happens to start with ``[`` (``[time],value``)."""
    import json

    head = text.lstrip()
    if head[:1] not in ("{", "["):
        return False
    if head.startswith("{") or re.match(r"\[\s*[\[{]", head):
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _blank_leading_comments(text: str) -> str:
    """``text`` with the ``#`` comment lines before its header blanked (an exporter's
    "# exported by ..."), line numbers kept: the header was taken from the comment.

    A ``#`` line followed by data is the header itself (``#timestamp,value``), kept.
    """
    lines = text.split("\n")
    comments: list[int] = []
    for n, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            comments.append(n)
        elif line.strip():
            if not _looks_like_header(line) and comments:
                comments.pop()  # the last "#" line is the header
            break
    for n in comments:
        lines[n] = ""
    return "\n".join(lines)


def _looks_like_header(line: str) -> bool:
    """Whether the first field of a CSV ``line`` is not a timestamp or a number."""
    import pandas as pd

    first = line.split(",", 1)[0].strip().strip('"')
    if re.fullmatch(EPOCH_PATTERN, first) or re.fullmatch(r"-?\d+(?:\.\d+)?", first):
        return False
    try:
        pd.Timestamp(first)
    except (ValueError, TypeError):
        return True
    return False


def _first_bad_timestamp(text: pd.Series) -> tuple[int, str]:
    """Position and value of the first item of ``text`` that is not a timestamp."""
    import pandas as pd

    coerced = pd.to_datetime(text, utc=True, format="mixed", errors="coerce")
    bad = pd.isna(coerced).to_numpy().nonzero()[0]
    position = int(bad[0]) if len(bad) else 0
    return position, str(text.iloc[position])


def read_utf8(path: Path, *, encoding: str = "utf-8") -> str:
    """The text of ``path`` (``encoding``: utf-8, or utf-8-sig to drop a BOM).

    Raises:
        ValueError: ``line N: not UTF-8 text (byte 0x..)`` at the first bad byte.
    """
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(f"line {line}: not UTF-8 text (byte {raw[exc.start]:#04x})") from None


def _parser_message(exc: Exception) -> str:
    """pandas' parser error with its 0-based "row N" of an unclosed quote given as the
    file's 1-based line, as the other messages count (pandas said "row 2" of a quote
    opened on line 3)."""
    message = str(exc)
    found = re.search(r"EOF inside string starting at row (\d+)", message)
    if found:
        line = int(found.group(1)) + 1
        return f"row {line}: a quote opened there is never closed (an unbalanced '\"')"
    return message


def read_series_csv(
    path: str | Path, *, strict: bool = False, keep_empty_end: bool = False
) -> pd.Series:
    """Read a two-column CSV (timestamp, value) with a header row.

    The header names vary (``timestamp,value``, ``ds,y``, ...). Timestamps may be
    ISO 8601 or anything pandas parses; naive means UTC.

    Rows out of time order and repeated timestamps are common in real exports (NAB's
    own files have both, around daylight-saving changes), so by default rows are
    sorted and repeated timestamps averaged (as resampling by mean would), with a
    warning naming the first offending row. With ``strict=True`` either is refused
    with an error naming the rows, and nothing is read.

    Rows with a timestamp and no value before the first value and after the last are
    dropped with a warning; with ``keep_empty_end`` the last ones stay as gaps (the
    backtest contract places origins on the whole grid, empty end included).

    Returns:
        Float series with a tz-aware UTC DatetimeIndex (not yet on a regular grid).

    Raises:
        InputDataError: Naming the file, the row or the value that is wrong.
    """
    import numpy as np
    import pandas as pd

    csv_path = Path(path)
    where = str(csv_path)
    if csv_path.is_dir():
        raise InputDataError(f"{where}: is a directory, not a CSV file")
    if not csv_path.is_file():
        raise InputDataError(f"{where}: no such file")
    try:
        text = read_utf8(csv_path, encoding="utf-8-sig")
    except ValueError as exc:
        raise InputDataError(f"{where}: {exc}; save the file as UTF-8") from None
    text = _tidy_csv_text(text, where)
    try:
        with warnings.catch_warnings():  # index_col=False drops a longer row's last fields
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.StringIO(text), dtype=str, keep_default_na=False, index_col=False
            )
    except pd.errors.ParserWarning as exc:
        head = text.lstrip().split("\n", 1)[0].strip()
        if "," not in head:  # a header of one field: other separators (and decimal commas)
            used = next((f", not {name}" for c, name in SEPARATORS if c in head), "")
            raise InputDataError(
                f"{where}: the header is one column {head!r}: separate the columns with "
                f"commas{used} (and write decimal points, not decimal commas)"
            ) from exc
        raise InputDataError(
            f"{where}: the rows have more fields than the header names; name every column "
            "in the header (timestamp, value, ...) or remove the extra fields"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise InputDataError(f"{where}: the file is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{where}: not a readable CSV file: {_parser_message(exc)}") from exc
    if frame.shape[1] < 2:
        used = next((f", not {name}" for c, name in SEPARATORS if c in text[:4096]), "")
        raise InputDataError(
            f"{where}: expected two columns (timestamp, value) with a header row, "
            f"found {frame.shape[1]} column(s): {list(frame.columns)}; separate the columns "
            f"with commas{used}"
        )
    lines = _data_lines(text, len(frame))
    header = [str(c) for c in frame.columns[:2]]
    if frame.shape[1] > 2 and (not header[0].strip() or header[0].startswith("Unnamed: ")):
        raise InputDataError(
            f"{where}: the first column has no name ({list(frame.columns[:3])}): a row "
            "number written with the data (pandas' to_csv without index=False)? The "
            "timestamps must be the first column; drop that column"
        )
    try:
        pd.Timestamp(header[0])
        looks_like_data = True
    except (ValueError, TypeError):
        looks_like_data = re.fullmatch(EPOCH_PATTERN, header[0].strip()) is not None
    if looks_like_data:
        raise InputDataError(
            f"{where}: the first row looks like data ({header}); a header row such as "
            "'timestamp,value' is required"
        )
    if frame.empty:
        raise InputDataError(f"{where}: the file has a header but no rows")
    stamps = parse_timestamps(frame.iloc[:, 0], where=where, lines=lines)
    raw_values = frame.iloc[:, 1].str.strip()
    values = pd.to_numeric(raw_values.replace({"": "nan", "NaN": "nan"}), errors="coerce")
    bad = values.isna() & ~raw_values.str.lower().isin(["", "nan", "null", "none"])
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raw = str(frame.iloc[row, 1])
        try:
            reason = _too_large(raw) if math.isinf(float(raw)) else "is not a number"
        except ValueError:
            reason = "is not a number"
        raise InputDataError(f"{where}: row {lines[row]}: value {raw!r} {reason}")
    series = pd.Series(values.to_numpy(dtype=float), index=stamps, name=header[1])
    _check_order(series.index, where=where, strict=strict, lines=lines)
    if series.index.has_duplicates:
        series = series.groupby(level=0).mean()
    if not series.index.is_monotonic_increasing:
        series = series.sort_index()
    finite = series.dropna()
    if finite.empty:
        raise InputDataError(f"{where}: no numeric values")
    series = _trim_empty_ends(series, finite.index, where, keep_end=keep_empty_end)
    magnitude = np.abs(values.to_numpy(dtype=float))
    too_large = magnitude > MAX_ABS_VALUE  # infinite values included
    if too_large.any():
        row = int(too_large.nonzero()[0][0])
        raw = str(frame.iloc[row, 1])
        raise InputDataError(f"{where}: row {lines[row]}: value {raw!r} {_too_large(raw)}")
    if frame.shape[1] > 2:
        log.warning(
            "%s: using the first two columns (%s, %s); ignoring %s",
            where,
            header[0],
            header[1],
            ", ".join(repr(str(c)) for c in frame.columns[2:]),
        )
    return series


def _trim_empty_ends(
    series: pd.Series, finite: pd.Index, where: str, *, keep_end: bool = False
) -> pd.Series:
    """``series`` without the rows before its first value and after its last.

    Rows with a timestamp and no value at either end (an export that ran on past the
    data) would stretch the series over a stretch with nothing in it: a backtest's
    origins, a replay or a detection window would then fall where there is nothing to
    judge. They are dropped with a warning; gaps inside the series stay gaps. With
    ``keep_end`` the rows after the last value are kept (and said).
    """
    first, last = finite[0], finite[-1]
    before = int((series.index < first).sum())
    after = int((series.index > last).sum())
    if after and keep_end:
        log.warning(
            "%s: the last %d row(s) have no value (after %s); they stay on the grid as gaps",
            where,
            after,
            last.isoformat(),
        )
        after, last = 0, series.index[-1]
    if before:
        log.warning(
            "%s: the first %d row(s) have no value; the series starts at %s",
            where,
            before,
            first.isoformat(),
        )
    if after:
        log.warning(
            "%s: the last %d row(s) have no value; the series ends at %s",
            where,
            after,
            last.isoformat(),
        )
    return series.loc[first:last] if before or after else series


def _too_large(raw: str) -> str:
    """Why the value written ``raw`` (infinite or beyond :data:`MAX_ABS_VALUE`) is refused.

    A number beyond the float range (``1e400``) reads as infinite in some pandas
    versions and not at all in others; either way it is named as too large.
    """
    try:
        value = abs(float(raw))
    except ValueError:
        value = math.inf
    if math.isinf(value) and "inf" in raw.lower():
        return "is infinite; infinite values are not allowed"
    if math.isinf(value):
        return "is beyond the largest 64-bit float (about 1.8e308)"
    return (
        f"is larger than {MAX_ABS_VALUE:.0e} in magnitude; no rate or latency is, and sums "
        "of values that large overflow (rescale the column, e.g. to other units)"
    )


#: Separators other CSV dialects use, named in the message when a file has one column.
SEPARATORS = ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes"))


def _data_lines(text: str, rows: int) -> list[int]:
    """The file line of each of the ``rows`` data rows of ``text``.

    pandas skips blank lines, so "row + 2" named the wrong line after one; rows are
    matched to the non-blank lines after the header. When they do not match (a
    quoted field spanning lines) each row is taken to be one line.
    """
    filled = [n for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if len(filled) == rows + 1:
        return filled[1:]
    return list(range(2, rows + 2))


def _check_order(index: pd.Index, *, where: str, strict: bool, lines: Sequence[int]) -> None:
    """Refuse (``strict``) or warn about rows out of time order and repeated stamps.

    Row numbers are file lines (``lines``: the line of each row; the header is line 1).
    """
    import numpy as np

    stamps = index.to_numpy(dtype="datetime64[ns]").astype("int64")
    backwards = np.flatnonzero(stamps[1:] < stamps[:-1])
    hint = "; rerun without --strict to sort them" if strict else ""
    if len(backwards):
        row = int(backwards[0]) + 1
        message = (
            f"{where}: row {lines[row]}: timestamp {index[row].isoformat()} is earlier than the "
            f"row before it ({index[row - 1].isoformat()}); {len(backwards)} row(s) out of "
            "time order"
        )
        if strict:
            raise InputDataError(message + hint)
        _warn_once(f"{message}; sorting them")
    repeated = index.duplicated()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        first = int(np.flatnonzero(stamps == stamps[row])[0])
        message = (
            f"{where}: rows {lines[first]} and {lines[row]} share the timestamp "
            f"{index[row].isoformat()}; {int(repeated.sum())} row(s) repeat a timestamp"
        )
        if strict:
            raise InputDataError(message + ("; rerun without --strict to average them"))
        _warn_once(f"{message}; averaging them")


#: File-order warnings already given by this process.
_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Log ``message`` as a warning the first time, at debug level after that: a
    scheduler replaying a file reads it at every ingest, and the same rows repeated
    the same warning every step."""
    if message in _WARNED:
        log.debug("%s", message)
        return
    if len(_WARNED) < 10_000:  # bounded: a process reading many files stays small
        _WARNED.add(message)
    log.warning("%s", message)


#: Most points a regular grid may have: 400 MB of floats (a year at 1s is 31.5 million).
MAX_GRID_POINTS = 50_000_000


#: How concentrated at one phase of the step (mean resultant length of the phases,
#: 1 = all at the same offset) timestamps must be to count as a grid of their own.
PHASE_CONCENTRATION = 0.8


def grid_phase(index: pd.DatetimeIndex, step: timedelta) -> int | None:
    """Nanoseconds past the epoch grid of ``step`` at which the timestamps sit.

    None when they do not sit at one phase (data finer than ``step``, such as
    1-minute rows on a 5-minute grid). The phase is the median offset around the
    circular mean, so a few seconds of jitter do not move it; with a step of a
    second or more it is rounded to whole seconds.
    """
    import numpy as np

    period = int(step.total_seconds() * 1e9)
    if len(index) == 0 or period <= 0:
        return None
    residues = (index.as_unit("ns").asi8 % period).astype(float)  # pandas 3 may hold us
    angle = 2 * np.pi * residues / period
    cos, sin = float(np.cos(angle).mean()), float(np.sin(angle).mean())
    if math.hypot(cos, sin) < PHASE_CONCENTRATION:
        return None
    centre = (math.atan2(sin, cos) / (2 * np.pi) * period) % period
    around = (residues - centre + period / 2) % period - period / 2
    phase = centre + float(np.median(around))
    if period >= 1_000_000_000:
        phase = round(phase / 1e9) * 1e9
    return int(round(phase)) % period


def to_grid(
    series: pd.Series, step: timedelta, *, anchor: Literal["epoch", "input"] = "epoch"
) -> pd.Series:
    """Resample ``series`` onto a regular grid of ``step`` by mean (gaps become NaN).

    With ``anchor="epoch"`` the grid is anchored at the Unix epoch so that two
    series with the same step share grid points (the store's series); each point
    is the mean of ``[t, t + step)``.

    With ``anchor="input"`` (files read by the commands) the grid keeps the phase
    of the input's own timestamps (:func:`grid_phase`: NAB's tweet counts sit 2 min
    53 s past each 5-minute mark), each point the mean of the rows within half a step of
    it, so an output joins back onto the input's timestamps and a few seconds of
    jitter land every row on its own point. Input finer than ``step`` (no single
    phase) is binned as with ``"epoch"``.

    Raises:
        InputDataError: When the grid would have more than :data:`MAX_GRID_POINTS`
            points (e.g. two rows decades apart on a 1-second grid), which would not
            fit in memory.
    """
    import pandas as pd

    if series.empty:
        return series.astype(float)
    span = series.index.max() - series.index.min()
    points = span / pd.Timedelta(step) + 1
    if points > MAX_GRID_POINTS:
        raise InputDataError(
            f"the series spans {format_duration(span.to_pytimedelta())} "
            f"({series.index.min().isoformat()} to {series.index.max().isoformat()}): on a "
            f"grid of {format_duration(step)} that is "
            f"{points:,.0f} points, more than {MAX_GRID_POINTS:,}; use a longer step or "
            "drop the stray rows"
        )
    freq = pd.Timedelta(step)
    values = series.astype(float)
    phase = grid_phase(pd.DatetimeIndex(series.index), step) if anchor == "input" else None
    if phase is None:
        out = values.resample(freq, origin="epoch").mean()
        index = pd.DatetimeIndex(out.index)
    else:
        # bins centred on the input's phase: shift so that they start on the epoch grid
        shift = pd.Timedelta(int(freq.value) // 2 - phase, unit="ns")
        values.index = pd.DatetimeIndex(values.index) + shift
        out = values.resample(freq, origin="epoch").mean()
        index = pd.DatetimeIndex(out.index) + pd.Timedelta(phase, unit="ns")
    out.index = pd.DatetimeIndex(index, freq=pd.tseries.frequencies.to_offset(freq))
    return out


def infer_step(series: pd.Series) -> timedelta:
    """The most common spacing between consecutive timestamps of ``series``.

    Raises:
        InputDataError: If the series has fewer than two points.
    """
    if len(series) < 2:
        raise InputDataError("cannot infer a step from fewer than two points")
    diffs = series.index.to_series().diff().dropna()
    step = diffs.mode().iloc[0]
    return timedelta(seconds=float(step.total_seconds()))


def read_grid_csv(
    path: str | Path, step: timedelta, *, strict: bool = False, keep_empty_end: bool = False
) -> pd.Series:
    """:func:`read_series_csv` resampled onto a grid of ``step`` at the input's own phase
    (:func:`to_grid` with ``anchor="input"``), as the file commands read their input
    (``--freq``).

    A grid finer than the data's own spacing leaves most points empty (``--freq 1min``
    on 5-minute data: 80%), which makes scores look better than they are: that is
    said in a warning naming both steps.
    """
    raw = read_series_csv(path, strict=strict, keep_empty_end=keep_empty_end)
    grid = to_grid(raw, step, anchor="input")
    if len(raw) >= 2 and len(grid):
        empty = float(grid.isna().mean())
        own = infer_step(raw)
        if own > step and empty > 0.5:
            log.warning(
                "%s: --freq %s is finer than the data's own step (%s): %.0f%% of the grid "
                "has no observation",
                path,
                format_duration(step),
                format_duration(own),
                100 * empty,
            )
    return grid
