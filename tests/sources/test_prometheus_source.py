"""PrometheusSource against a real Prometheus (backfilled NAB trace) and a fake HTTP server."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from forecaster.config import PrometheusSettings
from forecaster.errors import SourceQueryError, SourceUnavailable
from forecaster.sources.base import member_name
from forecaster.sources.prometheus import PrometheusSource
from forecaster.specs import ScheduleSpec, SeriesSpec
from forecaster.timeseries import read_series_csv
from tests.support.promserver import (
    PromServer,
    free_port,
    make_prometheus_fixture,
    running_prometheus,
    shift_to_end_at,
    utc_now_floor,
)

NAB_TRACE = (
    Path(__file__).resolve().parents[2] / "data/nab/realAWSCloudwatch/elb_request_count_8c0756.csv"
)
STEP = timedelta(minutes=5)


def make_spec(name: str, query: str, *, split_by: tuple[str, ...] = ()) -> SeriesSpec:
    return SeriesSpec(
        name=name,
        query=query,
        split_by=split_by,
        step=STEP,
        history=timedelta(days=28),
        horizon=timedelta(hours=24),
        estimators=("seasonal_naive",),
        schedule=ScheduleSpec(),
    )


class SleepRecorder:
    """Stands in for time.sleep: records the backoff delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def nab_trace() -> pd.Series:
    """The ELB request-count trace (14 days, 5 min, 8 missing samples) ending 10 min ago."""
    return shift_to_end_at(read_series_csv(NAB_TRACE), utc_now_floor(300) - timedelta(minutes=10))


_TRACE: dict[str, pd.Series] = {}


def trace() -> pd.Series:
    """One shifted trace per test session, so the server and the asserts agree."""
    if "trace" not in _TRACE:
        _TRACE["trace"] = nab_trace()
    return _TRACE["trace"]


def backfill() -> dict[str, pd.Series]:
    series = trace()
    short = series.iloc[-12:]
    return {
        'elb_requests{route="/a"}': series,
        'elb_requests{route="/b"}': series + 0.25,
        "single_rps": series,
        'partial{route="/a"}': short,
        'partial{zone="eu"}': short,
        'dup{route="/a",instance="1"}': short,
        'dup{route="/a",instance="2"}': short,
        'quoted{route="say \\"hi\\", b=\\"c"}': short,
        "quoted": short,
    }


prometheus = make_prometheus_fixture(backfill, scope="module")


# -- real Prometheus -----------------------------------------------------------------


@pytest.mark.integration
def test_chunked_fetch_returns_every_backfilled_point_once(
    prometheus: PromServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_api_client.prometheus_connect import PrometheusConnect

    original = PrometheusConnect.custom_query_range
    chunks: list[tuple[datetime, datetime, int]] = []

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        points = sum(len(item["values"]) for item in result)
        chunks.append((kwargs["start_time"], kwargs["end_time"], points))
        return result

    monkeypatch.setattr(PrometheusConnect, "custom_query_range", spy)
    series = trace()
    source = PrometheusSource(PrometheusSettings(url=prometheus.url, max_points_per_query=500))
    start = series.index[0].to_pydatetime() - timedelta(minutes=2)
    end = series.index[-1].to_pydatetime() + timedelta(minutes=2)

    (fetched,) = source.fetch(make_spec("single", "single_rps"), start, end)

    values = fetched.values
    assert values is not None
    assert fetched.name == fetched.family == "single"
    assert fetched.labels == {}
    assert str(pd.DatetimeIndex(values.index).tz) == "UTC"
    assert values.index.is_monotonic_increasing and not values.index.has_duplicates
    # Every backfilled sample comes back, at its own timestamp, with its value.
    pd.testing.assert_series_equal(
        values.reindex(series.index), series.astype(float), check_names=False
    )
    # The only extra points are the 8 grid points inside the trace's 10-minute gaps,
    # where Prometheus' 5-minute lookback repeats the previous sample.
    grid = pd.date_range(series.index[0], series.index[-1], freq=STEP)
    assert values.index.equals(grid)
    gaps = grid.difference(pd.DatetimeIndex(series.index))
    assert len(gaps) == 8
    assert (values[gaps].to_numpy() == series.reindex(grid).ffill()[gaps].to_numpy()).all()
    # Several chunks, none over the limit, no grid point fetched twice.
    assert len(chunks) == 9
    assert all(points <= 500 for _, _, points in chunks)
    assert sum(points for _, _, points in chunks) == len(values)
    for (_, previous_end, _), (next_start, _, _) in zip(chunks, chunks[1:], strict=False):
        assert next_start - previous_end == STEP


@pytest.mark.integration
def test_split_by_returns_one_named_series_per_label_set(prometheus: PromServer) -> None:
    series = trace()
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))
    start, end = series.index[-288].to_pydatetime(), series.index[-1].to_pydatetime()

    fetched = source.fetch(make_spec("elb", "elb_requests", split_by=("route",)), start, end)

    assert [f.name for f in fetched] == [
        member_name("elb", {"route": "/a"}),
        member_name("elb", {"route": "/b"}),
    ]
    assert [f.name for f in fetched] == ['elb{route="/a"}', 'elb{route="/b"}']
    assert all(f.family == "elb" for f in fetched)
    assert [f.labels for f in fetched] == [{"route": "/a"}, {"route": "/b"}]
    expected = series[start:end]
    for member, offset in zip(fetched, (0.0, 0.25), strict=True):
        assert member.values is not None
        got = member.values.reindex(expected.index)
        assert (got.to_numpy() == expected.to_numpy() + offset).all()


