"""Parsing of query parameters that FastAPI cannot type directly (durations, timestamps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, status

from forecaster.durations import parse_duration


def bad_parameter(name: str, message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the parameter."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["query", name], "msg": message, "type": "value_error"}],
    )


def duration_param(name: str, value: str, *, maximum: timedelta) -> timedelta:
    """Parse a duration query parameter such as ``15m``; 422 on a bad value."""
    try:
        parsed = parse_duration(value, what=name)
    except ValueError as exc:
        raise bad_parameter(name, str(exc)) from None
    if parsed > maximum:
        raise bad_parameter(name, f"{name}={value!r} exceeds the maximum of {maximum}")
    return parsed


def timestamp_param(name: str, value: str) -> datetime:
    """Parse an ISO 8601 timestamp (naive means UTC) or a relative ``-2h``; 422 on a bad value."""
    text = value.strip()
    if text.startswith("-"):
        try:
            return datetime.now(UTC) - parse_duration(text[1:], what=name)
        except ValueError as exc:
            raise bad_parameter(name, str(exc)) from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_parameter(
            name, f"{name}={value!r} is not an ISO 8601 timestamp (or a relative '-2h')"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-05:00 is past the last representable time
        raise bad_parameter(name, f"{name}={value!r} is out of the supported range") from None
