"""Request size limits as a pure ASGI middleware (cheap on the hot read path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SizeLimits:
    """Refuse oversized query strings (414) and request bodies (413) with a message.

    Args:
        app: The wrapped ASGI app.
        max_query_bytes: Longest accepted query string.
        max_body_bytes: Largest accepted request body (declared or streamed).
    """

    def __init__(self, app: ASGIApp, *, max_query_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_query_bytes = max_query_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self.max_query_bytes:
            await _reply(send, 414, f"query string longer than {self.max_query_bytes} bytes")
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reply(send, 400, "invalid Content-Length header")
                    return
                if declared > self.max_body_bytes:
                    await _reply(send, 413, f"request body larger than {self.max_body_bytes} bytes")
                    return
        if scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        # A body without a declared length (chunked) is read here, up to the limit, and
        # handed on whole: the limit is then a 413 (raised inside FastAPI's body
        # parsing it came out as a 400 "error parsing the body"). Bodies are small.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_body_bytes:
                await _reply(send, 413, f"request body larger than {self.max_body_bytes} bytes")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole: Message | None = {"type": "http.request", "body": b"".join(chunks)}

        async def replay() -> Message:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()

        await self.app(scope, replay, send)


async def _reply(send: Send, status: int, detail: str) -> None:
    await send_json(send, status, orjson.dumps({"detail": detail}))


async def send_json(send: Send, status: int, body: bytes) -> None:
    """Send a complete ``application/json`` response straight from an ASGI layer."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