@pytest.mark.integration
def test_two_series_without_split_by_is_a_query_error(prometheus: PromServer) -> None:
    series = trace()
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))
    end = series.index[-1].to_pydatetime()

    with pytest.raises(SourceQueryError) as caught:
        source.fetch(make_spec("elb", "elb_requests"), end - timedelta(hours=1), end)

    message = str(caught.value)
    assert "'elb_requests'" in message
    assert 'route="/a"' in message and 'route="/b"' in message
    assert "2 series" in message


@pytest.mark.integration
def test_series_lacking_a_split_by_label_is_a_query_error(prometheus: PromServer) -> None:
    end = trace().index[-1].to_pydatetime()
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))

    with pytest.raises(
        SourceQueryError, match=r"without split_by label\(s\) \['route'\]"
    ) as caught:
        source.fetch(make_spec("p", "partial", split_by=("route",)), end - timedelta(hours=1), end)

    assert "'partial'" in str(caught.value)
    assert 'zone="eu"' in str(caught.value)
    assert 'select only series that have it ({route!=""}' in str(caught.value)


@pytest.mark.integration
def test_a_split_by_label_the_query_aggregates_away_is_named_as_such(
    prometheus: PromServer,
) -> None:
    end = trace().index[-1].to_pydatetime()
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))
    spec = make_spec("e", "sum by (route) (elb_requests)", split_by=("zone",))

    with pytest.raises(SourceQueryError) as caught:
        source.fetch(spec, end - timedelta(hours=1), end)

    message = str(caught.value)
    assert "No series has 'zone': the query's aggregation must keep it" in message
    assert "leaves out a label whose value is empty" not in message


@pytest.mark.integration
def test_label_values_in_errors_are_escaped_as_promql_writes_them(prometheus: PromServer) -> None:
    """A value holding quotes and a comma read as two labels: {route="say "hi", b="c"}."""
    end = trace().index[-1].to_pydatetime()
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))

    with pytest.raises(SourceQueryError) as caught:
        source.fetch(make_spec("q", "quoted", split_by=("route",)), end - timedelta(hours=1), end)

    assert '{__name__="quoted", route="say \\"hi\\", b=\\"c"}' in str(caught.value)


@pytest.mark.integration
def test_two_series_with_the_same_split_label_set_is_a_query_error(
    prometheus: PromServer,
) -> None:
    end = trace().index[-1].to_pydatetime()
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))

    with pytest.raises(SourceQueryError, match=r'split_by label set \{route="/a"\}') as caught:
        source.fetch(make_spec("d", "dup", split_by=("route",)), end - timedelta(hours=1), end)

    assert 'instance="1"' in str(caught.value) and 'instance="2"' in str(caught.value)


