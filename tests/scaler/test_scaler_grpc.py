"""The KEDA external scaler over loopback: a real gRPC server and a client from the same .proto."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from forecaster.errors import InputDataError
from forecaster.scaler import externalscaler_pb2 as pb2
from forecaster.scaler import externalscaler_pb2_grpc as pb2_grpc
from forecaster.scaler.server import ScalerHandle, parse_metadata, start_scaler
from tests.support.scaling_seed import STEP
from tests.support.scaling_seed import seed as seed_store

pytestmark = pytest.mark.integration


def seed(settings: Any, **kwargs: Any) -> datetime:
    """Series ``rps`` (see :func:`tests.support.scaling_seed.seed`) and ``empty`` (nothing)."""
    return seed_store(settings, name="rps", **kwargs)


def start(settings: Any, **kwargs: Any) -> ScalerHandle:
    handle = start_scaler(
        settings,
        host="127.0.0.1",
        port=0,
        refresh_seconds=0.2,
        stream_interval_seconds=0.1,
        **kwargs,
    )
    deadline = time.monotonic() + 10
    while handle.view.state.refreshed_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return handle


@pytest.fixture
def seeded(make_settings: Any, db_url: str) -> tuple[Any, datetime]:
    settings = make_settings(db=db_url)
    return settings, seed(settings)


@pytest.fixture
def origin(seeded: tuple[Any, datetime]) -> datetime:
    return seeded[1]


@pytest.fixture
def scaler(seeded: tuple[Any, datetime]) -> Iterator[ScalerHandle]:
    handle = start(seeded[0])
    wait_for_observations(handle)
    yield handle
    handle.stop()


def wait_for_observations(handle: ScalerHandle) -> None:
    deadline = time.monotonic() + 10
    observations = handle.servicer.observations
    assert observations is not None
    while observations.get("rps") is None and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def stub(scaler: ScalerHandle) -> Iterator[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{scaler.port}") as channel:
        yield pb2_grpc.ExternalScalerStub(channel)


def ref(name: str = "web", **metadata: str) -> Any:
    meta = {"scalerAddress": "forecaster:50051", "series": "rps", "targetPerReplica": "50"}
    meta.update(metadata)
    return pb2.ScaledObjectRef(
        name=name, namespace="shop", scalerMetadata={k: v for k, v in meta.items() if v != ""}
    )


def metrics(stub: Any, object_ref: Any, metric: str = "s0-forecast-rps") -> float:
    response = stub.GetMetrics(
        pb2.GetMetricsRequest(scaledObjectRef=object_ref, metricName=metric), timeout=5
    )
    (value,) = response.metricValues
    assert value.metricName == metric
    assert math.isfinite(value.metricValueFloat) and value.metricValueFloat > 0
    assert value.metricValue == math.ceil(value.metricValueFloat)
    return float(value.metricValueFloat)


def error_of(call: Any, *args: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call(*args, timeout=5)
        if hasattr(result, "__next__"):
            next(result)
    return info.value


def test_metric_spec_from_metadata(stub: Any) -> None:
    response = stub.GetMetricSpec(ref(targetPerReplica="12.5"), timeout=5)
    (spec,) = response.metricSpecs
    assert spec.metricName == "forecast-rps"
    assert spec.targetSizeFloat == 12.5
    assert spec.targetSize == 12


def test_metric_is_forecast_peak_over_the_lead_time(stub: Any, origin: datetime) -> None:
    # yhat at step i is 200 + 10 i; quantile 0.5 is yhat exactly; the window covers the
    # current step and everything up to now + lead (steps counted from the seeded
    # origin: recomputing it here failed when a 5-minute boundary passed after seeding).
    now = datetime.now(UTC)
    last_step = int((now + timedelta(minutes=30) - origin) / STEP)
    value = metrics(stub, ref(leadTime="30m", quantile="0.5"))
    assert value == pytest.approx(200.0 + 10 * last_step)
    upper = metrics(stub, ref(name="api", leadTime="30m", quantile="0.95"))
    assert upper == pytest.approx(260.0 + 10 * last_step)
    middle = metrics(stub, ref(name="batch", leadTime="30m", quantile="0.9"))
    assert value < middle < upper
    # default lead time 5m covers fewer steps, so a lower peak
    assert metrics(stub, ref(name="short", quantile="0.5")) < value


def test_metric_never_below_observed_load(make_settings: Any) -> None:
    settings = make_settings()
    seed(settings, observed=900.0)
    handle = start(settings)
    wait_for_observations(handle)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.ExternalScalerStub(channel)
            assert metrics(stub, ref(quantile="0.5")) == pytest.approx(900.0)
    finally:
        handle.stop()


def test_replica_clamps_shape_the_metric(stub: Any) -> None:
    # min 20 replicas of 50 = 1000 > forecast: the metric makes the HPA run 20
    assert metrics(stub, ref(name="a", minReplicas="20")) == pytest.approx(1000.0)
    # max 2 replicas: the metric asks for exactly 2
    assert metrics(stub, ref(name="b", maxReplicas="2")) == pytest.approx(100.0)


def test_scale_down_is_stabilised_per_trigger(stub: Any) -> None:
    """Each trigger has its own planner: a second trigger on the same series in the
    same ScaledObject (a shorter lead) replaced the first one's planner, and the first
    then dropped from 30 to 20 replicas at once, skipping its scale-down window."""
    # KEDA names the metric of its N-th trigger s<N>-...
    high = metrics(stub, ref(name="w", leadTime="1h", quantile="0.5"), "s0-forecast-rps")
    short = metrics(stub, ref(name="w", leadTime="5m", quantile="0.5"), "s1-forecast-rps")
    assert short < high  # the other trigger plans for its own lead
    again = metrics(stub, ref(name="w", leadTime="1h", quantile="0.5"), "s0-forecast-rps")
    assert again == pytest.approx(high)
    # a different ScaledObject with the short lead gets the lower value too
    assert metrics(stub, ref(name="fresh", leadTime="5m", quantile="0.5")) == pytest.approx(short)


def test_is_active_and_stream(stub: Any) -> None:
    assert stub.IsActive(ref(), timeout=5).result is True
    # opt-in scale-to-zero: inactive when the planned load is under the threshold
    assert stub.IsActive(ref(activationThreshold="100000"), timeout=5).result is False
    assert stub.IsActive(ref(activationThreshold="10"), timeout=5).result is True
    stream = stub.StreamIsActive(ref(), timeout=10)
    answers = [next(stream).result for _ in range(3)]
    stream.cancel()
    assert answers == [True, True, True]


@pytest.mark.parametrize(
    ("metadata", "needle"),
    [
        ({"series": ""}, "'series' is required"),
        ({"targetPerReplica": ""}, "'targetPerReplica' is required"),
        ({"targetPerReplica": "lots"}, "targetPerReplica='lots' is not a number"),
        ({"targetPerReplica": "0"}, "must be > 0"),
        ({"targetPerReplica": "nan"}, "must be finite"),
        ({"leadTime": "soon"}, "leadTime"),
        ({"quantile": "1.5"}, "quantile='1.5'"),
        ({"minReplicas": "2.5"}, "minReplicas"),
        ({"minReplicas": "5", "maxReplicas": "2"}, "maxReplicas='2' must be at least 1 and at "),
        ({"maxReplicas": "0"}, "maxReplicas='0' must be at least 1 and at least minReplicas (1, "),
        ({"minReplicas": "1e21"}, "minReplicas='1e21' must be a whole number from 0"),
        ({"maxReplicas": "2147483648"}, "maxReplicas"),
        ({"targetPerReplica": "1e300", "minReplicas": "2000000000"}, "min_replicas x target"),
        ({"leadTime": "99999999999999999999999w"}, "leadTime"),
        ({"scaleDownWindow": "99999999999999999999999w"}, "scaleDownWindow"),
        # 0 turns the window off: "must be positive" read as if 0 were refused too
        ({"scaleDownWindow": "-1m"}, "scaleDownWindow: must be 0 (off) or positive"),
        ({"leadTime": "-5m"}, "leadTime: must be positive"),
        ({"activationThreshold": "-1"}, "activationThreshold"),
        ({"errorHeadroom": "-1"}, "errorHeadroom='-1' must be from 0 to 100"),
        ({"errorHeadroom": "1e308"}, "errorHeadroom='1e308' must be from 0 to 100"),
    ],
)
def test_invalid_metadata_is_invalid_argument_everywhere(
    stub: Any, metadata: dict[str, str], needle: str
) -> None:
    object_ref = ref(**metadata)
    for call, arg in (
        (stub.GetMetricSpec, object_ref),
        (stub.IsActive, object_ref),
        (stub.StreamIsActive, object_ref),
        (stub.GetMetrics, pb2.GetMetricsRequest(scaledObjectRef=object_ref, metricName="m")),
    ):
        error = error_of(call, arg)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in error.details() and "shop/web" in error.details()


def test_extreme_targets_answer_within_the_wire_types(stub: Any) -> None:
    """A target past int64 fit the double field but broke the deprecated int64 one
    (UNKNOWN); a tiny one overflowed load / target to inf (INTERNAL)."""
    (spec,) = stub.GetMetricSpec(ref(targetPerReplica="1e19"), timeout=5).metricSpecs
    assert spec.targetSizeFloat == 1e19 and spec.targetSize == 2**63 - 1
    assert metrics(stub, ref(targetPerReplica="1e19")) > 0
    (spec,) = stub.GetMetricSpec(ref(targetPerReplica="0.001"), timeout=5).metricSpecs
    assert spec.targetSizeFloat == 0.001
    assert metrics(stub, ref(name="finest", targetPerReplica="0.001")) > 0


@pytest.mark.parametrize("target", ["1e-320", "5e-324", "0.0004", "0.0015"])
def test_targets_finer_than_kedas_thousandths_are_refused(stub: Any, target: str) -> None:
    """KEDA passes the target to the HPA in thousandths: 0.0004 became 0 (the HPA
    refused it and no fallback applied), 0.0015 became 0.001 or 0.002."""
    error = error_of(stub.GetMetricSpec, ref(targetPerReplica=target))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "finer than the 0.001 KEDA passes to the HPA" in error.details()


def test_blank_durations_take_their_defaults() -> None:
    """Like the blank numbers: whitespace (an unset Helm value) is the default."""
    meta = parse_metadata(
        {"series": "a", "targetPerReplica": "10", "leadTime": "  ", "scaleDownWindow": " "}
    )
    assert meta.query.lead_seconds == 300
    assert meta.query.policy.scale_down_window_seconds == 300


def test_quantile_outside_the_published_interval(stub: Any) -> None:
    request = pb2.GetMetricsRequest(scaledObjectRef=ref(quantile="0.99"), metricName="m")
    error = error_of(stub.GetMetrics, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "90% interval" in error.details() and "0.95" in error.details()


@pytest.mark.parametrize(
    ("series", "code", "needle"),
    [
        ("nope", grpc.StatusCode.NOT_FOUND, "unknown series 'nope'"),
        ("empty", grpc.StatusCode.FAILED_PRECONDITION, "no published forecast"),
    ],
)
def test_unknown_series_and_missing_forecast(
    stub: Any, series: str, code: grpc.StatusCode, needle: str
) -> None:
    object_ref = ref(series=series)
    # the spec still answers: it depends on metadata alone
    assert stub.GetMetricSpec(object_ref, timeout=5).metricSpecs[0].targetSizeFloat == 50
    for call, arg in (
        (stub.IsActive, object_ref),
        (stub.StreamIsActive, object_ref),
        (stub.GetMetrics, pb2.GetMetricsRequest(scaledObjectRef=object_ref, metricName="m")),
    ):
        error = error_of(call, arg)
        assert error.code() == code and needle in error.details()


def test_a_huge_series_name_keeps_its_error_code(stub: Any) -> None:
    """The message echoes the name; 200 KB of it overflowed the trailer that carries the
    details, and the client saw RESOURCE_EXHAUSTED instead of NOT_FOUND."""
    request = pb2.GetMetricsRequest(scaledObjectRef=ref(series="x" * 200_000), metricName="m")
    error = error_of(stub.GetMetrics, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown series 'xxx" in error.details() and len(error.details()) <= 2000


def test_stale_forecast_is_unavailable(make_settings: Any) -> None:
    settings = make_settings(schedule={"stale_after_seconds": 600})
    seed(settings, generated_at=datetime.now(UTC) - timedelta(hours=1))
    handle = start(settings)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.ExternalScalerStub(channel)
            for call, arg in (
                (stub.IsActive, ref()),
                (stub.StreamIsActive, ref()),
                (stub.GetMetrics, pb2.GetMetricsRequest(scaledObjectRef=ref(), metricName="m")),
            ):
                error = error_of(call, arg)
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                assert "older than the 600s staleness bound" in error.details()
    finally:
        handle.stop()


def test_lead_shorter_than_the_gap_to_the_next_step_is_answered(stub: Any) -> None:
    """No point lies in (now - step, now + 1ms]: the next step's forecast answers, not
    UNAVAILABLE 'the publish job is not keeping up' for a fresh forecast."""
    assert metrics(stub, ref(name="short", leadTime="1ms", quantile="0.5")) == 210.0
    assert stub.IsActive(ref(leadTime="1ms"), timeout=5).result is True


def test_lead_beyond_the_published_horizon_is_invalid(stub: Any) -> None:
    """An on-time 2 h forecast cannot serve a 6 h lead: the trigger's leadTime is wrong
    (an error, so KEDA's fallback applies, but not UNAVAILABLE blaming the pipeline)."""
    request = pb2.GetMetricsRequest(scaledObjectRef=ref(leadTime="6h"), metricName="m")
    error = error_of(stub.GetMetrics, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is longer than forecasts of" in error.details()


def test_forecast_from_late_data_is_unavailable(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings()
    seed(settings, behind=timedelta(hours=3))
    handle = start(settings)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.ExternalScalerStub(channel)
            request = pb2.GetMetricsRequest(scaledObjectRef=ref(), metricName="m")
            error = error_of(stub.GetMetrics, request)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "ingestion or publishing is behind" in error.details()
    finally:
        handle.stop()


def test_store_outage_is_unavailable_but_spec_answers(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings()
    seed(settings)
    handle = start(settings)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.ExternalScalerStub(channel)
            assert metrics(stub, ref()) > 0
            engine = handle.view.store.engine
            engine.dispose()
            (tmp_path / "store.db").rename(tmp_path / "moved.db")
            engine.url = engine.url.set(database="/nonexistent/dir/x.db")
            deadline = time.monotonic() + 10
            while handle.view.state.error is None and time.monotonic() < deadline:
                time.sleep(0.05)
            for call, arg in (
                (stub.IsActive, ref()),
                (stub.StreamIsActive, ref()),
                (stub.GetMetrics, pb2.GetMetricsRequest(scaledObjectRef=ref(), metricName="m")),
            ):
                error = error_of(call, arg)
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                assert "store unavailable" in error.details()
            assert stub.GetMetricSpec(ref(), timeout=5).metricSpecs[0].targetSizeFloat == 50
    finally:
        handle.stop()


def test_store_down_at_start_still_serves_the_spec(make_settings: Any) -> None:
    settings = make_settings(db="sqlite:////nonexistent/dir/x.db")
    handle = start_scaler(settings, host="127.0.0.1", port=0, refresh_seconds=0.2)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.ExternalScalerStub(channel)
            assert stub.GetMetricSpec(ref(), timeout=5).metricSpecs[0].metricName
            error = error_of(stub.IsActive, ref())
            assert error.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        handle.stop()


def test_parse_metadata_defaults() -> None:
    meta = parse_metadata({"series": "a/b", "targetPerReplica": "10"})
    assert meta.query.lead_seconds == 300 and meta.query.quantile == 0.9
    assert meta.query.policy.min_replicas == 1 and meta.query.policy.max_replicas is None
    assert meta.activation_threshold is None and meta.metric_name == "forecast-a-b"
    opt_in = parse_metadata({"series": "a", "targetPerReplica": "10", "activationThreshold": "5"})
    assert opt_in.query.policy.min_replicas == 0
    assert meta.query.policy.error_headroom == 0  # error headroom is opt-in
    headroom = parse_metadata({"series": "a", "targetPerReplica": "10", "errorHeadroom": "1.5"})
    assert headroom.query.policy.error_headroom == 1.5


@pytest.mark.parametrize(
    ("key", "meant"),
    [("leadtime", "leadTime"), ("lead_time", "leadTime"), ("quantiles", "quantile")],
)
def test_misspelt_metadata_keys_are_refused(key: str, meant: str) -> None:
    """A misspelt key was ignored and its default used (a 5-minute lead for 1 hour)."""
    with pytest.raises(InputDataError, match=f"did you mean '{meant}'"):
        parse_metadata({"series": "a", "targetPerReplica": "10", key: "1h"})


def test_kedas_own_metadata_keys_pass() -> None:
    """KEDA hands over the trigger's whole metadata map, its own keys included."""
    keda = {"scalerAddress": "forecaster:50051", "tlsCertFile": "/c", "caCert": "x"}
    meta = parse_metadata({"series": "a", "targetPerReplica": "10", **keda})
    assert meta.query.series == "a"


def test_error_headroom_metadata_plans_like_the_plain_planner_until_errors_are_known(
    stub: Any,
) -> None:
    # the seeded observation predates every forecast point, so no error is known yet
    assert metrics(stub, ref(name="plain")) == metrics(stub, ref(name="hr", errorHeadroom="2"))


def test_keys_resolved_from_the_environment_are_read() -> None:
    """KEDA sends a <key>FromEnv key under that name with the environment's value:
    leadTimeFromEnv and maxReplicasFromEnv were ignored (the defaults planned for)."""
    meta = parse_metadata(
        {
            "seriesFromEnv": "rps",
            "targetPerReplicaFromEnv": "10",
            "leadTimeFromEnv": "1h",
            "maxReplicasFromEnv": "3",
            "activationThresholdFromEnv": "5",
        }
    )
    assert meta.query.series == "rps" and meta.query.policy.target_per_replica == 10
    assert meta.query.lead_seconds == 3600 and meta.query.policy.max_replicas == 3
    assert meta.activation_threshold == 5
    with pytest.raises(InputDataError, match="sets both 'leadTime' and 'leadTimeFromEnv'"):
        parse_metadata(
            {"series": "a", "targetPerReplica": "1", "leadTime": "5m", "leadTimeFromEnv": "1h"}
        )


@pytest.mark.parametrize(
    "key", ["lead", "leadTimeSeconds", "minReplicaCount", "activationTargetValue"]
)
def test_keys_this_scaler_does_not_read_are_refused(key: str) -> None:
    """Only near misspellings were caught: these passed and the defaults were used."""
    with pytest.raises(InputDataError, match=f"metadata key '{key}' is not one this scaler reads"):
        parse_metadata({"series": "a", "targetPerReplica": "1", key: "1"})


def test_a_zero_scale_down_window_turns_the_window_off() -> None:
    meta = parse_metadata({"series": "a", "targetPerReplica": "1", "scaleDownWindow": "0s"})
    assert meta.query.policy.scale_down_window_seconds == 0


@pytest.mark.postgres
def test_a_refresh_on_a_stalled_store_fails_within_the_query_limit(
    pg_url: str, make_settings: Any
) -> None:
    """The scaler's refresh thread hung on a stalled connection for as long as the stall
    lasted; with a query limit the refresh fails and the thread goes on."""
    from tests.support.tcpproxy import TcpProxy

    seed(make_settings(db=pg_url))
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        settings = make_settings(
            db=proxy.url(pg_url),
            database={
                "statement_timeout_seconds": 0.5,
                "query_timeout_seconds": 1.0,
                "connect_timeout_seconds": 2,
            },
        )
        handle = start(settings)
        try:
            assert handle.view.state.refreshed_at is not None
            proxy.stall()
            try:
                deadline = time.monotonic() + 10
                while handle.view.state.error is None:
                    assert time.monotonic() < deadline, "the refresh hung on the stalled store"
                    time.sleep(0.1)
                # the pooled connection's ping fails after 1 s, the new one's connect
                # after 2 s: a failure, not a wait as long as the stall
                assert "store unavailable" in handle.view.state.error
            finally:
                proxy.restore()
            deadline = time.monotonic() + 15
            while handle.view.state.error is not None:
                assert time.monotonic() < deadline, "the scaler's view did not recover"
                time.sleep(0.1)
        finally:
            handle.stop()


def _metrics_from(handle: ScalerHandle, object_ref: Any) -> float:
    with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
        return metrics(pb2_grpc.ExternalScalerStub(channel), object_ref)


@pytest.mark.parametrize("how", ["rollout", "killed"])
def test_a_restarted_scaler_keeps_the_scale_down_window(
    make_settings: Any, db_url: str, how: str
) -> None:
    """A restarted scaler (a rollout, an OOM kill) started its planners without memory
    and dropped from 18 replicas to 5 right behind the peak: the planner's window and
    steps lived in the old process only. Now they are saved in the store (behind the
    answers, and at stop) and read back at start."""
    from forecaster.store.db import make_engine
    from forecaster.store.planner_states import PlannerStates
    from forecaster.store.repository import Store

    settings = make_settings(db=db_url)
    origin = seed(settings, observed=900.0)
    trigger = ref(name="checkout", quantile="0.5")
    first = start(settings, persist_seconds=0.1)
    wait_for_observations(first)
    second = None
    try:
        assert _metrics_from(first, trigger) == pytest.approx(900.0)  # the peak: 18 replicas
        engine = make_engine(settings.database)
        try:
            # the peak is over: the observed load is back under the forecast
            store = Store(engine)
            sid = store.ensure_series(
                name="rps", family="rps", unit="req/s", step_seconds=300, horizon_steps=24
            )
            store.upsert_observations(sid, [(origin, 100.0)])
            if how == "rollout":
                first.stop()  # SIGTERM: the state is saved at stop
            else:
                # killed: no stop; only what was written behind the answers survives
                deadline = time.monotonic() + 10
                while not PlannerStates(engine).load(since=origin - STEP):
                    assert time.monotonic() < deadline, "planner state never written"
                    time.sleep(0.05)
        finally:
            engine.dispose()
        second = start(settings)
        wait_for_observations(second)
        low = _metrics_from(second, ref(name="fresh", quantile="0.5"))
        assert low < 300  # what a planner without memory plans: ~5 replicas
        # the restarted scaler still holds 18 replicas within the window
        assert _metrics_from(second, trigger) == pytest.approx(900.0)
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_save_waiting_for_the_write_lock_does_not_stall_the_answers(
    make_settings: Any, tmp_path: Path
) -> None:
    """The scaler saves its planners to the store; a save waits for SQLite's write lock
    while the scheduler writes (busy timeout 30 s). It waited on the view's refresh
    thread, so the view aged past its limit and every answer became UNAVAILABLE."""
    import sqlite3

    settings = make_settings()
    seed(settings)
    handle = start(settings, persist_seconds=0.2, max_view_age_seconds=1.5)
    wait_for_observations(handle)
    writer = sqlite3.connect(tmp_path / "store.db", timeout=30)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.ExternalScalerStub(channel)
            assert metrics(stub, ref()) > 0  # a planner due to be saved
            writer.execute("BEGIN IMMEDIATE")  # another process writing for a while
            deadline = time.monotonic() + 3.5
            while time.monotonic() < deadline:
                assert metrics(stub, ref()) > 0  # the view keeps refreshing
                time.sleep(0.25)
            writer.rollback()
    finally:
        writer.close()
        handle.stop()


def test_an_edited_trigger_keeps_its_scale_down_window(make_settings: Any) -> None:
    """Editing a trigger's metadata (here adding errorHeadroom) made a new planner
    without memory, which dropped from 18 replicas to 5 right behind the peak. KEDA
    keeps the trigger's metric name (s<N>-...), so the new planner now starts from the
    old one's replicas and window."""
    from forecaster.store.db import make_engine
    from forecaster.store.repository import Store

    settings = make_settings()
    origin = seed(settings, observed=900.0)
    handle = start(settings)
    wait_for_observations(handle)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = pb2_grpc.ExternalScalerStub(channel)
            assert metrics(stub, ref(name="checkout", quantile="0.5")) == pytest.approx(900.0)
            engine = make_engine(settings.database)
            try:  # the peak is over
                store = Store(engine)
                sid = store.ensure_series(
                    name="rps", family="rps", unit="req/s", step_seconds=300, horizon_steps=24
                )
                store.upsert_observations(sid, [(origin + timedelta(minutes=1), 100.0)])
            finally:
                engine.dispose()
            deadline = time.monotonic() + 10
            for attempt in range(1000):  # a new ScaledObject each time: no memory
                if metrics(stub, ref(name=f"fresh{attempt}", quantile="0.5")) < 300:
                    break  # ~5 replicas
                assert time.monotonic() < deadline, "the lower load was never read"
                time.sleep(0.1)
            edited = ref(name="checkout", quantile="0.5", errorHeadroom="0.5")
            assert metrics(stub, edited) == pytest.approx(900.0)  # still 18 replicas
            # another trigger of the same ScaledObject (its own metric name) is not held
            other = ref(name="checkout", quantile="0.5", leadTime="10m")
            assert metrics(stub, other, "s1-forecast-rps") < 300
    finally:
        handle.stop()
