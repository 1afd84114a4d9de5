"""Parsing and formatting of human durations such as ``5m``, ``1h30m`` or ``28d``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")

MAX_DURATION = timedelta(days=3660)


def parse_duration(
    text: str | int | float | timedelta, *, what: str = "duration", allow_zero: bool = False
) -> timedelta:
    """Parse ``text`` into a positive :class:`~datetime.timedelta`.

    Accepts Prometheus-style strings (``30s``, ``5m``, ``1h30m``, ``28d``, ``2w``),
    a number of seconds, or a timedelta.

    Args:
        text: The duration to parse.
        what: Name of the field, used in the error message.
        allow_zero: Also accept a zero duration (``0``, ``0s``, ``0m``, ...), for
            settings where zero means "off".

    Raises:
        ValueError: With a message naming ``what`` and the offending value.
    """
    if isinstance(text, timedelta):
        value = text
    elif isinstance(text, bool):
        raise ValueError(f"{what}: expected a duration like '5m', got {text!r}")
    elif isinstance(text, int | float):
        value = _from_seconds(text, text, what, allow_zero=allow_zero)
    else:
        s = str(text).strip().replace(" ", "")
        if not s:
            raise ValueError(f"{what}: expected a duration like '5m', got an empty string")
        if allow_zero and s == "0":
            return timedelta(0)
        if s.startswith("-") and len(s) > 1:  # not "cannot parse": it parses, negative
            raise ValueError(f"{what}: {_sign_rule(allow_zero)}, got {text!r}")
        value = _from_seconds(_parse_parts(s, text, what), text, what, allow_zero=allow_zero)
    if value < timedelta(0) or (value == timedelta(0) and not allow_zero):
        raise ValueError(f"{what}: {_sign_rule(allow_zero)}, got {text!r}")
    if value > MAX_DURATION:
        raise ValueError(f"{what}: {text!r} is longer than the 10-year maximum")
    return value


def _parse_parts(s: str, text: object, what: str) -> float:
    """Seconds of a Prometheus-style duration: number-unit parts, units lower-case, each
    at most once and largest first (``1h30m``, not ``30m1h`` or ``1h1h``)."""
    if s != s.lower():
        raise ValueError(
            f"{what}: cannot parse {text!r} as a duration: units are lower-case (ms, s, m, "
            "h, d, w; 'M' would read as minutes, not months)"
        )
    pos = 0
    seconds = 0.0
    last_size = float("inf")
    # each part read where the last ended: a search (finditer) for the next part tried
    # every later position, quadratic in the length (4,000 digits without a unit took
    # half a second, in the API's event loop)
    while (match := _PART.match(s, pos)) is not None:
        size = _UNITS[match.group(2)]
        if size >= last_size:
            raise ValueError(
                f"{what}: cannot parse {text!r} as a duration: give each unit once, "
                "largest first (e.g. '1h30m')"
            )
        last_size = size
        seconds += float(match.group(1)) * size
        pos = match.end()
    if pos != len(s):
        hint = " (a number needs a unit, e.g. '300s')" if re.fullmatch(r"[\d.]+", s) else ""
        raise ValueError(
            f"{what}: cannot parse {text!r} as a duration{hint}; use e.g. '30s', '5m', '1h', '28d'"
        )
    return seconds


def _sign_rule(allow_zero: bool) -> str:
    """What a negative duration breaks: "-1m" for a setting where 0 is "off" was
    refused as "must be positive", which read as if 0 were refused too."""
    return "must be 0 (off) or positive" if allow_zero else "must be positive"


def _from_seconds(
    seconds: float, text: object, what: str, *, allow_zero: bool = False
) -> timedelta:
    """``timedelta(seconds=seconds)``, refusing what it cannot hold (huge, inf, NaN) with
    the same ValueError as any other out-of-range duration (it raises OverflowError).

    The comparisons come first: they are exact for any int, which float() is not."""
    if seconds != seconds:  # NaN
        raise ValueError(f"{what}: expected a duration like '5m', got {text!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{what}: {text!r} is longer than the 10-year maximum")
    if seconds < 0:
        raise ValueError(f"{what}: {_sign_rule(allow_zero)}, got {text!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Format ``value`` compactly (``5m``, ``1h30m``, ``28d``, ``1s500ms``)."""
    millis = int(round(value.total_seconds() * 1000))
    if millis == 0:
        return "0s"
    total, millis = divmod(millis, 1000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)