@pytest.mark.integration
def test_query_matching_nothing_returns_no_series(prometheus: PromServer) -> None:
    end = trace().index[-1].to_pydatetime()
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))

    assert source.fetch(make_spec("n", "no_such_metric"), end - timedelta(hours=1), end) == []


@pytest.mark.integration
def test_promql_syntax_error_is_a_clear_query_error_without_retries(
    prometheus: PromServer,
) -> None:
    end = trace().index[-1].to_pydatetime()
    sleeps = SleepRecorder()
    source = PrometheusSource(PrometheusSettings(url=prometheus.url, retries=3), sleep=sleeps)

    with pytest.raises(SourceQueryError) as caught:
        source.fetch(make_spec("bad", "sum(elb_requests"), end - timedelta(hours=1), end)

    message = str(caught.value)
    assert "'sum(elb_requests'" in message
    assert "HTTP 400" in message and "bad_data" in message and "parse error" in message
    assert prometheus.url in message
    assert sleeps.delays == []


@pytest.mark.integration
def test_unreachable_prometheus_is_unavailable_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sleeps = SleepRecorder()
    settings = PrometheusSettings(url=url, retries=2, backoff_seconds=0.01, timeout_seconds=1)
    source = PrometheusSource(settings, sleep=sleeps)
    end = datetime.now(UTC)

    with pytest.raises(SourceUnavailable) as caught:
        source.fetch(make_spec("x", "up"), end - timedelta(hours=1), end)

    message = str(caught.value)
    assert url in message and "'up'" in message and "after 3 attempt(s)" in message
    assert "ConnectionError" in message
    assert sleeps.delays == [0.01, 0.02]


@pytest.mark.integration
def test_a_password_in_the_url_is_masked_in_every_error(prometheus: PromServer) -> None:
    """Basic auth as user info in the URL: the password was in every failed ingest's
    message (logs, job runs, ``forecaster status``), as the store's URL is not."""
    host = prometheus.url.removeprefix("http://")
    wrong_path = f"http://ops:s3cret-pw@{host}/not-the-api"  # Prometheus answers 404
    nobody = f"http://ops:s3cret-pw@127.0.0.1:{free_port()}"  # nothing listens there
    end = datetime.now(UTC)
    for url in (wrong_path, nobody):
        settings = PrometheusSettings(url=url, retries=0, timeout_seconds=2)
        with pytest.raises((SourceUnavailable, SourceQueryError)) as caught:
            PrometheusSource(settings).fetch(make_spec("x", "up"), end - timedelta(hours=1), end)
        message = str(caught.value)
        assert "s3cret-pw" not in message, message
        assert "ops:***@" in message, message

    # the credentials themselves are still sent
    settings = PrometheusSettings(url=f"http://ops:s3cret-pw@{host}")
    got = PrometheusSource(settings).fetch(
        make_spec("s", "single_rps"), end - timedelta(hours=1), end
    )
    assert [item.name for item in got] == ["s"]


@pytest.mark.integration
def test_a_partial_answer_is_not_taken_as_the_whole_history(tmp_path: Path) -> None:
    """A Prometheus whose remote-read store fails answers from its own TSDB alone and
    says so only in "warnings", which were dropped: a first ingest stored the partial
    history as complete, and later ingests never read that range again."""
    series = {"single_rps": trace().iloc[-24:]}
    dead_store = f"http://127.0.0.1:{free_port()}/read"  # nothing listens there
    remote = f"remote_read:\n  - url: {dead_store}\n    read_recent: true\n"
    end = trace().index[-1].to_pydatetime()
    with running_prometheus(tmp_path, series, config=remote) as prom:
        sleeps = SleepRecorder()
        settings = PrometheusSettings(url=prom.url, retries=1, backoff_seconds=0.01)
        with pytest.raises(SourceUnavailable) as caught:
            PrometheusSource(settings, sleep=sleeps).fetch(
                make_spec("s", "single_rps"), end - timedelta(hours=1), end
            )

    message = str(caught.value)
    assert "partial" in message and "remote_read" in message and dead_store in message
    assert "'single_rps'" in message and "after 2 attempt(s)" in message
    assert sleeps.delays == [0.01]


