"""Webhook pushes: signed JSON POSTs, retried with backoff, at most once per window.

Every request carries::

    Content-Type: application/json
    X-Forecaster-Delivery: <key>                 (idempotency key of the window; outside
                                                  visible ASCII, and "%", percent-encoded)
    X-Forecaster-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

where the HMAC is computed with the configured secret over ``f"{t}.".encode() +
body``; receivers verify it with :func:`verify_signature` (or the same three lines
in any language) and reject stale ``t`` to stop replays.

At most once: a delivery is *claimed* in the store (a unique key per window)
before the first attempt, so a restarted scheduler never sends a window again,
even when it crashed mid-send. Retries within one delivery happen only while no
response was received (connection errors, timeouts) or on 429/5xx; a receiver
that saw the body but whose answer was lost may get it twice, which the
``X-Forecaster-Delivery`` key lets it detect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Forecaster-Signature"
DELIVERY_HEADER = "X-Forecaster-Delivery"


#: Visible ASCII but "%": what a delivery key keeps as it is in the header.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def header_key(key: str) -> str:
    """``key`` as the ``X-Forecaster-Delivery`` header value: visible ASCII as it is,
    anything else (a member's label value such as ``/café``, white space) and ``%``
    percent-encoded as UTF-8, as HTTP header values are ASCII."""
    from urllib.parse import quote

    return quote(key, safe=_HEADER_SAFE)


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: bytes,
    body: bytes,
    header: str,
    *,
    tolerance_seconds: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when ``header`` is a valid, fresh signature of ``body`` under ``secret``."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
        supplied = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, supplied)


class DeliveryLog(Protocol):
    """Where deliveries are claimed and their outcome recorded (the store)."""

    def claim_delivery(self, *, key: str, kind: str, series: str, url: str) -> bool:
        """Record the intent to send ``key``; False if it was claimed before."""
        ...

    def finish_delivery(
        self, *, key: str, ok: bool, attempts: int, status_code: int | None, error: str
    ) -> None:
        """Record how the delivery of ``key`` ended."""
        ...


@dataclass(frozen=True)
class WebhookTarget:
    """Where and how to POST.

    Attributes:
        url: http(s) URL of the receiver.
        secret: HMAC key (read from the environment variable the spec names).
        timeout_seconds: Per-attempt timeout (connect, read, write, pool).
        retries: Extra attempts after the first.
        backoff_seconds: First retry delay; doubles each retry.
    """

    url: str
    secret: bytes
    timeout_seconds: float = 5.0
    retries: int = 3
    backoff_seconds: float = 0.5


@dataclass(frozen=True)
class DeliveryOutcome:
    """What happened to one window."""

    key: str
    status: Literal["sent", "failed", "skipped"]
    attempts: int
    status_code: int | None = None
    error: str = ""


class WebhookSender:
    """Sends windows to webhooks at most once each.

    Args:
        log_: The delivery log (claims and outcomes).
        client: An httpx client (default: one with TLS verification, no redirects).
        sleep: Sleep function between retries (tests pass a fake).
    """

    def __init__(
        self,
        log_: DeliveryLog,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.log = log_
        self._client = client
        self.sleep = sleep

    @property
    def client(self) -> httpx.Client:
        """The HTTP client (created on first use)."""
        if self._client is None:
            import httpx

            self._client = httpx.Client(verify=True, follow_redirects=False)
        return self._client

    def close(self) -> None:
        """Close the HTTP client if this sender created it."""
        if self._client is not None:
            self._client.close()

    def deliver(
        self,
        target: WebhookTarget,
        *,
        key: str,
        kind: str,
        series: str,
        payload: dict[str, Any],
    ) -> DeliveryOutcome:
        """POST ``payload`` to ``target`` unless ``key`` was claimed before."""
        if not self.log.claim_delivery(key=key, kind=kind, series=series, url=target.url):
            return DeliveryOutcome(key=key, status="skipped", attempts=0)
        try:
            return self._send(target, key=key, payload=payload)
        except Exception as exc:
            # anything unforeseen between the claim and the record (a payload JSON cannot
            # write, a header refused): recorded as failed, never left "sending" with
            # nobody able to tell whether it went out
            log.exception("webhook %s to %s could not be sent", key, target.url)
            error = f"{exc.__class__.__name__}: {exc}"
            self.log.finish_delivery(key=key, ok=False, attempts=1, status_code=None, error=error)
            return DeliveryOutcome(key=key, status="failed", attempts=1, error=error)

    def _send(self, target: WebhookTarget, *, key: str, payload: dict[str, Any]) -> DeliveryOutcome:
        """:meth:`deliver` once claimed: POST with retries, then record the outcome."""
        import httpx

        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        attempts = 0
        status_code: int | None = None
        error = ""
        ok = False
        timeout = httpx.Timeout(target.timeout_seconds)
        for attempt in range(target.retries + 1):
            if attempt:
                self.sleep(target.backoff_seconds * 2 ** (attempt - 1))
            attempts += 1
            headers = {
                "Content-Type": "application/json",
                DELIVERY_HEADER: header_key(key),
                SIGNATURE_HEADER: sign(target.secret, body, int(time.time())),
                "User-Agent": "forecaster-webhook/1",
            }
            try:
                response = self.client.post(
                    target.url, content=body, headers=headers, timeout=timeout
                )
            except httpx.TransportError as exc:
                status_code, error = None, f"{exc.__class__.__name__}: {exc}"
                continue
            except (httpx.HTTPError, httpx.InvalidURL) as exc:  # retrying cannot help
                # (e.g. a URL httpx refuses); recorded as failed, not left "sending"
                status_code, error = None, f"{exc.__class__.__name__}: {exc}"
                break
            status_code = response.status_code
            if response.is_success:
                ok, error = True, ""
                break
            if response.is_redirect:  # e.g. http:// answered with a move to https://
                where = response.headers.get("location", "?")
                error = (
                    f"HTTP {status_code}: redirected to {where}; redirects are not followed "
                    "(a signed POST is not re-sent elsewhere): set the webhook URL to it"
                )
            else:
                error = f"HTTP {status_code}: {response.text[:200]}"
            if status_code != 429 and status_code < 500:
                break
        self.log.finish_delivery(
            key=key, ok=ok, attempts=attempts, status_code=status_code, error=error
        )
        if not ok:
            log.warning(
                "webhook %s to %s failed after %d attempt(s): %s", key, target.url, attempts, error
            )
        return DeliveryOutcome(
            key=key,
            status="sent" if ok else "failed",
            attempts=attempts,
            status_code=status_code,
            error=error,
        )
