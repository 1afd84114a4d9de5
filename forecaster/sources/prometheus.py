"""The Prometheus source: range queries through ``prometheus_api_client``, chunked and validated.

:class:`PrometheusSource` turns one spec'd PromQL query into validated
:class:`~forecaster.sources.base.FetchedSeries`:

* Evaluation timestamps lie on a grid of ``spec.step`` anchored at the Unix epoch
  (the same grid :func:`forecaster.timeseries.to_grid` uses), so repeated fetches of
  overlapping ranges return the same timestamps.
* The range is cut into chunks of at most ``max_points_per_query`` grid points
  (Prometheus refuses more than 11,000 points per series); chunks do not share grid
  points, and stitching keeps the first value of any timestamp seen twice.
* Chunks are also sized so that (series in the answer) x (grid points) stays under
  ``max_samples_per_request``: a ``split_by`` family starts with a small probe chunk
  (sized as if it had :data:`PROBE_FAMILY_SERIES` series), and every later chunk is
  sized from the number of series the previous non-empty answer carried (empty
  answers keep the probe size). This bounds the memory of Prometheus and of this
  process for families of thousands of series; only a family that grows between
  two chunks can exceed the budget, once, by its growth.
* :meth:`PrometheusSource.iter_chunks` yields each chunk's validated series as soon
  as it arrives (ingestion writes chunk by chunk); :meth:`PrometheusSource.fetch`
  stitches the same chunks in memory. Label sets are validated against the spec
  across chunks: a conflict that only shows up in a later chunk raises there.
* A chunk Prometheus refuses as loading too many samples (its ``--query.max-samples``,
  HTTP 422), or that times out (Prometheus' ``timeout`` error or no answer within
  ``timeout_seconds``), is asked for again in halves, and no later chunk of the fetch
  is larger; only a single step refused so raises (a single step timing out is
  retried like a 5xx).
* An answer whose ``warnings`` say it is partial (a remote-read store that failed) is
  retried like a 5xx and then raises ``SourceUnavailable``: it is never stored as if
  complete. PromQL's own warnings about the query are logged once per query.
* Every HTTP call has an explicit timeout; connection errors, timeouts, HTTP 408, 429
  and 5xx are retried with exponential backoff, then raise ``SourceUnavailable``.
* TLS verification, a CA bundle, a client certificate, a bearer token and basic auth
  (user info in the URL, whose password messages mask) come from
  :class:`~forecaster.config.PrometheusSettings`.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from forecaster.errors import SourceQueryError, SourceUnavailable
from forecaster.sources.base import FetchedSeries, escape_label_value, member_name
from forecaster.timeseries import MAX_ABS_VALUE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from forecaster.config import PrometheusSettings
    from forecaster.specs import SeriesSpec

#: HTTP statuses worth retrying: the server is overloaded, restarting or timed out.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: HTTP statuses meaning Prometheus rejected the query itself (PromQL or limits).
QUERY_STATUSES = frozenset({400, 422})
#: Upper bound of one backoff sleep, in seconds.
MAX_BACKOFF_SECONDS = 60.0
#: How many label sets an error message lists before summarising.
_MAX_LISTED = 10
#: Family size assumed when sizing the first (probe) chunk of a ``split_by`` spec,
#: before any answer has told how many series it has.
PROBE_FAMILY_SERIES = 10_000

#: Largest epoch milliseconds a pandas timestamp (int64 nanoseconds) can hold.
_MAX_STAMP_MS = 9_223_372_036_854

_LabelSet = tuple[tuple[str, str], ...]

log = logging.getLogger(__name__)

_STATUS_MESSAGE = re.compile(r"^HTTP Status Code (\d{3}) \((.*)\)$", re.DOTALL)


#: What Prometheus says when a query would load more samples than its
#: ``--query.max-samples`` (HTTP 422, ``execution`` error).
_TOO_MANY_SAMPLES = "too many samples"


class _TooManySamples(SourceQueryError):
    """Prometheus refused a chunk for the samples it would load: a smaller one may pass."""


class _TooSlow(SourceUnavailable):
    """A chunk of several steps timed out (Prometheus' timeout or ours): a smaller one may
    answer in time. A single step that times out is retried like other failures."""


@dataclass(frozen=True)
class _HttpError:
    status: int
    detail: str


class PrometheusSource:
    """Fetches spec'd series from the Prometheus HTTP API (``/api/v1/query_range``).

    Args:
        settings: URL, timeout (seconds), retries, backoff (seconds), TLS and auth.
        sleep: Called with the backoff delay in seconds between attempts; tests pass
            a recorder instead of :func:`time.sleep`.

    The HTTP client is created on first use, so constructing a source does no I/O.
    """

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._client: Any = None
        #: The URL as messages and logs show it: a password in it (basic auth as
        #: ``https://user:password@host``) is masked, as the store's URL is.
        self.shown_url = _masked_url(settings.url)
        self._noted: set[tuple[str, str]] = set()  # PromQL annotations already logged

    # -- public API ------------------------------------------------------------------

    def fetch(self, spec: SeriesSpec, start: datetime, end: datetime) -> list[FetchedSeries]:
        """Observations of ``spec.query`` on the epoch-anchored step grid in ``[start, end]``.

        Args:
            spec: A Prometheus series spec (``spec.query`` set).
            start: Range start, tz-aware (naive is taken as UTC).
            end: Range end, tz-aware (naive is taken as UTC), inclusive.

        Returns:
            One :class:`FetchedSeries` when ``spec.split_by`` is empty, else one per
            distinct label set of the ``split_by`` labels (sorted by name); values are
            finite floats indexed by sorted tz-aware UTC timestamps. An empty list when
            the query matches nothing in the range.

        Raises:
            SourceUnavailable: Prometheus cannot be reached, times out, or keeps
                answering 5xx after ``settings.retries`` retries.
            SourceQueryError: Prometheus rejects the query, answers something that is
                not a JSON range-query matrix, or the series do not match the spec.
        """
        merged: dict[_LabelSet, _Member] = {}
        for chunk in self._iter_raw(spec, start, end):
            for member in chunk:
                known = merged.get(member.key)
                if known is None:
                    merged[member.key] = member
                else:
                    known.stamps_ms.extend(member.stamps_ms)
                    known.values.extend(member.values)
        return [merged[key].to_fetched() for key in sorted(merged)]

    def iter_chunks(
        self, spec: SeriesSpec, start: datetime, end: datetime
    ) -> Iterator[list[FetchedSeries]]:
        """Like :meth:`fetch`, one list of validated series per range-query chunk.

        Chunks follow each other in time and do not share timestamps; each list holds
        the series present in that chunk's answer (sorted by name), with the values of
        that chunk only (possibly empty when Prometheus answered only NaN). Stitching
        every chunk's values per name gives exactly what :meth:`fetch` returns.

        Only one chunk is held in memory at a time, so a consumer that writes each
        chunk before asking for the next keeps its memory bounded by
        ``settings.max_samples_per_request``.

        Raises:
            SourceUnavailable: As :meth:`fetch`, when the chunk's query fails.
            SourceQueryError: As :meth:`fetch`; a label set conflicting with those of
                earlier chunks raises when its chunk arrives (earlier chunks were
                already yielded).
        """
        for chunk in self._iter_raw(spec, start, end):
            yield [member.to_fetched() for member in chunk]

    def _iter_raw(
        self, spec: SeriesSpec, start: datetime, end: datetime
    ) -> Iterator[list[_Member]]:
        """The chunks of :meth:`iter_chunks` as validated raw samples, sorted by label key."""
        query = spec.query
        if query is None:
            raise SourceQueryError(f"series {spec.name!r} has no Prometheus query")
        step_seconds = _whole_seconds(spec.step, spec.name)
        first, last = _grid_bounds(start, end, step_seconds)
        if first > last:
            return
        budget = self.settings.max_samples_per_request
        max_points = self.settings.max_points_per_query
        expected = PROBE_FAMILY_SERIES if spec.split_by else 1
        points = _chunk_points(budget, expected, max_points)
        members = _MemberIndex(spec, query)
        ceiling = max_points  # lowered for good when Prometheus finds a chunk too heavy
        chunk_start = first
        while chunk_start <= last:
            chunk_end = min(chunk_start + (points - 1) * step_seconds, last)
            try:
                result = self._query_range(query, chunk_start, chunk_end, step_seconds)
            except (_TooManySamples, _TooSlow) as exc:
                span = (chunk_end - chunk_start) // step_seconds + 1
                if span == 1:  # only _TooManySamples: _TooSlow is for several steps
                    raise SourceQueryError(
                        f"{exc}; even a single step of series {spec.name!r} loads more "
                        "samples than Prometheus' --query.max-samples allows: raise that "
                        "limit or select fewer series (or a shorter range) in the query"
                    ) from exc
                ceiling = points = max(1, span // 2)
                log.warning("series %s: %s; retrying in chunks of %d steps", spec.name, exc, points)
                continue
            parsed = _parse_matrix(result, query)
            del result
            answered = len(parsed)
            chunk = members.admit(parsed)
            del parsed
            yield chunk
            del chunk
            chunk_start = chunk_end + step_seconds
            if answered:
                points = min(ceiling, _chunk_points(budget, answered, max_points))
            # An empty answer says nothing about the family's size (it may start
            # later in the range): keep the current size, the probe's until then.

    def close(self) -> None:
        """Release the HTTP connection pool (the source can still be used afterwards)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check_query(self, query: str) -> str | None:
        """Prometheus' reason for refusing to parse ``query``, or None.

        One range query of a single step at the current minute, no retries: the kind
        of query ingestion sends, so what only a range query refuses (a string
        expression, ``"5m"``, which an instant query answers) is refused here too.
        Only a refusal (HTTP 400, ``bad_data``) is a verdict on the query: a
        Prometheus that is down, slow or fails to execute it says nothing about its
        syntax, so those give None (and a warning).
        """
        from prometheus_api_client.exceptions import PrometheusApiClientException

        minute = datetime.fromtimestamp(time.time() // 60 * 60, UTC)
        try:
            self._connect().custom_query_range(
                query=query,
                start_time=minute,
                end_time=minute,
                step="60s",
                params={"timeout": f"{self.settings.timeout_seconds:g}"},
                timeout=self.settings.timeout_seconds,
            )
        except PrometheusApiClientException as exc:
            error = _http_error(exc)
            if error is not None and error.status == 400:
                return error.detail
            log.warning("could not check query %r against Prometheus: %s", query, self._masked(exc))
        except Exception as exc:  # noqa: BLE001 - down or slow: no verdict on the query
            log.warning("could not check query %r against Prometheus: %s", query, self._masked(exc))
        return None

    def _partial(self, query: str, warnings: list[str]) -> str:
        """The warnings of an answer that say it is partial, joined; ``""`` if none do.

        PromQL's own annotations (``PromQL warning: ...``, ``PromQL info: ...``, about
        the query, not the data) are logged once per query and text instead.
        """
        partial = []
        for text in warnings:
            if text.startswith(_PROMQL_ANNOTATIONS):
                if (query, text) not in self._noted:
                    self._noted.add((query, text))
                    log.warning("Prometheus warns about query %r: %s", query, text)
            else:
                partial.append(text)
        return "; ".join(partial)

    def _masked(self, problem: object) -> str:
        """``str(problem)`` with the URL's password and the bearer token, should either
        appear, masked (one of under 4 characters is left: replacing it everywhere
        would garble the text, and the URL shown is masked anyway)."""
        text = str(problem)
        token = self.settings.bearer_token
        for secret in (
            urlsplit(self.settings.url).password,
            token.get_secret_value() if token is not None else None,
        ):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    # -- HTTP ------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is None:
            import requests
            from prometheus_api_client import PrometheusConnect
            from urllib3.util.retry import Retry

            settings = self.settings
            session = requests.Session()
            if not settings.verify_tls:
                session.verify = False
            elif settings.ca_file is not None:
                session.verify = str(settings.ca_file)
            else:
                session.verify = True
            if settings.client_cert is not None:
                session.cert = (
                    (str(settings.client_cert), str(settings.client_key))
                    if settings.client_key is not None
                    else str(settings.client_cert)
                )
            session.hooks["response"].append(_refuse_ok_with_error_status)
            headers: dict[str, str] = {}
            if settings.bearer_token is not None:
                headers["Authorization"] = f"Bearer {settings.bearer_token.get_secret_value()}"
            self._client = PrometheusConnect(
                url=settings.url,
                headers=headers or None,
                session=session,
                # Retries happen here, not in urllib3: one policy, one log of attempts.
                retry=Retry(total=0, read=False, redirect=0, raise_on_status=False),
                timeout=settings.timeout_seconds,
            )
        return self._client

    def _query_range(self, query: str, start: int, end: int, step_seconds: int) -> Any:
        """One ``query_range`` call with retries; returns the decoded ``data.result``."""
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        settings = self.settings
        url = self.shown_url
        window = f"[{_iso(start)}, {_iso(end)}] step {step_seconds}s"
        attempts = settings.retries + 1
        last_problem = ""
        for attempt in range(attempts):
            if attempt:
                delay = min(settings.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
                self._sleep(max(delay, 0.0))
            _answer.warnings = []
            try:
                result = self._connect().custom_query_range(
                    query=query,
                    start_time=datetime.fromtimestamp(start, UTC),
                    end_time=datetime.fromtimestamp(end, UTC),
                    step=f"{step_seconds}s",
                    # Prometheus' own evaluation timeout, in float seconds.
                    params={"timeout": f"{settings.timeout_seconds:g}"},
                    timeout=settings.timeout_seconds,
                )
                partial = self._partial(query, list(_answer.warnings))
                if not partial:
                    return result
                del result
                last_problem = (
                    f"the answer was partial (Prometheus warned: {partial}); it is not stored"
                )
                if attempt == attempts - 1:
                    raise SourceUnavailable(_gave_up(url, query, attempts, last_problem))
            except PrometheusApiClientException as exc:
                error = _http_error(exc)
                if error is None:
                    raise SourceQueryError(
                        f"Prometheus at {url} failed query {query!r} over {window}: "
                        f"{self._masked(exc)}"
                    ) from exc
                if error.status in QUERY_STATUSES and _TOO_MANY_SAMPLES in error.detail:
                    raise _TooManySamples(
                        f"Prometheus at {url} refused query {query!r} over {window} "
                        f"(HTTP {error.status}): {error.detail}"
                    ) from exc
                if error.status == 503 and error.detail.startswith("timeout") and end > start:
                    raise _TooSlow(
                        f"Prometheus at {url} timed out on query {query!r} over {window} "
                        f"(HTTP 503): {error.detail}"
                    ) from exc
                if error.status in QUERY_STATUSES or error.status == 200:
                    raise SourceQueryError(
                        f"Prometheus at {url} rejected query {query!r} over {window} "
                        f"(HTTP {error.status}): {error.detail}"
                    ) from exc
                if error.status not in RETRY_STATUSES:
                    raise SourceUnavailable(
                        f"Prometheus at {url} refused query {query!r} "
                        f"(HTTP {error.status}): {error.detail}"
                    ) from exc
                last_problem = f"HTTP {error.status}: {error.detail}"
                if attempt == attempts - 1:
                    raise SourceUnavailable(_gave_up(url, query, attempts, last_problem)) from exc
            except requests.exceptions.JSONDecodeError as exc:
                text = (exc.doc or "").lstrip()[:80] if isinstance(exc.doc, str) else ""
                html = " (an HTML page: a login or proxy page?)" if text.startswith("<") else ""
                raise SourceQueryError(
                    f"Prometheus at {url} answered query {query!r} with something that is not "
                    f"JSON{html}: {text!r}; is {url} really the Prometheus API?"
                ) from exc
            except (KeyError, TypeError) as exc:
                raise SourceQueryError(
                    f"Prometheus at {url} answered query {query!r} without data.result "
                    f"(missing {exc}); is {url} really the Prometheus API?"
                ) from exc
            except requests.exceptions.SSLError as exc:
                raise SourceUnavailable(
                    f"TLS handshake with Prometheus at {url} failed for query {query!r} "
                    f"(check verify_tls, ca_file, client_cert, client_key): {self._masked(exc)}"
                ) from exc
            except requests.exceptions.ReadTimeout as exc:
                if end > start:
                    raise _TooSlow(
                        f"Prometheus at {url} did not answer query {query!r} over {window} "
                        f"within {settings.timeout_seconds:g}s"
                    ) from exc
                last_problem = f"{type(exc).__name__}: {self._masked(exc)}"
                if attempt == attempts - 1:
                    raise SourceUnavailable(_gave_up(url, query, attempts, last_problem)) from exc
            except (
                requests.exceptions.ConnectionError,
                requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                last_problem = f"{type(exc).__name__}: {self._masked(exc)}"
                if attempt == attempts - 1:
                    raise SourceUnavailable(_gave_up(url, query, attempts, last_problem)) from exc
            except requests.exceptions.RequestException as exc:
                raise SourceUnavailable(
                    f"cannot query Prometheus at {url} for {query!r}: "
                    f"{type(exc).__name__}: {self._masked(exc)}"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover


# -- helpers -------------------------------------------------------------------------


def _whole_seconds(step: timedelta, name: str) -> int:
    seconds = step.total_seconds()
    if seconds < 1 or not float(seconds).is_integer():
        raise SourceQueryError(
            f"series {name!r}: step {seconds:g}s must be a whole number of seconds "
            "for Prometheus range queries"
        )
    return int(seconds)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _grid_bounds(start: datetime, end: datetime, step_seconds: int) -> tuple[int, int]:
    """First and last epoch-anchored grid points (Unix seconds) inside ``[start, end]``."""
    first = math.ceil(_utc(start).timestamp() / step_seconds) * step_seconds
    last = math.floor(_utc(end).timestamp() / step_seconds) * step_seconds
    return first, last


def _iso(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()


def _masked_url(url: str) -> str:
    """``url`` with the password of its user info (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def _gave_up(url: str, query: str, attempts: int, problem: str) -> str:
    return (
        f"Prometheus at {url} unavailable for query {query!r} after {attempts} attempt(s): "
        f"{problem}"
    )


#: The warnings of the answer last received on this thread (the response hook sets them).
_answer = threading.local()
#: How PromQL's own annotations (about the query, not missing data) begin.
_PROMQL_ANNOTATIONS = ("PromQL warning:", "PromQL info:")

#: The start of a Prometheus API answer that reports an error.
_ERROR_STATUS = re.compile(rb'^\s*\{\s*"status"\s*:\s*"error"')


def _refuse_ok_with_error_status(response: Any, *_args: Any, **_kwargs: Any) -> Any:
    """A ``requests`` response hook: an HTTP 200 whose body says ``"status":"error"``
    (some proxies and Prometheus-compatible servers answer errors so) is raised as the
    client raises other statuses, so that its error text is reported; the client
    itself would look for ``data`` in it and lose the text.

    It also keeps the answer's ``warnings`` (in :data:`_answer`, for this thread),
    which the client drops: a partial answer (a remote-read store that failed) says
    so only there."""
    if response.status_code == 200 and _ERROR_STATUS.match(response.content[:200]):
        from prometheus_api_client.exceptions import PrometheusApiClientException

        raise PrometheusApiClientException(f"HTTP Status Code 200 ({response.content!r})")
    if response.status_code == 200 and b'"warnings"' in response.content:
        try:
            warnings = json.loads(response.content).get("warnings")
        except (ValueError, AttributeError):
            warnings = None  # the client reports an answer that is not JSON
        if isinstance(warnings, list):
            _answer.warnings = [str(text) for text in warnings]
    return response


def _http_error(exc: Exception) -> _HttpError | None:
    """Status and Prometheus' error text from a ``PrometheusApiClientException``.

    The client only keeps ``"HTTP Status Code 400 (b'...')"``; the body is the repr of
    the raw bytes, normally ``{"status":"error","errorType":...,"error":...}``.
    """
    match = _STATUS_MESSAGE.match(str(exc))
    if match is None:
        return None
    status = int(match.group(1))
    raw = match.group(2)
    try:
        body = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return _HttpError(status, raw)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        decoded = json.loads(text)
    except ValueError:
        return _HttpError(status, text.strip()[:500] or "(empty body)")
    if isinstance(decoded, dict) and "error" in decoded:
        kind = decoded.get("errorType")
        return _HttpError(status, f"{kind}: {decoded['error']}" if kind else str(decoded["error"]))
    return _HttpError(status, text.strip()[:500])


def _format_labels(labels: tuple[tuple[str, str], ...] | dict[str, str]) -> str:
    """A label set as PromQL writes it (values escaped: ``"a\\"b"`` is one value)."""
    items = sorted(labels.items()) if isinstance(labels, dict) else list(labels)
    return "{" + ", ".join(f'{key}="{escape_label_value(value)}"' for key, value in items) + "}"


def _list_label_sets(label_sets: list[tuple[tuple[str, str], ...]]) -> str:
    shown = ", ".join(_format_labels(labels) for labels in label_sets[:_MAX_LISTED])
    extra = len(label_sets) - _MAX_LISTED
    return shown + (f" and {extra} more" if extra > 0 else "")


def _parse_value(raw: Any) -> float | None:
    """The sample value as a float; ``None`` for NaN (stale markers) and infinities.

    Raises:
        ValueError: ``raw`` is not a number at all (Prometheus sends every value as a
            decimal string, ``"NaN"`` or ``"+Inf"``/``"-Inf"``).
    """
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise ValueError(f"value {raw!r} is not a number")
    value = float(raw)
    return value if math.isfinite(value) else None


def _parse_stamp_ms(raw: Any) -> int | None:
    """Unix seconds as epoch milliseconds; ``None`` unless a finite, representable time."""
    if isinstance(raw, bool):
        return None
    try:
        stamp_ms = round(float(raw) * 1000)
    except (TypeError, ValueError, OverflowError):
        return None
    return stamp_ms if abs(stamp_ms) <= _MAX_STAMP_MS else None


def _parse_matrix(
    result: Any, query: str
) -> list[tuple[tuple[tuple[str, str], ...], list[tuple[int, float]]]]:
    """Label sets and finite ``(epoch milliseconds, value)`` samples of a matrix result.

    NaN (including Prometheus stale markers), ``+Inf`` and ``-Inf`` are dropped, and
    so are values beyond :data:`~forecaster.timeseries.MAX_ABS_VALUE` in magnitude
    (a broken exporter's; sums of them overflow the estimators), with one warning
    naming the series, how many and the first (at most ten series listed): they
    become missing data, which cleaning fills, instead of failing every fetch while
    they stay in range.

    Raises:
        SourceQueryError: If ``result`` is not a list of ``{"metric", "values"}``, or a
            sample's value is not a number or its timestamp not finite Unix seconds.
    """
    if not isinstance(result, list):
        raise SourceQueryError(
            f"query {query!r} returned a {type(result).__name__} result, expected a matrix "
            "(a list of series)"
        )
    parsed = []
    dropped: list[tuple[_LabelSet, int, int, Any]] = []
    for item in result:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("metric"), dict)
            or not isinstance(item.get("values"), list)
        ):
            shape = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise SourceQueryError(
                f"query {query!r} did not return a matrix: got an element {shape}, "
                "expected series with 'metric' and 'values'"
            )
        labels = tuple(sorted((str(k), str(v)) for k, v in item["metric"].items()))
        samples: list[tuple[int, float]] = []
        too_large = 0
        first_too_large: tuple[int, Any] = (0, None)
        for pair in item["values"]:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise SourceQueryError(
                    f"query {query!r} returned a malformed sample {pair!r} for "
                    f"{_format_labels(labels)}; expected [timestamp, value]"
                )
            try:
                value = _parse_value(pair[1])
            except ValueError as exc:
                raise SourceQueryError(
                    f"query {query!r} returned a sample with value {pair[1]!r} for "
                    f"{_format_labels(labels)} at {pair[0]!r}; expected a number as a "
                    'string (or "NaN", "+Inf", "-Inf")'
                ) from exc
            stamp_ms = _parse_stamp_ms(pair[0])
            if stamp_ms is None:
                raise SourceQueryError(
                    f"query {query!r} returned a sample with timestamp {pair[0]!r} for "
                    f"{_format_labels(labels)}, expected Unix seconds"
                )
            if value is None or abs(value) > MAX_ABS_VALUE:  # NaN and infinities are None
                if not too_large:
                    first_too_large = (stamp_ms, pair[1])
                too_large += 1
                continue
            samples.append((stamp_ms, value))
        if too_large:
            dropped.append((labels, too_large, *first_too_large))
        parsed.append((labels, samples))
    _warn_dropped(query, dropped)
    return parsed


def _warn_dropped(query: str, dropped: list[tuple[_LabelSet, int, int, Any]]) -> None:
    """One warning for the samples an answer's series had dropped (label set, how many,
    first one's epoch milliseconds and raw value, per series): a family of quiet routes
    (histogram_quantile is NaN without requests) logged a line per route per chunk."""
    if not dropped:
        return
    if len(dropped) == 1:
        ((labels, count, stamp_ms, raw),) = dropped
        log.warning(
            "query %r: dropped %d sample(s) of %s that are NaN, infinite or larger "
            "than %.0e in magnitude (first %s at %s); they are treated as missing data",
            query,
            count,
            _format_labels(labels),
            MAX_ABS_VALUE,
            raw,
            _iso(stamp_ms // 1000),
        )
        return
    listed = ", ".join(
        f"{_format_labels(labels)} {count} (first {raw} at {_iso(stamp_ms // 1000)})"
        for labels, count, stamp_ms, raw in dropped[:_MAX_LISTED]
    )
    more = len(dropped) - _MAX_LISTED
    log.warning(
        "query %r: dropped %d sample(s) of %d series that are NaN, infinite or larger "
        "than %.0e in magnitude: %s%s; they are treated as missing data",
        query,
        sum(count for _, count, _, _ in dropped),
        len(dropped),
        MAX_ABS_VALUE,
        listed,
        f" and {more} more series" if more > 0 else "",
    )


def _missing_hint(missing: list[str], label_sets: list[_LabelSet]) -> str:
    """Why series may lack a ``split_by`` label, for the message that says they do."""
    if not any(label == missing[0] for labels in label_sets for label, _ in labels):
        return (
            f"No series has {missing[0]!r}: the query's aggregation must keep it "
            f"(by ({', '.join(missing)}) ...)"
        )
    return (
        f"Prometheus leaves out a label whose value is empty: select only series that "
        f'have it ({{{missing[0]}!=""}} in the selector) or give it a value (label_replace)'
    )


def _chunk_points(budget: int, series: int, max_points: int) -> int:
    """Grid points per chunk so that ``series`` x points stays within ``budget``."""
    return max(1, min(max_points, budget // max(series, 1)))


@dataclass
class _Member:
    """One series' samples from one or more chunks (epoch milliseconds, floats)."""

    key: _LabelSet
    name: str
    family: str
    labels: dict[str, str]
    stamps_ms: list[int]
    values: list[float]

    def to_fetched(self) -> FetchedSeries:
        import numpy as np
        import pandas as pd

        stamps = np.asarray(self.stamps_ms, dtype="int64")
        values = np.asarray(self.values, dtype=float)
        order = np.argsort(stamps, kind="stable")
        index = pd.DatetimeIndex(
            pd.to_datetime(stamps[order], unit="ms", utc=True), name="timestamp"
        )
        series = pd.Series(values[order], index=index, dtype=float, name=self.name)
        return FetchedSeries(self.name, self.family, dict(self.labels), series)


class _MemberIndex:
    """Label sets seen so far for one fetch, validated against the spec across chunks.

    Keeps, per label set, the newest timestamp already handed out, so a timestamp
    answered twice (at a chunk boundary) keeps its first value.
    """

    def __init__(self, spec: SeriesSpec, query: str) -> None:
        self.spec = spec
        self.query = query
        self.seen: dict[_LabelSet, tuple[_LabelSet, str, dict[str, str]]] = {}
        self.by_key: dict[_LabelSet, _LabelSet] = {}
        self.newest_ms: dict[_LabelSet, int] = {}

    def admit(self, parsed: list[tuple[_LabelSet, list[tuple[int, float]]]]) -> list[_Member]:
        """Validate a chunk's label sets and return its members' new samples, sorted."""
        samples: dict[_LabelSet, dict[int, float]] = {}
        for labels, pairs in parsed:
            stitched = samples.setdefault(labels, {})
            for stamp, value in pairs:
                stitched.setdefault(stamp, value)
        fresh = sorted(labels for labels in samples if labels not in self.seen)
        if fresh:
            self._validate(fresh)
        chunk: list[_Member] = []
        for labels, stitched in samples.items():
            key, name, labels_dict = self.seen[labels]
            newest = self.newest_ms.get(labels)
            stamps = sorted(stamp for stamp in stitched if newest is None or stamp > newest)
            if stamps:
                self.newest_ms[labels] = stamps[-1]
            chunk.append(
                _Member(
                    key=key,
                    name=name,
                    family=self.spec.name,
                    labels=labels_dict,
                    stamps_ms=stamps,
                    values=[stitched[stamp] for stamp in stamps],
                )
            )
        chunk.sort(key=lambda member: member.key)
        return chunk

    def _validate(self, fresh: list[_LabelSet]) -> None:
        spec, query = self.spec, self.query
        label_sets = sorted({*self.seen, *fresh})
        if not spec.split_by:
            if len(label_sets) > 1:
                raise SourceQueryError(
                    f"series {spec.name!r}: query {query!r} returned {len(label_sets)} "
                    f"series, expected exactly one (aggregate the query or set split_by): "
                    f"{_list_label_sets(label_sets)}"
                )
            self.seen[fresh[0]] = ((), spec.name, {})
            return
        for labels in fresh:
            full = dict(labels)
            missing = [label for label in spec.split_by if label not in full]
            if missing:
                raise SourceQueryError(
                    f"series {spec.name!r}: query {query!r} returned a series without "
                    f"split_by label(s) {missing}: {_format_labels(labels)}; received "
                    f"{_list_label_sets(label_sets)}. {_missing_hint(missing, label_sets)}"
                )
            key = tuple((label, full[label]) for label in sorted(spec.split_by))
            if key in self.by_key:
                raise SourceQueryError(
                    f"series {spec.name!r}: query {query!r} returned several series for "
                    f"split_by label set {_format_labels(key)}: "
                    f"{_format_labels(self.by_key[key])} and {_format_labels(labels)}; "
                    f"aggregate by {list(spec.split_by)}"
                )
            self.by_key[key] = labels
            labels_dict = dict(key)
            self.seen[labels] = (key, member_name(spec.name, labels_dict), labels_dict)