@pytest.mark.integration
def test_checking_a_query_refuses_what_ingestion_would_have_refused(
    prometheus: PromServer,
) -> None:
    """A reload checked new queries with an instant query, which answers a string
    expression; ingestion's range queries refuse it, so it failed every ingest after."""
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))

    assert source.check_query("sum(single_rps)") is None
    assert source.check_query("sum(rate(single_rps[5m])) > bool 0 or vector(0)") is None
    parse = source.check_query("sum(single_rps")
    assert parse is not None and "parse error" in parse
    string = source.check_query('"5m"')
    assert string is not None and "range query" in string
    end = trace().index[-1].to_pydatetime()
    with pytest.raises(SourceQueryError, match="range query"):
        source.fetch(make_spec("s", '"5m"'), end - timedelta(hours=1), end)


# -- fake Prometheus on loopback -----------------------------------------------------

Responder = Callable[[dict[str, str]], tuple[int, str]]


@dataclass
class FakePrometheus:
    """A loopback HTTP server answering /api/v1/query_range from canned responses."""

    url: str
    responses: list[tuple[int, str] | Responder] = field(default_factory=list)
    requests: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)

    def reply(self, status: int, body: Any) -> None:
        self.responses.append((status, body if isinstance(body, str) else json.dumps(body)))


@pytest.fixture
def fake_prometheus() -> Iterator[FakePrometheus]:
    yield from _serve_fake(None)


def _serve_fake(context: ssl.SSLContext | None) -> Iterator[FakePrometheus]:
    scheme = "https" if context else "http"
    fake = FakePrometheus(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            params = {key: values[0] for key, values in parse_qs(parsed.query).items()}
            fake.requests.append((params, dict(self.headers.items())))
            if parsed.path != "/api/v1/query_range" or not fake.responses:
                status, body = 599, "unexpected request to the fake Prometheus"
            else:
                answer = fake.responses.pop(0)
                status, body = answer(params) if callable(answer) else answer
            payload = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    fake.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def matrix(*series: tuple[dict[str, str], list[list[Any]]]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": labels, "values": values} for labels, values in series],
        },
    }


T0 = 1_700_000_100  # a multiple of 300 s
HOUR = (datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 3600, UTC))


