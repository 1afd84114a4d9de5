"""Parsing of query parameters that FastAPI cannot type directly (durations, timestamps)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import HTTPException, Request, status
from fastapi.routing import APIRoute

from forecaster.durations import format_duration, parse_duration
from forecaster.errors import nearest_name


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
        limit = format_duration(maximum)
        raise bad_parameter(name, f"{name}={value!r} exceeds the maximum of {limit}")
    return parsed


#: A timestamp whose UTC offset's "+" was decoded from a query string as a space.
_PLUS_AS_SPACE = re.compile(
    r"(?P<time>.*\d[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (?P<offset>\d{2}(?::?\d{2})?)"
)


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
        # "2026-11-30T10:00:00+01:00" typed into a URL unescaped arrives with its "+"
        # decoded as a space: read that space as the "+" it was
        sent = _PLUS_AS_SPACE.fullmatch(text)
        repaired = None if sent is None else f"{sent['time']}+{sent['offset']}"
        try:
            parsed = datetime.fromisoformat(repaired or text)  # the same error without one
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


def _repeatable(annotation: Any) -> bool:
    """Whether a parameter of this type takes several values (``list[str] | None``)."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType, Annotated):
        return any(_repeatable(arg) for arg in get_args(annotation))
    return origin in (list, tuple, set, frozenset)


def _declared_query_params(route: APIRoute) -> tuple[frozenset[str], frozenset[str]]:
    """The query parameter names ``route`` declares (its own and its dependencies'), and
    those of them that take one value."""
    known = _DECLARED.get(route.unique_id)
    if known is None:
        names: set[str] = set()
        single: set[str] = set()
        pending = [route.dependant]
        while pending:
            dependant = pending.pop()
            for param in dependant.query_params:
                names.add(param.alias)
                if not _repeatable(param.field_info.annotation):
                    single.add(param.alias)
            pending.extend(dependant.dependencies)
        known = (frozenset(names), frozenset(single))
        _DECLARED[route.unique_id] = known
    return known


_DECLARED: dict[str, tuple[frozenset[str], frozenset[str]]] = {}


async def reject_unknown_params(request: Request) -> None:
    """A 422 naming a query parameter the API route does not take, or one given twice.

    A misspelt parameter (``leadTime`` for ``lead_time``) was ignored and its default
    used: a plan for a 5-minute lead where 1 hour was meant. So is one that takes a
    single value given more than once. Parameters starting with
    ``_`` (cache busters) pass, and so does anything on routes outside ``/v1/`` and
    ``/metrics`` (the dashboard page keeps its own state in its URL).
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    if not (route.path.startswith("/v1/") or route.path == "/metrics"):
        return
    known, single = _declared_query_params(route)
    for key in single:
        # the last one was used and the others dropped without a word (current=a&current=b
        # kept b only; the warmer's other incumbents were replaced)
        if (count := len(request.query_params.getlist(key))) > 1:
            raise bad_parameter(key, f"{key!r} is given {count} times; give it once")
    for key in request.query_params:
        if key in known or key.startswith("_"):
            continue
        close = nearest_name(key, sorted(known))
        if close:
            hint = f"did you mean {close!r}?"
        elif known:
            hint = f"this endpoint takes {', '.join(sorted(known))}"
        else:
            hint = "this endpoint takes no query parameters"
        raise bad_parameter(key, f"unknown query parameter {key!r}; {hint}")
