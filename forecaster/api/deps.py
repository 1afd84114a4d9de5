"""FastAPI dependencies: settings, the forecast view, the store and token checks."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.routing import APIRoute

from forecaster.api.view import ForecastView
from forecaster.config import Settings
from forecaster.store.repository import Store


async def get_app_settings(request: Request) -> Settings:
    """Settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_view(request: Request) -> ForecastView:
    """The in-memory forecast view."""
    view: ForecastView = request.app.state.view
    return view


async def get_store(request: Request) -> Store:
    """The store (for reads that are not cached, such as history)."""
    store: Store = request.app.state.store
    return store


def _check_token(request: Request, settings: Settings) -> None:
    expected = settings.api.token
    if expected is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="this endpoint needs FORECASTER_API__TOKEN to be configured on the server",
        )
    header = request.headers.get("authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer" or not supplied:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(supplied.encode(), expected.get_secret_value().encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="invalid token")


async def require_read(
    request: Request, settings: Annotated[Settings, Depends(get_app_settings)]
) -> None:
    """Allow reads, checking the token only when reads are configured to need it."""
    if settings.api.require_token_for_reads:
        _check_token(request, settings)


async def require_admin(
    request: Request, settings: Annotated[Settings, Depends(get_app_settings)]
) -> None:
    """Allow write/admin calls only with the configured bearer token."""
    _check_token(request, settings)


class AdminRoute(APIRoute):
    """A route that checks the bearer token before FastAPI reads the request body.

    Dependencies run after the body is parsed, so a call without a token and with a
    malformed body got a 422 about the body instead of the 401 it deserves.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            _check_token(request, request.app.state.settings)
            _check_json_body(request)
            return await handler(request)

        return checked


def _check_json_body(request: Request) -> None:
    """Refuse a body sent as something other than JSON with a 415 that says how to
    send it: ``curl -d '{"job": "train"}'`` sends a form, which FastAPI does not read
    as JSON, and the 422 said only "Input should be a valid dictionary"."""
    headers = request.headers
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method != "POST" or kind == "application/json":
        return
    if (
        not kind
        and headers.get("content-length", "0") == "0"
        and "transfer-encoding" not in headers
    ):
        return  # no body: the 422 names the fields it lacks
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        detail=(
            f"the body was sent {f'as {kind}' if kind else 'without a Content-Type'}; "
            "send it as JSON with the header Content-Type: application/json (curl: "
            "-H 'Content-Type: application/json', or --json)"
        ),
    )


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ViewDep = Annotated[ForecastView, Depends(get_view)]
StoreDep = Annotated[Store, Depends(get_store)]
ReadAccess = Depends(require_read)
AdminAccess = Depends(require_admin)