def test_server_error_then_success_is_retried(fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.reply(503, {"status": "error", "errorType": "unavailable", "error": "busy"})
    fake_prometheus.reply(502, "Bad Gateway")
    fake_prometheus.reply(200, matrix(({}, [[T0, "1.5"], [T0 + 300, "2"]])))
    sleeps = SleepRecorder()
    settings = PrometheusSettings(url=fake_prometheus.url, retries=3, backoff_seconds=0.5)

    (fetched,) = PrometheusSource(settings, sleep=sleeps).fetch(make_spec("s", "up"), *HOUR)

    assert fetched.values is not None
    assert fetched.values.tolist() == [1.5, 2.0]
    assert sleeps.delays == [0.5, 1.0]
    assert len(fake_prometheus.requests) == 3


def test_persistent_server_errors_are_unavailable_with_the_prometheus_text(
    fake_prometheus: FakePrometheus,
) -> None:
    # (a timeout is answered by smaller chunks: see the test after this one)
    for _ in range(3):
        fake_prometheus.reply(503, {"status": "error", "errorType": "unavailable", "error": "down"})
    sleeps = SleepRecorder()
    settings = PrometheusSettings(url=fake_prometheus.url, retries=2, backoff_seconds=0.1)

    with pytest.raises(
        SourceUnavailable, match=r"after 3 attempt\(s\): HTTP 503: unavailable: down"
    ):
        PrometheusSource(settings, sleep=sleeps).fetch(make_spec("s", "up"), *HOUR)

    assert sleeps.delays == [0.1, 0.2]


def _slow_over(steps: int, *, stall: float = 0.0) -> Responder:
    """Answers ranges of at most ``steps`` steps (value: the timestamp); longer ones time
    out: Prometheus' own timeout error, or, with ``stall``, no answer for that long."""

    def answer(params: dict[str, str]) -> tuple[int, str]:
        start, end, step = int(params["start"]), int(params["end"]), int(params["step"][:-1])
        if (end - start) // step + 1 > steps:
            if stall:
                time.sleep(stall)
            error = "query timed out in expression evaluation"
            return 503, json.dumps({"status": "error", "errorType": "timeout", "error": error})
        values = [[t, str(t)] for t in range(start, end + 1, step)]
        return 200, json.dumps(matrix(({}, values)))

    return answer


@pytest.mark.parametrize("stall", [0.0, 1.5], ids=["prometheus-timeout", "no-answer"])
def test_a_range_that_times_out_is_fetched_in_smaller_chunks(
    fake_prometheus: FakePrometheus, caplog: pytest.LogCaptureFixture, stall: float
) -> None:
    """A heavy query over a first ingest's whole history timed out on every attempt, so
    the series never got any history; a few steps at a time answer in time."""
    responder = _slow_over(3, stall=stall)
    fake_prometheus.responses.extend([responder] * 20)
    sleeps = SleepRecorder()
    settings = PrometheusSettings(url=fake_prometheus.url, timeout_seconds=0.5, retries=1)

    with caplog.at_level(logging.WARNING, logger="forecaster.sources.prometheus"):
        (got,) = PrometheusSource(settings, sleep=sleeps).fetch(make_spec("s", "up"), *HOUR)

    assert got.values is not None
    assert [int(v) for v in got.values] == list(range(T0, T0 + 3601, 300))
    spans = [(int(p["end"]) - int(p["start"])) // 300 + 1 for p, _ in fake_prometheus.requests]
    # 13 steps time out, 6 too, then chunks of 3 (never larger again), the last of 1
    assert spans == [13, 6, 3, 3, 3, 3, 1]
    assert caplog.text.count("retrying in chunks of") == 2 and sleeps.delays == []


def test_a_single_step_that_times_out_is_unavailable_after_the_retries(
    fake_prometheus: FakePrometheus,
) -> None:
    fake_prometheus.responses.extend([_slow_over(0)] * 3)
    sleeps = SleepRecorder()
    settings = PrometheusSettings(url=fake_prometheus.url, retries=2, backoff_seconds=0.1)
    one_step = (HOUR[0], HOUR[0])

    with pytest.raises(SourceUnavailable, match=r"after 3 attempt\(s\): HTTP 503: timeout"):
        PrometheusSource(settings, sleep=sleeps).fetch(make_spec("s", "up"), *one_step)

    assert sleeps.delays == [0.1, 0.2]


def test_garbage_json_is_a_query_error(fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.reply(200, "<html>login required</html>")
    settings = PrometheusSettings(url=fake_prometheus.url)

    with pytest.raises(SourceQueryError, match="not JSON") as caught:
        PrometheusSource(settings).fetch(make_spec("s", "up"), *HOUR)

    assert fake_prometheus.url in str(caught.value) and "'up'" in str(caught.value)
    # "Expecting value: line 1 column 1 (char 0)" did not say it was a login page
    assert "(an HTML page: a login or proxy page?): '<html>login required</html>'" in str(
        caught.value
    )
    assert "really the Prometheus API?" in str(caught.value)


def test_json_without_data_result_is_a_query_error(fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.reply(200, {"hello": "world"})

    with pytest.raises(SourceQueryError, match="without data.result"):
        PrometheusSource(PrometheusSettings(url=fake_prometheus.url)).fetch(
            make_spec("s", "up"), *HOUR
        )


def test_an_error_answered_with_http_200_keeps_its_text(fake_prometheus: FakePrometheus) -> None:
    """Some proxies answer a refused query with HTTP 200 and an error body: the
    message said only "without data.result (missing 'data')"."""
    fake_prometheus.reply(
        200, {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}
    )

    with pytest.raises(SourceQueryError) as caught:
        PrometheusSource(PrometheusSettings(url=fake_prometheus.url)).fetch(
            make_spec("s", "up{"), *HOUR
        )

    assert "rejected query 'up{'" in str(caught.value)
    assert "(HTTP 200): bad_data: parse error at char 4" in str(caught.value)
    assert len(fake_prometheus.requests) == 1  # a verdict on the query: not retried


def test_promql_warnings_are_logged_once_and_the_answer_kept(
    fake_prometheus: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    # PromQL's annotations are about the query, not missing data (Prometheus >= 2.46)
    note = 'PromQL info: metric might not be a counter, name does not end in _total: "up"'
    answer = matrix(({}, [[T0, "1"], [T0 + 300, "2"]]))
    for _ in range(2):
        fake_prometheus.reply(200, {**answer, "warnings": [note]})
    source = PrometheusSource(PrometheusSettings(url=fake_prometheus.url))

    with caplog.at_level(logging.WARNING, logger="forecaster.sources.prometheus"):
        first = source.fetch(make_spec("s", "rate(up[5m])"), *HOUR)
        again = source.fetch(make_spec("s", "rate(up[5m])"), *HOUR)

    for got in (first, again):
        assert [item.values.tolist() for item in got if item.values is not None] == [[1.0, 2.0]]
    assert caplog.text.count("might not be a counter") == 1
    assert "rate(up[5m])" in caplog.text


def test_unprocessable_query_is_a_query_error_with_the_prometheus_text(
    fake_prometheus: FakePrometheus,
) -> None:
    # ("too many samples" is retried in smaller chunks: see test_prometheus_chunking)
    duplicate = "vector cannot contain metrics with the same labelset"
    fake_prometheus.reply(422, {"status": "error", "errorType": "execution", "error": duplicate})

    with pytest.raises(SourceQueryError, match=f"HTTP 422.*execution: {duplicate}"):
        PrometheusSource(PrometheusSettings(url=fake_prometheus.url)).fetch(
            make_spec("s", "up"), *HOUR
        )


def test_nan_stale_and_infinite_values_are_dropped(
    fake_prometheus: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    values = [
        [T0, "1"],
        [T0 + 300, "NaN"],  # stale markers also arrive as "NaN"
        [T0 + 600, "+Inf"],
        [T0 + 900, "-Inf"],
        [T0 + 1200, "2.5"],
        [T0 + 1500, "nan"],
    ]
    fake_prometheus.reply(200, matrix(({}, values)))

    with caplog.at_level(logging.WARNING, logger="forecaster.sources.prometheus"):
        (fetched,) = PrometheusSource(PrometheusSettings(url=fake_prometheus.url)).fetch(
            make_spec("s", "up"), *HOUR
        )

    # the README promised a warning for these too; only values beyond 1e100 had one
    (record,) = caplog.records
    assert "dropped 4 sample(s) of {} that are NaN, infinite or larger than 1e+100" in (
        record.getMessage()
    )
    assert "(first NaN at 2023-11-14T22:20:00+00:00)" in record.getMessage()
    assert fetched.values is not None
    assert fetched.values.dtype == float
    assert fetched.values.to_dict() == {
        pd.Timestamp(T0, unit="s", tz="UTC"): 1.0,
        pd.Timestamp(T0 + 1200, unit="s", tz="UTC"): 2.5,
    }
    assert str(pd.DatetimeIndex(fetched.values.index).tz) == "UTC"


def test_values_beyond_1e100_are_dropped_with_a_warning_naming_them(
    fake_prometheus: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    # A broken exporter's 1e305 summed over four weeks overflows the estimators; as
    # missing data it is filled by cleaning and the fetch (and the rest) goes on.
    values = [[T0, "1"], [T0 + 300, "1e305"], [T0 + 600, "-2e101"], [T0 + 900, "1e100"]]
    fake_prometheus.reply(200, matrix(({"job": "api"}, values)))

    with caplog.at_level(logging.WARNING, logger="forecaster.sources.prometheus"):
        (fetched,) = PrometheusSource(PrometheusSettings(url=fake_prometheus.url)).fetch(
            make_spec("s", "up"), *HOUR
        )

    assert fetched.values is not None
    assert fetched.values.to_dict() == {
        pd.Timestamp(T0, unit="s", tz="UTC"): 1.0,
        pd.Timestamp(T0 + 900, unit="s", tz="UTC"): 1e100,
    }
    (record,) = caplog.records
    assert record.getMessage() == (
        "query 'up': dropped 2 sample(s) of {job=\"api\"} that are NaN, infinite or larger "
        "than 1e+100 in magnitude (first 1e305 at 2023-11-14T22:20:00+00:00); they are "
        "treated as missing data"
    )


def test_dropped_samples_of_a_family_are_one_warning(
    fake_prometheus: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    """histogram_quantile is NaN for a route without requests: a family of quiet routes
    logged one warning per route per chunk, on every ingest run."""
    quiet = [({"route": f"/r{i:02d}"}, [[T0, "NaN"], [T0 + 300, "NaN"]]) for i in range(25)]
    busy = ({"route": "/busy"}, [[T0, "0.2"], [T0 + 300, "0.3"]])
    fake_prometheus.reply(200, matrix(busy, *quiet))
    spec = make_spec("p95", "histogram_quantile(...)", split_by=("route",))

    with caplog.at_level(logging.WARNING, logger="forecaster.sources.prometheus"):
        fetched = PrometheusSource(PrometheusSettings(url=fake_prometheus.url)).fetch(spec, *HOUR)

    assert len(fetched) == 26
    (record,) = caplog.records
    message = record.getMessage()
    assert "dropped 50 sample(s) of 25 series that are NaN" in message
    assert '{route="/r00"} 2 (first NaN at 2023-11-14T22:15:00+00:00)' in message
    assert message.count("(first NaN") == 10 and "and 15 more series" in message
    assert "/busy" not in message


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ([T0 + 300, "n/a"], r"value 'n/a' for \{\} at 1700000400; expected a number"),
        ([T0 + 300, None], r"value None for \{\} at 1700000400; expected a number"),
        (["+Inf", "2"], r"timestamp '\+Inf' for \{\}, expected Unix seconds"),
        ([1e300, "2"], r"timestamp 1e\+300 for \{\}, expected Unix seconds"),
    ],
    ids=["text-value", "null-value", "infinite-stamp", "huge-stamp"],
)
def test_malformed_samples_are_query_errors_not_dropped_or_crashes(
    fake_prometheus: FakePrometheus, sample: list[Any], message: str
) -> None:
    # Only NaN and infinities are dropped; anything that is not a number at all means
    # the answer is not from a Prometheus (or is corrupt) and is refused, naming it.
    fake_prometheus.reply(200, matrix(({}, [[T0, "1"], sample])))

    with pytest.raises(SourceQueryError, match=message):
        PrometheusSource(PrometheusSettings(url=fake_prometheus.url)).fetch(
            make_spec("s", "up"), *HOUR
        )


@pytest.mark.parametrize(
    "result",
    [
        [{"metric": {}, "value": [T0, "1"]}],  # an instant vector
        [T0, "1"],  # a scalar
        {"metric": {}, "values": []},  # not a list
    ],
    ids=["vector", "scalar", "object"],
)
def test_non_matrix_results_are_query_errors(fake_prometheus: FakePrometheus, result: Any) -> None:
    fake_prometheus.reply(200, {"status": "success", "data": {"result": result}})

    with pytest.raises(SourceQueryError, match=r"'up'.*matrix"):
        PrometheusSource(PrometheusSettings(url=fake_prometheus.url)).fetch(
            make_spec("s", "up"), *HOUR
        )


def test_chunks_are_stitched_without_duplicated_boundary_points(
    fake_prometheus: FakePrometheus,
) -> None:
    def overlapping(params: dict[str, str]) -> tuple[int, str]:
        # Misbehave on purpose: also answer the grid point before the chunk.
        start, end, step = int(params["start"]), int(params["end"]), int(params["step"][:-1])
        points = [[t, str(t)] for t in range(start - step, end + 1, step)]
        return 200, json.dumps(matrix(({"job": "a"}, points)))

    fake_prometheus.responses.extend([overlapping] * 3)
    settings = PrometheusSettings(url=fake_prometheus.url, max_points_per_query=10)
    start = datetime.fromtimestamp(T0 - 100, UTC)  # not on the grid: first point is T0
    end = datetime.fromtimestamp(T0 + 24 * 300 + 50, UTC)

    (fetched,) = PrometheusSource(settings).fetch(make_spec("s", "up"), start, end)

    windows = [(int(p["start"]), int(p["end"])) for p, _ in fake_prometheus.requests]
    assert windows == [
        (T0, T0 + 9 * 300),
        (T0 + 10 * 300, T0 + 19 * 300),
        (T0 + 20 * 300, T0 + 24 * 300),
    ]
    assert fetched.values is not None
    expected_stamps = list(range(T0 - 300, T0 + 24 * 300 + 1, 300))
    assert fetched.values.tolist() == [float(t) for t in expected_stamps]
    assert not fetched.values.index.has_duplicates


def test_requests_carry_timeout_step_and_bearer_token(
    fake_prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests

    timeouts: list[Any] = []
    original = requests.Session.request

    def spy(self: requests.Session, *args: Any, **kwargs: Any) -> Any:
        timeouts.append(kwargs.get("timeout"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    fake_prometheus.reply(200, matrix())
    settings = PrometheusSettings(
        url=fake_prometheus.url, timeout_seconds=7.5, bearer_token="s3cr3t-value"
    )

    assert PrometheusSource(settings).fetch(make_spec("s", "sum(up)"), *HOUR) == []

    ((params, headers),) = fake_prometheus.requests
    assert headers["Authorization"] == "Bearer s3cr3t-value"
    assert params["query"] == "sum(up)"
    assert params["step"] == "300s"
    assert params["timeout"] == "7.5"
    assert (params["start"], params["end"]) == (str(T0), str(T0 + 3600))
    assert timeouts == [7.5]


def test_user_info_in_the_url_is_sent_as_basic_auth(fake_prometheus: FakePrometheus) -> None:
    import base64

    fake_prometheus.reply(200, matrix())
    url = fake_prometheus.url.replace("http://", "http://ops:s3cret-pw@")

    assert PrometheusSource(PrometheusSettings(url=url)).fetch(make_spec("s", "up"), *HOUR) == []

    ((_, headers),) = fake_prometheus.requests
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"ops:s3cret-pw").decode()


def test_non_whole_second_step_is_refused() -> None:
    spec = make_spec("s", "up").model_copy(update={"step": timedelta(seconds=1.5)})

    with pytest.raises(SourceQueryError, match="whole number of seconds"):
        PrometheusSource(PrometheusSettings()).fetch(spec, *HOUR)


def test_constructing_a_source_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with PrometheusSource(PrometheusSettings(url="http://127.0.0.1:1")) as source:
        assert source.settings.url == "http://127.0.0.1:1"


# -- TLS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (generated, not downloaded)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_prometheus(tls_files: tuple[Path, Path]) -> Iterator[FakePrometheus]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    yield from _serve_fake(context)


def test_tls_is_verified_against_the_configured_ca_file(
    tls_prometheus: FakePrometheus, tls_files: tuple[Path, Path]
) -> None:
    tls_prometheus.reply(200, matrix(({}, [[T0, "3"]])))
    sleeps = SleepRecorder()

    with pytest.raises(SourceUnavailable, match="TLS handshake"):
        PrometheusSource(PrometheusSettings(url=tls_prometheus.url), sleep=sleeps).fetch(
            make_spec("s", "up"), *HOUR
        )
    assert sleeps.delays == []  # a certificate problem is not retried

    settings = PrometheusSettings(url=tls_prometheus.url, ca_file=tls_files[0])
    (fetched,) = PrometheusSource(settings).fetch(make_spec("s", "up"), *HOUR)
    assert fetched.values is not None and fetched.values.tolist() == [3.0]


def test_member_names_escape_label_values_so_label_sets_never_collide() -> None:
    """``a='x",b="y'`` with ``b="z"`` and ``a="x"`` with ``b='y",b="z'`` wrote one name:
    their data went to one series, the other member's lost."""
    first = member_name("m", {"a": 'x",b="y', "b": "z"})
    second = member_name("m", {"a": "x", "b": 'y",b="z'})
    assert first != second
    assert first == 'm{a="x\\",b=\\"y",b="z"}'
    assert member_name("m", {"r": "/b\\s", "n": "two\nlines"}) == 'm{n="two\\nlines",r="/b\\\\s"}'


def test_masking_secrets_in_errors_leaves_text_readable() -> None:
    """A short password replaced everywhere turned every "a" of a message into "***"."""
    short = PrometheusSource(PrometheusSettings(url="http://ops:a@127.0.0.1:9"))
    long = PrometheusSource(PrometheusSettings(url="http://ops:s3cret@127.0.0.1:9"))

    assert short._masked("a bad answer") == "a bad answer"
    assert short.shown_url == "http://ops:***@127.0.0.1:9"
    assert long._masked("refused s3cret at a") == "refused *** at a"
